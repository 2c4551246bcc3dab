"""nbgrader's Execute step, run in the sandbox, that always finishes with a verdict.

Stock nbgrader drops a whole submission when the kernel dies and can hang on output floods.
Here a dead kernel, a blown time budget or a kernel that never starts stop execution and
every cell not run gets an error output saying why - so its tests score 0 and the cells run
before it keep their scores (:mod:`.budget`, shared with the Kubernetes backend's pod).
What happened is recorded in ``budget.OUTCOME`` for the worker.
Outputs of every kind are capped on the host side too: a message over
:data:`~.sandbox.MAX_MESSAGE` bytes is refused by ZMQ itself, and streams, displays, display
updates, comm (widget) messages and errors share per-cell and per-notebook budgets.
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute

from . import budget, sandbox
from .budget import (  # noqa: F401 (the names callers know)
    CELL_OUTPUT_LIMIT,
    MAX_ERRORS,
    NOTEBOOK_OUTPUT_LIMIT,
    Outcome,
    reset,
)


class SandboxExecute(budget.Budgeted, Execute):
    """Execute each notebook in the active sandbox; never raise for what students did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["kernel_manager_class"] = sandbox.SandboxKernelManager
        super().__init__(*args, **kwargs)

    @property
    def memory(self) -> str:  # type: ignore[override]
        return sandbox.active().limits.memory

    def kernel_state(self) -> dict[str, Any]:
        return sandbox.active().state

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None):
        notebook = (resources or {}).get("nbgrader", {}).get("notebook", "notebook")
        done: list = []
        self.guarded(nb, notebook, lambda: done.append(super(SandboxExecute, self).preprocess(
            nb, resources, km)))
        return done[0] if done else (nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int):
        self._current = index
        return super().preprocess_cell(cell, resources, index)
