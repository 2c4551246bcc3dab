"""Checks of the ``docker-hub`` exercise: a hello-world CLI container, pushed and pulled.

The exercise (``solutions/docker-hub``) has four parts: A) write ``app.py``,
``requirements.txt`` and a ``Dockerfile`` FROM the official ``python:3.11-slim``; B) build,
tag and push the image to the course registry; C) record the reference and digest you
pushed; D) pull a classmate's image and record what it prints.

Two ways of checking, one set of rules:

* on your machine, ``cl.check("q1")`` ... ``cl.check("q5")`` lint, build and run your files
  with your own Docker engine and look at the answers you saved;
* when your work is graded, the grader's **pre-grade hook** (:func:`docker_side`, below)
  builds the Dockerfile you submitted in a container of its own, lints it, runs ``hello``,
  inspects the image (exec-form ENTRYPOINT/CMD, a non-root USER, no pip cache, the size)
  and asks the registry for the digest of the tag you recorded. The notebook itself runs
  in a sandbox without Docker; its test cells read those results with
  ``cl.checks.trusted(key)``.

Your answers to parts C and D travel in ``answers.json`` (written by
:func:`save_answers`), next to the Dockerfile, so the grader can read them without
running anything of yours.

The rule functions are plain and can be tried without Docker:

>>> pinned("click==8.1.7\\n")["passed"], pinned("click\\n")["passed"]
(True, False)
>>> exec_form(["python", "app.py"], ["hello"])["passed"]
True
>>> exec_form(["python", "app.py"], ["/bin/sh", "-c", "hello"])["message"]
'CMD uses the shell form: /bin/sh -c hello'
>>> final_base("FROM python:3.11-slim AS build\\nFROM build\\n")
'python:3.11-slim'
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..grading.hooks import HookContext, Results, pre_grade
from . import CheckFailed, expect, register, trusted

ASSIGNMENT = "docker-hub"
APP, REQUIREMENTS, DOCKERFILE, ANSWERS = "app.py", "requirements.txt", "Dockerfile", "answers.json"
OFFICIAL_BASE = "python:3.11-slim"
GREETING = "Hello World!"
REPOSITORY = "hello-cli"
VERSION = "1.0"
SIZE_BUDGET = 25_000_000  # bytes an image may add on top of its base
CLASSMATE_REPOSITORY = "classmate/hello-cli"  # its message is the course's secret
COURSE_REGISTRY_VAR = "CLOUDLAB_COURSE_REGISTRY"  # host:port of a shared course registry
USER_VAR, PASSWORD_VAR = "CLOUDLAB_REGISTRY_USER", "CLOUDLAB_REGISTRY_PASSWORD"  # its account
ANSWER_NAMES = ("IMAGE_REF", "IMAGE_DIGEST", "CLASSMATE_SAYS")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
STUB = "raise NotImplementedError()"
NO_DOCKER = ("skipped: this cell needs a Docker engine, and there is none here (on Binder, or "
             "while the grader runs your notebook). With Docker, run it on your machine.")
HUB_HOSTS = ("", "docker.io", "index.docker.io", "registry-1.docker.io")

# The hook's keys, in the order the notebook's test cells use them.
KEYS = ("files", "official_base", "lint_clean", "image_builds", "says_hello", "exec_form",
        "non_root", "pinned", "no_pip_cache", "size_budget", "pushed", "classmate")


def result(passed: bool, message: str, *, expected: Any = None, found: Any = None,
           hint: str | None = None, data: Any = None) -> dict[str, Any]:
    """One check's outcome in the form ``cl.checks.trusted`` reads."""
    out: dict[str, Any] = {"passed": bool(passed), "message": message}
    for key, value in (("expected", expected), ("found", found), ("hint", hint),
                       ("data", data)):
        if value is not None:
            out[key] = value
    return out


