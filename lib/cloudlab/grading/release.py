"""Release: regenerate the student versions (exercises/) from the sources (solutions/).

nbgrader's ``generate_assignment`` strips solutions and hidden tests, locks the test
cells, records checksums and registers the assignment in the gradebook (autograde needs
that). :func:`normalized` gives a notebook's stable content, for the drift check.

>>> release(Course())                        # doctest: +SKIP
['docker-hub', 'kubernetes', 'alerting']
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from ..errors import CloudlabError
from .course import Course

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
VOLATILE_CELL_KEYS = ("id", "execution_count", "outputs")


def _quiet() -> None:
    for name in ("traitlets", "nbgrader", "GenerateAssignment"):
        logging.getLogger(name).setLevel(logging.ERROR)


def release(course: Course, assignment: str | None = None, *, dest: Path | None = None,
            db_url: str | None = None) -> list[str]:
    """Regenerate the release of ``assignment`` (default: all) into ``dest`` (exercises/)."""
    from nbgrader.converters import GenerateAssignment

    _quiet()
    names = [assignment] if assignment else course.assignments()
    missing = [n for n in names if not (course.source / n).is_dir()]
    if missing:
        raise CloudlabError(f"no source folder for {', '.join(missing)} in {course.source}; "
                            f"known: {', '.join(course.assignments()) or 'none'}")
    if not names:
        return []
    if db_url is None:
        course.state.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"GenerateAssignment": {"force": True}}
    extra["CourseDirectory"] = {}
    if dest is not None:
        extra["CourseDirectory"]["release_directory"] = str(Path(dest).resolve())
    if db_url is not None:
        extra["CourseDirectory"]["db_url"] = db_url
    for name in names:
        coursedir = course.coursedir(name, ".", **extra)
        converter = GenerateAssignment(coursedir=coursedir, config=coursedir.config)
        with capture_log(converter.log) as errors:
            try:
                converter.start()
            except Exception as exc:
                detail = "\n".join(errors) or str(exc)
                raise CloudlabError(f"releasing {name} failed:\n{detail}") from None
    return names


@contextlib.contextmanager
def capture_log(log: logging.Logger, level: int = logging.ERROR):
    """Collect a converter's log records at ``level`` or above (and keep them off stderr)."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(level)
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(level)
    try:
        yield records
    finally:
        log.handlers[:], log.propagate = saved[0], saved[1]
        log.setLevel(saved[2])


def ensure_in_gradebook(course: Course, assignment: str) -> None:
    """Register ``assignment`` in the gradebook if it is not there yet (fresh checkout)."""
    from nbgrader.api import Gradebook, MissingEntry

    from .course import tools_on_path

    tools_on_path()
    course.state.mkdir(parents=True, exist_ok=True)
    with Gradebook(course.db_url) as gb:
        try:
            gb.find_assignment(assignment)
            return
        except MissingEntry:
            pass
    with tempfile.TemporaryDirectory(prefix="cloudlab-release-") as tmp:
        release(course, assignment, dest=Path(tmp))


def normalized(path: Path) -> dict:
    """A notebook without what changes from run to run (cell ids, outputs, execution counts)."""
    nb = json.loads(Path(path).read_text())
    for cell in nb.get("cells", []):
        for key in VOLATILE_CELL_KEYS:
            cell.pop(key, None)
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
    nb.get("metadata", {}).pop("language_info", None)
    return nb


def hidden_lines(source_nb: Path, *, begin: str = HIDDEN_BEGIN, end: str = HIDDEN_END,
                 min_length: int = 12) -> list[str]:
    """The (stripped) lines between ``begin``/``end`` markers in a source notebook.

    A line that also appears outside those regions (an instruction quoting
    ``FROM python:3.11-slim``, say) is public, so it is not returned.
    """
    nb = json.loads(Path(source_nb).read_text())
    found: list[str] = []
    public: list[str] = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else src
        inside = False
        for line in text.splitlines():
            if begin in line:
                inside = True
            elif end in line:
                inside = False
            elif inside and len(line.strip()) >= min_length:
                found.append(line.strip())
            elif not inside:
                public.append(line)
    outside = "\n".join(public)
    return [line for line in found if line not in outside]


def solution_lines(source_nb: Path, min_length: int = 12) -> list[str]:
    return hidden_lines(source_nb, begin=SOLUTION_BEGIN, end=SOLUTION_END, min_length=min_length)


_HIDDEN_REGION = re.compile(re.escape(HIDDEN_BEGIN) + r".*?" + re.escape(HIDDEN_END), re.S)


def redact(text: str, secrets: list[str], note: str = "[hidden test text removed]") -> str:
    """Remove hidden-test regions and every given line (also as repr/JSON escapes) from text.

    A last line of defence for anything a notebook printed (``print(In)`` after a test ran).
    """
    text = _HIDDEN_REGION.sub(note, text)
    variants = set()
    for line in secrets:
        variants.update({line, repr(line)[1:-1], json.dumps(line)[1:-1]})
    for line in sorted(variants, key=len, reverse=True):
        if line and line in text:
            text = text.replace(line, note)
    return text

