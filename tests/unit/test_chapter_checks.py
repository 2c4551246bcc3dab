"""Each "your turn" self-check of the chapter notebooks passes a correct answer, fails a
wrong one with a hint, and never raises (a headless run of the notebook must go on)."""

from __future__ import annotations

import pandas as pd
import pytest

import cloudlab as cl
from cloudlab.checks import chapter
from cloudlab.doctor import Report, Row

REPORT = Report(rows=(Row("a", True, ""), Row("b", False, ""), Row("c", True, "")))
TABLE = cl.pricing.load()
TIMINGS = pd.DataFrame({"kind": ["vm"] * 3 + ["container"] * 3,
                        "seconds": [4.0, 4.2, 9.0, 0.2, 0.21, 0.5]})
HELLO = "cloudlab-hello:x"
RUN = "docker run -d -p {} --memory 256m " + HELLO
COPY_APP, COPY_REQ, INSTALL = ("COPY app.py .", "COPY requirements.txt .",
                               "RUN pip install -r requirements.txt")

CASES = {
    "00": ({"report": REPORT, "ok_rows": 2}, {"report": REPORT, "ok_rows": 3}),
    "01": ({"table": TABLE, "spot_hourly": cl.pricing.price("m4.xlarge", TABLE) * 0.3},
           {"table": TABLE, "spot_hourly": cl.pricing.price("m4.xlarge", TABLE) * 0.7}),
    "02": ({"swap": "ln -sfn releases/004-v4 current.new && mv -T current.new current"},
           {"swap": "ln -sfn releases/004-v4 current"}),
    "03": ({"tag": HELLO, "run_command": RUN.format("127.0.0.1:8080:8000")},
           {"tag": HELLO, "run_command": RUN.format("8080:8000")}),
    "04": ({"timings": TIMINGS, "speedup": 4.2 / 0.21},
           {"timings": TIMINGS, "speedup": 5.73 / 0.303}),  # means, not medians
    "05": ({"parts": ("127.0.0.1:5000", "course/hello", "1.0")},
           {"parts": ("127.0.0.1", "5000/course/hello", "1.0")}),
    "06": ({"order": [COPY_REQ, INSTALL, COPY_APP]}, {"order": [COPY_APP, COPY_REQ, INSTALL]}),
    "07-config": ({"my_volume": {"name": "config", "configMap": {
                      "name": "app-config",
                      "items": [{"key": "greeting", "path": "message.txt"}]}}},
                  {"my_volume": {"name": "config", "configMap": {"name": "app-config"}}}),
    "07-sidecar": ({"my_scrape_job": {"job_name": "prometheus",
                                      "static_configs": [{"targets": ["localhost:9090"]}]}},
                   {"my_scrape_job": {"job_name": "prometheus",
                                      "static_configs": [{"targets": ["10.96.0.12:9090"]}]}}),
    "09": ({"plateau": 5.0, "THINK": (0.5, 1.5), "response_at_30": 5.0},
           {"plateau": 5.0, "THINK": (0.5, 1.5), "response_at_30": 30 / 5.0}),
    "10": ({"desired": 6}, {"desired": 5}),
    "11": ({"false_per_day": cl.alerting.false_alarms_per_day(2, 5760) / 2},
           {"false_per_day": cl.alerting.false_alarms_per_day(2, 5760)}),
    "12": ({"backup_every_min": 15}, {"backup_every_min": 60}),
}


def test_every_notebook_has_a_check_and_a_case():
    """07's HPA question has its own check in the notebook; its later sections use these."""
    owned = ["00", "01", "02", "03", "04", "05", "06", "07-config", "07-sidecar", "08", "09",
             "10", "11", "12"]
    assert chapter.registered_questions() == owned  # 08 needs Prometheus: integration tier
    assert sorted([*CASES, "08"]) == owned


@pytest.mark.parametrize("question", sorted(CASES))
def test_a_correct_answer_passes_and_a_wrong_one_gets_a_hint(question, capsys):
    right, wrong = CASES[question]
    assert chapter.your_turn(question, right) is True
    assert f"✓ {question}: passed" in capsys.readouterr().out
    assert chapter.your_turn(question, wrong) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {question}: ") and "hint:" in out


@pytest.mark.parametrize("question", sorted(CASES))
def test_the_unanswered_starter_line_is_reported_not_raised(question, capsys):
    right, _ = CASES[question]
    answer = {"00": "ok_rows", "01": "spot_hourly", "02": "swap", "03": "run_command",
              "07-config": "my_volume", "07-sidecar": "my_scrape_job",
              "04": "speedup", "05": "parts", "06": "order", "09": "response_at_30",
              "10": "desired", "11": "false_per_day", "12": "backup_every_min"}[question]
    starter = {**right, answer: ...}
    assert chapter.your_turn(question, starter) is False
    assert "hint:" in capsys.readouterr().out


def test_a_missing_backend_is_a_skip_with_its_reason(capsys):
    assert chapter.your_turn("08", {}, skip="no Prometheus on this machine") is False
    assert capsys.readouterr().out == "skipped: 08: no Prometheus on this machine\n"


def test_a_variable_the_check_needs_is_named_when_missing(capsys):
    assert chapter.your_turn("09", {"response_at_30": 5.0}) is False
    assert "could not run: KeyError: 'plateau'" in capsys.readouterr().out


def test_a_wrong_answer_is_not_told_the_right_one(capsys):
    spot = f"{cl.pricing.price('m4.xlarge', TABLE) * 0.3:.4f}"
    for question, secret in (("10", "6"), ("01", spot), ("05", "127.0.0.1:5000"),
                             ("06", "COPY requirements.txt .', 'RUN")):
        chapter.your_turn(question, CASES[question][1])
        expected = [ln for ln in capsys.readouterr().out.splitlines() if "expected:" in ln]
        assert expected and secret not in expected[0], (question, expected)


def test_12_wants_the_largest_interval_not_any_that_meets_the_target(capsys):
    """The question asks how far apart backups may be *at most*: 10 minutes meets a 15-minute
    RPO but is not the answer, and the check says which of the two it is."""
    assert chapter.your_turn("12", {"backup_every_min": 10}) is False
    out = capsys.readouterr().out
    assert "meets the target, but the question asks for the largest" in out and "hint:" in out
    assert chapter.your_turn("12", {"backup_every_min": 15.0}) is True
