"""Trusted grading: every point is decided outside the student's code.

An assignment's graders live in ``solutions/<name>/grader.py`` (instructor side: never
released, never mounted into a sandbox). Each grader scores one graded cell (its
``grade_id``) from artefacts the host collected as plain data:

* ``cell(grade_id)`` - a cell's source (locked cells from the gradebook, answers from the
  submission: the FIRST cell carrying that id, as nbgrader keeps it);
* ``file(path)`` - a file of the submission, size-capped;
* ``call(fn, *args, cells=...)`` / ``value(name, cells=...)`` - the student's answer cells
  executed from their SOURCE in a sandbox no student code has touched yet (no IPython, no
  notebook, no network): the first stage of the submission's kernel container, or a fresh
  container of their own when that stage fails (see :mod:`cloudlab.grading.probe`). The
  function is called with hidden arguments there and its result sent back as strict
  JSON. The expected answers never leave this process. ``stdlib_only=True`` (where the
  exercise says "standard library only") runs those cells in an interpreter that can
  import nothing but the standard library, however the import is spelled
  (:func:`cloudlab.grading.probe.isolated`).

A grader gets the submission (``sub``: files, cells, host tools via :meth:`Submission.once`)
and its resolved probes as keyword arguments. It passes by returning ``None`` (or a
fraction of the points in [0, 1]); :class:`~cloudlab.checks.CheckFailed` or
``AssertionError`` scores 0 with its message. Anything else - an error, a timeout, a
missing grader - scores 0 with a reason: the gradebook holds the trusted result or 0.

>>> from cloudlab.grading.trusted import call, expect, grader
>>> @grader("q1_test", got=call("add", -7, 7, cells=["q1_answer"]))
... def q1(sub, got):
...     expect(got == 0, "add() should also work with negative numbers", expected=0, found=got)
>>> q1.grade_id
'q1_test'
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks import CheckFailed, expect
from ..errors import CloudlabError
from .course import GRADER_FILE

__all__ = ["Call", "Cell", "File", "Opaque", "Raised", "Submission", "Value", "Verdict",
           "call", "cell", "expect", "file", "from_notebook", "grader", "load", "passed",
           "plan", "prefetched", "run", "value"]

MAX_FILE = 1_000_000  # bytes of one file a grader may read
PROBE_TIMEOUT = 10.0  # seconds per group of probes (one set of cells)
# the runner as a plain script (stdlib only: starting it imports nothing of cloudlab's)
PROBE_SCRIPT = "/opt/cloudlab-grader/lib/cloudlab/grading/probe.py"


# --------------------------------------------------------------------------- probes
@dataclass(frozen=True)
class Call:
    function: str
    args: tuple = ()
    kwargs: tuple = ()  # sorted (name, value) pairs
    cells: tuple[str, ...] | None = None
    stdlib_only: bool = False


@dataclass(frozen=True)
class Value:
    name: str
    cells: tuple[str, ...] | None = None
    stdlib_only: bool = False


@dataclass(frozen=True)
class Cell:
    grade_id: str


@dataclass(frozen=True)
class File:
    path: str
    limit: int = MAX_FILE


Probe = Call | Value | Cell | File


def _cells(cells: Iterable[str] | str | None) -> tuple[str, ...] | None:
    return (cells,) if isinstance(cells, str) else tuple(cells) if cells is not None else None


def call(function: str, *args: Any, cells: Iterable[str] | str | None = None,
         kwargs: Mapping[str, Any] | None = None, stdlib_only: bool = False) -> Call:
    """The result of ``function(*args, **kwargs)`` after running ``cells`` (default: every
    answer cell) in a fresh sandbox. Arguments must be JSON data. ``stdlib_only``: in an
    interpreter that can import the standard library and nothing else.

    >>> call("f", 1, cells="q1_answer", stdlib_only=True).stdlib_only
    True
    """
    json.dumps([args, kwargs or {}])  # fail early, on the instructor's side
    return Call(function, tuple(args), tuple(sorted((kwargs or {}).items())), _cells(cells),
                stdlib_only)


def value(name: str, *, cells: Iterable[str] | str | None = None,
          stdlib_only: bool = False) -> Value:
    """The variable ``name`` after running ``cells`` (default: every answer cell)."""
    return Value(name, _cells(cells), stdlib_only)


def cell(grade_id: str) -> Cell:
    """The source of the cell ``grade_id`` (``""`` if the submission has no such cell)."""
    return Cell(grade_id)


def file(path: str, *, limit: int = MAX_FILE) -> File:
    """The text of the submission's file ``path`` (None if absent, a link or over ``limit``)."""
    return File(path, limit)


