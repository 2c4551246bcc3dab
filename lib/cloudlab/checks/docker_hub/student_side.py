"""The student's side of ``docker-hub``: setup, push, answers, and the visible checks.

``cl.check("q1")`` ... ``cl.check("q5")`` lint, build and run your files with your own
Docker engine and look at the answers you saved. While the grader runs the notebook (in a
sandbox without Docker) the same checks show what the grader's host found instead.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import CheckFailed, expect, register, trusted
from .rules import (
    ANSWER_NAMES,
    ANSWERS,
    ASSIGNMENT,
    CLASSMATE_MESSAGE,
    CLASSMATE_REPOSITORY,
    DOCKERFILE,
    GREETING,
    NO_DOCKER,
    REPOSITORY,
    VERSION,
    _read,
    files,
    lint_clean,
    load_answers,
    official_base,
    recorded,
)


# ------------------------------------------------------- on the student's own machine
def grading() -> bool:
    """True while the grader runs the notebook (in its sandbox, without Docker)."""
    from .. import GRADING_ASSIGNMENT_ENV

    return bool(os.environ.get(GRADING_ASSIGNMENT_ENV))


def docker_here() -> bool:
    """Whether this notebook can use a Docker engine (never while it is being graded)."""
    if grading():
        return False
    from ... import engine

    try:
        return engine.available()
    except Exception:
        return False


def student() -> str:
    """A registry-safe name for you: JupyterHub's user, else your login name.

    >>> re.fullmatch(r"[a-z0-9][a-z0-9._-]*", student()) is not None
    True
    """
    raw = os.environ.get("JUPYTERHUB_USER") or os.environ.get("NB_USER") or ""
    if not raw:
        with contextlib.suppress(Exception):
            raw = getpass.getuser()
    name = re.sub(r"[^a-z0-9._-]+", "-", (raw or "student").lower()).strip("._-")
    return name or "student"


def target(cfg=None) -> str:
    """Where part B pushes: Docker Hub (``<user>/hello-cli:1.0``) when the course is
    configured for it (``CLOUDLAB_REGISTRY=dockerhub`` and a login), else the local course
    registry (``127.0.0.1:5000/<you>/hello-cli:1.0``)."""
    from ...config import settings

    cfg = cfg or settings()
    if cfg.registry == "dockerhub" and not grading():
        from ... import registry

        creds = registry.dockerhub_credentials(cfg=cfg)
        if creds is not None:
            return f"{creds.username}/{REPOSITORY}:{VERSION}"
    return f"{cfg.registry_host}/{student()}/{REPOSITORY}:{VERSION}"


def push_auth(cfg=None):
    """Credentials for pushing to :func:`target` (None for the local registry)."""
    from ...config import settings

    cfg = cfg or settings()
    if cfg.registry != "dockerhub" or grading():
        return None
    from ... import registry

    return registry.dockerhub_credentials(cfg=cfg)


def push_reason(cfg=None) -> str:
    """Why part B cannot push from here ('' when it can)."""
    from ...config import settings

    cfg = cfg or settings()
    if not docker_here():
        return NO_DOCKER
    if cfg.registry == "dockerhub":
        from ... import registry

        why = registry.dockerhub_reason(cfg=cfg)
        if why:
            return f"Docker Hub is configured but cannot be used: {why}"
    return ""


def classmate_ref(cfg=None) -> str:
    """The classmate's image in the course registry."""
    from ...config import settings

    cfg = cfg or settings()
    return f"{cfg.registry_host}/{CLASSMATE_REPOSITORY}:{VERSION}"


CLASSMATE_APP = f'''\
"""A classmate's hello-world CLI: `python classmate.py hello` greets whoever pulled it."""
import argparse

parser = argparse.ArgumentParser(description="a classmate's hello-world CLI")
parser.add_argument("command", choices=["hello"])
parser.parse_args()
print({CLASSMATE_MESSAGE!r})
'''

