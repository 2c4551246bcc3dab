"""Export grades: CSV with one row per student and assignment (gradebook + run outcome).

Every text cell goes through :func:`.sanitize.cell` and every cell is quoted (OWASP's CSV
injection advice): a reason quoting a student's file name such as ``=HYPERLINK(...)``
reaches the spreadsheet as text, never as a formula, even one that splits cells on ``;``.

>>> export(Course(), "grades.csv")           # doctest: +SKIP
PosixPath('grades.csv')
"""

from __future__ import annotations

import csv
from pathlib import Path

from .course import Course
from .results import Result
from .sanitize import cell

COLUMNS = ("assignment", "student", "status", "score", "max_score", "percent",
           "needs_manual_grade", "late_penalty", "timestamp", "reason", "final_score",
           "late_policy")


def rows(course: Course, assignment: str | None = None) -> list[dict[str, object]]:
    """Every (student, assignment) pair of the gradebook; no submission -> status missing."""
    from nbgrader.api import Gradebook, MissingEntry

    from .course import tools_on_path

    tools_on_path()
    out: list[dict[str, object]] = []
    if not course.gradebook.exists():
        return out
    with Gradebook(course.db_url) as gb:
        assignments = [a for a in gb.assignments if assignment in (None, a.name)]
        students = sorted(s.id for s in gb.students)
        for a in sorted(assignments, key=lambda a: a.name):
            max_score = float(a.max_score or 0)
            for student in students:
                row: dict[str, object] = {"assignment": a.name, "student": student,
                                          "max_score": max_score}
                result_file = course.result_file(student, a.name)
                result = Result.load(result_file) if result_file.exists() else None
                try:
                    sub = gb.find_submission(a.name, student)
                except MissingEntry:
                    row.update(status="missing", score=0.0, percent=0.0,
                               needs_manual_grade=False, late_penalty=0.0, timestamp="",
                               reason="no submission", final_score=0.0, late_policy="")
                    out.append(row)
                    continue
                score = float(sub.score or 0)
                penalty = float(sub.late_submission_penalty or 0)
                row.update(
                    status=result.status if result else "not graded",
                    score=score,
                    percent=round(100 * score / max_score, 1) if max_score else 0.0,
                    needs_manual_grade=bool(sub.needs_manual_grade),
                    late_penalty=penalty,
                    final_score=round(max(0.0, score - penalty), 4),
                    late_policy=result.late_policy if result else "",
                    timestamp=str(sub.timestamp or ""),
                    reason=(result.reason if result else ""),
                )
                out.append(row)
    return out


def export(course: Course, path: str | Path, assignment: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for row in rows(course, assignment):
            writer.writerow({k: cell(row.get(k, "")) for k in COLUMNS})
    return path
