"""The student edition holds no solution, hidden test or course secret, anywhere in it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from cloudlab import cli
from cloudlab.grading import Course
from cloudlab.grading.publish import INCLUDE, PublishError, publish
from cloudlab.proc import wait_for
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)[ \t]*\n(.*?)### END \1", re.S)


def _regions() -> list[tuple[str, str]]:
    """(kind, text) of every solution and hidden-test region in solutions/."""
    found = []
    for path in sorted((ROOT / "solutions").rglob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            found += [(m.group(1), m.group(2)) for m in REGION.finditer(src)]
    assert found, "the instructor's notebooks have solutions and hidden tests"
    return found


def _texts(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_bytes().decode("utf-8", "replace")
            for p in folder.rglob("*") if p.is_file() and ".git/" not in p.as_posix()}


@pytest.fixture
def course(tmp_path) -> Course:
    """A copy of this course with its grading state: registry passwords, the secret."""
    root = tmp_path / "course-root"
    for name in (*INCLUDE, "solutions", "edition", "README.md"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns(
                "__pycache__", ".ipynb_checkpoints", "*.egg-info"))
        elif src.is_file():
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    state = root / "course" / "registry"
    state.mkdir(parents=True)
    (state / "credentials.json").write_text(json.dumps(
        {"ada": {"password": "pw-ada-0123456789abcdef"},
         "instructor": {"password": "pw-instructor-fedcba9876543210"}}))
    (state / "classmate.json").write_text(json.dumps(
        {"message": "Hello from Grace's container! The word is periwinkle-4711."}))
    return Course(root)


def test_the_edition_has_the_workbook_and_nothing_of_the_instructor(course, tmp_path):
    dest = tmp_path / "student"
    report = publish(course, dest)
    texts = _texts(dest)
    assert report.files > 10 and not report.problems
    for needed in ("README.md", "pyproject.toml", "binder/requirements.txt",
                   "exercises/docker-hub/docker-hub.ipynb", "lib/cloudlab/__init__.py",
                   "notebooks/00-getting-started.ipynb"):
        assert needed in texts, f"{needed} belongs in the student edition"
    assert not [n for n in texts if n.split("/")[0] in ("solutions", "tests", "course")]
    everything = "\n".join(texts.values())
    flat = " ".join(everything.replace("\\n", "\n").split())
    for kind, region in _regions():
        for line in region.splitlines():
            if kind == "HIDDEN TESTS" and line.strip():
                assert line.strip() not in everything, f"hidden test line {line!r} leaked"
        whole = " ".join(region.split())
        if len(whole) >= 40:
            assert whole not in flat, f"a {kind.lower()} region leaked"
    for secret in ("pw-ada-0123456789abcdef", "pw-instructor-fedcba9876543210",
                   "periwinkle-4711"):
        assert secret not in everything
    assert "### BEGIN SOLUTION" not in "\n".join(v for k, v in texts.items()
                                                 if k.endswith(".ipynb"))


def test_the_edition_readme_speaks_to_students(course, tmp_path):
    publish(course, tmp_path / "student")
    readme = (tmp_path / "student" / "README.md").read_text()
    assert "cloudlab doctor" in readme and "Submit" in readme and "Fetch" in readme
    for instructor_only in ("make run", "make test", "cloudlab grade", "STUDENT_EDITION",
                            "BINDER_LINE", "solutions/"):
        assert instructor_only not in readme, f"{instructor_only!r} is not for students"
    assert not (tmp_path / "student" / "Makefile").exists()


@pytest.mark.timeout(1800)  # a new venv installs every package (from pip's cache when warm)
def test_every_command_the_edition_readme_shows_works_in_a_fresh_copy(course, tmp_path):
    """As a student would: a new venv, ``pip install -e .``, ``cloudlab doctor``, a
    notebook headless, and JupyterLab answering; in the published copy, nothing else."""
    dest = tmp_path / "student"
    publish(course, dest)
    block = (dest / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in block.splitlines() if line.strip()]
    assert commands[0].startswith("python3 -m venv") and commands[-1].startswith(
        ".venv/bin/jupyter lab")
    env = {**os.environ, "CLOUDLAB_MOTO_PORT": str(free_port()),
           "CLOUDLAB_REGISTRY_PORT": str(free_port()),
           "CLOUDLAB_PROMETHEUS_PORT": str(free_port()),
           "CLOUDLAB_ALERTMANAGER_PORT": str(free_port()), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    try:
        for i, command in enumerate(commands[:-1]):
            # output to a file, not a pipe: a service the notebook starts keeps it open
            log = tmp_path / f"command-{i}.log"
            with open(log, "w") as out:
                done = subprocess.run(command, shell=True, cwd=dest, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=1200)
            assert done.returncode == 0, f"{command}:\n{log.read_text()[-5000:]}"
        assert "1/1 notebooks passed" in log.read_text(), log.read_text()[-2000:]
        port, log = free_port(), tmp_path / "lab.log"
        as_root = " --allow-root" if os.geteuid() == 0 else ""  # students are not root
        with open(log, "w") as out:
            lab = subprocess.Popen(f"{commands[-1]} --no-browser --ServerApp.port={port} "
                                   f"--ServerApp.ip=127.0.0.1 --IdentityProvider.token={as_root}",
                                   shell=True, cwd=dest, env=env, start_new_session=True,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/api/status", timeout=2).ok,
                     timeout=120, what="the edition's JupyterLab", log=log)
        finally:
            os.killpg(lab.pid, signal.SIGTERM)
            lab.wait(timeout=30)
    finally:
        if (dest / ".venv" / "bin" / "cloudlab").exists():
            subprocess.run([str(dest / ".venv" / "bin" / "cloudlab"), "services", "down"],
                           cwd=dest, env=env, capture_output=True, timeout=120)


def test_a_leak_stops_the_publication_naming_the_file(course, tmp_path):
    _, region = next(r for r in _regions() if r[0] == "SOLUTION" and len(r[1]) > 60)
    (course.root / "data" / "notes.md").write_text("an answer:\n" + region)
    with pytest.raises(PublishError, match=r"data/notes\.md: contains a solution"):
        publish(course, tmp_path / "student")
    (course.root / "data" / "notes.md").write_text(
        "it says: Hello from Grace's container! The word is periwinkle-4711.\n")
    with pytest.raises(PublishError, match=r"data/notes\.md: contains a course secret"):
        publish(course, tmp_path / "student2")


def test_publish_refuses_to_overwrite_a_folder_that_is_not_an_edition(course, tmp_path):
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("precious")
    with pytest.raises(PublishError, match="is not a student edition"):
        publish(course, other)
    assert (other / "chapter1.tex").read_text() == "precious"


def test_the_cli_writes_and_pushes_the_edition(course, tmp_path, capsys):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    dest = tmp_path / "student"
    code = cli.main(["grade", "--course", str(course.root), "publish", str(dest), "--push",
                     str(remote)])
    assert code == 0, capsys.readouterr()
    assert "pushed to" in capsys.readouterr().out
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(remote), str(clone)], check=True)
    assert (clone / "exercises" / "docker-hub" / "docker-hub.ipynb").is_file()
    assert not (clone / "solutions").exists()
    # publishing again replaces the content and pushes the change
    (course.root / "data" / "new.csv").write_text("a,b\n1,2\n")
    assert cli.main(["grade", "--course", str(course.root), "publish", str(dest), "--push",
                     str(remote)]) == 0
    subprocess.run(["git", "-C", str(clone), "pull", "-q"], check=True)
    assert (clone / "data" / "new.csv").is_file()
