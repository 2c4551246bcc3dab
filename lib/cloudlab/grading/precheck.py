"""Look at a submission before anything runs, and stage a sanitised copy of it.

Trusted host code (no student code runs here) decides what nbgrader will see:

* notebooks that are not valid JSON / nbformat, or that belong to another assignment, are
  left out (they score 0, with the reason);
* locked cells are compared with the gradebook's checksums: an edited one is restored by
  nbgrader (and reported), a deleted test cell scores 0 (and is reported);
* student cells are scanned for the ways Python code can tamper with the grader from inside
  the kernel (custom exception handlers, ``sys.modules``, the checkers' internals...): such
  submissions are graded but flagged for a manual look (``needs_manual_grade``);
* the files the student's code may see - their own non-notebook files, never linked files,
  overlaid by the released data files - are copied to a folder mounted read-only.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import Course

MAX_FILES_BYTES = 50 * 1024 * 1024
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024  # a notebook bigger than this is not parsed at all
TAMPER_PATTERNS = {
    r"set_custom_exc": "installs a custom exception handler",
    r"\bsys\s*\.\s*modules\b": "edits sys.modules",
    r"__builtins__|\bimport\s+builtins|\bfrom\s+builtins\b": "touches builtins",
    r"_REGISTRY|__dict__\s*\[": "edits module internals",
    r"\bcloudlab\s*\.\s*checks\s*\.\s*\w+\s*=(?!=)|\bcl\s*\.\s*checks\s*\.\s*\w+\s*=(?!=)":
        "reassigns a checker",
    r"\bimportlib\s*\.\s*reload\b": "reloads modules",
    r"\bctypes\b": "uses ctypes",
    r"\bgc\s*\.\s*get_(referrers|referents|objects)\b": "walks the garbage collector",
    r"\brun_cell\b|\bevents\s*\.\s*register\b|\bshowtraceback\b": "hooks into IPython",
    r"\bsys\s*\.\s*(settrace|setprofile|excepthook|addaudithook)\b": "installs interpreter hooks",
}


@dataclass
class Precheck:
    notebooks: list[str] = field(default_factory=list)  # staged (valid) notebook ids
    invalid: dict[str, str] = field(default_factory=dict)  # notebook id -> why left out
    missing: list[str] = field(default_factory=list)
    edited: dict[str, list[str]] = field(default_factory=dict)  # nb -> locked cells restored
    deleted: dict[str, list[str]] = field(default_factory=dict)  # nb -> test cells deleted
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timestamp: str | None = None
    cells: dict[str, str] = field(default_factory=dict)  # grade id -> source (trusted graders)
    answer_cells: list[str] = field(default_factory=list)  # answer (solution) cells, in order

    def reason(self) -> str:
        parts = [f"{nb}.ipynb left out: {why}" for nb, why in self.invalid.items()]
        parts += [f"{nb}.ipynb was not submitted" for nb in self.missing]
        for nb, cells in self.deleted.items():
            parts.append(f"{nb}: test cell(s) {', '.join(cells)} deleted (0 points for them)")
        for nb, cells in self.edited.items():
            parts.append(f"{nb}: locked cell(s) {', '.join(cells)} edited (restored from the "
                         "release before grading)")
        if self.flags:
            parts.append("flagged for review: " + "; ".join(self.flags))
        return "; ".join(parts + self.notes)


def expected_notebooks(course: Course, assignment: str) -> dict[str, dict[str, object]]:
    """Per notebook id: its source cells by grade id, from the gradebook (trusted)."""
    from nbgrader.api import Gradebook

    found: dict[str, dict[str, object]] = {}
    with Gradebook(course.db_url) as gb:
        for nb in gb.find_assignment(assignment).notebooks:
            grade_ids = {c.name for c in nb.grade_cells}
            solution_ids = {c.name for c in nb.solution_cells}
            found[nb.name] = {
                "cells": {c.name: (c.locked, released_source(c.source or ""), c.name in grade_ids)
                          for c in nb.source_cells},
                "answers": [c.name for c in nb.source_cells if c.name in solution_ids
                            and c.cell_type == "code"],
            }
    return found


def released_source(source: str) -> str:
    """What the student's copy of a locked cell holds: the source minus its hidden tests."""
    from .release import HIDDEN_BEGIN, HIDDEN_END

    kept, inside = [], False
    for line in source.splitlines():
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        elif not inside:
            kept.append(line.rstrip())
    return "\n".join(kept).strip()


