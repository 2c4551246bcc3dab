"""Trusted grading without Docker: probes, strict JSON, verdicts that close to 0.

The probe runner runs here as a local child process (``trusted.local_runner``); in the
grading engine it runs in a fresh sandbox container (tests/grading).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudlab.errors import CloudlabError
from cloudlab.grading import probe, trusted
from cloudlab.grading.trusted import Raised, call, cell, expect, file, grader, value

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "tests" / "grading" / "fixtures" / "solutions"
ADD, MEAN, SQUARES = ("def add(a, b):\n    return a + b",
                      "def mean(values):\n    return sum(values) / len(values)",
                      "squares = [n * n for n in range(1, 6)]")


def submission(tmp_path: Path, **cells: str) -> trusted.Submission:
    return trusted.Submission("demo", "ada", files=tmp_path, cells=dict(cells),
                              answer_cells=[c for c in ("q1_answer", "q2_answer", "q3_answer")
                                            if c in cells])


def grade(tmp_path: Path, **cells: str) -> dict[str, trusted.Verdict]:
    graders = trusted.load(DEMO, "demo")
    return trusted.run(graders, submission(tmp_path, **cells),
                       ["q1_test", "q2_test", "q3_test"], runner=trusted.local_runner)


def fractions(verdicts: dict[str, trusted.Verdict]) -> list[float]:
    return [v.fraction for v in verdicts.values()]


def test_correct_answers_pass_every_grader(tmp_path):
    got = grade(tmp_path, q1_answer=ADD, q2_answer=MEAN, q3_answer=SQUARES)
    assert fractions(got) == [1.0, 1.0, 1.0], got


def test_the_solution_scores_full_marks_and_an_unanswered_copy_none(tmp_path):
    graders = trusted.load(DEMO, "demo")
    ids = ["q1_test", "q2_test", "q3_test"]
    source = DEMO / "demo" / "demo.ipynb"
    solution = trusted.from_notebook(source)
    assert fractions(trusted.run(graders, solution, ids, runner=trusted.local_runner)) == \
        [1.0, 1.0, 1.0]
    text = source.read_text()
    for answer in ("return a + b", "return sum(values) / len(values)",
                   "squares = [n * n for n in range(1, 6)]"):
        text = text.replace(answer, "raise NotImplementedError()")
    (tmp_path / "demo.ipynb").write_text(text)
    got = trusted.run(graders, trusted.from_notebook(tmp_path / "demo.ipynb"), ids,
                      runner=trusted.local_runner)
    assert fractions(got) == [0.0, 0.0, 0.0]
    assert all("not answered yet" in v.message for v in got.values())


def test_a_hidden_case_fails_alone_with_the_graders_message(tmp_path):
    got = grade(tmp_path, q1_answer="def add(a, b):\n    return abs(a) + abs(b)",
                q2_answer=MEAN, q3_answer=SQUARES)
    assert fractions(got) == [0.0, 1.0, 1.0]
    assert got["q1_test"].message == "add() should also work with negative numbers"


def test_objects_equal_to_anything_are_opaque(tmp_path):
    cheat = ("class Anything:\n    def __eq__(self, other):\n        return True\n"
             "def add(a, b):\n    return Anything()")
    got = grade(tmp_path, q1_answer=cheat, q2_answer=MEAN, q3_answer=SQUARES)
    assert fractions(got) == [0.0, 1.0, 1.0]
    assert "<a Anything object, not plain data>" in got["q1_test"].message


def test_an_unanswered_question_says_so(tmp_path):
    got = grade(tmp_path, q1_answer="def add(a, b):\n    raise NotImplementedError()")
    assert got["q1_test"].fraction == 0 and "not answered yet" in got["q1_test"].message
    assert got["q2_test"].fraction == 0, got
    assert "NameError: there is no function called mean()" in got["q2_test"].message


def test_each_answer_runs_on_its_own_and_a_hang_costs_only_its_points(tmp_path, monkeypatch):
    monkeypatch.setattr(trusted, "PROBE_TIMEOUT", 2.0)
    got = grade(tmp_path, q1_answer=ADD, q2_answer="while True:\n    pass", q3_answer=SQUARES)
    assert fractions(got) == [1.0, 0.0, 1.0]
    assert "did not finish within 2 s" in got["q2_test"].message


def test_a_submitted_module_is_not_importable_by_the_probe(tmp_path):
    (tmp_path / "helper.py").write_text("def add(a, b):\n    return a + b\n")
    got = grade(tmp_path, q1_answer="from helper import add", q2_answer=MEAN,
                q3_answer=SQUARES)
    assert got["q1_test"].fraction == 0
    assert "ModuleNotFoundError" in got["q1_test"].message


def test_magics_are_left_out_of_the_source(tmp_path):
    got = grade(tmp_path, q1_answer="%load_ext autoreload\n!ls /\n" + ADD, q2_answer=MEAN,
                q3_answer="%%time\nsquares = [0]")
    assert fractions(got) == [1.0, 1.0, 0.0]


def test_strict_json_keeps_only_plain_data():
    class Sub(int):
        pass

    assert probe.plain([1, 2.5, "x", None, True, (3,)]) == [1, 2.5, "x", None, True, [3]]
    assert probe.plain(Sub(3)) == {"__opaque__": "Sub"}
    assert probe.plain({"a": 1}) == {"__dict__": {"a": 1}}
    assert probe.plain({1: "a"}) == {"__opaque__": "dict"}
    assert trusted.decode(probe.plain({"__opaque__": "forged"})) == {"__opaque__": "forged"}
    assert trusted.decode({"__opaque__": "Sub"}) != 3


def test_a_raised_result_equals_nothing():
    assert Raised("NameError", "x") != Raised("NameError", "x")
    assert Raised("NameError") != None  # noqa: E711 - the point is that nothing compares equal


@pytest.mark.parametrize("body, words", [
    ("raise RuntimeError('oops')", "the grader of q_test failed: RuntimeError: oops"),
    ("return 2", "not a fraction"),
    ("return 'yes'", "not a fraction"),
])
def test_a_broken_grader_scores_zero_with_the_reason(tmp_path, body, words):
    ns: dict = {}
    exec(f"def broken(sub):\n    {body}\n", ns)
    graders = {"q_test": grader("q_test")(ns["broken"])}
    got = trusted.run(graders, submission(tmp_path), ["q_test", "other_test"],
                      runner=trusted.local_runner)
    assert got["q_test"].fraction == 0 and words in got["q_test"].message
    assert got["other_test"].fraction == 0 and "no trusted grader" in got["other_test"].message


def test_a_failing_probe_run_closes_to_zero(tmp_path):
    def broken_runner(groups, timeout):
        raise OSError("the engine went away")

    graders = trusted.load(DEMO, "demo")
    got = trusted.run(graders, submission(tmp_path, q1_answer=ADD), ["q1_test"],
                      runner=broken_runner)
    assert got["q1_test"].fraction == 0
    assert "the trusted probe run failed: OSError: the engine went away" in got["q1_test"].message


def test_cells_and_files_come_from_the_host(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "big.txt").write_text("x" * 100)
    (tmp_path / "link.txt").symlink_to(tmp_path / "notes.txt")
    seen = {}

    @grader("q_test", src=cell("q1_answer"), notes=file("notes.txt"), big=file("big.txt", limit=10),
            link=file("link.txt"), outside=file("../etc/passwd"), missing=cell("nope"))
    def look(sub, **got):
        seen.update(got)
        expect(got["notes"] == "hello", "notes.txt should say hello")

    got = trusted.run({"q_test": look}, submission(tmp_path, q1_answer=ADD), ["q_test"],
                      runner=trusted.local_runner)
    assert got["q_test"].fraction == 1
    assert seen == {"src": ADD, "notes": "hello", "big": None, "link": None, "outside": None,
                    "missing": ""}


def test_once_shares_host_work_between_graders(tmp_path):
    calls = []

    def build(sub):
        calls.append(1)
        return {"ok": True}

    @grader("a")
    def first(sub):
        assert sub.once(build)["ok"]

    @grader("b")
    def second(sub):
        assert sub.once(build)["ok"]

    got = trusted.run({"a": first, "b": second}, submission(tmp_path), ["a", "b"],
                      runner=trusted.local_runner)
    assert fractions(got) == [1.0, 1.0] and calls == [1]


def test_an_assignment_without_a_grader_file_is_an_error(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(CloudlabError, match="has no trusted grader"):
        trusted.load(tmp_path, "x")


def test_probe_arguments_must_be_json():
    with pytest.raises(TypeError):
        call("add", object())
    assert value("x", cells="q3_answer").cells == ("q3_answer",)
    json.dumps(call("add", 1, 2).args)
