"""The late policy: a stated, configurable penalty through nbgrader's late-submission plugin.

nbgrader computes how late a submission is (its ``timestamp.txt`` against the assignment's
due date) and asks the plugin named by ``c.AssignLatePenalties.plugin_class`` for a penalty
in points (nbgrader docs, "Late submission plugin"). :class:`LatePenalty` is that plugin,
with three settings: a percentage of the score per started day late, a cap on it, and a
zero once a submission is more than N days late. The policy and the due dates live in
``course/late-policy.toml`` (gitignored course state, like the gradebook)::

    percent_per_day = 10      # of the score earned, per day or part of a day
    cap_percent = 50          # never more than this
    zero_after_days = 7       # more than 7 days late: 0 (exactly 7 days: still capped)
    [assignment.demo]
    due = "2026-01-15 10:00:00 UTC"
    percent_per_day = 20      # any setting can be overridden per assignment

>>> p = Policy(percent_per_day=10, cap_percent=30, zero_after_days=3)
>>> p.penalty(8, 0), p.penalty(8, 1), p.penalty(8, 2 * DAY), p.penalty(8, 3 * DAY + 1)
(0.0, 0.8, 1.6, 8.0)
>>> p.penalty(8, 3 * DAY)
2.4
>>> p.text()
'10% of the score per day late (or part of a day), at most 30%; more than 3 days late: 0'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import tomllib
from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Float

from ..errors import CloudlabError
from .course import Course

DAY = 86400.0
FILE = "late-policy.toml"


@dataclass(frozen=True)
class Policy:
    """What a late submission costs; ``due`` is the assignment's due date (nbgrader's text)."""

    percent_per_day: float = 0.0
    cap_percent: float = 100.0
    zero_after_days: float = 0.0  # 0: never zeroed
    due: str | None = None

    def percent(self, seconds_late: float) -> float:
        """Percent of the score taken for a submission ``seconds_late`` after the due date."""
        if seconds_late <= 0:
            return 0.0
        if self.zero_after_days and seconds_late > self.zero_after_days * DAY:
            return 100.0
        days = math.ceil(seconds_late / DAY)
        return min(self.percent_per_day * days, self.cap_percent, 100.0)

    def penalty(self, score: float, seconds_late: float) -> float:
        """Points taken from ``score`` (nbgrader subtracts them from the notebook's score)."""
        return round(float(score) * self.percent(seconds_late) / 100, 4)

    def text(self) -> str:
        """The policy in one sentence, for the feedback page and the export."""
        if not self.percent_per_day and not self.zero_after_days:
            return "no penalty for late submissions"
        parts = []
        if self.percent_per_day:
            parts.append(f"{self.percent_per_day:g}% of the score per day late (or part of a "
                         f"day)" + (f", at most {self.cap_percent:g}%"
                                    if self.cap_percent < 100 else ""))
        if self.zero_after_days:
            parts.append(f"more than {self.zero_after_days:g} days late: 0")
        return "; ".join(parts)


def path(course: Course) -> Path:
    return course.state / FILE


def policy(course: Course, assignment: str) -> Policy:
    """The policy of ``assignment`` (defaults, then its own table); no file: no penalty."""
    file = path(course)
    if not file.exists():
        return Policy()
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CloudlabError(f"{file}: not valid TOML: {exc}") from None
    known = {f.name for f in fields(Policy)}
    own = data.get("assignment", {}).get(assignment, {})
    merged = {k: v for k, v in data.items() if k in known} | own
    unknown = (set(data) - known - {"assignment"}) | (set(own) - known)
    if unknown:
        raise CloudlabError(f"{file}: unknown setting(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(known))}")
    try:
        found = replace(Policy(), **{k: (str(v) if k == "due" else float(v))
                                     for k, v in merged.items()})
    except (TypeError, ValueError) as exc:
        raise CloudlabError(f"{file}: {exc}") from None
    if found.percent_per_day < 0 or not 0 <= found.cap_percent <= 100 \
            or found.zero_after_days < 0:
        raise CloudlabError(f"{file}: percentages must be 0-100 and days >= 0 ({found})")
    if found.due:
        from nbgrader.utils import parse_utc

        try:
            parse_utc(found.due)
        except (ValueError, OverflowError):
            raise CloudlabError(f"{file}: due {found.due!r} is not a date (write it as "
                                "\"2026-01-15 10:00:00 UTC\")") from None
    return found


class LatePenalty(LateSubmissionPlugin):
    """nbgrader's late-submission plugin with the course's :class:`Policy`.

    Configured the nbgrader way: ``c.AssignLatePenalties.plugin_class = LatePenalty`` and
    ``c.LatePenalty.percent_per_day = 10`` (see :func:`nbgrader_config`).
    """

    percent_per_day = Float(0.0).tag(config=True)
    cap_percent = Float(100.0).tag(config=True)
    zero_after_days = Float(0.0).tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float,
                                total_seconds_late: float) -> float:
        rule = Policy(self.percent_per_day, self.cap_percent, self.zero_after_days)
        return rule.penalty(score or 0.0, total_seconds_late)


def nbgrader_config(rule: Policy) -> dict:
    """The traitlets sections that make nbgrader apply ``rule``."""
    return {"AssignLatePenalties": {"plugin_class": LatePenalty},
            "LatePenalty": {"percent_per_day": rule.percent_per_day,
                            "cap_percent": rule.cap_percent,
                            "zero_after_days": rule.zero_after_days}}


def set_due(course: Course, assignment: str) -> Policy:
    """Write the policy's due date into the gradebook's assignment (no due date in the
    policy: the gradebook's own, if any, is left as it is)."""
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc

    rule = policy(course, assignment)
    if not rule.due:
        return rule
    with Gradebook(course.db_url) as gb:
        found = gb.find_assignment(assignment)
        found.duedate = parse_utc(rule.due)
        gb.db.commit()
    return rule


def assess(course: Course, assignment: str, student: str) -> tuple[float, float]:
    """Run nbgrader's ``AssignLatePenalties`` with the policy over every submitted notebook,
    on the scores now in the gradebook (the trusted ones); returns (seconds late, penalty)."""
    from nbformat.v4 import new_notebook
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import AssignLatePenalties

    rule = policy(course, assignment)
    cfg = course.config(**nbgrader_config(rule))
    with Gradebook(course.db_url) as gb:
        sub = gb.find_submission(assignment, student)
        notebooks = [nb.name for nb in sub.notebooks]
        late = float(sub.total_seconds_late or 0)
    for name in notebooks:
        resources = {"nbgrader": {"notebook": name, "assignment": assignment,
                                  "student": student, "db_url": course.db_url}}
        AssignLatePenalties(config=cfg).preprocess(new_notebook(), resources)
    with Gradebook(course.db_url) as gb:
        penalty = float(gb.find_submission(assignment, student).late_submission_penalty or 0)
    return late, penalty
