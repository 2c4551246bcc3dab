"""Collect: folders and zips in both layouts; malformed entries reported, never fatal."""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from cloudlab.errors import CloudlabError
from cloudlab.grading import Course
from cloudlab.grading.collect import collect


@pytest.fixture
def course(tmp_path: Path) -> Course:
    for name in ("demo", "other"):
        (tmp_path / "solutions" / name).mkdir(parents=True)
        (tmp_path / "solutions" / name / f"{name}.ipynb").write_text("{}")
    return Course(tmp_path)


def test_folder_in_nbgrader_layout(course, tmp_path):
    src = tmp_path / "inbox"
    (src / "alice" / "demo").mkdir(parents=True)
    (src / "alice" / "demo" / "demo.ipynb").write_text("{}")
    (src / "alice" / "demo" / "data" ).mkdir()
    (src / "alice" / "demo" / "data" / "x.csv").write_text("1,2")
    (src / "alice" / "demo" / "timestamp.txt").write_text("2025-01-02 03:04:05.000000 UTC")
    (src / "bob" / "demo").mkdir(parents=True)
    (src / "bob" / "demo" / "demo.ipynb").write_text("{}")
    report = collect(course, src)
    assert report.collected == {("alice", "demo"): 2, ("bob", "demo"): 1}
    assert (course.submission("alice", "demo") / "data" / "x.csv").read_text() == "1,2"
    assert (course.submission("bob", "demo") / "timestamp.txt").read_text().endswith("UTC\n")


def test_the_timestamp_comes_from_the_collection_not_the_student(course, tmp_path):
    src = tmp_path / "inbox"
    (src / "alice" / "demo").mkdir(parents=True)
    (src / "alice" / "demo" / "demo.ipynb").write_text("{}")
    (src / "alice" / "demo" / "timestamp.txt").write_text("2020-01-01 00:00:00.000000 UTC")
    report = collect(course, src)
    assert any("submitted timestamp.txt is ignored" in p for p in report.problems)
    folder_stamp = (course.submission("alice", "demo") / "timestamp.txt").read_text()
    record = course.collected_timestamp("alice", "demo").read_text()
    assert record == folder_stamp and not record.startswith("2020-01-01")
    from cloudlab.grading.precheck import submission_time

    (course.submission("alice", "demo") / "timestamp.txt").write_text("2020-01-01 00:00:00 UTC")
    assert submission_time(course, "alice", "demo") == record.strip()  # the record wins


def test_zip_with_zip_collect_names_and_a_wrapping_folder(course, tmp_path):
    archive = tmp_path / "downloads.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("export/demo_carol_attempt_2025-03-01-12-30-00_demo.ipynb", "{}")
        zf.writestr("export/demo_dave_attempt_2025-03-02-08-00-00_demo.ipynb", "{}")
        zf.writestr("export/demo_dave_attempt_2025-03-02-08-00-00_notes.txt", "hi")
    report = collect(course, archive)
    assert report.collected == {("carol", "demo"): 1, ("dave", "demo"): 2}, report.text()
    stamp = (course.submission("carol", "demo") / "timestamp.txt").read_text()
    assert stamp.startswith("2025-03-01 12:30:00")


def test_malformed_entries_are_reported_and_the_rest_collected(course, tmp_path, monkeypatch):
    # the archive is extracted below the temporary folder: make it one we can look in, so
    # a traversal would land at a known place (``<tmp>/cloudlab-collect-*/in/../../``)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("erin/demo/demo.ipynb", "{}")
        zf.writestr("../../evil.txt", "x")
        zf.writestr("stray.ipynb", "{}")
        zf.writestr("frank/nosuch/nosuch.ipynb", "{}")
        zf.writestr("frank/demo.ipynb", "{}")
        link = zipfile.ZipInfo("gina/demo/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    report = collect(course, archive)
    assert report.collected == {("erin", "demo"): 1}
    text = "\n".join(report.problems)
    assert "unsafe path" in text and "evil.txt" in text
    assert "stray.ipynb" in text and "unknown assignment 'nosuch'" in text
    assert "frank/demo.ipynb" in text and "links are not collected" in text
    assert sorted(p.name for p in scratch.iterdir()) == [], "nothing may be left or escape"
    assert "skipped" in report.text()


def test_links_in_folders_are_not_followed(course, tmp_path):
    src = tmp_path / "inbox"
    (src / "hank" / "demo").mkdir(parents=True)
    (src / "hank" / "demo" / "demo.ipynb").write_text("{}")
    os.symlink(course.source / "demo" / "demo.ipynb", src / "hank" / "demo" / "answers.ipynb")
    report = collect(course, src)
    assert not (course.submission("hank", "demo") / "answers.ipynb").exists()
    assert any("links are not collected" in p for p in report.problems)


def test_only_one_assignment(course, tmp_path):
    src = tmp_path / "inbox"
    for who, what in (("ian", "demo"), ("ian", "other")):
        (src / who / what).mkdir(parents=True)
        (src / who / what / f"{what}.ipynb").write_text("{}")
    report = collect(course, src, "other")
    assert list(report.collected) == [("ian", "other")]


def test_a_missing_path_is_an_error(course, tmp_path):
    with pytest.raises(CloudlabError, match="does not exist"):
        collect(course, tmp_path / "nope")