# ------------------------------------------------------------------------- the rules
def _read(folder: Path, name: str) -> str | None:
    path = Path(folder) / name
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def files(folder: str | Path) -> dict[str, Any]:
    """Part A's three files exist, are filled in, and ``app.py`` is valid Python.

    >>> import tempfile
    >>> files(tempfile.mkdtemp())["message"]
    'app.py, requirements.txt and Dockerfile are missing'
    """
    folder = Path(folder)
    texts = {name: _read(folder, name) for name in (APP, REQUIREMENTS, DOCKERFILE)}
    missing = [n for n, t in texts.items() if t is None]
    if missing:
        names = ", ".join(missing[:-1]) + (" and " if len(missing) > 1 else "") + missing[-1]
        return result(False, f"{names} {'is' if len(missing) == 1 else 'are'} missing",
                      hint="run the cells of part A: each %%writefile cell writes one file")
    stubs = [n for n, t in texts.items() if STUB in t or not t.strip()]
    if stubs:
        return result(False, f"{', '.join(stubs)} still hold the placeholder (or nothing)",
                      hint="replace `# YOUR CODE HERE` / `raise NotImplementedError()` in "
                           "those cells with your own content, then run them")
    try:
        compile(texts[APP], APP, "exec")
    except SyntaxError as exc:
        return result(False, f"app.py is not valid Python: {exc.msg} (line {exc.lineno})",
                      hint="fix the line shown; `python app.py hello` should run")
    if "click" not in texts[APP]:
        return result(False, "app.py should use click for its command line",
                      hint="`import click`, a `@click.group()` and a `hello` command")
    return result(True, "app.py, requirements.txt and Dockerfile are written")


def instructions(dockerfile: str) -> list[tuple[int, str, str]]:
    """(line, KEYWORD, text) of each instruction, continuation lines joined.

    >>> instructions("FROM x\\nRUN a \\\\\\n  b\\n")
    [(1, 'FROM', 'FROM x'), (2, 'RUN', 'RUN a b')]
    """
    found: list[tuple[int, str, str]] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(dockerfile.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not parts):
            continue
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        text = " ".join(p for p in parts if p)
        parts = []
        found.append((start, text.split(None, 1)[0].upper(), text))
    if parts:
        text = " ".join(p for p in parts if p)
        found.append((start, text.split(None, 1)[0].upper(), text))
    return found


def final_base(dockerfile: str) -> str | None:
    """The external image the final stage is built on (stage names followed back)."""
    stages: dict[str, str] = {}
    current: str | None = None
    for _, keyword, text in instructions(dockerfile):
        if keyword != "FROM":
            continue
        words = [w for w in text.split()[1:] if not w.startswith("--")]
        if not words:
            continue
        image = stages.get(words[0].lower(), words[0])
        if len(words) >= 3 and words[1].lower() == "as":
            stages[words[2].lower()] = image
        current = image
    return current


