"""userenv: the copies a student venv is made of never write through to this venv."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cloudlab import userenv


def test_a_copy_without_links_is_a_file_of_its_own(tmp_path):
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "f.json").write_text("{}")
    linked = userenv.readable_copy(tmp_path / "src", tmp_path / "linked")
    copied = userenv.readable_copy(tmp_path / "src", tmp_path / "copied", links=False)
    original = (tmp_path / "src" / "d" / "f.json").stat()
    assert (linked / "d" / "f.json").stat().st_ino == original.st_ino
    assert (copied / "d" / "f.json").stat().st_ino != original.st_ino
    (copied / "d" / "f.json").write_text('{"changed": true}')
    assert (tmp_path / "src" / "d" / "f.json").read_text() == "{}"


def test_the_student_venvs_jupyter_config_is_not_this_venvs(tmp_path):
    # the hub writes "formgrader off" into the student venv's etc/jupyter: were those files
    # links to ours, the instructor's own JupyterLab would lose its formgrader
    site = tmp_path / "site"
    site.mkdir()
    python = userenv.student_venv(tmp_path / "env", site, data=True)
    ours = Path(sys.executable).parent.parent / "etc" / "jupyter"
    theirs = python.parent.parent / "etc" / "jupyter"
    files = [p for p in ours.rglob("*") if p.is_file()]
    assert files, f"no Jupyter config in {ours} to compare"
    for path in files:
        copy = theirs / path.relative_to(ours)
        assert copy.read_bytes() == path.read_bytes()
        assert not os.path.samefile(copy, path), f"{copy} is {path} itself"
