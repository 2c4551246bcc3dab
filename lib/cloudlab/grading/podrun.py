"""The notebook runner INSIDE a Kubernetes grading Job's pod (the grading image; no nbgrader).

``python3 -I -m cloudlab.grading.podrun /job/run.json`` executes one notebook's cells the
way the local engine's :class:`~.executor.SandboxExecute` does (the same :mod:`.budget`:
one time budget, output caps, a verdict whatever happens), with the same kernel
(``python3 -I -m cloudlab.grading.kernel``: the checkers imported and frozen, the
submission copied into ``/work``), started as this process's child in the same locked-down
container. The host (:mod:`.kubejobs`) reads the one result line from the container's log
and puts the outputs into its own copy of the notebook; nbgrader, the gradebook and the
scores stay on the host.

``run.json`` holds cell types, sources and grade ids only (hidden-test regions already
stripped on the host; no metadata, no checksums), the budget, and nbgrader's Execute
settings. Only this process writes to the container's stdout: it moves its own stdout and
stderr (which the kernel inherits) to a log file in ``/tmp`` first, keeps the real stdout
on a close-on-exec descriptor, and makes itself non-dumpable (``/proc/<pid>/fd`` closed
to the student's processes). The result is one line, :data:`MARK` + base64(zlib(JSON)),
at most :data:`MAX_RESULT` bytes: over it, the line says so instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

MARK = "CLOUDLAB-NOTEBOOK-RESULT:"
MAX_RESULT = 4 * 2**20  # bytes of the encoded result line (the host reads no more)
LOG = "/tmp/runner.log"
ENDED: dict[str, Any] = {}  # how the kernel process ended (its exit code)
KERNEL_ARGV = ["/usr/bin/python3", "-I", "-m", "cloudlab.grading.kernel", "-f",
               "{connection_file}"]


def encode(data: dict[str, Any]) -> str:
    """One result line.

    >>> decode(encode({"a": 1})[len(MARK):])
    {'a': 1}
    """
    raw = zlib.compress(json.dumps(data, default=str).encode(), 6)
    return MARK + base64.b64encode(raw).decode()


def decode(text: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(text.strip(), validate=True)))


def result_line(data: dict[str, Any], cap: int = MAX_RESULT) -> str:
    """``data`` encoded, or (over ``cap`` bytes) an error line saying by how much.

    >>> result_line({"x": "y" * 10}, cap=10).startswith(MARK)
    True
    """
    line = encode(data)
    if len(line) > cap:
        line = encode({"error": f"the executed notebook is {len(line)} bytes once encoded, "
                                f"over the cap of {cap} bytes"})
    return line


def oom_kills() -> int:
    """How many processes the kernel's OOM killer took in this container's memory cgroup
    (cgroup v1 ``memory.oom_control`` or v2 ``memory.events``); 0 when unreadable."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(path).read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    return 0