def _normal_image(name: str) -> str:
    for prefix in ("docker.io/library/", "index.docker.io/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.split("@", 1)[0]


def official_base(dockerfile: str | None) -> dict[str, Any]:
    """The final image is built FROM the official ``python:3.11-slim``.

    >>> [official_base(f"FROM {b}\\n")["passed"] for b in ("python:3.11-slim", "ubuntu")]
    [True, False]
    """
    if dockerfile is None:
        return result(False, "there is no Dockerfile")
    base = final_base(dockerfile)
    if base is None:
        return result(False, "the Dockerfile has no FROM line", expected=f"FROM {OFFICIAL_BASE}",
                      hint="a Dockerfile starts with the image it builds on")
    ok = _normal_image(base) == OFFICIAL_BASE
    return result(ok, "the image is built on the official Python base" if ok else
                  f"the image should be built FROM {OFFICIAL_BASE}",
                  expected=OFFICIAL_BASE, found=base,
                  hint=None if ok else "the official slim image has Python and pip and "
                                       "little else: small and maintained")


def lint_clean(dockerfile: str | Path | None) -> dict[str, Any]:
    """hadolint finds nothing at level ``error`` (warnings are advice, not failures)."""
    from .. import lint

    if dockerfile is None:
        return result(False, "there is no Dockerfile to lint")
    findings = lint.lint(dockerfile if isinstance(dockerfile, Path) or "\n" in dockerfile
                         else dockerfile + "\n")
    errors = findings[findings["level"] == "error"]
    if lint.passes(findings, "error"):
        return result(True, f"hadolint: no errors ({len(findings)} warning(s) or notes)")
    shown = "; ".join(f"line {r.line} {r.code}: {r.message}" for r in errors.itertuples())
    return result(False, f"hadolint reports {len(errors)} error(s): {shown}"[:600],
                  hint="each rule is explained at https://github.com/hadolint/hadolint/wiki/"
                       "<code>; `cl.lint.lint('Dockerfile')` shows them as a table")


_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?\s*===?\s*[A-Za-z0-9][\w.+!-]*"
                  r"\s*(;.*)?(\s+--hash[= ]\S+)*\s*$")
_OPTION_WITH_VALUE = {"-r", "--requirement", "-c", "--constraint", "-t", "--target", "-i",
                      "--index-url", "--extra-index-url", "-f", "--find-links", "--prefix",
                      "--root", "--cache-dir", "--platform", "--python-version", "-e",
                      "--editable", "--trusted-host", "--progress-bar", "--root-user-action",
                      "--no-binary", "--only-binary", "--src", "--log"}


def pinned(requirements: str | None, dockerfile: str | None = None) -> dict[str, Any]:
    """Every dependency has an exact version (``name==1.2.3``), in requirements.txt and in
    any ``pip install NAME`` of the Dockerfile."""
    if requirements is None:
        return result(False, "there is no requirements.txt")
    loose: list[str] = []
    names = 0
    for raw in requirements.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            loose.append(line)
            continue
        names += 1
        if not _PIN.match(line):
            loose.append(line)
    for _, keyword, text in instructions(dockerfile or ""):
        if keyword != "RUN":
            continue
        for segment in re.split(r"&&|\|\||;|\|", text):
            words = segment.split()
            if "install" not in words or not any(w.endswith(("pip", "pip3")) or w == "pip"
                                                 for w in words[:words.index("install")]):
                continue
            skip = False
            for word in words[words.index("install") + 1:]:
                if skip:
                    skip = False
                elif word in _OPTION_WITH_VALUE:
                    skip = True
                elif word.startswith("-") or "/" in word or word in (".", ".."):
                    continue
                elif not _PIN.match(word.strip("'\"")):
                    loose.append(f"Dockerfile: pip install {word}")
    if loose:
        return result(False, "every dependency should be pinned to an exact version",
                      expected="name==version (e.g. click==8.1.7)", found=loose[:5],
                      hint="an unpinned requirement installs whatever is newest on the day "
                           "of the build: the same Dockerfile gives different images")
    if names == 0:
        return result(False, "requirements.txt lists no packages",
                      hint="the app imports click: list it, with its version")
    return result(True, f"all {names} requirement(s) are pinned")


def exec_form(entrypoint: Sequence[str] | None, cmd: Sequence[str] | None) -> dict[str, Any]:
    """ENTRYPOINT and CMD in the exec (JSON) form, not run through ``/bin/sh -c``."""
    for name, value in (("ENTRYPOINT", entrypoint), ("CMD", cmd)):
        words = list(value or [])
        if len(words) >= 2 and words[0] in ("/bin/sh", "sh", "/bin/bash", "bash") \
                and words[1] == "-c":
            return result(False, f"{name} uses the shell form: {' '.join(words)}",
                          expected=f'{name} ["python", "app.py"]' if name == "ENTRYPOINT"
                          else 'CMD ["hello"]',
                          hint="write it as a JSON list: no shell as PID 1, so signals reach "
                               "your app and `docker run IMAGE ARG` replaces CMD cleanly")
    if not entrypoint and not cmd:
        return result(False, "the image sets neither ENTRYPOINT nor CMD")
    return result(True, "ENTRYPOINT and CMD use the exec form",
                  data={"entrypoint": list(entrypoint or []), "cmd": list(cmd or [])})


