"""Repository hygiene: notebooks without outputs, parameters cells, env files in sync."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(
    p for d in ("notebooks", "solutions", "exercises") for p in (ROOT / d).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_chapter_notebooks_have_a_parameters_cell_and_use_cl(path):
    nb = json.loads(path.read_text())
    tags = [t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])]
    assert "parameters" in tags, f"{path.name} needs a cell tagged 'parameters'"
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "import cloudlab as cl" in code


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert listed == wanted, "environment.yml's pip list must equal pyproject's dependencies"


def test_library_is_ruff_clean():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "lib", "tests", "scripts"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_test_files_have_unique_names():
    # the test folders are not packages: pytest imports each file by its base name, and a
    # second file of the same name stops the whole run at collection ("import file mismatch")
    names: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {n: ps for n, ps in names.items() if len(ps) > 1}


def test_binder_config_is_complete_and_mirrors_pyproject():
    binder = ROOT / "binder"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    lines = [ln.split("#")[0].strip() for ln in (binder / "requirements.txt").read_text()
             .splitlines()]
    listed = {_name(r): r.replace(" ", "") for r in lines if r}
    assert listed == wanted, "binder/requirements.txt must equal pyproject's dependencies"

    runtime = (binder / "runtime.txt").read_text().strip()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert runtime == f"python-{env['dependencies'][0].split('=')[1]}", \
        "binder/runtime.txt and environment.yml must name the same Python"
    low = tuple(int(x) for x in project["requires-python"].removeprefix(">=").split("."))
    assert tuple(int(x) for x in runtime.removeprefix("python-").split(".")) >= low

    apt = {ln.strip() for ln in (binder / "apt.txt").read_text().splitlines()
           if ln.strip() and not ln.startswith("#")}
    setup = re.search(r"SYSTEM_PACKAGES=\(([^)]*)\)", (ROOT / "scripts/setup.sh").read_text())
    assert apt and apt <= set(setup.group(1).split()), \
        "binder/apt.txt may only hold packages scripts/setup.sh installs too"

    for script in ("postBuild", "start"):
        path = binder / script
        assert path.stat().st_mode & 0o111, f"binder/{script} must be executable"
        assert path.read_text().startswith("#!/bin/bash\n")
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"binder/{script}: {done.stderr}"
    assert "pip install --no-cache-dir --no-deps -e ." in (binder / "postBuild").read_text()
    assert (binder / "start").read_text().rstrip().endswith('exec "$@"'), \
        "binder/start must hand over to the notebook server with exec \"$@\""


def test_readme_opens_with_the_two_commands_and_a_binder_badge_for_the_student_edition():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in block] == [["make", "run"], ["make", "test"]]
    badge = re.search(r"\[!\[Binder\]\([^)]*\)\]\((https://mybinder\.org/v2/gh/([^/]+)/[^)]*)\)",
                      readme)
    assert badge, "the README needs a Binder badge"
    after = " ".join(readme.split(badge.group(0), 1)[1][:400].split())
    assert "student edition" in after, "say next to the badge that it opens the student edition"
