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
from collections.abc import Iterable, Mapping
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
            super().__init__(**kwargs)

    return IpcKernelManager


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


def run_all(paths: Iterable[Path | str] = (), parameters: Mapping[str, Any] | None = None,
            progress: bool = True) -> list[Result]:
    """Execute each notebook (all chapter notebooks when none are given)."""
    chosen = [Path(p) for p in paths] or notebooks()
    results = []
    for i, nb in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {nb.name}", flush=True)
        results.append(execute(nb, parameters, progress=progress))
        last = results[-1]
        print(f"    {last.status} in {last.seconds:.1f} s"
              + (f": {last.error}" if last.error else ""), flush=True)
    return results


def summary(results: Iterable[Result]) -> str:
    """A plain-text table: notebook, status, seconds (and the error of failures)."""
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
    return "\n".join(lines)
