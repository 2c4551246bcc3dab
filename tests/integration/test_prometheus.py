"""cl.prometheus against a real Prometheus: targets, PromQL into pandas, rules, errors."""

from __future__ import annotations

import pytest

from cloudlab import prometheus as prom
from cloudlab import services
from cloudlab.errors import CommandError
from cloudlab.proc import wait_for
from tests.conftest import private_settings


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """One server for the module: its three targets take a few scrapes to come up."""
    return private_settings(tmp_path_factory.mktemp("prometheus") / "state")


@pytest.fixture(scope="module")
def server(cfg):
    svc = services.prometheus(cfg)
    if svc.executable() is None:
        pytest.skip(f"prometheus is not installed: {svc.install_hint()}")
    with svc:
        yield svc


@pytest.fixture(scope="module")
def trio(cfg, server):
    targets = prom.random_targets(seed=1)
    try:
        for t in targets:
            t.start()
        prom.register("random", targets, cfg=cfg)
        prom.wait_for_targets("random", 3, cfg=cfg, timeout=30)
        yield targets
    finally:
        for t in targets:
            t.stop()


def test_prometheus_scrapes_itself(cfg, server):
    prom.wait_for_targets("prometheus", 1, cfg=cfg)
    df = prom.query('up{job="prometheus"}', cfg=cfg)
    assert list(df["value"]) == [1.0]
    assert df.loc[0, "instance"] == f"127.0.0.1:{cfg.prometheus_port}"
    assert str(df["timestamp"].dt.tz) == "UTC"


def test_random_targets_have_the_upstream_names_and_groups(cfg, trio):
    groups = prom.query("count by (group) (up{job='random'})", cfg=cfg)
    assert dict(zip(groups["group"], groups["value"], strict=True)) == {"production": 2,
                                                                        "canary": 1}
    services_seen = set(prom.query("rpc_durations_seconds_count", cfg=cfg)["service"])
    assert services_seen == {"uniform", "normal", "exponential"}
    q = prom.query('rpc_durations_seconds{quantile="0.99"}', cfg=cfg)
    assert len(q) == 9
    buckets = prom.query("rpc_durations_histogram_seconds_bucket", cfg=cfg)
    assert buckets["le"].nunique() == 21  # 20 linear buckets + Inf, as upstream


def test_query_range_and_wide(cfg, trio):
    prom.wait_for_targets("random", 3, cfg=cfg)
    import time

    time.sleep(0.1)
    df = prom.query_range("sum by (group) (rpc_durations_seconds_count)", start="1m",
                          step="1s", cfg=cfg)
    assert set(df["group"]) == {"production", "canary"}
    table = prom.wide(df, by="group")
    assert list(table.columns) == ["canary", "production"]
    assert table.index.is_monotonic_increasing


def test_value_is_one_number(cfg, trio):
    assert prom.value("count(up{job='random'})", cfg=cfg) == 3.0
    assert prom.value("absent_metric_xyz", default=-1.0, cfg=cfg) == -1.0
    with pytest.raises(prom.CloudlabError, match="returned 3 series"):
        prom.value("up{job='random'}", cfg=cfg)


def test_bad_promql_gets_prometheus_own_message_and_position(cfg, server):
    with pytest.raises(prom.PromQLError) as info:
        prom.query("sum(rate(up[5m])", cfg=cfg)
    err = info.value
    assert err.error_type == "bad_data"
    assert "parse error" in err.message
    assert (err.line, err.column) == (1, 17)
    assert str(err).splitlines()[-1] == " " * (2 + 16) + "^"


def test_recording_rule_is_loaded_and_evaluated(cfg, trio):
    rules = {"groups": [{"name": "random", "interval": "1s", "rules": [
        {"record": "group:rpc_durations_seconds_count:rate1m",
         "expr": "sum by (group) (rate(rpc_durations_seconds_count[1m]))"}]}]}
    prom.add_rules("random", rules, cfg=cfg)
    loaded = prom.rules(cfg=cfg)
    assert loaded.loc[0, "name"] == "group:rpc_durations_seconds_count:rate1m"
    assert loaded.loc[0, "type"] == "recording"
    prom.remove_rules("random", cfg=cfg)
    assert prom.rules(cfg=cfg).empty


def test_a_broken_rule_file_never_reaches_the_server(cfg, server):
    bad = {"groups": [{"name": "bad", "rules": [{"record": "x", "expr": "sum(("}]}]}
    with pytest.raises(CommandError, match="parse error"):
        prom.add_rules("bad", bad, cfg=cfg)
    assert not (server.rules_dir / "bad.yml").exists()
    assert prom.rules(cfg=cfg).empty


def test_intervals_are_read_from_the_running_server(tmp_path):
    cfg = private_settings(tmp_path / "state")  # its own server, scraping every second
    svc = services.prometheus(cfg)
    if svc.executable() is None:
        pytest.skip("prometheus is not installed")
    svc.scrape_interval = "1s"
    with svc:
        assert prom.intervals(cfg=cfg) == {"scrape": 1.0, "evaluation": 5.0}


def test_notebook_08_self_check_runs_the_query_against_this_prometheus(cfg, trio, capsys):
    from cloudlab.checks.chapter import your_turn

    right = 'sum(rate(rpc_durations_seconds_count{service="uniform"}[1m]))'
    wait_for(lambda: (prom.value(right, cfg=cfg) or 0) > 0, timeout=60,
             what="two scrapes of the random targets")
    assert your_turn("08", {"cfg": cfg, "calls_per_second": right.replace(" ", "")})
    assert your_turn("08", {"cfg": cfg, "calls_per_second": right.replace("uniform", "normal")}) \
        is False  # the normal service is called every 75 ms, not every 100 ms
    assert your_turn("08", {"cfg": cfg, "calls_per_second": "sum(rate(x[1m])"}) is False
    out = capsys.readouterr().out
    assert out.count("✗ 08") == 2 and "Prometheus cannot run this query" in out