@dataclass(frozen=True, repr=False)
class Raised:
    """What a probe gives when the student's code raised (or hung, or died): equals nothing."""

    kind: str
    message: str = ""

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return id(self)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}" if self.message else self.kind

    __repr__ = __str__


@dataclass(frozen=True, repr=False)
class Opaque:
    """A result that was not plain data (its type name only): equals nothing."""

    kind: str

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return id(self)

    def __str__(self) -> str:
        return f"<a {self.kind} object, not plain data>"

    __repr__ = __str__


def decode(data: Any) -> Any:
    """The host's view of :func:`cloudlab.grading.probe.plain` data."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if "__dict__" in data:
            return {k: decode(v) for k, v in data["__dict__"].items()}
        if "__float__" in data:
            return float(data["__float__"])
        return Opaque(str(data.get("__opaque__", "object")))
    return data


# -------------------------------------------------------------------------- graders
GraderFn = Callable[..., float | None]


@dataclass
class Grader:
    grade_id: str
    fn: GraderFn
    probes: dict[str, Probe]

    @property
    def __name__(self) -> str:
        return self.fn.__name__

    def __call__(self, sub: Submission, **resolved: Any) -> float | None:
        return self.fn(sub, **resolved)


def grader(grade_id: str, **probes: Probe) -> Callable[[GraderFn], Grader]:
    """Decorator: ``fn(sub, **probes)`` scores the graded cell ``grade_id``."""
    for name, probe in probes.items():
        if not isinstance(probe, Call | Value | Cell | File):
            raise TypeError(f"{name}= should be call(), value(), cell() or file(), "
                            f"not {type(probe).__name__}")

    def decorate(fn: GraderFn) -> Grader:
        return Grader(grade_id, fn, dict(probes))

    return decorate


@dataclass
class Verdict:
    grade_id: str
    fraction: float  # of the cell's points, 0..1
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"grade_id": self.grade_id, "fraction": self.fraction, "message": self.message}


def grader_path(source: Path, assignment: str) -> Path:
    return Path(source) / assignment / GRADER_FILE


def load(source: Path, assignment: str) -> dict[str, Grader]:
    """The graders of ``assignment`` (from ``<source>/<assignment>/grader.py``), by grade id."""
    path = grader_path(source, assignment)
    if not path.is_file():
        raise CloudlabError(f"{assignment} has no trusted grader: write {path} "
                            "(see the docstring of cloudlab.grading: adding a graded exercise)")
    name = f"cloudlab_grader_{assignment.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    found: dict[str, Grader] = {}
    for obj in vars(module).values():
        if isinstance(obj, Grader):
            if obj.grade_id in found:
                raise CloudlabError(f"{path}: two graders for {obj.grade_id}")
            found[obj.grade_id] = obj
    if not found:
        raise CloudlabError(f"{path} defines no @grader functions")
    return found


# ------------------------------------------------------------------------ submission
@dataclass
class Submission:
    """What the host collected from one submission (plain data only)."""

    assignment: str
    student: str
    files: Path  # a private copy of the submission's files (links dropped, size-capped)
    cells: dict[str, str]  # grade_id -> source
    answer_cells: list[str]  # grade ids of the answer (solution) code cells, notebook order
    pre_graded: dict[str, dict[str, Any]] = field(default_factory=dict)  # host hooks' results
    labels: dict[str, str] = field(default_factory=dict)
    timeout: float = 300.0
    _once: dict[Any, Any] = field(default_factory=dict, repr=False)
    _cleanups: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def read(self, path: str, limit: int = MAX_FILE) -> str | None:
        """A file of the submission as text (None if absent, a link, outside or too big)."""
        target = (self.files / path)
        try:
            resolved = target.resolve()
            if self.files.resolve() not in resolved.parents or target.is_symlink() \
                    or not resolved.is_file() or resolved.stat().st_size > limit:
                return None
            return resolved.read_text(errors="replace")
        except OSError:
            return None

    def once(self, fn: Callable[[Submission], Any]) -> Any:
        """``fn(sub)``, run once per submission and shared by every grader that asks."""
        if fn not in self._once:
            try:
                self._once[fn] = ("ok", fn(self))
            except Exception as exc:
                self._once[fn] = ("error", exc)
        kind, got = self._once[fn]
        if kind == "error":
            raise got
        return got

    def context(self):
        """A :class:`~cloudlab.grading.hooks.HookContext` for host tools (build_image,
        run_image), cleaned up after grading."""
        from .hooks import HookContext

        ctx = HookContext(self.assignment, self.student, self.files, dict(self.labels),
                          timeout=self.timeout)
        self.on_cleanup(ctx.cleanup)
        return ctx

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def cleanup(self) -> None:
        for fn in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                fn()
        self._cleanups.clear()


def passed(sub: Submission, key: str) -> Any:
    """The data of the host hook result ``key``; :class:`CheckFailed` with its message if it
    did not pass (or is missing)."""
    entry = sub.pre_graded.get(key)
    if not isinstance(entry, dict):
        raise CheckFailed(f"the grader has no result for {key}",
                          hint="is the file it needs part of your submission?")
    if not entry.get("passed"):
        raise CheckFailed(str(entry.get("message") or f"{key} failed"),
                          expected=entry.get("expected"), found=entry.get("found"),
                          hint=entry.get("hint"))
    return entry.get("data")


def from_notebook(path: Path, *, student: str = "solution", files: Path | None = None,
                  assignment: str | None = None) -> Submission:
    """A :class:`Submission` made from a notebook's cells (the first cell of each grade id),
    for trying graders on the solution or the release without the grading engine.

    >>> sub = from_notebook(Path("tests/grading/fixtures/solutions/demo/demo.ipynb"))
    >>> sub.answer_cells
    ['q1_answer', 'q2_answer', 'q3_answer']
    """
    nb = json.loads(Path(path).read_text())
    cells: dict[str, str] = {}
    answers: list[str] = []
    for c in nb.get("cells", []):
        meta = c.get("metadata", {}).get("nbgrader") or {}
        gid = meta.get("grade_id")
        if not gid or gid in cells:
            continue
        src = c.get("source", "")
        cells[gid] = "".join(src) if isinstance(src, list) else src
        if meta.get("solution") and c.get("cell_type") == "code":
            answers.append(gid)
    folder = files if files is not None else Path(tempfile.mkdtemp(prefix="clg-files-"))
    sub = Submission(assignment or Path(path).stem, student, files=folder, cells=cells,
                     answer_cells=answers)
    if files is None:  # our empty folder goes with the submission
        import weakref

        weakref.finalize(sub, shutil.rmtree, folder, True)
    return sub


# ------------------------------------------------------------------------ running
Runner = Callable[[list[dict[str, Any]], float], list[list[dict[str, Any]]]]


def _remote_probes(graders: Mapping[str, Grader], grade_ids: Iterable[str]
                   ) -> list[tuple[tuple[str, str], Call | Value]]:
    return [((gid, name), probe) for gid in grade_ids
            for name, probe in (graders[gid].probes.items() if gid in graders else ())
            if isinstance(probe, Call | Value)]


def plan(graders: Mapping[str, Grader], sub: Submission, grade_ids: Iterable[str]
         ) -> list[dict[str, Any]]:
    """The probe groups :func:`run` will ask its runner for (empty: nothing to run in a
    sandbox). The worker hands them to the kernel's container ahead of time."""
    return _groups(_remote_probes(graders, list(grade_ids)), sub)[1]


