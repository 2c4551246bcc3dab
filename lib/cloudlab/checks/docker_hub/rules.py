"""The pure rules of ``docker-hub``: each takes plain data, returns a result dict.

No Docker, no network (except :func:`pushed`, which asks a registry): the host's hook
(:mod:`.hook`) and the student's visible checks (:mod:`.student_side`) both call these.

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

import json
import os
import re
import tempfile  # noqa: F401 - used by the doctests
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ANSWERS",
    "ANSWER_NAMES",
    "APP",
    "ASSIGNMENT",
    "CLASSMATE_REPOSITORY",
    "COURSE_REGISTRY_VAR",
    "DIGEST",
    "DOCKERFILE",
    "GREETING",
    "HUB_HOSTS",
    "INSTRUCTIONS",
    "KEYS",
    "NO_DOCKER",
    "OFFICIAL_BASE",
    "PASSWORD_VAR",
    "REPOSITORY",
    "REQUIREMENTS",
    "SIZE_BUDGET",
    "STUB",
    "USER_VAR",
    "VERSION",
    "classmate",
    "exec_form",
    "files",
    "final_base",
    "install_first",
    "instructions",
    "lint_clean",
    "load_answers",
    "no_pip_cache",
    "non_root",
    "official_base",
    "pinned",
    "pip_installs",
    "prints_greeting",
    "pushed",
    "recorded",
    "result",
    "scan_filesystem",
    "size_budget",
    "split_ref",
    "stages",
    "syntax_error",
]

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
        "plain_run", "install_first", "non_root", "pinned", "no_pip_cache", "size_budget",
        "pushed", "classmate")


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
    from ... import lint

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
        for args in pip_installs(text):
            skip = False
            for word in args:
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


_PIP = re.compile(r"pip(\d+(\.\d+)*)?")  # pip, pip3, pip3.11 (any folder: a venv's too)
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
_PIP_GLOBAL_WITH_VALUE = {"--cache-dir", "--log", "--proxy", "--retries", "--timeout",
                          "--exists-action", "--trusted-host", "--cert", "--client-cert",
                          "--root-user-action", "--python", "--use-feature",
                          "--use-deprecated", "--log-file"}
_WRAPPERS = {"sudo", "env", "exec", "time", "nice", "command"}


def _commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN instruction's text, each as a list of words."""
    body = run.split(None, 1)[1] if len(run.split(None, 1)) > 1 else ""
    while body.startswith("--"):  # RUN --mount=... --network=... flags
        body = body.split(None, 1)[1] if len(body.split(None, 1)) > 1 else ""
    if body.lstrip().startswith("["):
        try:
            return [[str(w) for w in json.loads(body)]]
        except ValueError:
            pass
    return [[w.strip("'\"") for w in segment.split()]
            for segment in re.split(r"&&|\|\||;|\||\n|\(|\)", body) if segment.strip()]


