"""Pre-grade hooks: trusted checks that need Docker, run by the grader, never by students.

The sandbox never sees the Docker socket. When an exercise needs to build and run what a
student wrote (the ``docker-hub`` Dockerfile), its checker module registers a hook; the
grader runs it on the host BEFORE the notebook, in containers of their own (builds confined
by :mod:`.confine`: an allow-listed network, CPU/memory/pids/time/disk limits, FROM checked;
runs without a network; all labelled for the sweep and removed afterwards), and hands the
results into the sandbox as a read-only JSON file, where test cells show them as feedback
(``cl.checks.trusted("key")``). The points come from the assignment's trusted graders
(``solutions/<name>/grader.py``), which read the same results as plain data
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
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import confine
from .confine import Built, Ran

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


@contextlib.contextmanager
def registered(assignment: str, fn: Hook) -> Iterator[Hook]:
    """``fn`` as a pre-grade hook of ``assignment`` for the ``with`` block only (tests,
    one-off runs): the registry is left as it was found.

    >>> with registered("demo-x", print):
    ...     print in hooks_for("demo-x")
    True
    >>> hooks_for("demo-x")
    []
    """
    known = fn in _HOOKS.get(_key(assignment), [])
    pre_grade(assignment)(fn)
    try:
        yield fn
    finally:
        if not known:
            _HOOKS[_key(assignment)].remove(fn)


_AFTER: dict[str, list[Callable[[], object]]] = {}


def after_grading(assignment: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Decorator: call ``fn()`` once a grading run of ``assignment`` is over, whatever its
    outcome (to release what the run's hooks shared: a cluster's namespaces, say)."""
    def decorate(fn: Callable[[], object]) -> Callable[[], object]:
        found = _AFTER.setdefault(_key(assignment), [])
        if fn not in found:
            found.append(fn)
        return fn

    return decorate


def finish(assignments: Iterable[str]) -> list[str]:
    """Run the :func:`after_grading` hooks of ``assignments``; never raises: returns what
    failed, one line each (the run's results stand either way).

    >>> finish([])
    []
    """
    import logging

    problems = []
    for assignment in sorted(set(assignments)):
        try:
            found = after_hooks_for(assignment)
        except Exception as exc:  # its checker module does not import: nothing to call
            found, problems = [], [*problems, f"{assignment}: {type(exc).__name__}: {exc}"]
        for fn in found:
            try:
                fn()
            except Exception as exc:
                problems.append(f"{assignment}: {fn.__name__} failed: "
                                f"{type(exc).__name__}: {exc}"[:300])
    for problem in problems:
        logging.getLogger("cloudlab.grading").warning("%s", problem[:300])
    return problems


def after_hooks_for(assignment: str) -> list[Callable[[], object]]:
    """The :func:`after_grading` hooks of ``assignment`` (its checker module imported)."""
    hooks_for(assignment)  # imports the checker module, which registers them
    return list(_AFTER.get(_key(assignment), []))


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
    allowed_images: tuple[str, ...] = ()  # FROM / COPY --from may name these (and the base)
    course: Path | None = None  # the course root: its roster and secrets (trusted side only)
    builds: list[str] = field(default_factory=list)
    _jail: confine.Jail | None = None
    _builders: dict[bool, Any] = field(default_factory=dict)

    def jail(self) -> confine.Jail:
        """The network this submission's builds use (started on first use)."""
        if self._jail is None:
            self._jail = confine.Jail(labels=self.labels).start()
        return self._jail

    def builder(self, jailed: bool, images: Iterable[str]):
        """The build engine of this submission (a :class:`~.jailengine.JailEngine` on the
        jail's network, or on none; started on first use), or None when
        ``CLOUDLAB_BUILD_ENGINE=host`` asks for the host's engine."""
        from . import jailengine

        if jailengine.mode() == "host":
            return None
        if jailed not in self._builders:
            self._builders[jailed] = jailengine.JailEngine(
                self.jail() if jailed else None, images).start()
        return self._builders[jailed]

    def cleanup(self) -> None:
        from ..engine import client

        for build_id in self.builds:
            confine.sweep(build_id)
        for box in self._builders.values():
            with contextlib.suppress(Exception):
                box.stop()
        self._builders.clear()
        if self._jail is not None:
            self._jail.stop()
            self._jail = None
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


def build_image(ctx: HookContext, dockerfile: str = "Dockerfile", *, network: str = "proxy",
                memory: str = "1g", timeout: float | None = None,
                limits: confine.Limits | None = None) -> Built:
    """Build the student's ``dockerfile`` from their files, confined; never raises.

    ``network="none"``: no network at all; anything else (``"proxy"``): the hook's
    :class:`~.confine.Jail`, whose only way out is the package index. The build runs in
    a :class:`~.jailengine.JailEngine` on that network (so even the engine's own fetches
    cannot reach the host), unless ``CLOUDLAB_BUILD_ENGINE=host``. ``FROM`` and
    ``COPY --from`` may name the course's base image (plus ``ctx.allowed_images``) and
    earlier stages. Limits: :class:`~.confine.Limits` (``memory`` and ``timeout`` override
    theirs); every image and container of the build is removed by ``ctx.cleanup()``.
    """
    from ..config import settings

    limits = limits or confine.Limits()
    limits = confine.Limits(cpus=limits.cpus, memory=memory, pids=limits.pids,
                            seconds=timeout or min(limits.seconds, ctx.timeout),
                            disk=limits.disk, output=limits.output)
    allowed = {settings().base_image, *ctx.allowed_images}
    try:
        jail = ctx.jail() if network != "none" else None
    except Exception as exc:  # fail closed: no confinement, no build
        return Built(False, "", f"the grader could not confine the build: {exc}"[:500])
    done = confine.build(ctx.files, dockerfile, jail=jail, limits=limits, labels=ctx.labels,
                         allowed_images=allowed,
                         builder=lambda: ctx.builder(jail is not None, allowed))
    if done.build_id:
        ctx.builds.append(done.build_id)
    return done


def run_image(ctx: HookContext, tag: str, command: list[str] | str | None = None, *,
              timeout: float = 30, memory: str = "256m", pids: int = 64, cpus: float = 1.0,
              network: str = "none", max_output: int = 65536) -> Ran:
    """Run a built image once, locked down, and capture its output; never raises."""
    from docker.types import LogConfig

    from .. import engine

    start = time.monotonic()
    api = engine.client(timeout=int(timeout) + 30)
    try:
        c = api.containers.create(
            tag, command=command, labels=ctx.labels, **engine.network(network),
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
