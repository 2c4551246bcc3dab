"""``cloudlab grade validate NOTEBOOK``: run a notebook's visible tests; non-zero on failure.

``nbgrader validate`` prints its verdict but exits 0 even when tests fail. This runs the
notebook the same way (nbgrader's Execute, a local kernel - it is the student's own code on
the student's own machine), then reports each test cell by name with the friendly message
of its first error, and returns a verdict a script or CI can use.

>>> report = validate("exercises/docker-hub/docker-hub.ipynb")   # doctest: +SKIP
>>> report.ok                                                     # doctest: +SKIP
False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .results import friendly


@dataclass
class Report:
    notebook: Path
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not (self.failed or self.changed or self.error)

    def text(self) -> str:
        lines = [f"{self.notebook}:"]
        if self.error:
            lines.append(f"  could not validate: {self.error}")
        for name in self.passed:
            lines.append(f"  ✓ {name}")
        for name, message in self.failed.items():
            lines.append(f"  ✗ {name}: " + message.replace("\n", "\n      "))
        for name in self.hidden:
            lines.append(f"  · {name}: hidden test, scored only when your work is graded")
        for name in self.changed:
            lines.append(f"  ! {name}: this locked cell was edited; it will be restored "
                         "before grading")
        total = len(self.passed) + len(self.failed)
        verdict = "PASSED" if self.ok else "FAILED"
        summary = f"{verdict}: {len(self.passed)} of {total} test cell(s) pass"
        if self.hidden:
            summary += (f"; {len(self.hidden)} hidden test(s) not run here (passing the "
                        "visible ones does not mean they pass)")
        lines.append(summary)
        return "\n".join(lines)


COURSE_FOLDERS = ("submitted", "autograded", "feedback")


def submission_reason(path: Path) -> str:
    """Why ``path`` looks like a collected submission ("" if it does not)."""
    path = Path(path).resolve()
    if (path.parent / "timestamp.txt").exists():
        return "nbgrader's timestamp.txt is beside it"
    for folder in path.parents:
        if folder.name in COURSE_FOLDERS and (folder.parent / "gradebook.db").exists():
            return f"it is inside the course's {folder.name}/ folder"
    return ""


def is_hidden(source: str) -> bool:
    r"""A released test cell with no code left: its test is hidden, only the grader runs it.

    >>> is_hidden("# Hidden test: min/max clamping\n")
    True
    >>> is_hidden('# Part D\ncl.checks.verify("q3")')
    False
    """
    return not any(line.strip() and not line.lstrip().startswith("#")
                   for line in source.splitlines())


def validate(notebook: str | Path, *, timeout: int = 300) -> Report:
    from nbgrader.preprocessors import ClearOutput, Execute
    from nbgrader.utils import compute_checksum, is_grade, is_locked, is_solution, setenv
    from traitlets.config import Config

    path = Path(notebook).resolve()
    report = Report(path)
    why = submission_reason(path)
    if why:
        report.error = (f"refusing to run a collected submission outside the sandbox ({why}); "
                        "grade it with `cloudlab grade autograde ASSIGNMENT --student ID`, "
                        "or validate your own copy of the notebook")
        return report
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        return report
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if is_locked(cell) and meta.get("checksum") and compute_checksum(cell) != meta["checksum"]:
            report.changed.append(meta.get("grade_id", "?"))
    c = Config()
    c.Execute.timeout = timeout
    c.Execute.shutdown_kernel = "immediate"
    resources = {"metadata": {"path": str(path.parent)}}
    try:
        with setenv(NBGRADER_VALIDATING="1", NBGRADER_EXECUTION="validate"):
            nb, resources = ClearOutput(config=c).preprocess(nb, resources)
            nb, resources = Execute(config=c).preprocess(nb, resources)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        return report
    for cell in nb.cells:
        if cell.cell_type != "code" or not is_grade(cell) or is_solution(cell):
            continue
        name = cell.metadata["nbgrader"].get("grade_id", "?")
        if is_hidden(cell.source):
            report.hidden.append(name)
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            report.failed[name] = friendly(errors[0])
        else:
            report.passed.append(name)
    return report
