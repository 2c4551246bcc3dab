"""The late policy through nbgrader: due date in the gradebook, the submission's timestamp,
nbgrader's AssignLatePenalties with our plugin; then the feedback page and grades.csv."""

from __future__ import annotations

import csv
from datetime import timedelta

import pytest
from gradingkit import make_course

from cloudlab.grading import export, feedback, late
from cloudlab.grading.results import Result

DUE = "2026-01-15 10:00:00 UTC"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("late"))
    late.path(course).parent.mkdir(parents=True, exist_ok=True)
    late.path(course).write_text("percent_per_day = 10\ncap_percent = 30\nzero_after_days = 3\n"
                                 f"[assignment.demo]\ndue = \"{DUE}\"\n")
    late.set_due(course, "demo")
    return course


def _submit(course, student: str, after: timedelta) -> None:
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc

    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student(student)
        sub = gb.update_or_create_submission("demo", student, timestamp=parse_utc(DUE) + after)
        for nb in sub.notebooks:
            for grade in nb.grades:
                grade.auto_score = grade.max_score  # 6 of 6
        gb.db.commit()


@pytest.mark.parametrize(("student", "after", "penalty"), [
    ("ontime", timedelta(0), 0.0),
    ("onesecond", timedelta(seconds=1), 0.6),
    ("threedays", timedelta(days=3), 1.8),
    ("justover", timedelta(days=3, seconds=1), 6.0),
])
def test_nbgrader_applies_the_policy_at_its_edges(course, student, after, penalty):
    _submit(course, student, after)
    seconds, found = late.assess(course, "demo", student)
    assert seconds == after.total_seconds()
    assert found == pytest.approx(penalty)


def test_the_feedback_page_and_the_export_state_the_policy(course, tmp_path):
    _submit(course, "tardy", timedelta(hours=2))
    seconds, penalty = late.assess(course, "demo", "tardy")
    rule = late.policy(course, "demo").text()
    result = Result("tardy", "demo", score=6, max_score=6, late_seconds=seconds,
                    late_penalty=penalty, late_policy=rule)
    result.save(course.result_file("tardy", "demo"))
    page = feedback.render(course, result, None, [])
    assert "Late policy:</b> 10% of the score per day late (or part of a day), at most 30%; " \
           "more than 3 days late: 0." in page
    assert "2.0 hour(s) after the due date: 0.6 point(s) taken off, final score 5.4 / 6" in page
    path = export.export(course, tmp_path / "g.csv", "demo")
    rows = {r["student"]: r for r in csv.DictReader(path.open())}
    assert rows["tardy"]["late_penalty"] == "0.6" and rows["tardy"]["final_score"] == "5.4"
    assert rows["tardy"]["late_policy"] == rule
    on_time = Result("ontime", "demo", score=6, max_score=6, late_policy=rule)
    assert "This submission was on time." in feedback.render(course, on_time, None, [])
