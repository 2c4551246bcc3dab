"""The instructor's loop on a real batch: autograde, report, a hidden case changes,
regrade --preview (nothing written), --apply --never-lower, --apply; exactly the affected
students move, and only their feedback pages are rewritten."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gradingkit as kit
import pytest

from cloudlab import cli
from cloudlab.grading import Course, autograde, export, feedback, late, regrade, report

TIMEOUT = 60  # seconds per notebook: a kernel that starts slowly on a busy machine is no change
SOLUTION = kit.FIXTURES / "solutions" / "demo" / "demo.ipynb"
STUDENTS = {
    "alice": [],                                                           # 6 before and after
    "bob": [("q2_answer", "return sum(values) / len(values)", "return 0")],  # 3 before and after
    "cara": [("q1_answer", "return a + b", "return abs(a) + abs(b)")],     # 4 -> 6
    "dan": [("q1_answer", "return a + b", "return 5 if a == 2 else 0")],   # 6 -> 4
}
# the hidden case of q1 changes: add(-7, 7) == 0 becomes add(7, 7) == 14
# due at the fixtures' timestamp (10:00): cara is 1 s late, bob 2 hours
POLICY = 'percent_per_day = 10\n[assignment.demo]\ndue = "2026-01-15 10:00:00 UTC"\n'
LATE = {"cara": "2026-01-15 10:00:01.000000 UTC", "bob": "2026-01-15 12:00:00.000000 UTC"}
OLD_CASE = ('neg=call("add", -7, 7, cells="q1_answer")', 'expect(neg == 0,')
NEW_CASE = ('neg=call("add", 7, 7, cells="q1_answer")', 'expect(neg == 14,')


@dataclass
class Loop:
    course: Course
    scores: dict[str, float]


def _state(course: Course) -> dict[str, str]:
    return kit.tree_digest(course.results, course.feedback, course.autograded,
                           course.gradebook)


def _feedback(course: Course, student: str) -> dict[str, tuple[str, int]]:
    """Each feedback file's digest and modification time (a rewrite with the same text
    still counts as written)."""
    return {path: (digest, Path(path).stat().st_mtime_ns)
            for path, digest in kit.tree_digest(course.feedback / student).items()}


def _scores(course: Course) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        return {s: float(gb.find_submission("demo", s).score) for s in STUDENTS}


@pytest.fixture(scope="module")
def loop(grading_image, tmp_path_factory) -> Loop:
    course = kit.make_course(tmp_path_factory.mktemp("cockpit"))
    for student, edits in STUDENTS.items():
        folder = kit.submit(course, "demo", student, kit.answered(course, "demo", SOLUTION,
                                                                  edits))
        if student in LATE:
            (folder / "timestamp.txt").write_text(LATE[student] + "\n")
    late.path(course).write_text(POLICY)
    autograde.autograde(course, "demo", workers=2, timeout=TIMEOUT, progress=False,
                        image=grading_image)
    feedback.feedback(course, "demo")
    grader = course.source / "demo" / "grader.py"
    text = grader.read_text()
    for old, new in zip(OLD_CASE, NEW_CASE, strict=True):
        assert old in text, "the demo grader changed: update OLD_CASE"
        text = text.replace(old, new)
    grader.write_text(text)
    return Loop(course, _scores(course))


def _regrade(loop: Loop, **kwargs) -> regrade.Plan:
    return regrade.regrade(loop.course, "demo", workers=2, timeout=TIMEOUT, progress=False,
                           **kwargs)


def _penalties(course: Course) -> dict[str, float]:
    return {s: json.loads(course.result_file(s, "demo").read_text())["late_penalty"]
            for s in STUDENTS}


def test_the_batch_as_graded_first(loop):
    assert loop.scores == {"alice": 6, "bob": 3, "cara": 4, "dan": 6}
    assert _penalties(loop.course) == {"alice": 0, "bob": 0.3, "cara": 0.4, "dan": 0}, \
        "the late policy applies to the trusted scores (10% a started day)"
    page = (loop.course.feedback / "bob" / "demo" / "demo.html").read_text()
    assert "0.3 point(s) taken off, final score 2.7 / 6" in page


def test_the_report_of_the_batch(loop, tmp_path):
    data = report.build(loop.course, "demo")
    items = {i["item"]: i for i in data["items"]}
    assert (items["q1_test"]["passed"], items["q1_test"]["graded"]) == (3, 4)
    assert (items["q2_test"]["passed"], items["q2_test"]["graded"]) == (3, 4)
    assert data["statuses"] == {"graded": 4}
    assert all(s["seconds"] > 0 for s in data["scores"]), "grading time is recorded"
    assert cli.main(["grade", "--course", str(loop.course.root), "report", "demo",
                     "-o", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "demo.json").read_text())["submissions"] == 4


def test_preview_shows_exactly_the_affected_students_and_writes_nothing(loop, capsys):
    before = _state(loop.course)
    assert cli.main(["grade", "--course", str(loop.course.root), "regrade", "demo",
                     "--preview", "--workers", "2", "--timeout", str(TIMEOUT),
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 score(s) change" in out
    assert "cara: 4 -> 6\n  demo/q1_test: 0 -> 2" in out
    assert "dan: 6 -> 4\n  demo/q1_test: 2 -> 0" in out
    assert "alice:" not in out and "bob:" not in out
    assert "preview only: nothing was written" in out
    assert _state(loop.course) == before
    assert not list(loop.course.state.glob("regrade-*")), "the scratch course is removed"


def test_apply_never_lower_moves_only_who_gains(loop):
    others = {s: _feedback(loop.course, s) for s in ("alice", "bob", "dan")}
    cara = _feedback(loop.course, "cara")
    plan = _regrade(loop, apply=True, never_lower=True)
    assert [c.student for c in plan.moved] == ["cara"]
    assert _scores(loop.course) == {"alice": 6, "bob": 3, "cara": 6, "dan": 6}
    assert {s: _feedback(loop.course, s) for s in others} == others
    assert _feedback(loop.course, "cara") != cara
    assert [p.parent.parent.name for p in plan.feedback] == ["cara"]
    result = json.loads(loop.course.result_file("cara", "demo").read_text())
    assert result["score"] == 6 and all(t["passed"] for t in result["tests"])
    assert result["late_penalty"] == 0.6, "the late penalty follows the new score"
    row = next(r for r in export.rows(loop.course, "demo") if r["student"] == "cara")
    assert (row["late_penalty"], row["final_score"]) == (0.6, 5.4), "and so does the gradebook"


def test_apply_then_moves_who_loses(loop):
    kept = {s: _feedback(loop.course, s) for s in ("alice", "bob", "cara")}
    plan = _regrade(loop, apply=True)
    assert [c.student for c in plan.moved] == ["dan"], plan.text()
    assert _scores(loop.course) == {"alice": 6, "bob": 3, "cara": 6, "dan": 4}
    assert {s: _feedback(loop.course, s) for s in kept} == kept
    page = (loop.course.feedback / "dan" / "demo" / "demo.html").read_text()
    assert "4 / 6" in page and "add() should also work with negative numbers" in page


def test_nothing_to_regrade_is_a_clear_error(tmp_path):
    from cloudlab.errors import CloudlabError

    with pytest.raises(CloudlabError, match="nothing to regrade"):
        regrade.regrade(Course(tmp_path), "demo")


def test_the_cli_lists_similar_pairs_and_the_late_policy(loop, capsys):
    root = str(loop.course.root)
    assert cli.main(["grade", "--course", root, "similar", "demo"]) == 0
    assert "no pair stands out" in capsys.readouterr().out
    assert cli.main(["grade", "--course", root, "late", "demo"]) == 0
    assert "due 2026-01-15 10:00:00 UTC; 10% of the score per day late" in capsys.readouterr().out
