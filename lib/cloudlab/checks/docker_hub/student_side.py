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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import CheckFailed, expect, register, trusted
from .rules import (
    ANSWER_NAMES,
    ANSWERS,
    ASSIGNMENT,
    CLASSMATE_REPOSITORY,
    COURSE_REGISTRY_VAR,
    DOCKERFILE,
    GREETING,
    NO_DOCKER,
    PASSWORD_VAR,
    REPOSITORY,
    USER_VAR,
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
    """Your namespace in the course registry: your course account
    (``CLOUDLAB_REGISTRY_USER``), else JupyterHub's user, else your login name.

    >>> re.fullmatch(r"[a-z0-9][a-z0-9._-]*", student()) is not None
    True
    """
    raw = (os.environ.get(USER_VAR) or os.environ.get("JUPYTERHUB_USER")
           or os.environ.get("NB_USER") or "")
    if not raw:
        with contextlib.suppress(Exception):
            raw = getpass.getuser()
    name = re.sub(r"[^a-z0-9._-]+", "-", (raw or "student").lower()).strip("._-")
    return name or "student"


def target(cfg=None) -> str:
    """Where part B pushes: Docker Hub (``<user>/hello-cli:1.0``) when the course is
    configured for it (``CLOUDLAB_REGISTRY=dockerhub`` and a login), else the course
    registry (``<course registry>/<you>/hello-cli:1.0``)."""
    from ...config import settings

    cfg = cfg or settings()
    if cfg.registry == "dockerhub" and not grading():
        from ... import registry

        creds = registry.dockerhub_credentials(cfg=cfg)
        if creds is not None:
            return f"{creds.username}/{REPOSITORY}:{VERSION}"
    return f"{course_registry(cfg)}/{student()}/{REPOSITORY}:{VERSION}"


def course_registry(cfg=None) -> str:
    """The course registry: ``CLOUDLAB_COURSE_REGISTRY`` (a shared one, reachable from
    laptops) or the one on this machine (a JupyterHub course host, or a laptop's own)."""
    from ...config import settings

    return os.environ.get(COURSE_REGISTRY_VAR) or (cfg or settings()).registry_host


def push_auth(cfg=None):
    """Credentials for pushing to :func:`target`: Docker Hub's, or your course registry
    account (``CLOUDLAB_REGISTRY_USER`` and ``CLOUDLAB_REGISTRY_PASSWORD``); None when the
    registry has no accounts (your own)."""
    from ... import registry
    from ...config import settings

    cfg = cfg or settings()
    if grading():
        return None
    if cfg.registry == "dockerhub":
        return registry.dockerhub_credentials(cfg=cfg)
    password = os.environ.get(PASSWORD_VAR, "")
    if password:  # the course registry's account the instructor gave you
        return registry.Credentials(student(), password, course_registry(cfg))
    return None


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
    """The classmate's image in the course registry (the instructor published it)."""
    return f"{course_registry(cfg)}/{CLASSMATE_REPOSITORY}:{VERSION}"


def setup(cfg=None) -> dict[str, Any]:
    """What the exercise's first cell needs: where to push, the classmate's image, Docker.

    Without Docker (Binder, or the grader's sandbox) the parts that need Docker say so
    when they run. The course registry is not started here: the course runs it (on the
    course host, or at ``CLOUDLAB_COURSE_REGISTRY``); on a laptop without it, part B can
    still push to a registry of your own and part D says it needs the course's.
    """
    from ... import registry
    from ...config import settings

    cfg = cfg or settings()
    info = {"docker": docker_here(), "target": target(cfg), "classmate": classmate_ref(cfg),
            "reason": ""}
    if grading():
        info["reason"] = "graded in a sandbox: the grader builds and runs your files itself"
    elif not info["docker"]:
        info["reason"] = NO_DOCKER
    else:
        host = course_registry(cfg)
        try:
            registry.api_get("/v2/", registry=host, cfg=cfg)
        except registry.RegistryError as exc:
            if "401" not in str(exc):  # 401: up, with accounts (you log in to push)
                info["reason"] = (f"the course registry at {host} does not answer: ask "
                                  f"your instructor, or set {COURSE_REGISTRY_VAR}")
        info["reason"] = info["reason"] or push_reason(cfg)
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
