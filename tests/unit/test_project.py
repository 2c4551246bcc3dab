"""cloudlab.project: the generated container project and its Dockerfile steps."""

import subprocess
import sys

import pytest
import yaml

from cloudlab import lint, project


def test_the_project_has_every_file_of_the_seed_plus_ci(tmp_path, cfg):
    folder = project.create(tmp_path / "hello", cfg=cfg)
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {"app.py", "test_app.py", "pytest.ini", "Makefile", "requirements.txt",
                     "requirements-dev.txt", "Dockerfile", ".dockerignore",
                     ".github/workflows/ci.yml"}
    make = (folder / "Makefile").read_text()
    for target in ("install", "lint", "test", "build", "run", "push"):
        assert f"\n{target}:" in make
    flow = yaml.safe_load((folder / ".github/workflows/ci.yml").read_text())
    runs = [s.get("run") for s in flow["jobs"]["build"]["steps"]]
    assert runs[-4:] == ["make install", "make lint", "make test", "make build"]


def test_the_app_and_its_test_work(tmp_path, cfg):
    folder = project.create(tmp_path, cfg=cfg)
    out = subprocess.run([sys.executable, "app.py", "hello"], cwd=folder, capture_output=True,
                         text=True, check=True).stdout
    assert out == "Hello World!\n"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_app.py"], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr



def test_the_projects_tests_ignore_an_enclosing_projects_pytest_settings(tmp_path, cfg):
    # The notebook puts the project inside the workbook, whose pyproject.toml has pytest
    # settings of its own; an enclosing project's option must not reach the project's run.
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\naddopts = "--no-such-option"\n')
    folder = project.create(tmp_path / "projects" / "hello", cfg=cfg)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_app.py"], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pytest.ini" in (folder / ".dockerignore").read_text().split()


def test_each_step_fixes_what_it_says():
    texts = [project.dockerfile(i, "python:3.11-slim") for i in range(len(project.STEPS))]
    assert texts[0].startswith("FROM python:3.11\n") and "CMD python app.py hello" in texts[0]
    assert texts[1].startswith("FROM python:3.11-slim\n")
    assert 'ENTRYPOINT ["python", "app.py"]' in texts[2]
    assert "USER 10001" in texts[3] and "USER" not in texts[2]
    assert "--upgrade pip" not in texts[4] and "--upgrade pip" in texts[3]
    assert "--no-cache-dir" in texts[5] and "--no-cache-dir" not in texts[4]
    assert texts[6].index("COPY requirements.txt") < texts[6].index("COPY app.py")
    assert texts[7].count("FROM ") == 2 and "COPY --from=build" in texts[7]
    assert project.requirements(3) == "click\n" and project.requirements(4) == "click==8.1.7\n"


def test_lint_warnings_go_away_step_by_step():
    codes = [set(lint.lint(project.dockerfile(i, "python:3.11-slim"))["code"])
             for i in range(len(project.STEPS))]
    assert {"DL3025", "DL3042"} <= codes[0]
    assert "DL3025" not in codes[2]
    assert codes[5] == codes[6] == codes[7] == set()


def test_change_code_bumps_one_line(tmp_path, cfg):
    folder = project.create(tmp_path, cfg=cfg)
    before = (folder / "app.py").read_text().splitlines()
    assert project.change_code(folder) == "1.0.1"
    after = (folder / "app.py").read_text().splitlines()
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 1


def test_unknown_steps_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match="steps: naive, slim base"):
        project.dockerfile("smaller please")
    with pytest.raises(ValueError, match="out of range"):
        project.index(99)


def _table(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["step", "base", "size_mb", "build_s", "rebuild_s",
                                       "cached_steps"])


FULL = [("naive", "python:3.11", 1000.0, 30, 12, "3/6"),
        ("slim base", "python:3.11-slim", 160.0, 20, 10, "3/6"),
        ("exec-form CMD", "python:3.11-slim", 160.2, 20, 10.2, "3/6"),
        ("non-root user", "python:3.11-slim", 160.3, 20, 10, "4/7"),
        ("pinned requirements", "python:3.11-slim", 158.0, 20, 8, "4/7"),
        ("--no-cache-dir", "python:3.11-slim", 157.0, 20, 8, "4/7"),
        ("layer order", "python:3.11-slim", 157.0, 20, 1.0, "6/9"),
        ("multi-stage", "python:3.11-slim", 151.0, 20, 1.1, "7/10")]


def test_conclusions_are_computed_from_the_table():
    text = "\n".join(project.conclusions(_table(FULL)))
    assert "1000 MB to 160 MB (84% less; no other step saved as much)" in text
    assert "**exec-form CMD**: no measurable size change, about the same rebuild" in text
    assert "stayed at 7" in text and "no layer was saved" in text
    assert "6 of 9 steps came from the cache (before: 4 of 7); rebuild faster: 8.0 s -> 1.0 s" \
        in text
    assert "**Multi-stage**: size -6.0 MB" in text
    assert "**Overall**: 1000 MB -> 151 MB, rebuild 12.0 s -> 1.1 s." in text


def test_conclusions_in_ci_mode_do_not_claim_a_base_image_saving():
    """In ci mode the naive step uses the slim base: the table says so, and so must we."""
    rows = [("naive", "python:3.11-slim", 160.0, 20, 10, "3/6"),
            ("slim base", "python:3.11-slim", 160.0, 20, 9.9, "3/6"), *FULL[2:]]
    text = "\n".join(project.conclusions(_table(rows)))
    assert "was not compared here" in text and "84%" not in text
    assert "**Overall**: 160 MB -> 151 MB" in text


def test_a_changed_layer_count_and_a_slower_rebuild_are_reported_as_such():
    rows = [FULL[3], ("pinned requirements", "python:3.11-slim", 160.3, 20, 10, "4/8"),
            ("layer order", "python:3.11-slim", 160.3, 20, 14.0, "4/8")]
    text = "\n".join(project.conclusions(_table(rows)))
    assert "went from 7 to 8" in text and "rebuild slower: 10.0 s -> 14.0 s" in text
