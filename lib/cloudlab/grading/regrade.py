"""Regrade an assignment after a grader or hidden case changed: preview, then apply.

The grading re-runs in a scratch course beside the real one (the same solutions and
release, a copy of the gradebook, of the submissions and of the late policy), so a
preview writes nothing to the course. The per-item scores of every student are then
compared with the recorded ones. Applying writes, for the students whose score changed
only: the new automatic scores into the gradebook (manual grades are never touched; with
``never_lower`` each item keeps the better of its old and new score), the late penalty
again, the result record, the autograded notebook, and the feedback pages.

>>> plan = regrade(Course(), "demo", apply=False)         # doctest: +SKIP
>>> print(plan.text())                                  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CloudlabError
from .course import Course
from .results import Result, TestResult

# course state the scratch course reads as it is (everything else starts empty or copied)
SHARED_STATE = ("collected", "registry", "late-policy.toml")


@dataclass
class Change:
    student: str
    old: dict[str, float]  # item -> score recorded
    new: dict[str, float]  # item -> score of the re-run
    kept: dict[str, float]  # item -> score to write (the better one with never_lower)
    old_status: str = ""
    new_status: str = ""

    @property
    def moved(self) -> bool:
        return self.kept != self.old

    def lines(self) -> list[str]:
        out = []
        for item in sorted(set(self.old) | set(self.new)):
            a, b, k = self.old.get(item), self.new.get(item), self.kept.get(item)
            if a != b:
                note = "" if k == b else f" (kept {k:g}: never lower)"
                out.append(f"  {item}: {_fmt(a)} -> {_fmt(b)}{note}")
        if self.old_status != self.new_status:
            out.append(f"  status: {self.old_status or '-'} -> {self.new_status}")
        return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@dataclass
class Plan:
    assignment: str
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    feedback: list[Path] = field(default_factory=list)

    @property
    def moved(self) -> list[Change]:
        return [c for c in self.changes if c.moved]

    def text(self) -> str:
        head = (f"regrade of {self.assignment}: {len(self.changes)} submission(s), "
                f"{len(self.moved)} score(s) change")
        lines = [head]
        for c in self.changes:
            detail = c.lines()
            if not detail:
                continue
            total_old, total_new = sum(c.old.values()), sum(c.kept.values())
            lines.append(f"{c.student}: {total_old:g} -> {total_new:g}"
                         + ("" if c.moved else " (unchanged: never lower)"))
            lines += detail
        if self.applied:
            lines.append(f"applied; {len(self.feedback)} feedback page(s) rewritten")
        else:
            lines.append("preview only: nothing was written (apply with --apply)")
        return "\n".join(lines)


def scratch(course: Course, where: Path) -> Course:
    """A course at ``where`` grading the same submissions, with a copy of the gradebook."""
    where.mkdir(parents=True, exist_ok=True)
    for name in (course.source.name, course.release.name):
        (where / name).symlink_to(course.root / name)
    state = where / course.state.name
    state.mkdir()
    shutil.copy2(course.gradebook, state / course.gradebook.name)
    for name in SHARED_STATE:
        if (course.state / name).exists():
            (state / name).symlink_to(course.state / name)
    return Course(where)


def _copy_submissions(course: Course, other: Course, assignment: str) -> None:
    for student in course.students(assignment):
        shutil.copytree(course.submission(student, assignment),
                        other.submission(student, assignment), symlinks=True)


def _scores(result: Result | None) -> dict[str, float]:
    if result is None:
        return {}
    return {f"{t.notebook}/{t.name}": float(t.score) for t in result.tests}


def compare(old: dict[str, Result], new: dict[str, Result], never_lower: bool) -> list[Change]:
    """Per-student, per-item changes between two sets of results.

    >>> a = Result("ada", "demo", tests=[TestResult("demo", "q1", 2, 2, True)])
    >>> b = Result("ada", "demo", tests=[TestResult("demo", "q1", 2, 0, False)])
    >>> [c.kept for c in compare({"ada": a}, {"ada": b}, never_lower=True)]
    [{'demo/q1': 2.0}]
    """
    changes = []
    for student in sorted(set(old) | set(new)):
        before, after = _scores(old.get(student)), _scores(new.get(student))
        kept = {k: max(v, before.get(k, v)) if never_lower else v for k, v in after.items()}
        changes.append(Change(student, before, after, kept,
                              old[student].status if student in old else "",
                              new[student].status if student in new else ""))
    return changes


def regrade(course: Course, assignment: str, *, apply: bool = False, never_lower: bool = False,
            students: list[str] | None = None, **grading) -> Plan:
    """Re-run the grading of ``assignment`` and compare; with ``apply``, write the changes.

    ``grading`` goes to :func:`.autograde.autograde` (workers, timeout, limits, ...).
    """
    from . import autograde, report

    if not (course.results / assignment).is_dir() or not course.gradebook.exists():
        raise CloudlabError(f"nothing to regrade: {assignment!r} has no results in "
                            f"{course.results} (autograde it first)")
    old = {r.student: r for r in report.load(course, assignment)
           if not students or r.student in students}
    top = Path(tempfile.mkdtemp(prefix=f"regrade-{assignment}-", dir=course.state))
    try:
        other = scratch(course, top / "course")
        _copy_submissions(course, other, assignment)
        results = autograde.autograde(other, assignment, students=students or None,
                                      **grading)
        new = {r.student: r for r in results}
        plan = Plan(assignment, compare(old, new, never_lower))
        if apply:
            moved = [c for c in plan.changes if c.moved]
            for change in moved:
                _write(course, other, assignment, change, new[change.student], never_lower)
            if moved:
                from .feedback import feedback

                plan.feedback = feedback(course, assignment, [c.student for c in moved])
            plan.applied = True
        return plan
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _write(course: Course, other: Course, assignment: str, change: Change, result: Result,
           never_lower: bool) -> None:
    """One student's new automatic scores, late penalty, result and autograded notebook."""
    from nbgrader.api import Gradebook

    from . import late

    new_auto: dict[tuple[str, str], tuple[float | None, bool]] = {}
    with Gradebook(other.db_url) as gb:
        for nb in gb.find_submission(assignment, change.student).notebooks:
            for g in nb.grades:
                new_auto[(nb.name, g.name)] = (g.auto_score, bool(g.needs_manual_grade))
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(change.student)
        sub = gb.update_or_create_submission(assignment, change.student)
        for nb in sub.notebooks:
            for g in nb.grades:
                auto, manual = new_auto.get((nb.name, g.name), (g.auto_score, False))
                if never_lower and auto is not None and g.auto_score is not None:
                    auto = max(float(auto), float(g.auto_score))
                g.auto_score = auto
                g.needs_manual_grade = manual or g.manual_score is not None
        gb.db.commit()
    seconds, penalty = late.assess(course, assignment, change.student)
    with Gradebook(course.db_url) as gb:
        sub = gb.find_submission(assignment, change.student)
        result.score = float(sub.score or 0)
        scores = {(nb.name, g.name): float(g.score or 0) for nb in sub.notebooks
                  for g in nb.grades}
    result.tests = [_rescored(t, scores.get((t.notebook, t.name), t.score))
                    for t in result.tests]
    result.late_seconds, result.late_penalty = seconds, penalty
    result.save(course.result_file(change.student, assignment))
    src = other.autograded / change.student / assignment
    dest = course.autograded / change.student / assignment
    if src.is_dir():
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src, dest, symlinks=True)


def _rescored(test: TestResult, score: float) -> TestResult:
    """``test`` with the score the gradebook now holds (its message kept only if failed)."""
    passed = score >= test.points > 0 or test.points == 0
    return TestResult(test.notebook, test.name, test.points, score, passed,
                      "" if passed else test.message)
