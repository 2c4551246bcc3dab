"""Autograde many submissions in parallel, each in its own sandbox, into one gradebook.

One process imports nbgrader once and forks a worker per submission (a fresh process per
submission: nothing leaks from one student to the next). A worker that dies or overruns
is killed, its containers are swept, and the submission still gets a verdict; the run
always completes. Containers left by a grader that was SIGKILLed are swept at the start.

>>> results = autograde(Course(), "docker-hub", workers=4, timeout=120)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from multiprocessing.connection import wait
from pathlib import Path

from .. import engine
from ..errors import CloudlabError
from . import confine, hooks, late, release, sandbox
from . import image as grading_image
from .course import Course
from .results import Result

GRACE = 90.0  # seconds a worker may take beyond the notebook budget (startup, hooks, I/O)


def default_workers() -> int:
    """Four per core (at most 8): a worker spends most of its time waiting on its sandbox
    (the probe stage, then the kernel) or on a host hook (a cluster, a build)."""
    return max(2, min(8, 4 * (os.cpu_count() or 1)))


def _preload() -> None:
    """Import what every worker needs before forking, so each fork starts warm."""
    import nbclient  # noqa: F401
    import nbconvert.preprocessors  # noqa: F401
    import nbgrader.api
    import nbgrader.converters
    import nbgrader.preprocessors  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    from . import executor, worker  # noqa: F401

    configure_mappers()  # nbgrader's ORM mappers, once, instead of in every worker
    share_engines()
    cache_schema_validators()


def share_engines() -> None:
    """One SQLAlchemy engine per gradebook URL and process tree (nbgrader makes one per open).

    nbgrader opens and closes the gradebook a dozen times per submission, each time with a
    new engine whose statement cache starts cold; that was most of a worker's CPU. Sharing
    the engine keeps the cache; ``Gradebook.close`` still disposes the connection pool, so
    no connection is ever open when the pool forks a worker (the engine itself is fork-safe).
    """
    import nbgrader.api as api
    from sqlalchemy import create_engine

    if getattr(api.create_engine, "shared", False):
        return
    engines: dict[str, object] = {}

    def shared(url, **kwargs):
        key = f"{url}|{sorted(kwargs.items())}"
        if key not in engines:
            engines[key] = create_engine(url, **kwargs)
        return engines[key]

    shared.shared = True  # type: ignore[attr-defined]
    api.create_engine = shared
    created: set[int] = set()
    create_all = api.Base.metadata.create_all

    def create_once(bind, **kwargs):  # every Gradebook() re-checked ~13 tables
        if id(bind) not in created:
            create_all(bind=bind, **kwargs)
            created.add(id(bind))

    api.Base.metadata.create_all = create_once


def cache_schema_validators() -> None:
    """nbgrader validates each cell's metadata with ``jsonschema.validate``, which checks
    the schema itself and builds a validator on every call; build it once per schema."""
    import jsonschema
    import nbgrader.nbgraderformat.common as common

    if getattr(common.jsonschema, "cached", False):
        return
    import json

    validators: dict[str, object] = {}  # by the schema's text: each validator object
                                        # nbgrader makes loads its own copy of it

    def validate(instance, schema, *args, **kwargs):
        if args or kwargs:
            return jsonschema.validate(instance, schema, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True)
        found = validators.get(key)
        if found is None:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            found = validators[key] = cls(json.loads(key))
        error = jsonschema.exceptions.best_match(found.iter_errors(instance))
        if error is not None:
            raise error
        return None

    import types

    common.jsonschema = types.SimpleNamespace(validate=validate, cached=True,
                                              ValidationError=jsonschema.ValidationError)


def _warm(course: Course, assignment: str) -> None:
    """Do once in the parent what every worker would otherwise do cold: compile the
    notebook schemas and the gradebook's statements (each fork inherits them)."""
    import nbformat
    import nbformat.validator
    from nbgrader.api import Base, Gradebook, MissingEntry
    from nbgrader.nbgraderformat import MetadataValidator

    from . import precheck

    for minor in range(6):
        for relax in (False, True):
            nbformat.validator.get_validator(4, minor, relax_add_props=relax)
    precheck.expected_notebooks(course, assignment)
    for path in sorted((course.release / assignment).glob("*.ipynb")):
        with contextlib.suppress(Exception):
            nb = nbformat.read(str(path), as_version=4)
            nbformat.validate(nb)
            nbformat.validate(nb, relax_add_props=True)
            MetadataValidator().validate_nb(nb)
    with Gradebook(course.db_url) as gb:
        for mapper in Base.registry.mappers:  # builds the column result processors
            gb.db.query(mapper.class_).limit(1).all()
        found = gb.find_assignment(assignment)
        for sub in found.submissions[:1]:
            with contextlib.suppress(MissingEntry):
                done = gb.find_submission(assignment, sub.student.id)
                _ = (done.score, done.max_score, [g.score for n in done.notebooks
                                                   for g in n.grades])