CLASSMATE_DOCKERFILE = """\
FROM {base}
RUN useradd --create-home --no-log-init --uid 10001 grace
WORKDIR /app
COPY classmate.py .
USER 10001
ENTRYPOINT ["python", "classmate.py"]
CMD ["hello"]
"""


def publish_classmate(cfg=None, *, start_registry: bool = True, progress: bool = False) -> str:
    """Build the classmate's image and push it to the course registry; its reference.

    Idempotent: when the registry already serves it, nothing is built. The registry is
    started if needed (and left running: it is the course's registry, which the grader
    reads too; ``cloudlab services down registry`` stops it).

    >>> ref = publish_classmate()                               # doctest: +SKIP
    >>> ref                                                     # doctest: +SKIP
    '127.0.0.1:5000/classmate/hello-cli:1.0'
    """
    from ... import docker as cdocker
    from ... import registry, services
    from ...config import settings

    cfg = cfg or settings()
    ref = classmate_ref(cfg)
    reg = services.registry(cfg)
    if not reg.healthy():
        if not start_registry:
            raise registry.RegistryError(f"the course registry at {cfg.registry_host} does "
                                         "not answer; start it: `cloudlab services up "
                                         "registry`")
        reg.start()
    with contextlib.suppress(registry.RegistryError):
        if VERSION in registry.tags(CLASSMATE_REPOSITORY, cfg.registry_host, cfg=cfg):
            return ref
    with tempfile.TemporaryDirectory(prefix="cloudlab-classmate-") as tmp:
        folder = Path(tmp)
        (folder / "classmate.py").write_text(CLASSMATE_APP)
        (folder / "Dockerfile").write_text(CLASSMATE_DOCKERFILE.format(base=cfg.base_image))
        built = cdocker.build(folder, f"cloudlab-classmate:{VERSION}", progress=progress,
                              cfg=cfg)
    registry.push(registry.tag(built.tag, ref), progress=progress)
    return ref


def setup(cfg=None) -> dict[str, Any]:
    """What the exercise's first cell needs: where to push, the classmate's image, Docker.

    Without Docker (Binder, or the grader's sandbox) nothing is started and the parts that
    need Docker say so when they run.
    """
    from ...config import settings

    cfg = cfg or settings()
    info = {"docker": docker_here(), "target": target(cfg), "classmate": classmate_ref(cfg),
            "reason": ""}
    if grading():
        info["reason"] = "graded in a sandbox: the grader builds and runs your files itself"
    elif not info["docker"]:
        info["reason"] = NO_DOCKER
    else:
        try:
            publish_classmate(cfg)
        except Exception as exc:
            info["reason"] = f"the classmate's image could not be published: {exc}"
        why = push_reason(cfg)
        info["reason"] = info["reason"] or why
    return info


def save_answers(namespace: Mapping[str, Any], folder: str | Path = ".") -> None:
    """Save IMAGE_REF, IMAGE_DIGEST and CLASSMATE_SAYS (those that are set) in answers.json.

    The grader reads your answers from that file. While the notebook is graded this does
    nothing (the file you submitted is the one that counts).
    """
    path = Path(folder) / ANSWERS
    if grading():
        print(f"graded from the {ANSWERS} you submitted")
        return
    saved = load_answers(folder)
    for name in ANSWER_NAMES:
        value = namespace.get(name)
        if isinstance(value, str) and value.strip():
            saved[name] = value.strip()
    path.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    shown = ", ".join(f"{k}={v[:40] + ('…' if len(v) > 40 else '')!r}"
                      for k, v in sorted(saved.items())) or "nothing yet"
    print(f"saved in {ANSWERS}: {shown}")


def _answers(ns: dict) -> dict[str, str]:
    """The notebook's answers, else the saved ones."""
    found = load_answers(Path.cwd())
    for name in ANSWER_NAMES:
        value = ns.get(name)
        if isinstance(value, str) and value.strip():
            found[name] = value.strip()
    return found


