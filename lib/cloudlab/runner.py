"""Run chapter notebooks headless with papermill and summarise the outcome.

Each notebook gets ``ci=True`` (small sizes, short durations) unless told otherwise, runs
in its own folder's context, and is written to a gitignored output folder.

>>> results = run_all(["notebooks/00-getting-started.ipynb"])   # doctest: +SKIP
>>> print(summary(results))                                      # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import _project_root


@dataclass(frozen=True)
class Result:
    notebook: str
    status: str  # passed | failed
    seconds: float
    output: Path
    error: str = ""


def notebooks(folder: Path | None = None) -> list[Path]:
    """The chapter notebooks, in teaching order."""
    folder = folder or (_project_root() or Path.cwd()) / "notebooks"
    return sorted(p for p in folder.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


@functools.cache
def _socket_dir() -> str:
    """A private folder for this process's kernel sockets, removed at exit (short: a
    socket's path must stay under ~107 characters)."""
    folder = tempfile.mkdtemp(prefix="cl-kernels-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def ipc_kernel_manager() -> type:
    """A kernel manager that talks to its kernel over Unix sockets in a private folder,
    not TCP: no other local user can listen in, and the kernel has no reason to warn
    "running over TCP without encryption" on every notebook.

    >>> km = ipc_kernel_manager()(kernel_name="python3")
    >>> km.transport, km.ip.startswith(tempfile.gettempdir())
    ('ipc', True)
    """
    import itertools

    from jupyter_client.manager import AsyncKernelManager

    counter = itertools.count()

    class IpcKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", f"{_socket_dir()}/k{next(counter)}")
            kwargs.setdefault("client_factory", sliced_client())
            super().__init__(**kwargs)

    return IpcKernelManager


POLL_SLICE = 1.0  # seconds: the longest one wait on a kernel socket lasts before a new one


async def poll_in_slices(get: Callable[[float], Awaitable[Any]], timeout: float | None,
                         step: float = POLL_SLICE) -> Any:
    """``get(t)`` (wait at most ``t`` s for a message, raise ``queue.Empty`` if none came),
    asked again every ``step`` s until ``timeout`` (None: for ever) has passed.

    Why: a wait on a kernel's ZeroMQ socket can miss the message that arrives during it
    and sleep through to its timeout, though the message is there (jupyter/nbclient#312:
    a cell that shows widgets "sometimes blocks"). nbclient waits for a cell's reply for
    the whole cell timeout in one call, so a missed message cost 15 minutes and a failed
    notebook (seen in notebooks 01 and 11). A new wait sees the message at once.

    >>> import asyncio, queue
    >>> async def get(t):
    ...     raise queue.Empty
    >>> asyncio.run(poll_in_slices(get, timeout=0.05, step=0.01))
    Traceback (most recent call last):
    ...
    _queue.Empty
    """
    from queue import Empty

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
        try:
            return await get(left)
        except Empty:
            if deadline is not None and time.monotonic() >= deadline:
                raise


@functools.cache
def sliced_client() -> type:
    """An async kernel client whose shell and IOPub waits go through
    :func:`poll_in_slices` (what :func:`ipc_kernel_manager` hands papermill).

    >>> sliced_client().shell_channel_class.klass.__name__
    'SlicedChannel'
    """
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from traitlets import Type

    class SlicedChannel(AsyncZMQSocketChannel):
        async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
            get = super().get_msg
            return await poll_in_slices(lambda t: get(timeout=t), timeout)

    class SlicedClient(AsyncKernelClient):
        shell_channel_class = Type(SlicedChannel)
        iopub_channel_class = Type(SlicedChannel)

    return SlicedClient


def output_dir() -> Path:
    return (_project_root() or Path.cwd()) / "runs"


def execute(notebook: Path, parameters: Mapping[str, Any] | None = None,
            out_dir: Path | None = None, timeout: float = 900,
            progress: bool = True) -> Result:
    """Execute one notebook; never raises for a failing cell, reports it instead."""
    import papermill as pm

    notebook = Path(notebook).resolve()
    out_dir = out_dir or output_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / notebook.name
    start = time.monotonic()
    try:
        pm.execute_notebook(
            str(notebook), str(output),
            parameters=dict(parameters or {}),
            cwd=str(notebook.parent),
            kernel_name="python3",
            kernel_manager_class=ipc_kernel_manager(),
            progress_bar=progress,
            execution_timeout=timeout,
            report_mode=False,
        )
    except pm.PapermillExecutionError as exc:
        error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        return Result(notebook.name, "failed", time.monotonic() - start, output, error)
    except Exception as exc:  # kernel died, timeout, invalid notebook...
        error = f"{type(exc).__name__}: {exc}".strip()
        return Result(notebook.name, "failed", time.monotonic() - start, output, error)
    return Result(notebook.name, "passed", time.monotonic() - start, output)


def shares(notebook: Path) -> frozenset[str]:
    """What ``notebook`` uses that is global to the machine (the engine's Swarm, the shared
    Prometheus...), from its metadata ``cloudlab.shares``: two notebooks that share
    something never run at the same time.

    >>> sorted(shares(notebooks()[0]))
    []
    """
    import json

    meta = json.loads(Path(notebook).read_text()).get("metadata", {}).get("cloudlab", {})
    return frozenset(meta.get("shares", ()))


def _one(args: tuple[Path, Mapping[str, Any] | None, Path | None]) -> Result:
    return execute(args[0], args[1], out_dir=args[2], progress=False)


def run_all(paths: Iterable[Path | str] = (), parameters: Mapping[str, Any] | None = None,
            progress: bool = True, jobs: int = 1, out_dir: Path | None = None
            ) -> list[Result]:
    """Execute each notebook (all chapter notebooks when none are given), ``jobs`` at a
    time: each in a process of its own, never two that :func:`shares` something. Results
    come back in the order given."""
    chosen = [Path(p) for p in paths] or notebooks()
    if jobs <= 1:
        results = []
        for i, nb in enumerate(chosen, 1):
            print(f"[{i}/{len(chosen)}] {nb.name}", flush=True)
            results.append(execute(nb, parameters, out_dir=out_dir, progress=progress))
            _said(results[-1])
        return results
    import concurrent.futures as cf
    import multiprocessing

    uses = {nb: shares(nb) for nb in chosen}
    waiting = longest_first(chosen)  # the two lanes then end close together
    running, done = {}, {}
    with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                max_tasks_per_child=1) as pool:
        while waiting or running:
            busy = frozenset().union(*(uses[nb] for nb in running.values()))
            for nb in [nb for nb in waiting if len(running) < jobs]:
                if uses[nb] & busy or len(running) >= jobs:
                    continue
                waiting.remove(nb)
                busy |= uses[nb]
                print(f"[{len(done) + len(running) + 1}/{len(chosen)}] {nb.name}", flush=True)
                running[pool.submit(_one, (nb, parameters, out_dir))] = nb
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                nb = running.pop(future)
                try:
                    done[nb] = future.result()
                except Exception as exc:  # the worker process itself died
                    done[nb] = Result(nb.name, "failed", 0.0, (out_dir or output_dir()) / nb.name,
                                      f"{type(exc).__name__}: {exc}")
                _said(done[nb])
    _remember_seconds(done.values())
    return [done[nb] for nb in chosen]


