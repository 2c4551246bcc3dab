"""Release: exercises/ is exactly what solutions/ generates, minus solutions and hidden tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gradingkit import FIXTURES, make_course

from cloudlab.grading import Course, release

ROOT = Path(__file__).resolve().parents[2]
REAL = Course(ROOT)
ASSIGNMENTS = REAL.assignments()  # every solutions/<assignment>/ (none yet is fine)


def drift(course: Course, assignment: str, tmp: Path) -> list[str]:
    """Differences between the committed release and a fresh one (volatile bits ignored)."""
    fresh = tmp / "fresh"
    tmp.mkdir(parents=True, exist_ok=True)
    release.release(course, assignment, dest=fresh, db_url=f"sqlite:///{tmp / 'gb.db'}")
    problems = []
    committed_dir, fresh_dir = course.release / assignment, fresh / assignment
    names = {p.relative_to(committed_dir) for p in committed_dir.rglob("*") if p.is_file()} \
        if committed_dir.is_dir() else set()
    fresh_names = {p.relative_to(fresh_dir) for p in fresh_dir.rglob("*") if p.is_file()}
    for missing in sorted(fresh_names - names):
        problems.append(f"{assignment}/{missing} is not committed")
    for extra in sorted(names - fresh_names):
        problems.append(f"{assignment}/{extra} is committed but not generated")
    for rel in sorted(names & fresh_names):
        a, b = committed_dir / rel, fresh_dir / rel
        if rel.suffix == ".ipynb":
            same = release.normalized(a) == release.normalized(b)
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            problems.append(f"{assignment}/{rel} differs from a fresh release")
    return problems


def _sources(folder: Path) -> str:
    """Cell sources of every notebook and the text of every other file under ``folder``."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".ipynb":
            for cell in json.loads(p.read_text()).get("cells", []):
                src = cell.get("source", "")
                out.append("".join(src) if isinstance(src, list) else src)
        elif p.is_file():
            out.append(p.read_text(errors="replace"))
    return "\n".join(out)


def leaks(course: Course, assignment: str) -> list[str]:
    """Solution code or hidden-test text that survived into exercises/."""
    found = []
    text = _sources(course.release / assignment)
    for nb in (course.source / assignment).glob("*.ipynb"):
        found += [f"hidden test text: {line}" for line in release.hidden_lines(nb) if line in text]
        found += [f"solution code: {line}" for line in release.solution_lines(nb) if line in text]
    found += [f"marker {m!r}" for m in ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION") if m in text]
    grader = course.source / assignment / "grader.py"
    if grader.is_file():
        found += [f"trusted grader: {p.relative_to(course.release)}"
                  for p in (course.release / assignment).rglob("*")
                  if p.name == "grader.py" or (p.is_file() and p.read_bytes()
                                               == grader.read_bytes())]
    return found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_committed_exercises_match_solutions(assignment, tmp_path):
    assert not drift(REAL, assignment, tmp_path), (
        "exercises/ is out of date: run `cloudlab grade release " + assignment + "`")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_solution_or_hidden_test_survives_in_exercises(assignment):
    assert not leaks(REAL, assignment)


def test_no_stray_release_without_a_source():
    released = {p.name for p in REAL.release.iterdir() if p.is_dir()} \
        if REAL.release.is_dir() else set()
    assert released <= set(ASSIGNMENTS), "exercises/ has folders without a solutions/ source"


def test_release_of_the_fixtures_strips_solutions_and_hidden_tests(tmp_path):
    course = make_course(tmp_path)
    assert sorted(course.assignments()) == ["demo", "dockerdemo", "other"]
    for name in course.assignments():
        assert not leaks(course, name)
        assert not drift(course, name, tmp_path / name)
    text = (course.release / "demo" / "demo.ipynb").read_text()
    assert "hidden-marker" not in text and "raise NotImplementedError()" in text
    assert 'cl.checks.verify(\\"q1\\")' in text  # visible tests stay


def test_drift_is_detected(tmp_path):
    course = make_course(tmp_path)
    nb = course.release / "demo" / "demo.ipynb"
    data = json.loads(nb.read_text())
    data["cells"][0]["source"] = "# edited by hand"
    nb.write_text(json.dumps(data))
    (course.release / "demo" / "stray.txt").write_text("x")
    problems = drift(course, "demo", tmp_path / "check")
    assert any("demo.ipynb differs" in p for p in problems)
    assert any("stray.txt" in p for p in problems)


def test_a_leaked_hidden_test_is_detected(tmp_path):
    course = make_course(tmp_path)
    shutil.copy(FIXTURES / "solutions" / "other" / "other.ipynb", course.release / "other")
    assert any("hidden test text" in p for p in leaks(course, "other"))
    shutil.copy(FIXTURES / "solutions" / "demo" / "demo.ipynb", course.release / "demo")
    assert any("solution code" in p for p in leaks(course, "demo"))
    shutil.copy(FIXTURES / "solutions" / "demo" / "grader.py", course.release / "demo" / "x.py")
    assert any("trusted grader" in p for p in leaks(course, "demo"))


def test_trusted_graders_are_never_released(tmp_path):
    course = make_course(tmp_path)
    for name in course.assignments():
        assert (course.source / name / "grader.py").is_file()
        assert not list((course.release / name).rglob("grader.py"))


def test_nbgrader_config_matches_the_course_layout():
    text = (ROOT / "nbgrader_config.py").read_text()
    for value in ('"solutions"', '"exercises"', '"course/submitted"', '"course/autograded"',
                  '"course/feedback"', "course/gradebook.db?timeout=30", '"grader.py"'):
        assert value in text
    assert "course/" in (ROOT / ".gitignore").read_text().split()