def non_root(user: str | None, uid: int | None = None) -> dict[str, Any]:
    """The image's USER is not root (by name or, when known, by uid).

    >>> non_root("10001")["passed"], non_root("")["passed"], non_root("app", uid=0)["passed"]
    (True, False, False)
    """
    name = (user or "").split(":", 1)[0].strip()
    if name in ("", "root", "0") or uid == 0:
        return result(False, "the container runs as root",
                      found=user or "(no USER: root)",
                      hint="create a user (`RUN useradd --create-home --no-log-init --uid "
                           "10001 app`) and switch to it with `USER 10001` before ENTRYPOINT")
    return result(True, f"the container runs as {user}", data={"user": user, "uid": uid})


def size_budget(size: int, base_size: int, base: str = OFFICIAL_BASE) -> dict[str, Any]:
    """The image adds at most :data:`SIZE_BUDGET` bytes to its base.

    >>> size_budget(150_000_000, 145_000_000)["passed"]
    True
    """
    extra = size - base_size
    text = (f"the image is {size / 1e6:.1f} MB: {extra / 1e6:.1f} MB on top of {base} "
            f"({base_size / 1e6:.1f} MB); the budget is {SIZE_BUDGET / 1e6:g} MB")
    ok = extra <= SIZE_BUDGET
    return result(ok, text, data={"size": size, "base_size": base_size},
                  hint=None if ok else "look at `docker history`: which layer is big? Leave "
                                       "out caches, build tools and files the app never uses")


def load_answers(folder: str | Path = ".") -> dict[str, str]:
    """The answers saved in ``answers.json`` ({} when there is none or it is unreadable)."""
    text = _read(Path(folder), ANSWERS)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if k in ANSWER_NAMES and isinstance(v, str)} \
        if isinstance(data, dict) else {}


def split_ref(ref: str) -> tuple[str, str, str]:
    """(registry host, repository, tag) of an image reference ('' host = Docker Hub).

    >>> split_ref("127.0.0.1:5000/ada/hello-cli:1.0")
    ('127.0.0.1:5000', 'ada/hello-cli', '1.0')
    >>> split_ref("ada/hello-cli")
    ('', 'ada/hello-cli', 'latest')
    """
    ref = ref.split("@", 1)[0]
    first, sep, rest = ref.partition("/")
    host = first if sep and ("." in first or ":" in first or first == "localhost") else ""
    path = rest if host else ref
    head, _, last = path.rpartition("/")
    if ":" in last:
        last, tag = last.rsplit(":", 1)
    else:
        tag = "latest"
    return host, (f"{head}/{last}" if head else last), tag


def recorded(answers: Mapping[str, Any]) -> dict[str, Any]:
    """IMAGE_REF and IMAGE_DIGEST are there and look like a reference and a digest."""
    ref, digest = answers.get("IMAGE_REF"), answers.get("IMAGE_DIGEST")
    if not isinstance(ref, str) or not ref.strip():
        return result(False, "IMAGE_REF is not recorded",
                      hint="set IMAGE_REF to the reference you pushed, e.g. "
                           f"'127.0.0.1:5000/<you>/{REPOSITORY}:{VERSION}', and save it")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest.strip()):
        return result(False, "IMAGE_DIGEST should be the digest the push reported",
                      expected="sha256: followed by 64 hex digits", found=digest,
                      hint="cl.registry.push(...) returns it")
    host, repo, tag = split_ref(ref.strip())
    if repo == CLASSMATE_REPOSITORY:
        return result(False, "IMAGE_REF is your classmate's image, not yours", found=ref)
    if REPOSITORY not in repo.rsplit("/", 1)[-1]:
        return result(False, f"the repository of IMAGE_REF should be named {REPOSITORY}",
                      found=repo, expected=f"<you>/{REPOSITORY}")
    return result(True, "the image reference and digest are recorded",
                  data={"host": host, "repository": repo, "tag": tag})


