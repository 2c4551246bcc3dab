"""The live alerting path: a real breach, Prometheus, Alertmanager, our webhook receiver."""

from __future__ import annotations

import pytest

from cloudlab import alerting, services
from cloudlab import prometheus as prom

RULE_GROUP = {"groups": [{"name": "breach", "interval": "1s", "rules": [
    {"alert": "QueueTooDeep", "expr": "cloudlab_queue_depth > 10",
     "labels": {"severity": "page"}},
    {"alert": "QueueGrowing", "expr": "cloudlab_queue_depth > 5",
     "labels": {"severity": "ticket"}}]}]}


def _config(hook: alerting.Receiver) -> dict:
    names = ("team-chat", "oncall", "tickets")
    return {"route": {"receiver": "team-chat", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "2s", "repeat_interval": "1h",
                      "routes": [{"matchers": ['severity="page"'], "receiver": "oncall"},
                                 {"matchers": ['severity="ticket"'], "receiver": "tickets"}]},
            "receivers": [{"name": n, "webhook_configs": [{"url": hook.url(n),
                                                            "send_resolved": True}]}
                          for n in names]}


@pytest.fixture
def stack(cfg):
    for svc in (services.prometheus(cfg), services.alertmanager(cfg)):
        if svc.executable() is None:
            pytest.skip(f"{svc.binary} is not installed: {svc.install_hint()}")
    with alerting.Receiver() as hook, prom.Gauge("cloudlab_queue_depth") as gauge:
        alerting.configure(_config(hook), cfg=cfg)
        with services.alertmanager(cfg) as am, services.prometheus(cfg) as p:
            prom.register("queue", [gauge], cfg=cfg)
            prom.add_rules("breach", RULE_GROUP, cfg=cfg)
            prom.wait_for_targets("queue", 1, cfg=cfg)
            yield hook, gauge, am, p


def test_a_breach_pages_oncall_and_resolves(cfg, stack):
    hook, gauge, am, _ = stack
    breach = gauge.set(50)
    got = hook.wait(2, timeout=60, log=am.log)
    df = hook.frame(since=breach)
    firing = df[df.status == "firing"].set_index("alertname")
    assert firing.loc["QueueTooDeep", "paged"] == "oncall"
    assert firing.loc["QueueGrowing", "paged"] == "tickets"
    # how long the first page took against the expected window: bench/alerting.py
    assert min(n["received_at"] for n in got) >= breach, "no page before the breach"
    assert set(alerting.active(cfg=cfg)["alertname"]) == {"QueueTooDeep", "QueueGrowing"}
    gauge.set(0)
    hook.wait(1, timeout=60, where=lambda n: n["body"].get("status") == "resolved")


def test_configure_refuses_what_amtool_refuses(cfg):
    if services.alertmanager(cfg).executable() is None:
        pytest.skip("amtool is not installed")
    with pytest.raises(alerting.CloudlabError, match="amtool rejected"):
        alerting.configure({"route": {"receiver": "nobody"}, "receivers": []}, cfg=cfg)
    assert not (services.alertmanager(cfg).dir / "alertmanager.yml").exists()


def test_routes_match_the_running_alertmanager(cfg, stack):
    hook, gauge, am, _ = stack
    config = (am.dir / "alertmanager.yml").read_text()
    assert alerting.routes(config, {"severity": "page"}) == ["oncall"]
    gauge.set(7)  # only QueueGrowing: a ticket, nobody is paged
    hook.wait(1, timeout=60, log=am.log)
    held = alerting.active(cfg=cfg)
    assert list(held["alertname"]) == ["QueueGrowing"]
    assert held["receivers"].iloc[0] == ["tickets"]  # Alertmanager's own routing record
    assert set(hook.frame()["paged"]) == {"tickets"}
