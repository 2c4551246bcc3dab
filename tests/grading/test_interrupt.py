"""``cloudlab grade autograde`` stopped half way: Ctrl-C, or ``kill -9`` of its process group.

Either way its workers die, its sandboxes go (on the way out after Ctrl-C; at the start of
the next run after a kill), the gradebook stays a consistent SQLite database, and running
the same command again grades the whole batch.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import submissions as S
from gradingkit import make_course

from cloudlab import engine
from cloudlab.grading import sandbox
from cloudlab.proc import GiveUp, alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
# graded in this order, two at a time: the first two run into their time limit, so the
# interruption finds both workers busy (a worker left alive would go on for seconds)
BATCH = {"ann": "infinite", "ben": "infinite", "carol": "correct", "dave": "partial"}


def _command(root: Path) -> list[str]:
    return [sys.executable, "-m", "cloudlab.cli", "grade", "--course", str(root), "autograde",
            "demo", "--workers", "2", "--timeout", "20", "--quiet"]


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _kernels_of(owners_: set[int]) -> set[str]:
    """The grading containers owned by the processes ``owners_`` (the label names the pid)."""
    found = engine.client(timeout=30).api.containers(  # one listing, no per-box inspect:
        all=True, filters={"label": sandbox.GRADER_LABEL})  # other graders' boxes come and go
    return {c["Id"] for c in found
            if int((c["Labels"].get(sandbox.OWNER_LABEL, "") + "::").split(":")[1] or 0)
            in owners_}


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("pragma integrity_check").fetchone()[0]


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_run_leaves_nothing_and_a_rerun_grades_the_batch(grading_image,
                                                                        docker_engine,
                                                                        tmp_path, how):
    root = tmp_path / "course-root"
    course = make_course(root)
    for student, kind in BATCH.items():
        S.make(root, student, kind)
    scratch = tmp_path / "tmp"  # where the workers stage submissions
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "TMPDIR": str(scratch)}
    grader = subprocess.Popen(_command(root), env=env, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen: dict[str, set] = {}

        def grading() -> bool:  # workers started and their kernels' containers exist
            seen["workers"] = _children(grader.pid)
            seen["kernels"] = _kernels_of(seen["workers"] | {grader.pid})
            if grader.poll() is not None:
                raise GiveUp("the run ended before it could be interrupted")
            return bool(seen["kernels"])

        wait_for(grading, timeout=240, interval=0.2, what="the workers' kernel containers")
        os.killpg(grader.pid, how)  # the whole process group, as a terminal's Ctrl-C does
        out, _ = grader.communicate(timeout=60)
    finally:
        if grader.poll() is None:
            os.killpg(grader.pid, signal.SIGKILL)
            grader.wait()
    workers, owners_ = seen["workers"], seen["workers"] | {grader.pid}
    if how == signal.SIGINT:
        assert grader.returncode == 130 and "interrupted" in out, out
    wait_for(lambda: not [w for w in workers if alive(w)], timeout=10,
             what=f"the workers {sorted(workers)} to die with their grader")
    assert "submission(s):" not in out, "the run was interrupted before its summary"
    if how == signal.SIGINT:  # the grader removed its own sandboxes on the way out
        assert not _kernels_of(owners_), "Ctrl-C left grading containers behind"
        assert not list(scratch.iterdir()), "Ctrl-C left staged submissions behind"
    assert _integrity(course.gradebook) == "ok"

    rerun = subprocess.run(_command(root), env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not list(scratch.iterdir()), "the rerun left, or did not sweep, staged submissions"
    assert f"{len(BATCH)} submission(s):" in rerun.stdout, rerun.stdout
    assert "crashed" not in rerun.stdout, rerun.stdout
    assert not _kernels_of(owners_), "the sandboxes of the interrupted run are swept"
    assert _integrity(course.gradebook) == "ok"
    with sqlite3.connect(course.gradebook) as conn:
        graded = {row[0] for row in conn.execute(
            "select student.id from submitted_assignment join student "
            "on submitted_assignment.student_id = student.id")}
    assert graded >= set(BATCH), graded