def _client_class():
    import uuid

    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner
    from nbclient import NotebookClient
    from nbformat import NotebookNode

    from .budget import Budgeted

    class Recording(LocalProvisioner):
        """The local provisioner, remembering how the kernel process ended."""

        def _record(self) -> None:
            if self.process is not None and self.process.poll() is not None:
                ENDED["exit_code"] = self.process.returncode

        async def poll(self) -> int | None:
            code = await super().poll()
            self._record()
            return code

        async def cleanup(self, restart: bool = False) -> None:
            self._record()
            await super().cleanup(restart)

    class PodKernelManager(AsyncKernelManager):
        """The grading kernel as a child process of this runner."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._kernel_spec = KernelSpec(argv=list(KERNEL_ARGV), language="python",
                                           display_name="Python 3 (grading pod)",
                                           interrupt_mode="signal", metadata={})
            self.kernel_id = str(uuid.uuid4())
            self.provisioner = Recording(kernel_id=self.kernel_id,
                                         kernel_spec=self._kernel_spec, parent=self)

        @property
        def ipykernel(self) -> bool:
            return True

    class PodExecute(Budgeted, NotebookClient):
        """nbclient with the local engine's budget and caps; nbgrader's Execute settings."""

        def __init__(self, nb, memory: str, **kwargs: Any) -> None:
            super().__init__(nb, kernel_manager_class=PodKernelManager, allow_errors=True,
                             **kwargs)
            self.memory = memory
            self._oom_before = oom_kills()

        def kernel_state(self) -> dict[str, Any]:
            code = ENDED.get("exit_code")
            if code is not None and code < 0:  # killed by a signal: as a container reports it
                code = 128 - code
            tail = ""
            with contextlib.suppress(OSError):
                tail = Path(LOG).read_text(errors="replace")[-4000:]
            return {"exit_code": code, "oom_killed": oom_kills() > self._oom_before,
                    "log_tail": tail}

        def run_cells(self) -> None:
            """As nbconvert's ExecutePreprocessor.preprocess (what nbgrader's Execute runs)."""
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                for index, cell in enumerate(self.nb.cells):
                    self._current = index
                    self.execute_cell(cell, index, store_history=True)
            self.set_widgets_metadata()

        def on_cell_executed(self, **kwargs: Any) -> None:  # type: ignore[override]
            """nbgrader's Execute hook: a reply's error that no output recorded (a timeout,
            say) is appended to the cell, so the cell counts as failed."""
            cell, reply = kwargs["cell"], kwargs["execute_reply"]
            if reply["content"]["status"] != "error":
                return
            if any(o.output_type == "error" and o.ename == reply["content"]["ename"]
                   for o in cell.outputs):
                return
            out = NotebookNode(output_type="error", ename=reply["content"]["ename"],
                               evalue=reply["content"]["evalue"],
                               traceback=reply["content"]["traceback"] or [
                                   "ERROR: An error occurred while showtraceback was disabled"])
            cell.outputs.append(out)

    return PodExecute


def notebook(spec: dict[str, Any]):
    """A notebook of the cells in ``spec`` (types, sources, grade ids only)."""
    import nbformat.v4 as v4

    cells = []
    for c in spec["cells"]:
        meta = {"nbgrader": {"grade_id": c["grade_id"]}} if c.get("grade_id") else {}
        make = v4.new_code_cell if c["type"] == "code" else v4.new_markdown_cell
        cell = make(source=c["source"], metadata=meta)
        cells.append(cell)
    return v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})


def execute(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the notebook of ``spec``; the outputs per cell and the outcome."""
    from . import budget

    nb = notebook(spec)
    outcome = budget.reset(float(spec["budget"]), float(spec.get("used", 0)))
    if not nb.cells:  # a Job for the trusted probes only
        return {"outcome": outcome.as_dict(), "cells": []}
    settings = dict(spec.get("execute") or {})
    client = _client_class()(nb, spec.get("memory", "512m"), **settings)
    client.guarded(nb, spec.get("notebook", "notebook"), client.run_cells)
    return {"outcome": outcome.as_dict(),
            "language_info": nb.metadata.get("language_info"),
            "cells": [{"outputs": c.get("outputs", []),
                       "execution_count": c.get("execution_count")} for c in nb.cells]}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    out = os.dup(1)
    os.set_inheritable(out, False)  # the kernel never gets the container's stdout
    log = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    from .probe import _undumpable

    _undumpable()
    with open(args[0]) as f:
        spec = json.load(f)
    try:
        data = execute(spec)
    except BaseException as exc:  # the runner's own failure: said, never a score
        data = {"error": f"the notebook runner failed: {type(exc).__name__}: {exc}"[:2000]}
    line = result_line(data, int(spec.get("max_result", MAX_RESULT)))
    os.write(out, ("\n" + line + "\n").encode())
    os._exit(0)


if __name__ == "__main__":
    main()
