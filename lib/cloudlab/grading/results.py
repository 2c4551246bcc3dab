"""One submission's outcome: status, reason, score and per-test results (JSON on disk).

Statuses: ``graded``, ``timed out``, ``crashed``, ``invalid`` (and ``missing`` in exports
for a student without a submission). Scores come from the gradebook, which trusted code
on the host wrote; messages come from the sandbox and are treated as text, nothing more.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("graded", "timed out", "crashed", "invalid")


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    notebook: str
    name: str
    points: float
    score: float
    passed: bool
    message: str = ""


@dataclass
class Result:
    student: str
    assignment: str
    status: str = "graded"
    reason: str = ""
    score: float = 0.0
    max_score: float = 0.0
    seconds: float = 0.0  # wall time of the whole grading of this submission
    timestamp: str | None = None
    flags: list[str] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    probes: str = ""  # where the trusted probes ran: "kernel container", "own container (why)"
    late_seconds: float = 0.0  # after the due date (nbgrader's total_seconds_late)
    late_penalty: float = 0.0  # points the late policy takes off ``score``
    late_policy: str = ""  # the policy applied, in words (grading.late)
    backend: str = "local"  # where the notebook ran: "local" (a container) or "kubernetes"
    failure: str = ""  # why it did not run to the end: "student: ..." (its own timeout,
                       # crash or failure: never retried) or "environment: ..." (the cluster)
    retries: list[str] = field(default_factory=list)  # environment failures retried

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        tests = [TestResult(**t) for t in data.get("tests", [])]
        return cls(**{**data, "tests": tests})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".result-")
        with os.fdopen(fd, "w") as out:
            json.dump(self.as_dict(), out, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Result:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def line(self) -> str:
        why = f" - {self.reason}" if self.reason and self.status != "graded" else ""
        return (f"{self.student:<16} {self.status:<9} {self.score:>6g}/{self.max_score:<6g}"
                f"{why}")


def friendly(error: dict) -> str:
    ename, evalue = str(error.get("ename", "")), str(error.get("evalue", "")).strip()
    if ename in ("CheckFailed", "NotRun", "KernelDied", "TimeoutError"):
        return evalue or ename
    if ename == "AssertionError":
        return evalue or "a test did not pass"
    return f"{ename}: {evalue}" if evalue else ename
