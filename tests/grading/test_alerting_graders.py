"""The alerting exercise's tool graders (promtool, amtool), called directly.

The solution's files are read from solutions/alerting/alerting.ipynb; each variant
changes one thing and must lose exactly the points of the hidden case that checks it.
Hostile files each get a verdict, and nothing is sent anywhere. The whole exercise,
three_sigma included, is graded end to end in test_alerting.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "solutions" / "alerting" / "alerting.ipynb"

pytestmark = [
    pytest.mark.skipif(not (shutil.which("promtool") and shutil.which("amtool")),
                       reason="needs promtool and amtool "
                              "(apt-get install prometheus prometheus-alertmanager)"),
    pytest.mark.usefixtures("docker_engine"),  # the tools run in confined containers
]


def _load_grader():
    spec = importlib.util.spec_from_file_location("alerting_grader",
                                                  SOURCE.parent / "grader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


G = _load_grader()


def _solution(grade_id: str) -> str:
    for cell in json.loads(SOURCE.read_text())["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            lines = "".join(cell["source"]).splitlines()
            keep = [ln for ln in lines if not ln.startswith("%%writefile")
                    and "### BEGIN SOLUTION" not in ln and "### END SOLUTION" not in ln]
            return "\n".join(keep) + "\n"
    raise KeyError(grade_id)


RULES = _solution("alert_rules")
ROUTES = _solution("alertmanager_config")
RULE_IDS = {"rules_valid", "rule_fires", "rule_waits", "rule_quiet", "rule_target_down"}
ROUTE_IDS = {"am_valid", "route_page", "route_escalate", "route_ticket", "route_default"}


def lost(verdicts: dict) -> set[str]:
    return {gid for gid, v in verdicts.items() if v["points"] < v["max_points"]}


def test_the_solution_gets_full_marks():
    verdicts = {**G.grade_rules(RULES), **G.grade_routes(ROUTES)}
    assert set(verdicts) == RULE_IDS | ROUTE_IDS
    assert lost(verdicts) == set(), {k: v["reason"] for k, v in verdicts.items()}
    assert sum(v["max_points"] for v in verdicts.values()) == 11


def test_the_release_scores_zero_with_reasons():
    verdicts = {**G.grade_rules("# YOUR CODE HERE\nraise NotImplementedError()\n"),
                **G.grade_routes("# YOUR CODE HERE\nraise NotImplementedError()\n")}
    assert sum(v["points"] for v in verdicts.values()) == 0
    assert all(v["reason"] for v in verdicts.values())


def test_three_sigma_reference_follows_the_specification():
    assert G.reference_three_sigma([4.0] * 30) == [False] * 30
    assert G.reference_three_sigma([10.0] * 11 + [100.0]) == [False] * 12
    spike, dip = G.SIGMA_CASES["sigma_spike"][2]
    assert [i for i, f in enumerate(G.reference_three_sigma(spike)) if f] == [10]
    assert not any(G.reference_three_sigma(dip))  # one-sided: a dip is never flagged
    for series in (spike, dip):  # each tells the two deviations apart
        values = [v for v in series if v is not None]
        gap = abs(series[10] - statistics.fmean(values))
        assert 3 * statistics.pstdev(values) < gap < 3 * statistics.stdev(values)
    nan_case = G.SIGMA_CASES["sigma_nan"][2][0]
    flags = G.reference_three_sigma(nan_case)
    assert [i for i, f in enumerate(flags) if f] == [len(nan_case) - 1]


def test_a_detector_that_never_flags_earns_no_point_of_part_a():
    """Each hidden test holds a series on which the specification flags something."""
    for gid, (_, _, cases) in G.SIGMA_CASES.items():
        assert any(any(G.reference_three_sigma(series)) for series in cases), gid
    short = G.SIGMA_CASES["sigma_short"][2]  # 19 values: nothing; 20 values: the spike
    assert [sum(v is not None for v in s) for s in short[1:]] == [19, 20]
    assert [any(G.reference_three_sigma(s)) for s in short[1:]] == [False, True]


def test_own_code_is_read_from_the_code_not_from_comments():
    assert G.not_own_code("import math\n# like numpy's default, or cloudlab's detect\n") == []
    assert G.not_own_code("from fractions import Fraction\nimport statistics as st\n") == []
    assert G.not_own_code("def f():\n    import numpy\n") == ["import numpy"]
    assert G.not_own_code("import importlib\n") == ["import importlib"]


EXPR = ('rpc_durations_seconds{quantile="0.99"}\n'
        '            > avg_over_time(rpc_durations_seconds{quantile="0.99"}[1h] offset 10m)\n'
        '              + 3 * stddev_over_time(rpc_durations_seconds{quantile="0.99"}[1h] '
        'offset 10m)')
P99 = 'rpc_durations_seconds{quantile="0.99"}'
BASE = 'avg_over_time(rpc_durations_seconds{quantile="0.99"}[1h] offset 10m)'


@pytest.mark.parametrize(("grade_id", "old", "new"), [
    ("rule_fires", "[1h] offset 10m", "[1h]"),
    ("rule_waits", "for: 5m", "for: 2m"),
    ("rule_quiet", "+ 3 * stddev_over_time", "+ 2 * stddev_over_time"),
    ("rule_target_down", "severity: ticket", "severity: page"),
    ("rules_valid", 'summary: "{{ $labels.instance }}', 'description: "{{ $labels.instance }}'),
])
def test_each_rule_case_costs_exactly_its_points(grade_id, old, new):
    assert old in RULES
    verdicts = G.grade_rules(RULES.replace(old, new))
    assert lost(verdicts) == {grade_id}, {k: v["reason"] for k, v in verdicts.items()}
    assert verdicts[grade_id]["points"] == 0


@pytest.mark.parametrize("condition", [
    f"{P99} > 5", f"{P99} > 0.22", f"{P99} > 0.5",  # fixed thresholds (issue 18, item 6)
    f"{P99} > 1.1 * {BASE}", f"{P99} > 1.3 * {BASE}",  # a ratio to the mean
    f"{P99} > 0.02 + {BASE}",  # a fixed margin above the mean
    f"{P99} > 1e9",  # never fires
])
def test_no_rule_without_the_standard_deviation_earns_the_latency_points(condition):
    assert EXPR in RULES
    verdicts = G.grade_rules(RULES.replace(EXPR, condition))
    assert {"rule_fires", "rule_waits"} <= lost(verdicts) <= {"rule_fires", "rule_waits",
                                                             "rule_quiet"}, \
        {k: v["reason"] for k, v in verdicts.items()}


UNUSUAL_RULES = {
    "extra labels and annotations": RULES.replace(
        "severity: page\n", "severity: page\n          team: sre\n          runbook: "
        "https://runbooks.example/latency\n").replace(
        "severity: ticket\n", 'severity: ticket\n          team: "{{ $labels.job }}"\n').replace(
        'annotations:\n          summary: "p99', 'annotations:\n          description: '
        'more words\n          summary: "p99'),
    "a z-score, [60m] and for: 300s": RULES.replace(EXPR, (
        f"({P99} - avg_over_time({P99}[60m] offset 10m))"
        f" / stddev_over_time({P99}[60m] offset 10m) > 3")).replace("for: 5m", "for: 300s"),
    "sqrt of stdvar, on(), up < 1": RULES.replace(EXPR, (
        f"{P99} > on(service, quantile, job, instance) ({BASE} + 3 * "
        f"sqrt(stdvar_over_time({P99}[1h] offset 10m)))")).replace("up == 0", "up < 1"),
    "recording rules": RULES.replace("    rules:\n", (
        "    rules:\n      - record: service:p99_baseline:avg1h\n"
        f"        expr: {BASE}\n      - record: service:p99_baseline:stddev1h\n"
        f"        expr: stddev_over_time({P99}[1h] offset 10m)\n"), 1).replace(EXPR, (
        f"{P99} > service:p99_baseline:avg1h + 3 * service:p99_baseline:stddev1h")),
}


@pytest.mark.parametrize("how", list(UNUSUAL_RULES))
def test_correct_rules_written_differently_get_full_marks(how):
    text = UNUSUAL_RULES[how]
    assert text != RULES
    verdicts = G.grade_rules(text)
    assert lost(verdicts) == set(), {k: v["reason"] for k, v in verdicts.items()}


@pytest.mark.parametrize(("grade_id", "old", "new"), [
    ("route_page", "    - matchers: ['severity=\"page\"']\n      receiver: oncall-primary\n",
     ""),
    ("route_escalate", "      continue: true\n", ""),
    ("route_ticket", "    - matchers: ['severity=\"ticket\"']\n      receiver: tickets\n", ""),
    ("route_default", "  receiver: team-chat\n  group_by", "  receiver: tickets\n  group_by"),
    ("am_valid", "group_by: [alertname, service]", "group_by: [alertname, instance]"),
])
def test_each_route_case_costs_exactly_its_point(grade_id, old, new):
    assert old in ROUTES
    verdicts = G.grade_routes(ROUTES.replace(old, new))
    assert lost(verdicts) == {grade_id}, {k: v["reason"] for k, v in verdicts.items()}


UNUSUAL_ROUTES = {
    "one regex route with continue, group_by reversed, localhost": """route:
  receiver: team-chat
  group_by: [service, alertname]
  routes:
    - matchers:
        - severity=~"page|escalate"
      receiver: oncall-primary
      continue: true
    - matchers:
        - severity = escalate
      receiver: oncall-backup
    - matchers: [severity="ticket"]
      receiver: tickets
