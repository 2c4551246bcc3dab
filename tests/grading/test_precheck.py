"""The precheck (host side, before anything runs): size caps, repeated ids, the timestamp."""

from __future__ import annotations

import json

import submissions as S
from gradingkit import make_course

from cloudlab.grading import precheck


def test_an_oversized_notebook_is_left_out_without_being_parsed(tmp_path, monkeypatch):
    course = make_course(tmp_path / "c")
    folder = S.make(course.root, "big", "correct")
    nb = json.loads((folder / "demo.ipynb").read_text())
    nb["cells"][0]["source"] = "x" * (precheck.MAX_NOTEBOOK_BYTES + 10)
    (folder / "demo.ipynb").write_text(json.dumps(nb))
    parsed = []
    monkeypatch.setattr(precheck.json, "loads", lambda *a, **k: parsed.append(1) or {})
    pre = precheck.inspect(course, "demo", "big", tmp_path / "stage")
    assert pre.notebooks == [] and not parsed
    assert "larger than 20 MB" in pre.invalid["demo"]


def test_a_repeated_locked_grade_id_is_demoted_scanned_and_flagged(tmp_path):
    course = make_course(tmp_path / "c")
    S.make(course.root, "dupid", "dupid")
    pre = precheck.inspect(course, "demo", "dupid", tmp_path / "stage")
    assert pre.notebooks == ["demo"]
    assert "installs a custom exception handler" in pre.flags
    assert "repeats the grade id of another cell" in pre.flags
    staged = json.loads((tmp_path / "stage" / "submitted" / "dupid" / "demo" / "demo.ipynb")
                        .read_text())
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in staged["cells"]]
    assert ids.count("setup") == 1
    assert pre.cells["setup"].startswith('ASSIGNMENT = "demo"')  # the gradebook's text


def test_the_trusted_artefacts_are_the_first_cell_of_each_id(tmp_path):
    course = make_course(tmp_path / "c")
    S.make(course.root, "ada", "correct")
    pre = precheck.inspect(course, "demo", "ada", tmp_path / "stage")
    assert pre.answer_cells == ["q1_answer", "q2_answer", "q3_answer"]
    assert pre.cells["q1_answer"] == S.ADD
    assert pre.timestamp == "2025-01-15 10:00:00.000000 UTC"
