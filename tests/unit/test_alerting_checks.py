"""The alerting exercise's visible checks: they pass the solution and explain mistakes."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from cloudlab.checks import CheckFailed, verify

SOURCE = Path(__file__).resolve().parents[2] / "solutions" / "alerting" / "alerting.ipynb"


def _solution(grade_id: str) -> str:
    for cell in json.loads(SOURCE.read_text())["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            return "\n".join(ln for ln in "".join(cell["source"]).splitlines()
                             if not ln.startswith("%%writefile") and "SOLUTION" not in ln)
    raise KeyError(grade_id)


def _ns(**extra) -> dict:
    return {"ASSIGNMENT": "alerting", **extra}


def test_q1_passes_the_solution_and_names_a_wrong_answer():
    ns = _ns(math=math)
    exec(_solution("three_sigma"), ns)
    verify("q1", ns)
    with pytest.raises(CheckFailed, match="only the last value"):
        verify("q1", _ns(three_sigma=lambda s: [False] * len(s)))
    with pytest.raises(CheckFailed, match="define a function called three_sigma"):
        verify("q1", _ns())


@pytest.mark.skipif(not shutil.which("promtool") or not shutil.which("amtool"),
                    reason="needs promtool and amtool")
def test_q2_and_q3_check_the_written_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckFailed, match=r"write the file alert_rules\.yml"):
        verify("q2", _ns())
    (tmp_path / "alert_rules.yml").write_text(_solution("alert_rules"))
    (tmp_path / "alertmanager.yml").write_text(_solution("alertmanager_config"))
    verify("q2", _ns())
    verify("q3", _ns())
    (tmp_path / "alert_rules.yml").write_text(_solution("alert_rules").replace("up == 0",
                                                                              "up == == 0"))
    with pytest.raises(CheckFailed, match="promtool check rules rejects"):
        verify("q2", _ns())
    (tmp_path / "alertmanager.yml").write_text("route: [\n")
    with pytest.raises(CheckFailed, match="not valid YAML"):
        verify("q3", _ns())


def test_q3_refuses_a_receiver_off_this_machine_like_the_grader(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _solution("alertmanager_config")
    assert "//127.0.0.1:" in config, "the solution's receivers should be on 127.0.0.1"
    (tmp_path / "alertmanager.yml").write_text(config.replace("//127.0.0.1:",
                                                              "//hooks.example.org:", 1))
    with pytest.raises(CheckFailed, match="off this machine") as info:
        verify("q3", _ns())
    assert "hooks.example.org" in str(info.value) and "expected: None" not in str(info.value)
    if shutil.which("amtool"):  # other loopback names are this machine too, as for the grader
        for host in ("localhost", "[::1]"):
            (tmp_path / "alertmanager.yml").write_text(config.replace("//127.0.0.1:",
                                                                      f"//{host}:"))
            verify("q3", _ns())


def test_q2_asks_for_the_summaries_and_q3_for_the_grouping_the_text_asks_for(tmp_path,
                                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    rules, routes = _solution("alert_rules"), _solution("alertmanager_config")
    (tmp_path / "alert_rules.yml").write_text(rules.replace("summary:", "description:", 1))
    with pytest.raises(CheckFailed, match="LatencyThreeSigma has no summary annotation"):
        verify("q2", _ns())
    (tmp_path / "alertmanager.yml").write_text(
        routes.replace("group_by: [alertname, service]", "group_by: [alertname, instance]"))
    with pytest.raises(CheckFailed, match="group by alertname and service"):
        verify("q3", _ns())
    (tmp_path / "alertmanager.yml").write_text(
        routes.replace("group_by: [alertname, service]", "group_by: [service, alertname]"))
    if shutil.which("amtool"):
        verify("q3", _ns())
