"""The checks core every exercise builds on: friendly failures and student self-checks."""

from __future__ import annotations

import json

import pytest

import cloudlab as cl
from cloudlab import checks
from cloudlab.checks import CheckFailed, check, expect, register, trusted, verify


def test_expect_passes_silently_and_fails_with_details():
    expect(True, "never shown")
    with pytest.raises(CheckFailed) as info:
        expect(False, "the port should be 8080", expected=8080, found=80,
               hint="publish it with -p 8080:80")
    failure = info.value
    assert isinstance(failure, AssertionError)
    assert (failure.expected, failure.found) == (8080, 80)
    assert failure.hint == "publish it with -p 8080:80"
    text = str(failure)
    assert text.splitlines()[0] == "the port should be 8080"
    assert "expected: 8080" in text and "found:    80" in text and "hint:" in text
    assert "Traceback" not in text


def test_expected_none_is_still_shown_when_something_else_was_found():
    text = str(CheckFailed("should return nothing", expected=None, found=3))
    assert "expected: None" in text and "found:    3" in text


def test_long_values_are_shortened():
    text = str(CheckFailed("too long", expected=[1], found=list(range(10_000))))
    assert len(text) < 400


def test_check_reports_success_and_failure_without_raising(capsys):
    ns = {"ASSIGNMENT": "demo", "add": lambda a, b: a + b}
    assert check("q1", ns) is True
    assert "✓ q1: passed (1 check)" in capsys.readouterr().out
    ns["add"] = lambda a, b: a * b
    assert check("q1", ns) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ q1: add(2, 3) should return the sum")
    assert "expected: 5" in out and "found:    6" in out and "hint:" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("ns, needle", [
    ({"ASSIGNMENT": "demo"}, "define a function called add()"),
    ({"ASSIGNMENT": "demo", "add": lambda a, b: undefined_name}, "not defined yet"),  # noqa: F821
    ({"ASSIGNMENT": "demo", "add": lambda a, b: (_ for _ in ()).throw(NotImplementedError)},
     "not answered yet"),
    ({"ASSIGNMENT": "demo", "add": lambda a, b: 1 / 0}, "could not run: ZeroDivisionError"),
    ({}, "does not say which assignment"),
])
def test_check_explains_every_kind_of_problem(ns, needle, capsys):
    assert check("q1", ns) is False
    out = capsys.readouterr().out
    assert needle in out and "Traceback" not in out


def test_unknown_question_lists_the_known_ones(capsys):
    assert check("q9", {"ASSIGNMENT": "demo"}) is False
    assert "q1, q2, q3" in capsys.readouterr().out


def test_check_is_exported_and_finds_the_callers_variables(capsys):
    global ASSIGNMENT, squares
    ASSIGNMENT, squares = "demo", [1, 4, 9, 16, 25]
    try:
        assert cl.check("q3") is True
    finally:
        del ASSIGNMENT, squares


def test_verify_raises_the_friendly_failure_for_test_cells():
    with pytest.raises(CheckFailed, match=r"^q3: squares should hold"):
        verify("q3", {"ASSIGNMENT": "demo", "squares": []})
    verify("q3", {"ASSIGNMENT": "demo", "squares": [1, 4, 9, 16, 25]})


def test_the_grader_assignment_wins_over_the_notebook_variable(monkeypatch, capsys):
    monkeypatch.setenv(checks.GRADING_ASSIGNMENT_ENV, "demo")
    assert check("q3", {"ASSIGNMENT": "something-easier", "squares": [1, 4, 9, 16, 25]})


def test_register_adds_checks_for_new_assignments(capsys):
    @register("unit-test-assignment", "only")
    def positive(ns):
        expect(ns["x"] > 0, "x should be positive", found=ns["x"])

    assert check("only", {"ASSIGNMENT": "unit-test-assignment", "x": 1})
    assert not check("only", {"ASSIGNMENT": "unit-test-assignment", "x": -1})


def test_trusted_results(tmp_path, monkeypatch):
    monkeypatch.setenv(checks.TRUSTED_RESULTS_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(CheckFailed, match="only when your work is graded"):
        trusted("image_builds")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({
        "image_builds": {"passed": True, "data": {"size": 42}},
        "runs": {"passed": False, "message": "the container exited with code 1", "hint": "CMD?"},
    }))
    monkeypatch.setenv(checks.TRUSTED_RESULTS_ENV, str(results))
    assert trusted("image_builds") == {"size": 42}
    with pytest.raises(CheckFailed, match="runs: the container exited with code 1"):
        trusted("runs")
    with pytest.raises(CheckFailed, match="no result"):
        trusted("pushed")
