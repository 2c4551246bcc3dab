"""The grading image: the base image + the course's kernel dependencies + ``cloudlab``.

ipykernel's optional debugger (debugpy) is removed: no one debugs a graded kernel, and
importing it was a large share of every kernel's start-up.

Built with ``docker build`` the first time and whenever an input changes (base image,
requirements, the cloudlab sources); the tag carries a hash of the inputs, so a cached image
is simply found. The pip layer comes before the cloudlab sources, so editing a checker
rebuilds in seconds.

>>> ensure(course)                           # doctest: +SKIP
'cloudlab-grader:3f2a9c0d1b7e'
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from .. import engine, images
from ..config import LABEL, settings
from ..errors import CommandError
from .course import Course

REPOSITORY = "cloudlab-grader"
IMAGE_LABEL = "org.cloudlab.grader.inputs"
KERNEL_REQUIREMENTS = ("ipykernel>=6.29", "pyyaml>=6.0",  # checkers read YAML artefacts
                       "nbclient>=0.10")  # the Kubernetes backend runs notebooks in the pod
UID = 1000

DOCKERFILE = """\
FROM {base}
RUN (getent passwd {uid} >/dev/null || useradd --uid {uid} --user-group --create-home \\
        --shell /usr/sbin/nologin student)
COPY requirements.txt /opt/cloudlab-grader/requirements.txt
RUN python3 -m pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \\
        -r /opt/cloudlab-grader/requirements.txt \\
    && python3 -m pip uninstall -y --root-user-action=ignore debugpy
COPY cloudlab /opt/cloudlab-grader/lib/cloudlab
RUN echo /opt/cloudlab-grader/lib > "$(python3 -c 'import sysconfig; \\
        print(sysconfig.get_paths()["purelib"])')/cloudlab.pth" \\
    && python3 -m compileall -q /opt/cloudlab-grader/lib \\
    && python3 -I -c "import importlib, pkgutil, ipykernel, cloudlab.grading.kernel, \
cloudlab.grading.podrun, nbclient, cloudlab.checks as c; [importlib.import_module(m.name) for m in \
pkgutil.iter_modules(c.__path__, 'cloudlab.checks.')]"
ENV HOME=/tmp PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib CLOUDLAB_DOCKER=off
USER {uid}:{uid}
WORKDIR /work
"""


def _library() -> Path:
    return Path(__file__).resolve().parents[1]


def requirements(course: Course) -> list[str]:
    """What the kernel needs: ipykernel plus the course's ``solutions/requirements.txt``."""
    extra: list[str] = []
    if course.kernel_requirements.is_file():
        for line in course.kernel_requirements.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                extra.append(line)
    return [*KERNEL_REQUIREMENTS, *extra]


def _library_files() -> list[Path]:
    lib = _library()
    return sorted(p for p in lib.rglob("*.py") if "__pycache__" not in p.parts) + \
        sorted(p for p in (lib / "data").glob("*") if p.is_file())


def inputs_hash(course: Course, base: str) -> str:
    """A digest of everything the image is built from."""
    digest = hashlib.sha256()
    digest.update(DOCKERFILE.encode())
    digest.update(base.encode())
    with contextlib.suppress(Exception):
        digest.update(engine.client(timeout=10).images.get(base).id.encode())
    digest.update("\n".join(requirements(course)).encode())
    lib = _library()
    for path in _library_files():
        digest.update(str(path.relative_to(lib)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure(course: Course, *, log: Path | None = None, rebuild: bool = False) -> str:
    """The grading image's tag, building it first when it is missing or out of date."""
    cfg = settings()
    engine.require(cfg)
    base = cfg.base_image
    if not images.present(base):
        images.bootstrap(base, cfg)
    digest = inputs_hash(course, base)
    tag = f"{REPOSITORY}:{digest}"
    if images.present(tag) and not rebuild:
        return tag
    with tempfile.TemporaryDirectory(prefix="cloudlab-grader-") as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base, uid=UID))
        (ctx / "requirements.txt").write_text("\n".join(requirements(course)) + "\n")
        lib = _library()
        for path in _library_files():
            target = ctx / "cloudlab" / path.relative_to(lib)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        _build(ctx, tag, {IMAGE_LABEL: digest, "org.cloudlab.grader": "image"}, log)
    _prune(tag)
    return tag


def _build(ctx: Path, tag: str, labels: dict[str, str], log: Path | None) -> None:
    api = engine.client(timeout=900).api
    lines: list[str] = []
    error = None
    for chunk in api.build(path=str(ctx), tag=tag, labels=labels, rm=True, forcerm=True,
                           decode=True):
        if "stream" in chunk:
            lines.append(chunk["stream"].rstrip())
        if "error" in chunk:
            error = chunk["error"]
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("\n".join(lines) + ("\n" + error if error else "") + "\n")
    if error:
        raise CommandError(["docker", "build", "-t", tag, str(ctx)], 1, "\n".join(lines), error,
                           hint="the grading image installs ipykernel and "
                                "solutions/requirements.txt with pip, then imports every "
                                "cloudlab.checks module: a checker's imports must be listed "
                                "in solutions/requirements.txt")


def _prune(keep: str, newest: int = 3, grace: float = 86400,
           repository: str = REPOSITORY) -> None:
    """Remove older grading images, keeping ``keep``, the few newest, any a container uses
    and any made in the last ``grace`` seconds: another checkout or course on the same
    engine may be grading with its own image right now."""
    api = engine.client(timeout=60)
    found = sorted(api.images.list(name=repository), key=lambda i: i.attrs.get("Created", ""),
                   reverse=True)
    in_use = {c.attrs.get("Image")
              for c in api.containers.list(all=True, ignore_removed=True)}
    cutoff = time.time() - grace
    for image in found[newest:]:
        if keep in image.tags or image.id in in_use or _created(image) > cutoff:
            continue
        with contextlib.suppress(Exception):
            api.images.remove(image.id, noprune=False)


def _created(image) -> float:
    """When the engine made ``image`` (seconds since the epoch; now when unknown)."""
    stamp = image.attrs.get("Created", "")
    try:
        return dt.datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return time.time()


__all__ = ["LABEL", "ensure", "inputs_hash", "requirements"]
