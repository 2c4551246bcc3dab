"""The alerting exercise's trusted graders, on the solution and on one variant per rule.

The solution's cells are read from solutions/alerting/alerting.ipynb; each variant
changes one thing and must lose exactly the points of the hidden case that checks it.
Hostile files each get a verdict, and nothing is sent anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
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


SIGMA = "import math\n" + _solution("three_sigma")
RULES = _solution("alert_rules")
ROUTES = _solution("alertmanager_config")
SIGMA_IDS = {"sigma_flat", "sigma_short", "sigma_nan", "sigma_spike"}
RULE_IDS = {"rules_valid", "rule_fires", "rule_waits", "rule_quiet", "rule_target_down"}
ROUTE_IDS = {"am_valid", "route_page", "route_escalate", "route_ticket", "route_default"}


def lost(verdicts: dict) -> set[str]:
    return {gid for gid, v in verdicts.items() if v["points"] < v["max_points"]}


def test_the_solution_gets_full_marks():
    verdicts = G.grade({"alert_rules.yml": RULES, "alertmanager.yml": ROUTES},
                       {"three_sigma": SIGMA})
    assert set(verdicts) == SIGMA_IDS | RULE_IDS | ROUTE_IDS
    assert lost(verdicts) == set(), {k: v["reason"] for k, v in verdicts.items()}
    assert sum(v["max_points"] for v in verdicts.values()) == 15


def test_the_release_scores_zero_with_reasons():
    release = 'def three_sigma(series):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    verdicts = G.grade({"alert_rules.yml": "# YOUR CODE HERE\n",
                        "alertmanager.yml": "# YOUR CODE HERE\n"}, {"three_sigma": release})
    assert sum(v["points"] for v in verdicts.values()) == 0
    assert "NotImplementedError" in verdicts["sigma_flat"]["reason"]
    assert "defines no alerting rules" in verdicts["rule_fires"]["reason"]
    assert "YAML" in verdicts["am_valid"]["reason"] or "amtool" in verdicts["am_valid"]["reason"]


@pytest.mark.parametrize(("grade_id", "old", "new"), [
    ("sigma_flat", "    if sd == 0:\n        return [False] * len(series)\n", ""),
    ("sigma_short", "if len(present) < 20:", "if len(present) < 3:"),
    ("sigma_nan", "float(v) for v in series if v is not None and not math.isnan(v)",
     "float(v) for v in series"),
    ("sigma_spike", "abs(v - mean) > 3 * sd", "v - mean > 3 * sd"),
])
def test_each_three_sigma_case_costs_exactly_its_point(grade_id, old, new):
    assert old in SIGMA
    variant = SIGMA.replace(old, new)
    if grade_id == "sigma_flat":  # no guard, and a z-score that divides by sd
        variant = variant.replace("abs(v - mean) > 3 * sd", "abs(v - mean) / sd > 3")
    verdicts = G.grade_three_sigma(variant)
    assert lost(verdicts) == {grade_id}, {k: v["reason"] for k, v in verdicts.items()}
    assert verdicts[grade_id]["reason"]


@pytest.mark.parametrize(("grade_id", "old", "new"), [
    ("rule_fires", "[1h] offset 10m", "[1h]"),
    ("rule_waits", "for: 5m", "for: 2m"),
    ("rule_quiet", "+ 3 * stddev_over_time", "+ 2 * stddev_over_time"),
    ("rule_target_down", "severity: ticket", "severity: page"),
])
def test_each_rule_case_costs_exactly_its_points(grade_id, old, new):
    assert old in RULES
    verdicts = G.grade_rules(RULES.replace(old, new))
    assert lost(verdicts) == {grade_id}, {k: v["reason"] for k, v in verdicts.items()}
    assert verdicts[grade_id]["points"] == 0


@pytest.mark.parametrize(("grade_id", "old", "new"), [
    ("route_page", "    - matchers: ['severity=\"page\"']\n      receiver: oncall-primary\n",
     ""),
    ("route_escalate", "      continue: true\n", ""),
    ("route_ticket", "    - matchers: ['severity=\"ticket\"']\n      receiver: tickets\n", ""),
    ("route_default", "  receiver: team-chat\n  group_by", "  receiver: tickets\n  group_by"),
])
def test_each_route_case_costs_exactly_its_point(grade_id, old, new):
    assert old in ROUTES
    verdicts = G.grade_routes(ROUTES.replace(old, new))
    assert lost(verdicts) == {grade_id}, {k: v["reason"] for k, v in verdicts.items()}


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
    assert lost(verdicts) == {"rule_fires"}
    assert "got:[]" in verdicts["rule_fires"]["reason"].replace(" ", "")


def test_a_rule_that_would_run_forever_is_stopped(monkeypatch):
    monkeypatch.setattr(G, "TOOL_TIMEOUT", 3.0)
    slow = RULES.replace("expr: up == 0",
                         "expr: max_over_time(up[10000d:1ms]) == 0")
    began = time.monotonic()
    verdicts = G.grade_rules(slow)
    assert time.monotonic() - began < 40
    assert verdicts["rule_target_down"]["points"] == 0
    assert "did not finish" in verdicts["rule_target_down"]["reason"] or \
        "promtool" in verdicts["rule_target_down"]["reason"]


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


def test_hostile_three_sigma_code_is_confined():
    forever = "def three_sigma(series):\n    while True:\n        pass\n"
    G.CODE_TIMEOUT, saved = 3.0, G.CODE_TIMEOUT
    try:
        verdicts = G.grade_three_sigma(forever)
    finally:
        G.CODE_TIMEOUT = saved
    assert lost(verdicts) == SIGMA_IDS and "did not finish" in verdicts["sigma_flat"]["reason"]
    greedy = "def three_sigma(series):\n    x = bytearray(4 << 30)\n    return []\n"
    assert "MemoryError" in G.grade_three_sigma(greedy)["sigma_flat"]["reason"]
    faker = ("import sys\ndef three_sigma(series):\n"
             "    print('{\"sigma_flat\": {\"value\": []}}')\n    return [True] * len(series)\n")
    assert lost(G.grade_three_sigma(faker)) == SIGMA_IDS
