"""Fail closed: a recorded score is the trusted graders' result, or 0 with a reason.

Every submission here is correct, so nbgrader's in-kernel pass saves full marks. A failure
is then injected at each stage after that save (the workers are forked from this process,
so they inherit the patches): the trusted step raising, the gradebook writer raising, the
worker killed, the worker overrunning its time. None of them may leave those marks behind.
"""

from __future__ import annotations

import csv
import os
import signal
import time

import pytest
import submissions as S
from gradingkit import make_course

from cloudlab.grading import autograde, export, trusted, worker

FAULTS = {  # student: (status, words in the reason)
    "aftersave": ("crashed", "RuntimeError: injected after the in-kernel scores were saved"),
    "writer": ("crashed", "RuntimeError: injected in the gradebook writer"),
    "killed": ("crashed", "the grading worker died (exit code -9)"),
    "slow": ("timed out", "the grader gave up after"),
}


@pytest.fixture(scope="module")
def graded(grading_image, tmp_path_factory):
    root = tmp_path_factory.mktemp("course-faults")
    course = make_course(root)
    for student in [*FAULTS, "honest"]:
        S.make(root, student, "correct")
    real_run, real_write, real_commit = trusted.run, worker.write_verdicts, worker._commit

    def run(graders, sub, grade_ids, *, runner):
        if sub.student == "aftersave":
            raise RuntimeError("injected after the in-kernel scores were saved")
        return real_run(graders, sub, grade_ids, runner=runner)

    current: dict[str, str] = {}  # per worker: each is a forked process of its own

    def write(course, assignment, student, *args):
        current["student"] = student
        if student == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        if student == "slow":
            time.sleep(600)
        return real_write(course, assignment, student, *args)

    def commit(gb):
        if current.get("student") == "writer":
            raise RuntimeError("injected in the gradebook writer")
        return real_commit(gb)

    mp = pytest.MonkeyPatch()
    mp.setattr(trusted, "run", run)
    mp.setattr(worker, "write_verdicts", write)
    mp.setattr(worker, "_commit", commit)
    mp.setattr(autograde, "GRACE", 20.0)
    try:
        results = autograde.autograde(course, "demo", workers=3, timeout=40, progress=False,
                                      image=grading_image)
    finally:
        mp.undo()
    return course, {r.student: r for r in results}


@pytest.mark.parametrize("student", FAULTS)
def test_a_failure_after_the_in_kernel_save_records_zero_with_a_reason(graded, student):
    course, results = graded
    status, words = FAULTS[student]
    r = results[student]
    assert (r.status, r.score, r.max_score) == (status, 0, 6), r.reason
    assert words in r.reason
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        sub = gb.find_submission("demo", student)
        assert sub.score == 0
        grades = [g for nb in sub.notebooks for g in nb.grades]
        assert grades, "the gradebook holds no grade for this submission"
        assert all((g.auto_score or 0) == 0 for g in grades)


def test_the_export_carries_zero_and_the_status(graded, tmp_path):
    course, _ = graded
    rows = {r["student"]: r for r in csv.DictReader(export.export(course, tmp_path / "g.csv")
                                                     .open()) if r["assignment"] == "demo"}
    for student, (status, _) in FAULTS.items():
        assert (rows[student]["score"], rows[student]["status"]) == ("0.0", status)
    assert rows["honest"]["score"] == "6.0"


def test_an_honest_submission_in_the_same_run_keeps_its_marks(graded):
    _, results = graded
    assert (results["honest"].status, results["honest"].score) == ("graded", 6)
