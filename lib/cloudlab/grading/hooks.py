"""Pre-grade hooks: trusted checks that need Docker, run by the grader, never by students.

The sandbox never sees the Docker socket. When an exercise needs to build and run what a
student wrote (the ``docker-hub`` Dockerfile), its checker module registers a hook; the
grader runs it on the host BEFORE the notebook, in containers of their own (no network by
default, memory/CPU/pids limits, a time limit, labelled for the sweep, removed afterwards),
and hands the results into the sandbox as a read-only JSON file, where test cells show them
as feedback (``cl.checks.trusted("key")``). The points come from the assignment's trusted
graders (``solutions/<name>/grader.py``), which read the same results as plain data
(``cloudlab.grading.trusted.passed(sub, "key")``): nothing in the notebook can fake them.

>>> from cloudlab.grading.hooks import pre_grade, build_image, run_image
>>> @pre_grade("docker-hub")                               # doctest: +SKIP
... def dockerfile(ctx):
...     built = build_image(ctx, "Dockerfile")
...     ran = run_image(ctx, built.tag, ["hello"]) if built.ok else None
...     return {"image_builds": {"passed": built.ok, "message": built.message},
...             "cli_says_hello": {"passed": bool(ran and "Hello" in ran.output),
...                                "message": "the container should print Hello",
...                                "found": ran.output[-300:] if ran else None}}
"""

from __future__ import annotations

import contextlib
import importlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, Any]]
Hook = Callable[["HookContext"], Results]
_HOOKS: dict[str, list[Hook]] = {}


def _key(assignment: str) -> str:
    return assignment.strip().lower().replace("_", "-")


def pre_grade(assignment: str) -> Callable[[Hook], Hook]:
    """Decorator: run ``hook(ctx) -> {key: {"passed": bool, "message": str, ...}}`` first."""
    def decorate(fn: Hook) -> Hook:
        hooks = _HOOKS.setdefault(_key(assignment), [])
        if fn not in hooks:
            hooks.append(fn)
        return fn

    return decorate


def hooks_for(assignment: str) -> list[Hook]:
    """Hooks of ``assignment`` (importing its checker module, where they are registered)."""
    from ..checks import module_name

    try:
        importlib.import_module(module_name(assignment))
    except ModuleNotFoundError as exc:
        if exc.name != module_name(assignment):
            raise
    return list(_HOOKS.get(_key(assignment), []))


@dataclass
class HookContext:
    assignment: str
    student: str
    files: Path  # the submission's files (a private copy; safe to build from)
    labels: dict[str, str]
    timeout: float = 300.0
    created_images: list[str] = field(default_factory=list)
    created_containers: list[str] = field(default_factory=list)

    def cleanup(self) -> None:
        from ..engine import client

        api = client(timeout=60)
        for cid in self.created_containers:
            with contextlib.suppress(Exception):
                api.api.remove_container(cid, force=True, v=True)
        for tag in self.created_images:
            with contextlib.suppress(Exception):
                api.api.remove_image(tag, force=True, noprune=False)


def run_hooks(ctx: HookContext, hooks: list[Hook]) -> tuple[Results, list[str]]:
    """Run every hook; a hook that fails is reported, never fatal. Returns (results, notes)."""
    results: Results = {}
    notes: list[str] = []
    try:
        for hook in hooks:
            try:
                got = hook(ctx)
                if not isinstance(got, dict):
                    raise TypeError(f"returned {type(got).__name__}, not a dict")
                results.update({str(k): dict(v) for k, v in got.items()})
            except Exception as exc:
                notes.append(f"pre-grade check {getattr(hook, '__name__', hook)} failed: "
                             f"{type(exc).__name__}: {exc}"[:500])
    finally:
        ctx.cleanup()
    return results, notes


@dataclass
class Built:
    ok: bool
    tag: str
    message: str
    log: str = ""
    seconds: float = 0.0


@dataclass
class Ran:
    ok: bool
    exit_code: int | None
    output: str
    timed_out: bool = False
    seconds: float = 0.0


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I | re.M)
_ADD_URL = re.compile(r"^\s*ADD\s+(?:--\S+\s+)*(https?|git)://", re.I | re.M)