def pushed(answers: Mapping[str, Any], course_registry: str,
           namespaces: Collection[str] | None = None, auth=None) -> dict[str, Any]:
    """The registry serves IMAGE_REF, in the student's own namespace (one of
    ``namespaces`` when given), with the digest recorded in IMAGE_DIGEST. The course
    registry is asked with ``auth`` (the instructor's login when it has accounts).

    >>> pushed({"IMAGE_REF": "127.0.0.1:5000/bob/hello-cli:1.0",
    ...         "IMAGE_DIGEST": "sha256:" + "0" * 64}, "127.0.0.1:5000", {"ada"})["message"]
    "IMAGE_REF is in bob's namespace: push your own image to ada/hello-cli"
    """
    first = recorded(answers)
    if not first["passed"]:
        return first
    ref, digest = answers["IMAGE_REF"].strip(), answers["IMAGE_DIGEST"].strip()
    host, repo, tag = split_ref(ref)
    namespace = repo.split("/", 1)[0] if "/" in repo else ""
    if namespaces is not None and namespace not in namespaces:
        mine = f"{sorted(namespaces)[0]}/{REPOSITORY}"
        where = f"in {namespace}'s namespace" if namespace else "in no namespace"
        return result(False, f"IMAGE_REF is {where}: push your own image to {mine}",
                      expected=mine, found=ref)
    shared = os.environ.get(COURSE_REGISTRY_VAR, "")
    course_hosts = {course_registry, course_registry.replace("127.0.0.1", "localhost"), shared}
    try:
        if host and host in course_hosts:
            from .. import registry

            served = registry.manifest_digest(repo, tag, registry=host if host == shared
                                              else course_registry, auth=auth)
        elif host in HUB_HOSTS:
            from .. import registry

            served = registry.remote_digest(ref)
        else:
            return result(False, f"IMAGE_REF points at {host}, which is not the course "
                                 "registry", expected=f"{course_registry}/... or Docker Hub",
                          found=ref)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "404" in text or "no such" in text:
            return result(False, f"the registry has no image {ref}", found=text[:300],
                          hint="push it (part B): cl.registry.push(cl.registry.tag(...))")
        return result(False, f"the grader could not ask the registry about {ref}: "
                             f"{text[:300]}")
    ok = served == digest
    return result(ok, f"{ref} is in the registry with the digest you recorded" if ok else
                  f"the registry serves {ref} with another digest than IMAGE_DIGEST",
                  expected=served, found=digest,
                  hint=None if ok else "record the digest of your last push (each rebuild "
                                       "and push of a changed image gets a new digest)")


def classmate(answers: Mapping[str, Any], expected: str | None) -> dict[str, Any]:
    """CLASSMATE_SAYS is what the classmate's image prints for ``hello`` (``expected``: the
    course's secret message, which only the grader holds)."""
    said = answers.get("CLASSMATE_SAYS")
    if not isinstance(said, str) or not said.strip():
        return result(False, "CLASSMATE_SAYS is not recorded",
                      hint="run your classmate's image with `hello` and save what it prints")
    if not expected:
        return result(False, "the grader has no classmate message for this course (the "
                             "instructor publishes it: cloudlab grade release)")
    ok = said.strip() == expected
    return result(ok, "that is what your classmate's container prints" if ok else
                  "CLASSMATE_SAYS is not what your classmate's container prints for `hello`",
                  found=said.strip()[:200],
                  hint=None if ok else "pull the image, run it with the argument hello and "
                                       "copy its output exactly")


