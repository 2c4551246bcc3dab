"""cloudlab.project: the generated container project and its Dockerfile steps."""

import subprocess
import sys

import pytest
import yaml

from cloudlab import lint, project


def test_the_project_has_every_file_of_the_seed_plus_ci(tmp_path, cfg):
    folder = project.create(tmp_path / "hello", cfg=cfg)
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {"app.py", "test_app.py", "Makefile", "requirements.txt",
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