def _load(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    try:
        with path.open("rb") as f:  # never more than the cap in memory, whatever stat says
            blob = f.read(MAX_NOTEBOOK_BYTES + 1)
        if len(blob) > MAX_NOTEBOOK_BYTES:
            return None, (f"is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB (clear its "
                          "outputs before submitting)")
        raw = blob.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc.__class__.__name__})"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    if not isinstance(data, dict) or data.get("nbformat") != 4:
        found = data.get("nbformat") if isinstance(data, dict) else type(data).__name__
        return None, f"is not a version 4 notebook (nbformat={found!r})"
    try:
        nb = nbformat.reads(raw, as_version=4)
        nbformat.validate(nb, relax_add_props=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"is not a valid notebook ({first[:200]})"
    return nb, ""


def _claimed_assignment(nb: nbformat.NotebookNode) -> str | None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            m = re.search(r"^\s*ASSIGNMENT\s*=\s*['\"]([^'\"]+)['\"]", cell.source, re.M)
            if m:
                return m.group(1)
    return None


def inspect(course: Course, assignment: str, student: str, stage: Path) -> Precheck:
    """Check ``student``'s submission and stage it under ``stage``.

    ``stage/submitted/<student>/<assignment>/`` receives the notebooks nbgrader should
    grade (plus timestamp.txt); ``stage/files/`` the files the sandbox may read.
    """
    src = course.submission(student, assignment)
    out = stage / "submitted" / student / assignment
    out.mkdir(parents=True)
    files = stage / "files"
    files.mkdir()
    pre = Precheck()
    pre.timestamp = submission_time(course, student, assignment)
    if pre.timestamp:
        (out / "timestamp.txt").write_text(pre.timestamp + "\n")

    expected = expected_notebooks(course, assignment)
    for name, info in expected.items():
        path = src / f"{name}.ipynb"
        if not path.is_file() or path.is_symlink():
            pre.missing.append(name)
            continue
        nb, problem = _load(path)
        if nb is None:
            pre.invalid[name] = f"the file {problem}"
            continue
        cells: dict = info["cells"]  # type: ignore[assignment]
        present: dict = {}
        repeated = []
        for c in nb.cells:  # the first cell of an id counts; a repeat is an ordinary cell
            gid = present_id(c)
            if gid is not None and gid in present:
                repeated.append(gid)
                for key in ("nbgrader", "editable", "deletable"):
                    c.metadata.pop(key, None)
            elif gid is not None:
                present[gid] = c
        claimed = _claimed_assignment(nb)
        if not set(present) & set(cells):
            if claimed and claimed != assignment:
                pre.invalid[name] = (f"this notebook belongs to assignment {claimed!r}, "
                                     f"not {assignment!r}")
            else:
                pre.invalid[name] = (f"none of {assignment!r}'s cells are in it (was the "
                                     "notebook re-created or taken from another assignment?)")
            continue
        for grade_id, (locked, expected_source, is_grade) in cells.items():
            if not locked:
                continue
            cell = present.get(grade_id)
            if cell is None:
                if is_grade:
                    pre.deleted.setdefault(name, []).append(grade_id)
            elif "\n".join(x.rstrip() for x in cell.source.splitlines()).strip() \
                    != expected_source:
                pre.edited.setdefault(name, []).append(grade_id)
        student_code = "\n".join(c.source for c in nb.cells if c.cell_type == "code"
                                 and not _as_released(c, cells, present))
        for pattern, what in TAMPER_PATTERNS.items():
            if re.search(pattern, student_code) and what not in pre.flags:
                pre.flags.append(what)
        if repeated:
            what = "repeats the grade id of another cell"
            pre.notes.append(f"{name}: a cell {what} ({', '.join(sorted(set(repeated)))}); it "
                             "was graded as an ordinary cell")
            if what not in pre.flags:
                pre.flags.append(what)
            nbformat.write(nb, str(out / f"{name}.ipynb"))
        else:
            shutil.copy2(path, out / f"{name}.ipynb")
        pre.notebooks.append(name)
        for grade_id, (locked, expected_source, _) in cells.items():
            if locked:  # the gradebook's text (hidden tests removed), never the student's
                pre.cells.setdefault(grade_id, expected_source)
            elif grade_id in present:
                pre.cells.setdefault(grade_id, present[grade_id].source)
        pre.answer_cells += [a for a in info["answers"] if a in present]  # type: ignore[union-attr]

    pre.notes += _stage_files(src, files, course.release / assignment)
    return pre


def _as_released(cell: nbformat.NotebookNode, cells: dict, present: dict) -> bool:
    """A locked cell exactly as released: nbgrader's own text, nothing of the student's.

    Anything else is scanned - also a second cell carrying a locked cell's grade id (nbgrader
    strips its metadata and runs it as an ordinary cell).
    """
    gid = present_id(cell)
    locked, expected_source, _ = cells.get(gid, (False, "", False))
    return bool(locked) and present.get(gid) is cell and \
        "\n".join(x.rstrip() for x in cell.source.splitlines()).strip() == expected_source


def submission_time(course: Course, student: str, assignment: str) -> str | None:
    """When the submission was collected: the collection's record (``course/collected/``),
    else nbgrader's ``timestamp.txt`` written by its own collect; never a file of the
    student's choosing (``cloudlab grade collect`` drops a submitted timestamp.txt)."""
    for ts in (course.collected_timestamp(student, assignment),
               course.submission(student, assignment) / "timestamp.txt"):
        if ts.is_file() and not ts.is_symlink() and ts.stat().st_size < 1024:
            return ts.read_text(errors="replace").strip()[:64] or None
    return None


def present_id(cell: nbformat.NotebookNode) -> str | None:
    meta = cell.metadata.get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def _stage_files(src: Path, dest: Path, release: Path) -> list[str]:
    """Copy regular, non-notebook files (no links, bounded size); released files win."""
    notes: list[str] = []
    total = 0
    skipped_links = 0
    for root, overwrite in ((src, False), (release, True)):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".ipynb_checkpoints") or part == "__pycache__"
                   for part in rel.parts):
                continue
            if any(p.is_symlink() for p in [path, *path.parents] if root in p.parents):
                skipped_links += root is src
                continue
            if not path.is_file() or path.suffix == ".ipynb" or rel.name == "timestamp.txt":
                continue
            size = path.stat().st_size
            if total + size > MAX_FILES_BYTES:
                notes.append(f"{rel} not given to the notebook (files over "
                             f"{MAX_FILES_BYTES // 2**20} MB)")
                continue
            target = dest / rel
            if target.exists() and not overwrite:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            total += size
    if skipped_links:
        notes.append(f"{skipped_links} linked file(s) ignored (links are not followed)")
    return notes