def run(graders: Mapping[str, Grader], sub: Submission, grade_ids: Iterable[str], *,
        runner: Runner) -> dict[str, Verdict]:
    """Score every id in ``grade_ids``: its grader's verdict, or 0 with the reason."""
    wanted = list(grade_ids)
    resolved: dict[tuple[str, str], Any] = {}
    for gid in wanted:
        g = graders.get(gid)
        for name, probe in (g.probes.items() if g else ()):
            if isinstance(probe, Cell):
                resolved[(gid, name)] = sub.cells.get(probe.grade_id, "")
            elif isinstance(probe, File):
                resolved[(gid, name)] = sub.read(probe.path, probe.limit)
    remote = _remote_probes(graders, wanted)
    probe_error = ""
    if remote:
        try:
            resolved.update(_remote(remote, sub, runner))
        except Exception as exc:
            probe_error = f"the trusted probe run failed: {type(exc).__name__}: {exc}"[:500]
    verdicts: dict[str, Verdict] = {}
    try:
        for gid in wanted:
            verdicts[gid] = _verdict(graders.get(gid), gid, sub, resolved, probe_error)
    finally:
        sub.cleanup()
    return verdicts


def _verdict(g: Grader | None, gid: str, sub: Submission, resolved: dict, probe_error: str
             ) -> Verdict:
    if g is None:
        return Verdict(gid, 0.0, f"{gid}: no trusted grader for this cell (0 points)")
    if probe_error and any(isinstance(p, Call | Value) for p in g.probes.values()):
        return Verdict(gid, 0.0, probe_error)
    kwargs = {name: resolved.get((gid, name)) for name in g.probes}
    try:
        got = g(sub, **kwargs)
    except (CheckFailed, AssertionError) as failure:
        return Verdict(gid, 0.0, _explain(str(failure) or "a hidden test did not pass",
                                          kwargs.values()))
    except Exception as exc:
        return Verdict(gid, 0.0, f"the grader of {gid} failed: {type(exc).__name__}: {exc}"[:800])
    if got is None:
        return Verdict(gid, 1.0, "")
    if type(got) not in (int, float) or not 0 <= got <= 1:
        return Verdict(gid, 0.0, f"the grader of {gid} returned {got!r}, not a fraction in [0, 1]")
    return Verdict(gid, float(got), "")