def jobs_for(course: Course, assignment: str | None,
             students: Iterable[str] | None = None) -> list[tuple[str, str]]:
    names = [assignment] if assignment else course.assignments()
    wanted = set(students) if students else None
    return [(a, s) for a in names for s in course.students(a) if wanted is None or s in wanted]


def autograde(course: Course, assignment: str | None = None, *,
              students: Iterable[str] | None = None, workers: int | None = None,
              timeout: float = 60, limits: sandbox.Limits | None = None,
              progress: bool = True, hook_timeout: float = 300,
              image: str | None = None, backend=None) -> list[Result]:
    """Grade every submission (of ``assignment``, or of all) and return their results.

    ``backend``: where each notebook runs (a :class:`~.kubejobs.Backend`: a Job per
    notebook on a Kubernetes cluster); default: a local container. ``workers`` bounds how
    many run at once either way."""
    engine.require()
    if assignment and not (course.source / assignment).is_dir():
        raise CloudlabError(f"no assignment {assignment!r} in {course.source}; known: "
                            f"{', '.join(course.assignments()) or 'none'}")
    jobs = jobs_for(course, assignment, students)
    if not jobs:
        return []
    swept = sandbox.sweep() + confine.sweep()  # what a killed grader left: kernels, builds
    if swept:
        print(f"removed {swept} grading container(s) left by an earlier run", file=sys.stderr)
    course.logs.mkdir(parents=True, exist_ok=True)
    tag = image or grading_image.ensure(course, log=course.logs / "grading-image.log")
    _preload()
    for name in sorted({a for a, _ in jobs}):
        release.ensure_in_gradebook(course, name)
        late.set_due(course, name)
        _warm(course, name)
    gc.collect()
    gc.freeze()  # workers inherit these objects: keep the collector from copying their pages
    workers = max(1, workers or default_workers())
    limits = limits or sandbox.Limits()
    try:
        if backend is not None:
            backend.limits = limits
            backend.prepare(tag)
        results = _pool(course, jobs, tag, workers, timeout, limits, progress, hook_timeout,
                        backend)
    finally:
        gc.unfreeze()
        if backend is not None:  # every Job, pod and Secret of the run, whatever happened
            backend.cleanup()
        sandbox.sweep()
        hooks.finish(a for a, _ in jobs)  # e.g. the grading cluster's pool of namespaces
    return results


def _child(course: Course, assignment: str, student: str, tag: str, timeout: float,
           limits: sandbox.Limits, hook_timeout: float, scratch: Path, backend=None) -> None:
    from . import worker

    tempfile.tempdir = str(scratch)  # its staging goes where the parent can remove it
    parent = os.getppid()
    os.setpgrp()  # the parent can kill the worker and anything it started, together
    _die_with(parent)  # a grader killed outright (kill -9) takes its workers along
    log = course.logs / assignment / f"{student}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    worker.grade(course, assignment, student, image=tag, timeout=timeout, limits=limits,
                 hook_timeout=hook_timeout, backend=backend)


