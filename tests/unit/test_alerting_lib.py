"""cl.alerting without servers: the sigma maths, episodes, precision/recall, the receiver."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import requests

from cloudlab import alerting
from cloudlab.errors import CloudlabError


def test_68_95_99_7():
    assert [round(alerting.within(k), 3) for k in (1, 2, 3)] == [0.683, 0.954, 0.997]
    assert alerting.false_alarms_per_day(3, 1440) == pytest.approx(3.888, abs=0.01)


def test_empirical_matches_the_normal_for_normal_samples():
    rng = np.random.default_rng(0)
    table = alerting.empirical(rng.normal(size=20000))
    assert np.allclose(table["measured"], table["normal"], atol=0.01)


def test_detect_whole_series_flags_the_spike_only():
    rng = np.random.default_rng(1)
    s = pd.Series(rng.normal(10, 1, 200))
    s[150] = 30
    assert alerting.detect(s).sum() == 1 and alerting.detect(s)[150]


def test_detect_flat_short_and_nan_series_never_flag():
    assert not alerting.detect(pd.Series([5.0] * 20)).any()
    assert alerting.detect(pd.Series([1.0, 9.0])).tolist() == [False, False]
    s = pd.Series([1.0, np.nan, 1.1, 0.9] * 10 + [50.0])
    flags = alerting.detect(s)
    assert flags.tolist()[-1] and not flags[1]


def test_trailing_window_excludes_the_point_itself():
    s = pd.Series([1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.05, 0.95, 6.0])
    assert alerting.detect(s, window=8).tolist()[-1]
    assert not alerting.detect(s, window=8)[:8].any()  # not enough history yet
    with pytest.raises(CloudlabError, match="at least 3"):
        alerting.zscores(s, window=2)


def test_episodes_merge_runs_and_small_gaps():
    flags = pd.Series([0, 1, 1, 0, 0, 1, 0, 1, 0], dtype=bool)
    assert alerting.episodes(flags) == [(1, 2), (5, 5), (7, 7)]
    assert alerting.episodes(flags, gap=1) == [(1, 2), (5, 7)]
    assert alerting.episodes(pd.Series([False, False])) == []


def test_precision_and_recall():
    noisy = alerting.score([(1, 1), (5, 5), (20, 22), (40, 40)], [(19, 25), (60, 70)])
    assert (noisy.precision, noisy.recall) == (0.25, 0.5)
    assert noisy.false_pages == 3
    silent = alerting.score([], [(1, 2)])
    assert math.isnan(silent.precision) and silent.recall == 0
    assert alerting.score([(10, 10)], [(11, 12)], slack=1).precision == 1.0



def test_a_lagging_page_takes_no_credit_for_the_next_incident_when_scored_by_start():
    major, minor = (10, 16), (28, 34)
    lagging = [(12, 30)]  # began in the major incident, still firing when the minor began
    assert alerting.score(lagging, [major, minor], slack=2).recall == 1.0
    by_start = alerting.score(lagging, [major, minor], slack=2, by_start=True)
    assert (by_start.caught, by_start.true_pages, by_start.recall) == (1, 1, 0.5)
    own = alerting.score([(12, 30), (29, 31)], [major, minor], slack=2, by_start=True)
    assert (own.caught, own.precision) == (2, 1.0)
    stray = alerting.score([(20, 21)], [major, minor], slack=2, by_start=True)
    assert (stray.false_pages, stray.caught) == (1, 0)

def test_expected_delay_rounds_for_up_to_evaluations():
    assert alerting.expected_delay(scrape_interval=5, evaluation_interval=5, for_=7,
                                   group_wait=2) == (12.0, 22.0)
    assert alerting.expected_delay(scrape_interval=1, evaluation_interval=1, for_=0,
                                   group_wait=1) == (1.0, 3.0)


def test_receiver_records_notifications_with_time_and_who():
    with alerting.Receiver() as hook:
        body = {"receiver": "oncall", "status": "firing",
                "alerts": [{"status": "firing", "labels": {"alertname": "X",
                                                           "severity": "page"}}]}
        assert requests.post(hook.url("oncall"), json=body, timeout=5).status_code == 200
        got = hook.wait(1, timeout=5)
        assert got[0]["path"] == "oncall"
        df = hook.frame(since=got[0]["received_at"] - 1)
    assert df.loc[0, "alertname"] == "X" and df.loc[0, "paged"] == "oncall"
    assert df.loc[0, "after_s"] == pytest.approx(1.0, abs=0.05)
    hook.stop()  # idempotent
    with pytest.raises(CloudlabError, match="not started"):
        hook.url()


def test_receiver_refuses_non_loopback():
    with pytest.raises(CloudlabError, match="loopback only"):
        alerting.Receiver(host="0.0.0.0")


needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (apt-get install prometheus)")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None,
                                  reason="amtool not installed "
                                         "(apt-get install prometheus-alertmanager)")

RULES = {"groups": [{"name": "g", "rules": [{
    "alert": "High", "expr": "metric > 3", "for": "2m", "labels": {"severity": "page"}}]}]}


@needs_promtool
def test_promtool_unit_test_passes_and_fails_with_its_own_words():
    case = {"interval": "1m", "input_series": [{"series": "metric", "values": "0 5 5 5 5"}],
            "alert_rule_test": [{"eval_time": "4m", "alertname": "High",
                                 "exp_alerts": [{"exp_labels": {"severity": "page"}}]}]}
    assert alerting.rule_tests(RULES, [case])
    case["alert_rule_test"][0]["eval_time"] = "2m"  # still pending: not firing yet
    failed = alerting.rule_tests(RULES, [case])
    assert not failed and "High" in failed.output and "FAILED" in failed.output
    broken = alerting.rule_tests("groups: [", [case])
    assert not broken and "yaml" in broken.output.lower()


AM = {"route": {"receiver": "team", "routes": [
    {"matchers": ['severity="page"'], "receiver": "oncall", "continue": True},
    {"matchers": ['severity="page"'], "receiver": "manager"}]},
      "receivers": [{"name": "team"}, {"name": "oncall"}, {"name": "manager"}]}


@needs_amtool
def test_amtool_routes():
    assert alerting.routes(AM, {"severity": "page"}) == ["oncall", "manager"]
    assert alerting.routes(AM, {"severity": "info"}) == ["team"]
    assert alerting.routes_test(AM, {"severity": "page"}, ["oncall", "manager"])
    wrong = alerting.routes_test(AM, {"severity": "info"}, ["oncall"])
    assert not wrong and "did not match" in wrong.output
    assert not alerting.check_config({"route": {"receiver": "nobody"}, "receivers": []})
