"""Binder-like tier: the Binder environment works with no Docker engine and no root.

Binder gives a student an unprivileged user, a writable home, the packages of ``binder/``
and no container engine. This test recreates that here: a copy of the student's files
(no ``solutions/``) owned by ``nobody``, ``DOCKER_HOST`` pointing at a socket nobody
listens on, a ``PATH`` without the engine, qemu, mmdebstrap or the registry, and everything
launched through ``binder/start``. It proves the environment (the start script, every
module importing, the kernel, the state folder in the home) and runs two representative
notebooks (``ci=True``): the one the Binder badge opens, and one built on Docker, which must
print that it skipped and why. The notebooks tier runs every notebook; a check on the
sources below keeps every notebook that calls a missing backend saying so when it skips.
"""

from __future__ import annotations

import getpass
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudlab import runner, userenv
from cloudlab.errors import UnavailableError
from tests.conftest import ROOT, free_port

CHAPTERS = runner.notebooks()
# The notebook the README's Binder badge opens, and the first one built on Docker.
ON_BINDER = [ROOT / "notebooks" / f"{name}.ipynb"
             for name in ("00-getting-started", "03-containers-with-docker")]
# Programs a Binder image does not have: the engine, VMs, the base-image builder, root.
BINDER_LACKS = {"runc", "ctr", "mmdebstrap", "kind", "kwok", "kwokctl", "sudo", "su"}
BINDER_LACKS_PREFIX = ("docker", "containerd", "qemu-")
# Calls that need one of those (or a Kubernetes cluster); a notebook making them must say
# it skipped.
NEEDS_MISSING = re.compile(r"cl\.(docker|engine|registry|images|project|vm|swarm|k8s)\.")
# "skipped" (or "not available") in a line long enough to carry the reason too.
SAID_WHY = re.compile(r"(?i)^(?=.{20,}).*\b(skip\w*|not available)\b")
# The same words inside a string literal of a notebook's code.
SAYS_WHY = re.compile(r"(?i)[\"'][^\"'\n]*\b(skip\w*|not available)\b")
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", ".cloudlab", "runs", "course",
                                     "solutions", "tests", "__pycache__", "*.egg-info",
                                     ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints")


def _as_user() -> list[str]:
    """The prefix that drops root to ``nobody`` (nothing when already unprivileged)."""
    try:
        return userenv.as_user("nobody")
    except UnavailableError as exc:
        pytest.skip(f"running as root needs setpriv (util-linux) to drop to an unprivileged "
                    f"user: {exc}")


def _student_venv(top: Path, site: Path | None = None) -> Path:
    """A venv ``nobody`` can run, with this venv's packages (:func:`userenv.student_venv`)."""
    try:
        return userenv.student_venv(top, site)
    except UnavailableError as exc:
        pytest.skip(str(exc))


def _binder_path(bin_dir: Path, python: Path) -> str:
    """A PATH like Binder's: the venv, then the system's programs minus what Binder lacks."""
    bin_dir.mkdir()
    for folder in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not Path(folder).is_dir():
            continue
        for exe in Path(folder).iterdir():
            link = bin_dir / exe.name
            lacks = exe.name in BINDER_LACKS or exe.name.startswith(BINDER_LACKS_PREFIX)
            if lacks or link.exists() or link.is_symlink():
                continue
            link.symlink_to(exe)
    return f"{python.parent}{os.pathsep}{bin_dir}"


@pytest.fixture(scope="module")
def binder() -> Iterator[dict]:
    """The student's files in a home owned by an unprivileged user, and its environment."""
    top = Path(tempfile.mkdtemp(prefix="cloudlab-binder-"))
    try:
        home = top / "home"
        shutil.copytree(ROOT, home / "workbook", ignore=COPY_IGNORE)
        (home / "tmp").mkdir()
        prefix = _as_user()
        python = _student_venv(top) if prefix else Path(sys.executable)
        path = _binder_path(top / "bin", python)
        if prefix:
            nobody = pwd.getpwnam("nobody")
            os.chown(top, nobody.pw_uid, nobody.pw_gid)
            for p in [home, *home.rglob("*")]:
                os.lchown(p, nobody.pw_uid, nobody.pw_gid)
        env = {
            "HOME": str(home), "USER": "nobody" if prefix else getpass.getuser(),
            "LANG": "C.UTF-8", "PATH": path,
            "TMPDIR": str(home / "tmp"), "MPLBACKEND": "Agg",
            "PYTHONPATH": str(home / "workbook" / "lib"),  # the copy, not this checkout
            "DOCKER_HOST": f"unix://{top}/no-engine.sock",
            "CLOUDLAB_MOTO_PORT": str(free_port()),
            "CLOUDLAB_REGISTRY_PORT": str(free_port()),
            "CLOUDLAB_PROMETHEUS_PORT": str(free_port()),
            "CLOUDLAB_ALERTMANAGER_PORT": str(free_port()),
        }
        yield {"home": home, "env": env, "prefix": prefix, "python": python}
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_student_venv_reads_packages_from_a_private_folder(tmp_path):
    """A checkout inside a private folder (``/root``, ``mktemp -d``) still gives the
    unprivileged user every package: the tier must not depend on where it was cloned."""
    prefix = _as_user()
    if not prefix:
        pytest.skip("only root can drop to another user; a private folder of your own is "
                    "readable to you")
    private = tmp_path / "private"
    site = private / "venv" / "site-packages"
    (site / "privatepkg").mkdir(parents=True)
    (site / "privatepkg" / "__init__.py").write_text("WHERE = 'copied'\n")
    private.chmod(0o700)
    top = Path(tempfile.mkdtemp(prefix="cloudlab-binder-venv-"))
    try:
        python = _student_venv(top, site=site)
        nobody = pwd.getpwnam("nobody")
        os.chown(top, nobody.pw_uid, nobody.pw_gid)
        probe = "import privatepkg, os; print(privatepkg.WHERE, os.geteuid())"
        done = subprocess.run([*prefix, str(python), "-c", probe], capture_output=True,
                              text=True, timeout=60, cwd="/")
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["copied", str(nobody.pw_uid)]
        # the original stays private: the user reads the copy, not the checkout
        direct = subprocess.run([*prefix, str(python), "-c", f"open({str(site)!r} + "
                                 "'/privatepkg/__init__.py')"], capture_output=True,
                                text=True, timeout=60, cwd="/")
        assert direct.returncode != 0 and "Permission denied" in direct.stderr
    finally:
        shutil.rmtree(top, ignore_errors=True)