# ------------------------------------------------------------- looking inside an image
_PIP_CACHE = re.compile(r"^(.*?/)?\.cache/pip/")


def scan_filesystem(members, read, user: str = "") -> dict[str, Any]:
    """pip caches and the uid of ``user`` in an image's files, without running the image.

    ``members`` are tar members of the exported file system, ``read(member)`` returns a
    member's bytes.

    >>> import io, tarfile
    >>> def member(name, data=b""):
    ...     info = tarfile.TarInfo(name)
    ...     info.size = len(data)
    ...     return info, data
    >>> files = dict([member("etc/passwd", b"root:x:0:0::/root:/bin/sh\\napp:x:10001:10001::/:\\n"),
    ...               member("root/.cache/pip/wheels/ab/click.whl", b"x" * 10)])
    >>> found = scan_filesystem(list(files), files.get, "app")
    >>> found["uid"], found["pip_cache"]
    (10001, {'/root/.cache/pip': [1, 10]})
    """
    caches: dict[str, list[int]] = {}
    passwd = b""
    for m in members:
        name = m.name.removeprefix("./").lstrip("/")
        if name == "etc/passwd" and m.isfile() and m.size < 1_000_000:
            passwd = read(m) or b""
        hit = _PIP_CACHE.match(name)
        if hit and m.isfile():
            top = "/" + (hit.group(1) or "") + ".cache/pip"
            entry = caches.setdefault(top, [0, 0])
            entry[0] += 1
            entry[1] += int(m.size)
    name, uid = (user or "").split(":")[0], None
    if name in ("", "root"):
        uid = 0
    elif name.isdigit():
        uid = int(name)
    else:
        for line in passwd.decode(errors="replace").splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[0] == name and parts[2].isdigit():
                uid = int(parts[2])
    return {"pip_cache": caches, "uid": uid}


class _Chunks:
    """A file-like view of the engine's export stream (for tarfile's stream mode)."""

    def __init__(self, chunks, deadline: float) -> None:
        self.chunks, self.buf, self.deadline = chunks, b"", deadline

    def read(self, n: int = -1) -> bytes:
        import time

        while n < 0 or len(self.buf) < n:
            if time.monotonic() > self.deadline:
                raise TimeoutError("reading the image's files took too long")
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _scan(ctx: HookContext, tag: str, user: str, timeout: float = 60) -> dict[str, Any]:
    """Read the image's file system (a created, never started container, exported)."""
    import tarfile
    import time

    from .. import engine

    api = engine.client(timeout=int(timeout) + 30)
    box = api.containers.create(tag, entrypoint=["/bin/true"], command=[], labels=ctx.labels,
                                network_mode="none", detach=True)
    ctx.created_containers.append(box.id)
    stream = _Chunks(iter(box.export(chunk_size=1 << 20)), time.monotonic() + timeout)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        def read(member):
            got = tar.extractfile(member)
            return got.read() if got is not None else b""

        return scan_filesystem(tar, read, user)