receivers:
  - name: team-chat
    webhook_configs:
      - url: http://127.0.0.1:9099/team-chat
        send_resolved: true
  - name: tickets
    webhook_configs:
      - url: http://localhost:9099/tickets
  - name: oncall-primary
    webhook_configs:
      - url: http://127.0.0.1:9099/oncall-primary
  - name: oncall-backup
    webhook_configs:
      - url: http://127.0.0.1:9099/oncall-backup
""",
    # Alertmanager notifies an alert's receivers in parallel: their order does not matter
    "the backup's route before the primary's": ROUTES.replace(
        "      receiver: oncall-primary\n      continue: true\n    - matchers: "
        "['severity=\"escalate\"']\n      receiver: oncall-backup\n",
        "      receiver: oncall-backup\n      continue: true\n    - matchers: "
        "['severity=\"escalate\"']\n      receiver: oncall-primary\n"),
    "the older match and match_re": ROUTES.replace(
        "matchers: ['severity=\"page\"']", "match: {severity: page}").replace(
        "matchers: ['severity=\"escalate\"']", "match: {severity: escalate}").replace(
        "matchers: ['severity=\"ticket\"']", "match_re: {severity: '^ticket$'}"),
}


@pytest.mark.parametrize("how", list(UNUSUAL_ROUTES))
def test_correct_routes_written_differently_get_full_marks(how):
    assert UNUSUAL_ROUTES[how] != ROUTES
    verdicts = G.grade_routes(UNUSUAL_ROUTES[how])
    assert lost(verdicts) == set(), {k: v["reason"] for k, v in verdicts.items()}


def test_invalid_yaml_and_promql_get_promtool_s_message_and_zero():
    bad_yaml = G.grade_rules("groups:\n  - name: x\n   rules: [\n")
    assert lost(bad_yaml) == RULE_IDS
    assert "yaml" in bad_yaml["rules_valid"]["reason"].lower()
    bad_promql = G.grade_rules(RULES.replace("up == 0", "up == == 0"))
    assert lost(bad_promql) == RULE_IDS
    assert "parse error" in bad_promql["rule_fires"]["reason"]


def test_a_huge_rule_file_is_refused_unread():
    huge = RULES + "#" + "x" * (G.MAX_FILE_BYTES + 1) + "\n"
    verdicts = G.grade_rules(huge)
    assert lost(verdicts) == RULE_IDS
    assert "byte limit: not run" in verdicts["rules_valid"]["reason"]


def test_a_rule_that_never_evaluates_gets_a_verdict():
    never = RULES.replace('rpc_durations_seconds{quantile="0.99"}\n',
                          'rpc_duration_seconds{quantile="0.99"}\n', 1)  # a typo
    verdicts = G.grade_rules(never)
    assert lost(verdicts) == {"rule_fires", "rule_waits", "rule_quiet"}
    assert "got:nil" in verdicts["rule_waits"]["reason"].replace(" ", "")


def test_a_rule_that_would_run_forever_is_stopped(monkeypatch):
    monkeypatch.setattr(G, "TOOL_TIMEOUT", 3.0)
    slow = RULES.replace("expr: up == 0",
                         "expr: max_over_time(up[10000d:1ms]) == 0")
    verdicts = G.grade_rules(slow)
    assert verdicts["rule_target_down"]["points"] == 0
    assert verdicts["rule_target_down"]["reason"].endswith(": promtool did not finish within 3 s")


def test_a_webhook_to_an_outside_address_is_refused_and_nothing_is_sent():
    outside = ROUTES.replace("http://127.0.0.1:9099/oncall-backup",
                             "http://198.51.100.7/hook")
    verdicts = G.grade_routes(outside)
    assert lost(verdicts) == ROUTE_IDS
    assert "198.51.100.7" in verdicts["am_valid"]["reason"]
    assert "Nothing was sent" in verdicts["am_valid"]["reason"]
    assert G.outside_urls({"receivers": [{"webhook_configs": [
        {"url": "http://[::1]:9/x"}, {"url": "http://localhost/x"},
        {"url": "https://hooks.example.org/x"}]}]}) == ["https://hooks.example.org/x"]


def test_loopback_webhooks_are_not_contacted_while_grading():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        hits = []

        def accept():
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                try:
                    hits.append(listener.accept())
                except OSError:
                    continue

        watcher = threading.Thread(target=accept)
        watcher.start()
        verdicts = G.grade_routes(ROUTES.replace("9099", str(port)))
        watcher.join()
    assert lost(verdicts) == set()
    assert hits == []