RUN_ONE = """
import json, sys
from pathlib import Path
import cloudlab
from cloudlab import runner
assert Path(cloudlab.__file__).is_relative_to(Path.home()), cloudlab.__file__
r = runner.execute(Path(sys.argv[1]), {"ci": True}, out_dir=Path(sys.argv[2]), progress=False)
print(json.dumps({"status": r.status, "seconds": r.seconds, "error": r.error}))
"""


def _outputs(notebook: Path) -> tuple[str, list[str]]:
    """The code cells' source and every line they printed or displayed as text."""
    nb = json.loads(notebook.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    lines = []
    for cell in code:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain") or ""
            lines += "".join(text).splitlines()
    return "\n".join("".join(c["source"]) for c in code), lines


ENVIRONMENT = """
import json, os, shutil
from pathlib import Path
from jupyter_client.kernelspec import KernelSpecManager
import cloudlab as cl
modules = {name: getattr(cl, name).__name__ for name in cl._SUBMODULES}
print(json.dumps({
    "cloudlab": cl.__file__, "home": str(Path.home()), "modules": modules,
    "state_dir": str(cl.settings().state_dir), "env_state_dir": os.environ["CLOUDLAB_STATE_DIR"],
    "kernels": sorted(KernelSpecManager().find_kernel_specs()),
    "jupyter": shutil.which("jupyter"), "docker": shutil.which("docker"),
    "engine": cl.engine.available(), "hint": cl.engine.start_hint(),
}))
"""


def _start(binder: dict, *args: str) -> subprocess.CompletedProcess:
    """Run ``args`` the way Binder does: as the student, through ``binder/start``."""
    book = binder["home"] / "workbook"
    return subprocess.run([*binder["prefix"], str(book / "binder" / "start"), *args], cwd=book,
                          env=binder["env"], capture_output=True, text=True, timeout=900)


def test_binder_environment_imports_everything_and_has_a_kernel(binder):
    done = _start(binder, str(binder["python"]), "-c", ENVIRONMENT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    env = json.loads(done.stdout.strip().splitlines()[-1])
    home = Path(env["home"])
    assert home == binder["home"]
    assert Path(env["cloudlab"]).is_relative_to(home), "cloudlab must come from the student's copy"
    assert all(mod == f"cloudlab.{name}" for name, mod in env["modules"].items())
    # binder/start puts runtime state in the (writable) home folder
    assert env["env_state_dir"] == str(home / ".cloudlab") == env["state_dir"]
    assert "python3" in env["kernels"], env["kernels"]
    assert env["jupyter"], "jupyter must be on the student's PATH"
    assert env["docker"] is None and env["engine"] is False, "Binder has no container engine"
    assert env["hint"], "the missing engine needs a hint on how to get one"
    version = _start(binder, str(Path(env["jupyter"]).parent / "jupyter-lab"), "--version")
    assert version.returncode == 0 and version.stdout.strip(), version.stderr[-2000:]


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_that_calls_a_missing_backend_says_it_skips(notebook):
    source, _ = _outputs(notebook)
    if NEEDS_MISSING.search(source):
        assert SAYS_WHY.search(source), (
            f"{notebook.name} uses Docker or a VM but has no message saying it skipped and "
            "why (print 'skipped: <reason and how to get it>')")


@pytest.mark.parametrize("notebook", ON_BINDER, ids=lambda p: p.stem)
def test_notebook_runs_on_binder_without_docker_or_root(notebook, binder):
    book = binder["home"] / "workbook"
    out_dir = book / "runs"
    done = _start(binder, str(binder["python"]), "-c", RUN_ONE,
                  str(book / "notebooks" / notebook.name), str(out_dir))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "passed", f"{notebook.name} on Binder: {result['error']}"

    source, lines = _outputs(out_dir / notebook.name)
    said = [ln.strip() for ln in lines if SAID_WHY.search(ln)]
    if NEEDS_MISSING.search(source):
        assert said, (f"{notebook.name} uses Docker or a VM but never printed that it skipped "
                      "and why (print 'skipped: <reason and how to get it>')")
    print(f"{notebook.name}: {result['seconds']:.1f} s, skips: {said}")