def pip_installs(run: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in a RUN instruction, however pip is called.

    >>> pip_installs("RUN /opt/venv/bin/pip install --no-cache-dir -r requirements.txt")
    [['--no-cache-dir', '-r', 'requirements.txt']]
    >>> pip_installs("RUN python3.11 -m pip --no-cache-dir install click==8.1.7 && pip3.11 list")
    [['click==8.1.7']]
    >>> pip_installs('RUN ["/usr/local/bin/pip3", "install", "-r", "requirements.txt"]')
    [['-r', 'requirements.txt']]
    >>> pip_installs("RUN python -m venv /opt/venv && echo pip install")
    []
    """
    found = []
    for words in _commands(run):
        i = 0  # the command word: after VAR=value settings and sudo, env, exec, time
        while i < len(words) and (("=" in words[i] and not words[i].startswith("-"))
                                  or words[i] in _WRAPPERS):
            i += 1
        name = words[i].rsplit("/", 1)[-1] if i < len(words) else ""
        if _PIP.fullmatch(name):
            j = i + 1
        elif _PYTHON.fullmatch(name) and words[i + 1:i + 3] == ["-m", "pip"]:
            j = i + 3
        elif name == "uv" and words[i + 1:i + 2] == ["pip"]:
            j = i + 2
        else:
            continue
        while j < len(words) and words[j].startswith("-"):
            j += 2 if words[j] in _PIP_GLOBAL_WITH_VALUE else 1
        if j < len(words) and words[j] == "install":
            found.append(words[j + 1:])
    return found


def stages(dockerfile: str) -> list[dict[str, Any]]:
    """The build stages: ``name`` (lower case, or None), ``base`` and ``steps``.

    >>> [(s["name"], s["base"], len(s["steps"])) for s in stages(
    ...     "FROM python:3.11-slim AS build\\nRUN x\\nFROM build\\nCOPY a b\\n")]
    [('build', 'python:3.11-slim', 1), (None, 'build', 1)]
    """
    found: list[dict[str, Any]] = []
    for line, keyword, text in instructions(dockerfile):
        if keyword == "FROM":
            words = [w for w in text.split()[1:] if not w.startswith("--")]
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            found.append({"name": name, "base": words[0] if words else "", "steps": []})
        elif found:
            found[-1]["steps"].append((line, keyword, text))
    return found


def _stage_index(found: list[dict[str, Any]], ref: str, before: int) -> int | None:
    ref = ref.lower()
    for k in range(before - 1, -1, -1):
        if found[k]["name"] == ref:
            return k
    return int(ref) if ref.isdigit() and int(ref) < before else None


def _copied_from(text: str) -> str | None:
    return next((w.split("=", 1)[1] for w in text.split() if w.startswith("--from=")), None)


def _lineage(found: list[dict[str, Any]], k: int) -> list[tuple[int, str, str]]:
    """The steps that made stage ``k``'s file system: its parents' (FROM a stage), then its own."""
    parent = _stage_index(found, found[k]["base"], k)
    return (_lineage(found, parent) if parent is not None else []) + found[k]["steps"]


def _final_stages(found: list[dict[str, Any]]) -> list[int]:
    """The stages the final image is made of: the last one and those it builds on or copies."""
    todo, seen = [len(found) - 1], []
    while todo:
        k = todo.pop()
        if k in seen or k < 0:
            continue
        seen.append(k)
        parent = _stage_index(found, found[k]["base"], k)
        todo += [parent] if parent is not None else []
        for _, keyword, text in found[k]["steps"]:
            source = _copied_from(text) if keyword in ("COPY", "ADD") else None
            index = _stage_index(found, source, k) if source else None
            todo += [index] if index is not None else []
    return sorted(seen)


def _copies_app(keyword: str, text: str) -> bool:
    return (keyword in ("COPY", "ADD") and _copied_from(text) is None
            and any(src in ("app.py", ".", "./", "*") or src.endswith("/app.py")
                    for src in _sources(text)))


def install_first(dockerfile: str | None) -> dict[str, Any]:
    """pip installs the requirements before app.py is copied, in every stage of the final
    image that installs them (a multi-stage build may install into a venv in a builder).

    >>> install_first("FROM x\\nCOPY requirements.txt .\\nRUN pip install -r requirements.txt"
    ...               "\\nCOPY app.py .\\n")["passed"]
    True
    >>> install_first("FROM x\\nCOPY . .\\nRUN pip install -r requirements.txt\\n")["message"]
    'app.py is copied (line 2) before pip installs the requirements (line 3)'
    >>> install_first("FROM x AS b\\nRUN python -m venv /v && /v/bin/pip install -r r.txt\\n"
    ...               "FROM x\\nCOPY --from=b /v /v\\nCOPY app.py .\\n")["passed"]
    True
    """
    if not dockerfile:
        return result(False, "there is no Dockerfile")
    found = stages(dockerfile)
    installs = 0
    for k in _final_stages(found):
        copied = None
        for line, keyword, text in _lineage(found, k):
            if copied is None and _copies_app(keyword, text):
                copied = line
            if keyword == "RUN" and pip_installs(text):
                if (line, keyword, text) in found[k]["steps"]:
                    installs += 1
                if copied is not None and copied < line:
                    return result(False, f"app.py is copied (line {copied}) before pip "
                                         f"installs the requirements (line {line})",
                                  hint="COPY requirements.txt and RUN pip install first, COPY "
                                       "app.py after: then a change to app.py reuses the "
                                       "cached install layer")
                break
    if not installs:
        return result(False, "no RUN step of the image installs the requirements with pip",
                      hint="COPY requirements.txt, then RUN pip install --no-cache-dir -r "
                           "requirements.txt (pip3, python -m pip or a venv's pip are fine)")
    return result(True, "the requirements are installed before app.py is copied")


def _sources(text: str) -> list[str]:
    words = text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
    if words.lstrip().startswith("["):
        try:
            items = [str(x) for x in json.loads(words)]
        except ValueError:
            return []
    else:
        items = [w for w in words.split() if not w.startswith("--")]
    return items[:-1]


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


def prints_greeting(command: str, ok: bool, output: str, exit_code: int | None = None,
                    timed_out: bool = False, hint: str | None = None) -> dict[str, Any]:
    """``command`` (run by the grader) printed :data:`GREETING` on a line of its own.

    >>> prints_greeting("docker run IMAGE", True, "Hello World!\\n")["passed"]
    True
    >>> prints_greeting("docker run IMAGE", False, "Usage: app.py", 2)["message"]
    '`docker run IMAGE` should print Hello World! (exit code 2)'
    """
    said = ok and GREETING in [line.strip() for line in output.splitlines()]
    why = "" if said or ok else " (it timed out)" if timed_out else f" (exit code {exit_code})"
    return result(said, f"`{command}` prints {GREETING}" if said
                  else f"`{command}` should print {GREETING}{why}",
                  expected=GREETING, found=output.strip()[-300:], hint=None if said else hint)


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
    """(registry host, repository, tag or digest) of an image reference ('' host = Docker
    Hub); refused unless the reference follows the distribution grammar exactly.

    >>> split_ref("127.0.0.1:5000/ada/hello-cli:1.0")
    ('127.0.0.1:5000', 'ada/hello-cli', '1.0')
    >>> split_ref("ada/hello-cli")
    ('', 'ada/hello-cli', 'latest')
    >>> split_ref("127.0.0.1:5000/ada/../classmate/hello-cli:1.0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cloudlab.imageref.ReferenceError: ... its path component '..' is not allowed ...
    """
    from ... import imageref

    parsed = imageref.parse(ref)
    return parsed.domain, parsed.path, parsed.version


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
    from ... import imageref

    try:  # every check below reads the parts of the canonical reference, nothing looser
        host, repo, tag = split_ref(ref.strip())
    except imageref.ReferenceError as exc:
        return result(False, f"IMAGE_REF is refused: {exc}", found=ref,
                      hint="record the reference exactly as you pushed it, e.g. "
                           f"'127.0.0.1:5000/<you>/{REPOSITORY}:{VERSION}'")
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
    host, repo, tag = (first["data"][k] for k in ("host", "repository", "tag"))
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
            from ... import registry

            served = registry.manifest_digest(repo, tag, registry=host if host == shared
                                              else course_registry, auth=auth)
        elif host in HUB_HOSTS:
            from ... import registry

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