def no_pip_cache(caches: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """No pip download cache left in the image (``pip install --no-cache-dir``)."""
    if caches:
        size = sum(int(v[1]) for v in caches.values())
        return result(False, f"pip's cache is left in the image ({size / 1e3:.0f} kB in "
                             f"{', '.join(sorted(caches))})",
                      hint="`pip install --no-cache-dir -r requirements.txt`: the cache "
                           "only helps the next pip run, and there is none in an image")
    return result(True, "no pip cache in the image")


INSTRUCTIONS = ("FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
                "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
                "HEALTHCHECK", "SHELL")


def syntax_error(dockerfile: str) -> str | None:
    """What the engine's Dockerfile parser would reject, said the way it says it.

    >>> syntax_error("FROM python:3.11-slim\\nRUNN pip install click\\n")
    'dockerfile parse error line 2: unknown instruction: RUNN'
    >>> syntax_error("FROM python:3.11-slim\\nCOPY app.py\\n") is not None
    True
    """
    for line, keyword, text in instructions(dockerfile):
        args = text.split()[1:]
        where = f"dockerfile parse error line {line}"
        if keyword not in INSTRUCTIONS:
            return f"{where}: unknown instruction: {keyword}"
        if not args:
            return f"{where}: {keyword} requires at least one argument"
        plain = [a for a in args if not a.startswith("--")]
        if keyword in ("COPY", "ADD") and not text.split(None, 1)[1].lstrip().startswith("[") \
                and len(plain) < 2:
            return f"{where}: {keyword} requires at least two arguments (a source and a " \
                   "destination)"
    return None


def _not_built(why: str) -> dict[str, Any]:
    return result(False, f"not checked: the image did not build ({why[:200]})",
                  hint="make the image build first (see the build test)")


def _safe(fn, *args) -> dict[str, Any]:
    try:
        return fn(*args)
    except Exception as exc:
        return result(False, f"the grader could not run this check: {type(exc).__name__}: "
                             f"{str(exc)[:300]}")


@pre_grade(ASSIGNMENT)
def docker_side(ctx: HookContext) -> Results:
    """The grader's trusted checks: build, lint, run and inspect the submitted Dockerfile.

    Runs on the grading host before the notebook, never inside the sandbox. The build is
    confined (:func:`cloudlab.grading.hooks.build_image`: its only way out is the package
    index, for pip; CPU, memory, processes, time and disk are limited); ``hello`` runs
    without a network, locked down; the image's files are read from an export of a
    container that is never started (nothing the student wrote runs to
    answer the pip-cache and user questions). Returns a result per key of :data:`KEYS`.
    """
    from .. import images
    from ..config import settings
    from ..grading import Course, hooks, roster
    from ..grading import classmate as classmate_secret

    course = Course(ctx.course) if ctx.course else None
    folder = Path(ctx.files)
    dockerfile = _read(folder, DOCKERFILE)
    answers = load_answers(folder)
    out: Results = {
        "files": _safe(files, folder),
        "official_base": _safe(official_base, dockerfile),
        "lint_clean": _safe(lint_clean, dockerfile),
        "pinned": _safe(pinned, _read(folder, REQUIREMENTS), dockerfile),
        "pushed": _safe(pushed, answers, settings().registry_host,
                        roster.namespaces(course, ctx.student), _grader_login(course)),
        "classmate": _safe(classmate, answers,
                           classmate_secret.message(course) if course else None),
    }
    broken = syntax_error(dockerfile) if dockerfile is not None else None
    if broken:  # the engine would refuse it before the first step: say why, build nothing
        built = hooks.Built(False, "", f"docker build failed: {broken}")
    else:
        built = hooks.build_image(ctx, DOCKERFILE, network="proxy",
                                  timeout=max(30.0, min(ctx.timeout - 60, 600)))
        if not built.ok and "Step 1/" not in built.log and "APIError" in built.message:
            built.message += " (the engine rejected the Dockerfile before its first step; " \
                             "hadolint's result above points at the line)"
    out["image_builds"] = result(built.ok, built.message,
                                 found=built.log[-600:] if not built.ok and built.log else None)
    later = ("says_hello", "exec_form", "non_root", "no_pip_cache", "size_budget")
    if not built.ok:
        out.update({key: _not_built(built.message) for key in later})
        return out
    ran = hooks.run_image(ctx, built.tag, ["hello"], timeout=30)
    lines = [line.strip() for line in ran.output.splitlines()]
    out["says_hello"] = result(
        ran.ok and GREETING in lines,
        f"`docker run IMAGE hello` prints {GREETING}" if ran.ok and GREETING in lines
        else f"`docker run IMAGE hello` should print {GREETING}"
        + (" (it timed out)" if ran.timed_out else f" (exit code {ran.exit_code})"
           if not ran.ok else ""),
        expected=GREETING, found=ran.output.strip()[-300:],
        hint=None if ran.ok and GREETING in lines else
        'ENTRYPOINT ["python", "app.py"] makes `hello` the argument of your CLI')
    try:
        from .. import engine

        config = engine.client(timeout=60).api.inspect_image(built.tag)
    except Exception as exc:
        out.update({k: result(False, f"the grader could not inspect the image: {exc}"[:400])
                    for k in later[1:]})
        return out
    conf = config.get("Config") or {}
    out["exec_form"] = _safe(exec_form, conf.get("Entrypoint"), conf.get("Cmd"))
    try:
        scan = _scan(ctx, built.tag, conf.get("User") or "")
        out["non_root"] = non_root(conf.get("User"), scan.get("uid"))
        out["no_pip_cache"] = no_pip_cache(scan.get("pip_cache") or {})
    except Exception as exc:
        out["non_root"] = _safe(non_root, conf.get("User"))
        out["no_pip_cache"] = result(False, f"the grader could not look inside the image: "
                                            f"{str(exc)[:300]}")
    base = final_base(dockerfile or "") or OFFICIAL_BASE
    try:
        base_size = images.size(base)
    except Exception:
        base_size = images.size(settings().base_image)
        base = settings().base_image
    out["size_budget"] = _safe(size_budget, int(config.get("Size") or 0), base_size, base)
    return out


def _grader_login(course):
    """The instructor's login to the course registry (None when it has no accounts)."""
    from ..grading import roster

    if course is None or not (roster.folder(course) / "credentials.json").exists():
        return None
    data = json.loads((roster.folder(course) / "credentials.json").read_text())
    boss = next((u for u, e in data.items() if e.get("role") == "instructor"), None)
    return roster.credentials(course, boss) if boss else None


# ------------------------------------------------------- on the student's own machine
def grading() -> bool:
    """True while the grader runs the notebook (in its sandbox, without Docker)."""
    from . import GRADING_ASSIGNMENT_ENV

    return bool(os.environ.get(GRADING_ASSIGNMENT_ENV))


def docker_here() -> bool:
    """Whether this notebook can use a Docker engine (never while it is being graded)."""
    if grading():
        return False
    from .. import engine

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
    configured for it (``CLOUDLAB_REGISTRY=dockerhub`` and a login), else the local course
    registry (``127.0.0.1:5000/<you>/hello-cli:1.0``)."""
    from ..config import settings

    cfg = cfg or settings()
    if cfg.registry == "dockerhub" and not grading():
        from .. import registry

        creds = registry.dockerhub_credentials(cfg=cfg)
        if creds is not None:
            return f"{creds.username}/{REPOSITORY}:{VERSION}"
    return f"{course_registry(cfg)}/{student()}/{REPOSITORY}:{VERSION}"


def course_registry(cfg=None) -> str:
    """The course registry: ``CLOUDLAB_COURSE_REGISTRY`` (a shared one, reachable from
    laptops) or the one on this machine (a JupyterHub course host, or a laptop's own)."""
    from ..config import settings

    return os.environ.get(COURSE_REGISTRY_VAR) or (cfg or settings()).registry_host


def push_auth(cfg=None):
    """Credentials for pushing to :func:`target`: Docker Hub's, or your course registry
    account (``CLOUDLAB_REGISTRY_USER`` and ``CLOUDLAB_REGISTRY_PASSWORD``); None when the
    registry has no accounts (your own)."""
    from .. import registry
    from ..config import settings

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
    from ..config import settings

    cfg = cfg or settings()
    if not docker_here():
        return NO_DOCKER
    if cfg.registry == "dockerhub":
        from .. import registry

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
    from .. import registry
    from ..config import settings

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
    from .. import docker as cdocker

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
    from .. import docker as cdocker
    from ..errors import CommandError

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
