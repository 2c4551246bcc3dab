"""A Python environment other Unix users can run: this venv's packages, readable by all.

A checkout under ``/root`` (or in ``mktemp -d``'s 0700 folder) holds a venv nobody else
may read. Binder-like tests run notebooks as ``nobody`` and the course hub runs students'
servers as their own accounts: both need this venv's packages without re-owning or
opening up the private folder. :func:`student_venv` builds such a venv in a folder of its
own (hard links where the file system allows, so it takes seconds and no space).

>>> python = student_venv(Path("/srv/hub"))                 # doctest: +SKIP
>>> run([*as_user("nobody"), str(python), "-c", "import cloudlab"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from pathlib import Path

from .errors import UnavailableError
from .proc import run


def as_user(name: str) -> list[str]:
    """The command prefix that runs a program as user ``name`` (its own groups,
    no capabilities); empty when this process is not root (it cannot switch).

    >>> as_user("nobody")[1:3]                                   # doctest: +SKIP
    ['--reuid=65534', '--regid=65534']
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise UnavailableError("switching users needs setpriv (util-linux)")
    entry = pwd.getpwnam(name)
    return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups",
            "--inh-caps=-all"]


def world_runnable(path: Path) -> bool:
    """Whether any user may run ``path`` (every folder above it is world-searchable)."""
    path = path.resolve()
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def readable_copy(site: Path, dest: Path, *, caches: bool = False, links: bool = True
                  ) -> Path:
    """``site`` as a tree any user may read, at ``dest``: hard links where one file system
    allows (seconds, no space), copies otherwise, or always (``links=False``).

    A hard link is the same file: whatever writes into the copy writes into the original
    too. Link only what nobody edits (packages); copy what gets configured (``etc``).

    A link shares the file, not the folders above it: so a venv inside a private folder
    (a checkout under ``/root``, or in ``mktemp -d``'s 0700 folder) is still readable to
    the unprivileged user through the copy, while nothing of the original is re-owned.
    ``caches`` keeps the compiled ``__pycache__`` files (a server importing hundreds of
    modules starts in seconds instead of compiling them all each time as a user who
    cannot write them).
    """

    def link_or_copy(src: str, dst: str) -> str:
        try:
            if not links:
                raise OSError("copy asked for")
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return dst

    shutil.copytree(site, dest, symlinks=True, copy_function=link_or_copy,
                    ignore=None if caches else shutil.ignore_patterns("__pycache__"))
    for folder in (dest, *(p for p in dest.rglob("*") if p.is_dir() and not p.is_symlink())):
        folder.chmod(0o755)
    return dest


def this_site() -> Path:
    """This venv's site-packages folder."""
    here = Path(sys.executable).parent
    return next(Path(p) for p in sys.path if p.endswith("site-packages")
                and Path(p).is_relative_to(here.parent))


def student_venv(top: Path, site: Path | None = None, *, data: bool = False,
                 caches: bool = False) -> Path:
    """A venv an unprivileged user can run, with this venv's packages; its python.

    Built from an interpreter every user may run (this one, or the system's python of the
    same version when this one lives in a private folder such as root's pyenv). This venv's
    ``site`` packages are made readable under ``top`` (:func:`readable_copy`) and added
    by a ``.pth`` file; its scripts are re-pointed at the new python. ``data`` also makes
    this venv's ``share/jupyter`` (JupyterLab's extensions) and ``etc/jupyter`` (server
    extensions enabled) the new venv's own; ``caches``: see :func:`readable_copy`.
    Raises :class:`UnavailableError` when no interpreter of this version is runnable by
    everyone.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(getattr(sys, "_base_executable", sys.executable))
    if not world_runnable(base):
        base = Path(shutil.which(version, path="/usr/local/bin:/usr/bin") or base)
    if not world_runnable(base):
        raise UnavailableError(f"no {version} that an unprivileged user may run: install "
                               f"Debian's {version} (apt-get install {version})")
    venv = top / "venv"
    run([str(base), "-m", "venv", "--without-pip", str(venv)], timeout=120)
    here = Path(sys.executable).parent
    site = site or this_site()
    packages = readable_copy(site, top / "packages", caches=caches)
    (venv / "lib" / version / "site-packages" / "workbook.pth").write_text(f"{packages}\n")
    for exe in here.iterdir():
        target = venv / "bin" / exe.name
        if target.exists() or exe.name.startswith(("python", "activate", "Activate")):
            continue
        head = exe.read_bytes()[:2] if exe.is_file() else b""
        if head == b"#!":
            lines = exe.read_text().splitlines(keepends=True)
            target.write_text(f"#!{venv / 'bin' / 'python'}\n" + "".join(lines[1:]))
            target.chmod(0o755)
        elif exe.is_file():  # a program (kubectl, hadolint): the user may not reach ours
            try:
                os.link(exe, target)
            except OSError:
                shutil.copy2(exe, target)
    if data:
        for part in ("share/jupyter", "etc/jupyter"):
            if (here.parent / part).is_dir():
                (venv / part).parent.mkdir(parents=True, exist_ok=True)
                # etc is configured afterwards (the hub turns formgrader off there):
                # a linked copy would turn it off in this venv too
                readable_copy(here.parent / part, venv / part, links=part != "etc/jupyter")
    return venv / "bin" / "python"
