"""Grades for a learning management system: a Canvas and a Moodle grade import CSV.

Students are named by the LMS's own ids, taken from the roster (``cloudlab grade roster``
reads only ``id`` and ``dockerhub``; these exports read the optional columns below, so one
roster file serves both). A graded student missing from the roster is an error, never a
row the LMS would drop or, worse, match to someone else.

=============== ============================================ ===========================
roster column    Canvas column                                Moodle column
=============== ============================================ ===========================
``name``         ``Student`` (default: the id)                ``First name``/``Last name``
``canvas_id``    ``ID`` (Canvas's user id)
``sis_id``       ``SIS User ID``                              ``ID number`` (idnumber)
``login``        ``SIS Login ID`` (default: the id)
``section``      ``Section``
``email``                                                     ``Email address``
=============== ============================================ ===========================

The score is the final one (after the late policy); per-item columns are optional
(``items=True``: one more column per graded cell). Every cell is neutralised against CSV
injection (:func:`.sanitize.row`).

>>> ident = Identity("ada", name="Lovelace, Ada", sis_id="S1", section="A")
>>> canvas_row(ident, Record("ada", 4.5, {"q1": 2.0}), "demo", ["q1"])
{'Student': 'Lovelace, Ada', 'ID': '', 'SIS User ID': 'S1', 'SIS Login ID': 'ada', \
'Section': 'A', 'demo': 4.5, 'demo: q1': 2.0}
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CloudlabError
from . import sanitize
from .course import Course
from .roster import ID, read_roster

CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MOODLE_IDENTITY = ("First name", "Last name", "ID number", "Email address")


@dataclass(frozen=True)
class Identity:
    id: str
    name: str = ""
    canvas_id: str = ""
    sis_id: str = ""
    login: str = ""
    section: str = ""
    email: str = ""

    def split_name(self) -> tuple[str, str]:
        """(first, last) from ``Last, First`` or ``First Last`` (or the id)."""
        name = self.name or self.id
        if "," in name:
            last, first = (p.strip() for p in name.split(",", 1))
            return first, last
        first, _, last = name.rpartition(" ")
        return (first, last) if first else (last, "")


@dataclass
class Record:
    """One student's grade of one assignment, as the LMS gets it."""

    student: str
    final: float
    items: dict[str, float] = field(default_factory=dict)
    feedback: str = ""


def identities(roster: str | Path) -> dict[str, Identity]:
    """Student id -> LMS identity from a roster CSV (ids checked as ``read_roster`` does)."""
    students = read_roster(roster)  # the same rules and messages as the accounts
    rows = list(csv.DictReader(Path(roster).read_text().splitlines()))
    extra: dict[str, dict[str, str]] = {}
    for row in rows:
        clean = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        sid = clean.get("id", "").lower()
        if ID.fullmatch(sid):
            extra[sid] = clean
    keys = ("name", "canvas_id", "sis_id", "login", "section", "email")
    return {s.id: Identity(s.id, **{k: extra.get(s.id, {}).get(k, "") for k in keys})
            for s in students}


def records(course: Course, assignment: str) -> tuple[list[Record], list[str], float]:
    """Every gradebook student's record of ``assignment``, its graded items and max score."""
    from nbgrader.api import Gradebook, MissingEntry

    from .course import tools_on_path
    from .export import rows

    tools_on_path()
    found = [r for r in rows(course, assignment)]
    if not found:
        raise CloudlabError(f"no grades for {assignment!r} in {course.gradebook} "
                            "(autograde first: cloudlab grade autograde)")
    out: list[Record] = []
    with Gradebook(course.db_url) as gb:
        items = sorted({c.name for nb in gb.find_assignment(assignment).notebooks
                        for c in nb.grade_cells})
        for row in found:
            scores: dict[str, float] = {}
            try:
                sub = gb.find_submission(assignment, str(row["student"]))
                for nb in sub.notebooks:
                    for grade in nb.grades:
                        scores[grade.name] = float(grade.score or 0)
            except MissingEntry:
                pass
            note = f"{row['status']}"
            if float(row.get("late_penalty") or 0):
                note += f"; late: -{float(row['late_penalty']):g} ({row.get('late_policy')})"
            out.append(Record(str(row["student"]), float(row.get("final_score") or 0),
                              scores, note))
    return out, items, float(found[0]["max_score"])


def _identity(ids: dict[str, Identity], student: str) -> Identity:
    try:
        return ids[student]
    except KeyError:
        raise CloudlabError(f"student {student!r} has grades but is not on the roster: "
                            "add a line for them (their LMS ids) and export again") from None


def canvas_row(ident: Identity, rec: Record, assignment: str, items: list[str]) -> dict:
    row = {"Student": ident.name or ident.id, "ID": ident.canvas_id,
           "SIS User ID": ident.sis_id, "SIS Login ID": ident.login or ident.id,
           "Section": ident.section, assignment: rec.final}
    row.update({f"{assignment}: {i}": rec.items.get(i, 0.0) for i in items})
    return row


def moodle_row(ident: Identity, rec: Record, assignment: str, items: list[str]) -> dict:
    first, last = ident.split_name()
    row = {"First name": first, "Last name": last, "ID number": ident.sis_id or ident.id,
           "Email address": ident.email, assignment: rec.final}
    row.update({f"{assignment}: {i}": rec.items.get(i, 0.0) for i in items})
    row[f"{assignment} feedback"] = rec.feedback
    return row


def _write(path: Path, header: list[str], rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow(sanitize.row(row))
    return path


def export(course: Course, assignment: str, roster: str | Path, fmt: str,
           path: str | Path, *, items: bool = False) -> Path:
    """Write the ``fmt`` (``canvas`` or ``moodle``) import CSV of ``assignment``."""
    if fmt not in ("canvas", "moodle"):
        raise CloudlabError(f"unknown LMS format {fmt!r}: canvas or moodle")
    ids = identities(roster)
    found, names, _ = records(course, assignment)
    cols = names if items else []
    make = canvas_row if fmt == "canvas" else moodle_row
    rows = [make(_identity(ids, r.student), r, assignment, cols) for r in found]
    graded = {r.student for r in found}
    for sid in sorted(set(ids) - graded):  # on the roster, never submitted: 0
        rows.append(make(ids[sid], Record(sid, 0.0, {}, "missing"), assignment, cols))
    header = list(rows[0]) if rows else []
    return _write(Path(path), header, rows)