def _explain(message: str, resolved: Iterable[Any]) -> str:
    """A failed grader's message, plus what the student's code raised (if it did)."""
    raised = [r for r in resolved if isinstance(r, Raised)]
    if any(r.kind == "NotImplementedError" for r in raised):
        return ("this question is not answered yet: replace `raise NotImplementedError()` "
                "in its answer cell with your code")
    if raised:
        return f"{message}\n    your code raised {raised[0]}"
    return message


def _groups(remote: list[tuple[tuple[str, str], Call | Value]], sub: Submission
            ) -> tuple[list[list[tuple[tuple[str, str], Call | Value]]], list[dict[str, Any]]]:
    """Probes grouped by the cells they run, and the groups as the runner's input."""
    groups: dict[tuple[tuple[str, ...], bool],
                 list[tuple[tuple[str, str], Call | Value]]] = {}
    for key, probe in remote:
        cells = probe.cells if probe.cells is not None else tuple(sub.answer_cells)
        groups.setdefault((cells, probe.stdlib_only), []).append((key, probe))
    spec = []
    for (cells, stdlib_only), probes in groups.items():
        spec.append({
            "cells": list(cells), "sources": [sub.cells.get(c, "") for c in cells],
            "timeout": PROBE_TIMEOUT, **({"stdlib_only": True} if stdlib_only else {}),
            "probes": [{"kind": "value", "name": p.name} if isinstance(p, Value) else
                       {"kind": "call", "name": p.function, "args": list(p.args),
                        "kwargs": dict(p.kwargs)} for _, p in probes]})
    return list(groups.values()), spec