def _from_grader(*keys: str) -> None:
    for key in keys:
        trusted(key)


def _local_build(folder: Path):
    from ... import docker as cdocker

    if not docker_here():
        raise CheckFailed("this check builds your image and needs Docker, which is not "
                          "available here", hint="run it on a machine with Docker; the "
                                                 "grader builds your Dockerfile itself")
    try:
        return cdocker.build(folder, f"docker-hub-check:{student()}", progress=False)
    except cdocker.BuildError as exc:
        raise CheckFailed(f"the image does not build: {exc}",
                          hint="read the failing line; `cl.docker.build('.', 'hello-cli:1.0')`"
                               " shows the whole log") from None


def _require(outcome: dict[str, Any]) -> None:
    expect(outcome["passed"], outcome["message"], expected=outcome.get("expected"),
           found=outcome.get("found"), hint=outcome.get("hint"))


@register(ASSIGNMENT, "q1")
def q1_files_and_lint(ns: dict) -> None:
    """Part A: the three files, the official base, hadolint clean at error level."""
    if grading():
        return _from_grader("files", "official_base", "lint_clean")
    folder = Path.cwd()
    _require(files(folder))
    dockerfile = _read(folder, DOCKERFILE)
    _require(official_base(dockerfile))
    _require(lint_clean(dockerfile))


@register(ASSIGNMENT, "q2")
def q2_builds(ns: dict) -> None:
    """The image builds from your Dockerfile."""
    if grading():
        return _from_grader("image_builds")
    _require(files(Path.cwd()))
    _local_build(Path.cwd())


@register(ASSIGNMENT, "q3")
def q3_says_hello(ns: dict) -> None:
    """``docker run IMAGE hello`` prints Hello World!"""
    if grading():
        return _from_grader("says_hello")
    from ... import docker as cdocker
    from ...errors import CommandError

    _require(files(Path.cwd()))
    built = _local_build(Path.cwd())
    try:
        output = cdocker.run_once(built.tag, ["hello"], network="none", timeout=60)
    except CommandError as exc:
        raise CheckFailed(f"`docker run IMAGE hello` failed (exit code {exc.returncode})",
                          found=(exc.stdout or exc.stderr).strip()[-300:],
                          hint='ENTRYPOINT ["python", "app.py"] makes `hello` the argument '
                               "of your CLI") from None
    lines = [line.strip() for line in output.splitlines()]
    expect(GREETING in lines, f"`docker run IMAGE hello` should print {GREETING}",
           expected=GREETING, found=output.strip()[-300:])


@register(ASSIGNMENT, "q4")
def q4_recorded(ns: dict) -> None:
    """Part C: the reference and digest are recorded (and saved for the grader)."""
    answers = _answers(ns)
    _require(recorded(answers))
    if not grading():
        saved = load_answers(Path.cwd())
        expect(all(saved.get(k) == answers[k] for k in ("IMAGE_REF", "IMAGE_DIGEST")),
               f"your answers are not saved in {ANSWERS} yet",
               hint="run the `hub.save_answers(globals())` cell below your answer")


@register(ASSIGNMENT, "q5")
def q5_classmate(ns: dict) -> None:
    """Part D: what the classmate's image printed is recorded (and saved)."""
    answers = _answers(ns)
    said = answers.get("CLASSMATE_SAYS")
    expect(isinstance(said, str) and bool(said.strip()), "CLASSMATE_SAYS is not recorded",
           hint="run your classmate's image with `hello`; put what it prints in "
                "CLASSMATE_SAYS (a string)")
    expect(said.strip() != GREETING, "that is what YOUR image prints",
           hint="run the classmate's image (CLASSMATE), not yours")
    if not grading():
        expect(load_answers(Path.cwd()).get("CLASSMATE_SAYS") == said.strip(),
               f"your answer is not saved in {ANSWERS} yet",
               hint="run the `hub.save_answers(globals())` cell below your answer")