def _bytes(size: str) -> int:
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    size = size.strip().lower().rstrip("b")
    return int(float(size[:-1]) * units[size[-1]]) if size[-1] in units else int(size)


def build_image(ctx: HookContext, dockerfile: str = "Dockerfile", *, network: str = "none",
                memory: str = "1g", timeout: float | None = None,
                allow_pull: bool = False) -> Built:
    """Build the student's ``dockerfile`` from their files, with limits; never raises."""
    from ..engine import client
    from ..images import present

    start = time.monotonic()
    path = ctx.files / dockerfile
    if not path.is_file():
        return Built(False, "", f"there is no {dockerfile} in the submission")
    text = path.read_text(errors="replace")
    if _ADD_URL.search(text):
        return Built(False, "", "ADD with a URL is not allowed in a graded build (use COPY)")
    stages = set()
    for base, alias in _FROM.findall(text):
        if not allow_pull and base.lower() != "scratch" and base not in stages \
                and not present(base):
            return Built(False, "", f"the base image {base} is not available on the grading "
                                    "machine")
        if alias:
            stages.add(alias)
    tag = f"cloudlab-graded-{uuid.uuid4().hex[:12]}:latest"
    ctx.created_images.append(tag)
    limit = timeout or ctx.timeout
    lines: list[str] = []
    error: str | None = None
    api = client(timeout=int(limit) + 30).api
    timer: threading.Timer | None = None
    try:
        stream = api.build(path=str(ctx.files), dockerfile=dockerfile, tag=tag, rm=True,
                           forcerm=True, network_mode=network, labels=ctx.labels, decode=True,
                           container_limits={"memory": _bytes(memory),
                                             "memswap": _bytes(memory)})
        timer = threading.Timer(limit, lambda: _close(stream))
        timer.start()
        for chunk in stream:
            if "stream" in chunk:
                lines.append(chunk["stream"].rstrip())
            if "error" in chunk:
                error = chunk["error"].strip()
    except Exception as exc:  # the engine's own words (say, a Dockerfile parse error)
        reason = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
        error = error or f"the build stopped: {reason}"
    finally:
        if timer is not None:
            timer.cancel()
    seconds = time.monotonic() - start
    log = "\n".join(lines)[-8000:]
    if error is None and seconds >= limit:
        error = f"the build took longer than {limit:g} s"
    if error:
        return Built(False, tag, f"docker build failed: {error[:500]}", log, seconds)
    return Built(True, tag, "the image builds", log, seconds)


def _close(stream: Any) -> None:
    with contextlib.suppress(Exception):
        stream.close()


def run_image(ctx: HookContext, tag: str, command: list[str] | str | None = None, *,
              timeout: float = 30, memory: str = "256m", pids: int = 64, cpus: float = 1.0,
              network: str = "none", max_output: int = 65536) -> Ran:
    """Run a built image once, locked down, and capture its output; never raises."""
    from docker.types import LogConfig

    from ..engine import client

    start = time.monotonic()
    api = client(timeout=int(timeout) + 30)
    try:
        c = api.containers.create(
            tag, command=command, labels=ctx.labels, network_mode=network,
            mem_limit=memory, memswap_limit=memory, pids_limit=pids,
            nano_cpus=int(cpus * 1e9), cap_drop=["ALL"], security_opt=["no-new-privileges"],
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            detach=True)
    except Exception as exc:
        return Ran(False, None, f"the container could not be created: {exc}"[:500])
    ctx.created_containers.append(c.id)
    timed_out = False
    try:
        c.start()
        try:
            code = c.wait(timeout=timeout).get("StatusCode")
        except Exception:
            timed_out = True
            with contextlib.suppress(Exception):
                c.kill()
            code = None
        output = c.logs(stdout=True, stderr=True, tail=2000).decode(errors="replace")
    except Exception as exc:
        return Ran(False, None, f"the container did not run: {exc}"[:500],
                   seconds=time.monotonic() - start)
    return Ran(code == 0 and not timed_out, code, output[-max_output:], timed_out,
               time.monotonic() - start)
