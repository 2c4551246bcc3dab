"""The instructor's report (grading/report.py) from recorded results: what it counts, what
it keeps apart, and that nothing a student wrote reaches the page unescaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradingkit import make_course

from cloudlab.errors import CloudlabError
from cloudlab.grading import report
from cloudlab.grading.results import Result, TestResult

ROOT = Path(__file__).resolve().parents[2]
XSS = "<script>alert('pwned')</script>"


def _t(name: str, points: float, score: float, message: str = "") -> TestResult:
    return TestResult("demo", name, points, score, score >= points, message)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("report"))
    rows = [
        Result("ada", "demo", score=6, max_score=6, seconds=4.0,
               tests=[_t("q1_test", 2, 2), _t("q2_test", 3, 3), _t("q3_test", 1, 1)]),
        Result("bob", "demo", score=3, max_score=6, seconds=5.0, late_seconds=7200,
               late_penalty=0.3, tests=[_t("q1_test", 2, 2), _t("q2_test", 3, 0,
                                        "mean([1, 2, 3, 4]) should be 2.5 (found 0)"),
                                        _t("q3_test", 1, 1)]),
        Result("cy", "demo", score=2, max_score=6, seconds=6.0,
               tests=[_t("q1_test", 2, 2), _t("q2_test", 3, 0,
                      "mean([1, 2, 3, 4]) should be 2.5 (found 10)"),
                      _t("q3_test", 1, 0, f"squares should be [1, 4] (found '{XSS}')")]),
        Result("dee", "demo", status="timed out", reason="the grader gave up after 90 s",
               max_score=6, seconds=90.0, tests=[_t("q1_test", 2, 0), _t("q2_test", 3, 0),
                                                 _t("q3_test", 1, 0)]),
        Result("eve", "demo", score=0, max_score=6, seconds=3.0, flags=["touches builtins"],
               tests=[_t("q1_test", 2, 0, "the grader of q1_test failed: OSError: engine "
                                          "gone"),
                      _t("q2_test", 3, 0, "refused: the Dockerfile is not allowed here"),
                      _t("q3_test", 1, 0, XSS)]),
        Result("fay", "demo", status="crashed", max_score=6, seconds=2.0,
               reason="pre-grade check build_image failed: TimeoutError: docker"),
        Result("gus", "demo", status="graded", max_score=6, seconds=2.0,
               tests=[_t("q1_test", 2, 0, "the trusted probe run failed: ImageNotFound: "
                                          "No such image: cloudlab-grader:1")]),
    ]
    for r in rows:
        r.save(course.result_file(r.student, "demo"))
    return course


@pytest.fixture(scope="module")
def data(course):
    return report.build(course, "demo", similar=False)


def test_scores_statuses_and_time(data):
    assert data["submissions"] == 7
    assert data["statuses"] == {"graded": 5, "timed out": 1, "crashed": 1}
    finals = {s["student"]: s["final"] for s in data["scores"]}
    assert finals["bob"] == 2.7, "the final score is after the late penalty"
    assert data["timing"]["total"] == 112.0 and data["timing"]["max"] == 90.0
    assert data["timing"]["slowest"][0] == {"student": "dee", "seconds": 90.0}
    assert data["late"] == [{"student": "bob", "hours": 2.0, "penalty": 0.3}]


def test_pass_rate_per_item_with_the_failed_submissions_left_out(data):
    items = {i["item"]: i for i in data["items"]}
    assert (items["q1_test"]["passed"], items["q1_test"]["graded"]) == (3, 3), \
        "eve's q1 is an environment error and dee timed out: neither is a q1 failure"
    assert (items["q2_test"]["passed"], items["q2_test"]["graded"]) == (1, 4)
    assert items["q2_test"]["pass_rate"] == 0.25
    assert items["q1_test"]["hidden"] is False


def test_failures_are_grouped_with_a_count_and_an_example(data):
    top = data["failures"][0]
    assert top["item"] == "q2_test" and top["count"] == 2
    assert top["message"] == "mean([N, N, N, N]) should be N (found N)"
    assert top["example"] == "mean([1, 2, 3, 4]) should be 2.5 (found 0)"


def test_environment_errors_flags_and_refusals_are_kept_apart(data):
    env = {(e["student"], e["item"]) for e in data["environment"]}
    assert env == {("eve", "q1_test"), ("fay", ""), ("gus", "q1_test")}
    assert not any("engine gone" in f["example"] for f in data["failures"])
    kinds = {(f["student"], f["kind"]) for f in data["flags"]}
    assert kinds == {("eve", "flagged"), ("eve", "refused (q2_test)")}
    assert {(p["student"], p["status"]) for p in data["problems"]} == {
        ("dee", "timed out"), ("fay", "crashed")}


def test_the_page_has_plots_and_escapes_what_students_wrote(course, tmp_path):
    page, js = report.write(course, "demo", tmp_path)
    text = page.read_text()
    assert text.count("src='data:image/png;base64,") == 3
    assert "<script>" not in text and "&lt;script&gt;alert(&#x27;pwned&#x27;)" in text
    assert json.loads(js.read_text())["assignment"] == "demo"


def test_hidden_rules_are_marked():
    from cloudlab.grading import Course

    course = Course(ROOT)  # the real kubernetes exercise
    found = report.hidden_items(course, "kubernetes")
    assert {"rule_cpu_requests", "rule_probes", "rule_tolerance", "rule_clamp"} <= found
    assert not found & {"q1_valid", "q2_consistent", "q3_replicas"}, \
        "a visible check with hidden cases is not a hidden rule"


def test_no_results_is_a_clear_error(tmp_path):
    from cloudlab.grading import Course

    with pytest.raises(CloudlabError, match="no results for 'demo'"):
        report.write(Course(tmp_path), "demo")