def _pool(course: Course, jobs: list[tuple[str, str]], tag: str, workers: int,
          timeout: float, limits: sandbox.Limits, progress: bool,
          hook_timeout: float, backend=None) -> list[Result]:
    from tqdm import tqdm

    ctx = multiprocessing.get_context("fork")
    pending = list(jobs)
    running: dict[int, tuple[multiprocessing.Process, str, str, float]] = {}
    done: dict[tuple[str, str], Result] = {}
    counts: Counter[str] = Counter()
    limit = timeout + GRACE + (hook_timeout if any(_has_hooks(a) for a, _ in jobs) else 0)
    if backend is not None:  # a pod may wait for a node, and be retried
        limit += backend.queue_timeout * (1 + backend.retries) / 2
    bar = tqdm(total=len(jobs), unit="submission", desc="autograde", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    # the workers' staging folders: a worker killed (overdue, or the run interrupted)
    # cannot remove its own, so the run removes them all at its end
    _sweep_scratch()
    scratch = Path(tempfile.mkdtemp(prefix=f"clg-run-{os.getpid()}-"))
    try:
        while pending or running:
            while pending and len(running) < workers:
                assignment, student = pending.pop(0)
                result_file = course.result_file(student, assignment)
                result_file.unlink(missing_ok=True)
                proc = ctx.Process(target=_child, name=f"grade-{student}",
                                   args=(course, assignment, student, tag, timeout, limits,
                                         hook_timeout, scratch, backend), daemon=False)
                proc.start()
                running[proc.sentinel] = (proc, assignment, student, time.monotonic())
            ready = wait(list(running), timeout=0.5)
            now = time.monotonic()
            for sentinel in list(running):
                proc, assignment, student, started = running[sentinel]
                overdue = now - started > limit
                if sentinel not in ready and not overdue:
                    continue
                if overdue and proc.is_alive():
                    _kill(proc)
                proc.join(5)
                del running[sentinel]
                result = _finish(course, assignment, student, proc, overdue, limit, started)
                done[(assignment, student)] = result
                counts[result.status] += 1
                bar.set_postfix({k: v for k, v in sorted(counts.items())}, refresh=False)
                bar.update(1)
    except BaseException:
        for proc, *_ in running.values():
            _kill(proc)
        for proc, *_ in running.values():
            proc.join(5)  # gone before the sweep looks at who owns the containers
        raise
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return [done[j] for j in jobs]


def _sweep_scratch() -> None:
    """Remove the staging folders of runs whose grader is gone (killed outright)."""
    from ..proc import alive

    for old in Path(tempfile.gettempdir()).glob("clg-run-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _has_hooks(assignment: str) -> bool:
    from .hooks import hooks_for

    try:
        return bool(hooks_for(assignment))
    except Exception:
        return False


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), and exit now if
    the parent has already gone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _kill(proc: multiprocessing.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _finish(course: Course, assignment: str, student: str, proc: multiprocessing.Process,
            overdue: bool, limit: float, started: float) -> Result:
    path = course.result_file(student, assignment)
    if path.exists() and not overdue:
        try:
            return Result.load(path)
        except Exception:
            pass
    sandbox.sweep()  # the worker's containers, if it could not remove them itself
    if overdue:
        status, reason = "timed out", f"the grader gave up after {limit:g} s"
    else:
        status = "crashed"
        reason = f"the grading worker died (exit code {proc.exitcode}); see " \
                 f"{course.logs / assignment / (student + '.log')}"
    result = Result(student=student, assignment=assignment, status=status, reason=reason,
                    seconds=round(time.monotonic() - started, 2))
    try:  # fail closed: whatever the kernel scored before the worker died is discarded
        from . import worker

        result.max_score = worker.max_score(course, assignment)
        worker.fail_closed(course, assignment, student)
    except Exception as exc:
        result.reason += f"; the gradebook could not be reset: {exc}"[:300]
    result.save(path)
    return result


def summary(results: list[Result]) -> str:
    counts = Counter(r.status for r in results)
    head = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [f"{len(results)} submission(s): {head}"]
    lines += [r.line() for r in results]
    return "\n".join(lines)


def write_summary(course: Course, results: list[Result]) -> Path:
    path = course.results / "last-run.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(summary(results) + "\n")
    return path
