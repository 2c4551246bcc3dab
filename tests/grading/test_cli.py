"""The instructor's five commands end to end, and ``validate``'s exit code."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import submissions as S
from gradingkit import FIXTURES, make_course

from cloudlab.cli import main


def test_release_collect_autograde_export_feedback(grading_image, tmp_path, capsys, monkeypatch):
    root = tmp_path / "course-root"
    shutil.copytree(FIXTURES / "solutions", root / "solutions")
    shutil.rmtree(root / "solutions" / "dockerdemo")
    course = ["--course", str(root)]

    assert main(["grade", *course, "release"]) == 0
    assert "released 2 assignment(s)" in capsys.readouterr().out

    # students hand in through an LMS: a zip with zip_collect names, plus one stray file
    answered = (S.make(root, "alice", "correct") / "demo.ipynb").read_text()
    shutil.rmtree(root / "course" / "submitted")
    archive = tmp_path / "downloads.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("demo_alice_attempt_2025-02-01-09-00-00_demo.ipynb", answered)
        zf.writestr("demo_bob_attempt_2025-02-01-10-00-00_demo.ipynb",
                    (root / "exercises/demo/demo.ipynb").read_text())
        zf.writestr("README.txt", "not a submission")
    assert main(["grade", *course, "collect", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "collected 2 submission(s)" in out and "README.txt" in out

    monkeypatch.setattr("cloudlab.grading.image.ensure", lambda *a, **k: grading_image)
    assert main(["grade", *course, "autograde", "demo", "--workers", "2", "--timeout", "60",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 submission(s): 2 graded" in out
    assert "alice" in out and "6/6" in out

    assert main(["grade", *course, "export"]) == 0
    rows = list(csv.DictReader((root / "course" / "grades.csv").open()))
    scores = {(r["assignment"], r["student"]): r["score"] for r in rows}
    assert scores[("demo", "alice")] == "6.0" and scores[("demo", "bob")] == "0.0"
    assert ("other", "alice") in scores  # one row per student and assignment

    assert main(["grade", *course, "feedback", "demo"]) == 0
    html = (root / "course/feedback/alice/demo/demo.html").read_text()
    assert "6 / 6" in html and "hidden-marker" not in html


def _validate(notebook: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudlab.cli", "grade", "validate",
                           str(notebook)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kind, code, words", [
    ("correct", 0, "PASSED: 3 of 3"),
    ("partial", 1, "✗ q2_test: q2: mean([1, 2, 3, 4]) should be 2.5"),
    ("untouched", 1, "not answered yet"),
])
def test_validate_exits_non_zero_when_visible_tests_fail(tmp_path, kind, code, words):
    root = tmp_path / "c"
    make_course(root)
    folder = S.make(root, "me", kind)
    own = tmp_path / "mine"  # the student's own copy (a collected one is refused)
    own.mkdir()
    shutil.copy(folder / "demo.ipynb", own / "demo.ipynb")
    done = _validate(own / "demo.ipynb")
    assert done.returncode == code, done.stdout + done.stderr
    assert words in done.stdout
    assert "Traceback" not in done.stdout


def test_validate_refuses_a_collected_submission(tmp_path):
    root = tmp_path / "c"
    make_course(root)
    folder = S.make(root, "eve", "correct")
    (root / "course" / "gradebook.db").touch()
    (folder / "timestamp.txt").unlink()  # the course folder alone is enough to refuse
    done = _validate(folder / "demo.ipynb")
    assert done.returncode == 1
    assert "refusing to run a collected submission outside the sandbox" in done.stdout
    assert "inside the course's submitted/ folder" in done.stdout
    assert "PASSED" not in done.stdout and "✓" not in done.stdout


def test_validate_reports_an_unreadable_notebook(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps({"not": "a notebook"}))
    done = _validate(bad)
    assert done.returncode == 1 and "could not validate" in done.stdout


def test_validate_names_hidden_test_cells_instead_of_passing_them():
    from cloudlab.grading.validate import Report, is_hidden

    assert is_hidden("# Hidden test: min/max clamping\n") and is_hidden("")
    assert not is_hidden('# Part D\ncl.checks.verify("q3")')
    text = Report(Path("ex.ipynb"), passed=["q1"], hidden=["rule_clamp"]).text()
    assert "✓ rule_clamp" not in text and "· rule_clamp: hidden test" in text
    assert "PASSED: 1 of 1 test cell(s) pass; 1 hidden test(s) not run here" in text
