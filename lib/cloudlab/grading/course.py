"""The course: where solutions, exercises and the (gitignored) grading state live.

Mirrors ``nbgrader_config.py`` at the repository root: nbgrader's source folder is
``solutions/``, its release folder ``exercises/``; the gradebook, submissions, autograded
copies, feedback and our per-submission results live under ``course/``.

>>> c = Course("/srv/workbook")
>>> str(c.submission("alice", "docker-hub"))
'/srv/workbook/course/submitted/alice/docker-hub'
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import _project_root

SOURCE = "solutions"
RELEASE = "exercises"
STATE = "course"
GRADER_FILE = "grader.py"  # the trusted graders (hidden tests): never released


def tools_on_path() -> None:
    """Put this Python's bin folder on PATH: nbgrader runs ``alembic`` for a new gradebook."""
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


@dataclass(frozen=True)
class Course:
    root: Path

    def __init__(self, root: str | Path | None = None) -> None:
        found = Path(root) if root is not None else (_project_root() or Path.cwd())
        object.__setattr__(self, "root", found.resolve())

    # the nbgrader folders -------------------------------------------------------------
    @property
    def source(self) -> Path:
        return self.root / SOURCE

    @property
    def release(self) -> Path:
        return self.root / RELEASE

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def submitted(self) -> Path:
        return self.state / "submitted"

    @property
    def autograded(self) -> Path:
        return self.state / "autograded"

    @property
    def feedback(self) -> Path:
        return self.state / "feedback"

    @property
    def originals(self) -> Path:
        """The autograded notebooks as they ran, before :mod:`.sanitize` made them safe to
        render: kept for the record, outside every folder formgrader serves."""
        return self.state / "originals"

    @property
    def results(self) -> Path:
        """Our per-submission outcome files (status, reason, per-test messages)."""
        return self.state / "results"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def gradebook(self) -> Path:
        return self.state / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.gradebook}?timeout=30"

    @property
    def kernel_requirements(self) -> Path:
        """Extra packages the grading kernel needs, one requirement per line."""
        return self.source / "requirements.txt"

    # what is in it ----------------------------------------------------------------------
    def assignments(self) -> list[str]:
        """Assignments with a source folder (one folder per assignment)."""
        if not self.source.is_dir():
            return []
        return sorted(p.name for p in self.source.iterdir()
                      if p.is_dir() and not p.name.startswith((".", "_"))
                      and any(p.glob("*.ipynb")))

    def submission(self, student: str, assignment: str) -> Path:
        return self.submitted / student / assignment

    def students(self, assignment: str) -> list[str]:
        """Students with a submission folder for ``assignment``."""
        if not self.submitted.is_dir():
            return []
        return sorted(p.name for p in self.submitted.iterdir()
                      if (p / assignment).is_dir() and not p.name.startswith("."))

    def collected_timestamp(self, student: str, assignment: str) -> Path:
        """When ``cloudlab grade collect`` took the submission (outside the student's folder)."""
        return self.state / "collected" / assignment / f"{student}.timestamp"

    def result_file(self, student: str, assignment: str) -> Path:
        return self.results / assignment / f"{student}.json"

    # nbgrader ---------------------------------------------------------------------------
    def config(self, **extra):
        """A traitlets Config for nbgrader's converters, rooted at this course."""
        from traitlets.config import Config

        c = Config()
        c.CourseDirectory.root = str(self.root)
        c.CourseDirectory.source_directory = SOURCE
        c.CourseDirectory.release_directory = RELEASE
        c.CourseDirectory.submitted_directory = os.path.join(STATE, "submitted")
        c.CourseDirectory.autograded_directory = os.path.join(STATE, "autograded")
        c.CourseDirectory.feedback_directory = os.path.join(STATE, "feedback")
        c.CourseDirectory.db_url = self.db_url
        c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
                                    ".git", GRADER_FILE]
        # nbconvert's own sanitizing (formgrader, feedback): no JS or widget output, HTML
        # cleaned; the autograded notebook itself is made safe too (grading.sanitize)
        c.HTMLExporter.sanitize_html = True
        for section, values in extra.items():
            for key, value in values.items():
                c[section][key] = value
        return c

    def coursedir(self, assignment: str = "", student: str = "*", **extra):
        from nbgrader.coursedir import CourseDirectory

        tools_on_path()
        cd = CourseDirectory(config=self.config(**extra))
        cd.assignment_id = assignment
        cd.student_id = student
        return cd