def _seconds_file() -> Path:
    from .config import settings

    return settings().state_dir / "notebook-seconds.json"


# each chapter notebook's seconds measured on this kind of machine (bench/notebooks.py,
# ci=True, two at a time): the plan of a machine that has no record of its own yet
MEASURED = Path(__file__).with_name("data") / "notebook-seconds.json"


def longest_first(paths: Iterable[Path]) -> list[Path]:
    """``paths`` in the order :func:`run_all` starts them: the longest first, by this
    machine's last run or else :data:`MEASURED` (unknown ones last, in the order given).

    >>> [p.name for p in longest_first([Path("a.ipynb"), Path("07-kubernetes.ipynb")])]
    ['07-kubernetes.ipynb', 'a.ipynb']
    """
    known = _read_seconds(MEASURED) | last_seconds()
    return sorted(paths, key=lambda nb: -known.get(Path(nb).name, 0.0))


def last_seconds() -> dict[str, float]:
    """Each notebook's time in its last passing run with ``jobs > 1`` here ({} before the
    first): :func:`run_all` starts the longest first."""
    return _read_seconds(_seconds_file())


def _read_seconds(path: Path) -> dict[str, float]:
    import json

    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _remember_seconds(results: Iterable[Result]) -> None:
    import json

    known = last_seconds() | {r.notebook: round(r.seconds, 1) for r in results
                              if r.status == "passed"}
    path = _seconds_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=1, sort_keys=True))


def _said(r: Result) -> None:
    print(f"    {r.notebook}: {r.status} in {r.seconds:.1f} s"
          + (f": {r.error}" if r.error else ""), flush=True)


def summary(results: Iterable[Result], wall: float | None = None) -> str:
    """A plain-text table: notebook, status, seconds (and the error of failures); with
    ``wall``, the elapsed time too, beside the sum of the notebooks' own."""
    results = list(results)
    width = max([len("notebook"), *(len(r.notebook) for r in results)])
    lines = [f"{'notebook'.ljust(width)}  status  seconds", "-" * (width + 17)]
    for r in results:
        lines.append(f"{r.notebook.ljust(width)}  {r.status:<6}  {r.seconds:7.1f}")
        if r.error:
            lines.append(f"{'':{width}}  -> {r.error.splitlines()[0][:200]}")
    passed = sum(r.status == "passed" for r in results)
    total = sum(r.seconds for r in results)
    lines.append(f"{passed}/{len(results)} notebooks passed in {total:.1f} s")
    if wall is not None:
        lines[-1] = (f"{passed}/{len(results)} notebooks passed: {wall:.1f} s wall clock, "
                     f"{total:.1f} s of notebook time")
    return "\n".join(lines)