def _remote(remote: list[tuple[tuple[str, str], Call | Value]], sub: Submission,
            runner: Runner) -> dict[tuple[str, str], Any]:
    grouped, spec = _groups(remote, sub)
    from .probe import budget

    answers = runner(spec, budget(spec))
    if not isinstance(answers, list) or len(answers) != len(spec):
        raise RuntimeError("the probe run gave no usable answer")
    out: dict[tuple[str, str], Any] = {}
    for probes, got in zip(grouped, answers, strict=True):
        for (key, _), one in zip(probes, got, strict=True):
            out[key] = decode(one["value"]) if "value" in one else \
                Raised(str(one.get("raised", "Error")), str(one.get("message", "")))
    return out


def prefetched(groups: list[dict[str, Any]], answers: list | None, fallback: Runner
               ) -> Runner:
    """A runner that returns ``answers`` (what the kernel container's probe stage gave for
    ``groups``) when asked for exactly those groups, and asks ``fallback`` otherwise."""

    def run_or_reuse(asked: list[dict[str, Any]], timeout: float) -> list[list[dict[str, Any]]]:
        if answers is not None and asked == groups:
            return answers
        return fallback(asked, timeout)

    return run_or_reuse


def container_runner(image: str, labels: dict[str, str], limits: Any) -> Runner:
    """Run the probe groups in a FRESH locked-down container of the grading image."""

    def run_in_container(groups: list[dict[str, Any]], timeout: float
                         ) -> list[list[dict[str, Any]]]:
        from docker.types import LogConfig

        from .. import engine
        from . import probe, sandbox

        folder = Path(tempfile.mkdtemp(prefix="clg-probe-"))
        try:
            (folder / "input.json").write_text(json.dumps({"groups": groups}))
            folder.chmod(0o755)
            (folder / "input.json").chmod(0o644)
            api = engine.client(timeout=60)
            uid, gid = sandbox.SandboxSpec(image, "", "").user()
            c = api.containers.create(
                image, command=["python3", "-I", PROBE_SCRIPT, "/probe/input.json"],
                user=f"{uid}:{gid}", working_dir="/tmp", labels=labels,
                environment={"HOME": "/tmp", probe.SWEEP_ENV: "all",
                             "CLOUDLAB_DOCKER": "off"},
                **engine.network("none"), read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={limits.tmp_size}"},
                volumes={str(folder): {"bind": "/probe", "mode": "ro"}},
                mem_limit=limits.memory, memswap_limit=limits.memory,
                pids_limit=limits.pids, nano_cpus=int(limits.cpus * 1e9), cap_drop=["ALL"],
                security_opt=["no-new-privileges"], init=True, ipc_mode="private",
                log_config=LogConfig(type="json-file", config={"max-size": "1m",
                                                               "max-file": "1"}),
                detach=True)
            try:
                c.start()
                start = time.monotonic()
                code = c.wait(timeout=timeout).get("StatusCode")
                out = c.logs(stdout=True, stderr=False, tail=5).decode(errors="replace")
            finally:
                sandbox.remove(c.id)
            lines = [x for x in out.splitlines() if x.startswith(probe.MARK)]
            if not lines:
                raise RuntimeError(f"the probe container ended (exit code {code}, "
                                   f"{time.monotonic() - start:.1f} s) without a result")
            return json.loads(lines[-1][len(probe.MARK):])
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return run_in_container


def local_runner(groups: list[dict[str, Any]], timeout: float) -> list[list[dict[str, Any]]]:
    """Run probe groups in a child process on this machine (tests and instructors' checks
    of their own solutions only: it does not confine student code)."""
    import subprocess
    import sys

    from . import probe

    with tempfile.TemporaryDirectory(prefix="clg-probe-") as tmp:
        spec = Path(tmp) / "input.json"
        spec.write_text(json.dumps({"groups": groups}))
        lib = str(Path(__file__).resolve().parents[2])
        done = subprocess.run([sys.executable, "-I", "-c",
                               f"import sys; sys.path.insert(0, {lib!r}); "
                               "from cloudlab.grading import probe; "
                               f"probe.main([{str(spec)!r}])"],
                              capture_output=True, text=True, timeout=timeout, cwd=tmp)
    lines = [x for x in done.stdout.splitlines() if x.startswith(probe.MARK)]
    if not lines:
        raise RuntimeError(f"the probe run gave no result: {done.stderr[-300:]}")
    return json.loads(lines[-1][len(probe.MARK):])
