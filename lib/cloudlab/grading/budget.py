"""A notebook run that always finishes with a verdict: one time budget, capped outputs.

Shared by the two places a submission's notebook is executed: :mod:`.executor` (nbgrader's
Execute on the instructor's machine, the kernel in a local container) and :mod:`.podrun`
(nbclient inside a Kubernetes Job's pod). Whichever runs it, a dead kernel, a blown time
budget or a kernel that never starts stop execution, and every cell not run gets an error
output saying why, so its tests score 0 and the cells run before it keep their scores.
Every output kind shares per-cell and per-notebook budgets (streams, displays, display
updates, comm/widget messages, errors). Needs nbclient and nbformat only (no nbgrader: the
grading image imports it).

>>> outcome = reset(30)
>>> outcome.status, outcome.budget
('graded', 30)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

CELL_OUTPUT_LIMIT = 200_000  # characters kept per cell
NOTEBOOK_OUTPUT_LIMIT = 2_000_000
MAX_ERRORS = 3  # error outputs kept per cell (a cell raises once; more were sent by hand)


@dataclass
class Outcome:
    budget: float = 60.0  # wall-clock seconds for all notebooks of the submission
    started: float = field(default_factory=time.monotonic)
    status: str = "graded"  # graded | timed out | crashed
    reason: str = ""
    truncated: bool = False

    def remaining(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "truncated": self.truncated}


OUTCOME = Outcome()


def reset(budget: float, used: float = 0.0) -> Outcome:
    """A fresh outcome for one submission (``used``: seconds of the budget already gone)."""
    global OUTCOME
    OUTCOME = Outcome(budget=budget, started=time.monotonic() - used)
    return OUTCOME


def current() -> Outcome:
    return OUTCOME


def error(ename: str, text: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=text,
                        traceback=[f"{ename}: {text}"])


def _size(out: dict[str, Any]) -> int:
    if "text" in out:
        return len(out["text"])
    if isinstance(out.get("data"), dict):
        return sum(len(v) if isinstance(v, str) else len(json.dumps(v, default=str))
                   for v in out["data"].values())
    if "traceback" in out:
        return sum(len(line) for line in out["traceback"])
    return len(json.dumps(out, default=str))


def mark(nb: NotebookNode, start: int, reason: str, ename: str,
         first_gets: str | None = None) -> None:
    """Cells from ``start`` on get an error saying why they did not run (the first one,
    with ``first_gets``, keeps its outputs and gets that error added)."""
    for index in range(start, len(nb.cells)):
        cell = nb.cells[index]
        if cell.cell_type != "code":
            continue
        if index == start and first_gets:
            cell.setdefault("outputs", []).append(error(first_gets, reason))
        else:
            cell.outputs = [error("NotRun", f"not run: {reason}")]


def over(nb: NotebookNode) -> bool:
    """Whether the submission already stopped (or ran out of time): then every code cell of
    ``nb`` says so, and it must not run.

    >>> import nbformat.v4 as v4
    >>> _ = reset(0)
    >>> nb = v4.new_notebook(cells=[v4.new_code_cell("1")])
    >>> over(nb), nb.cells[0].outputs[0].ename
    (True, 'NotRun')
    """
    if OUTCOME.status == "graded" and OUTCOME.remaining() > 0:
        return False
    mark(nb, 0, OUTCOME.reason or "the time limit was reached before this notebook ran",
         "NotRun")
    return True


class Budgeted:
    """Mixed into an nbclient ``NotebookClient`` (or nbconvert/nbgrader's Execute): the whole
    submission shares :data:`OUTCOME`'s time budget and output caps. Subclasses say how the
    kernel ended (:meth:`kernel_state`) and what its memory limit is (:attr:`memory`)."""

    memory = "512m"

    def kernel_state(self) -> dict[str, Any]:
        """``exit_code``, ``oom_killed``, ``log_tail`` of the kernel that stopped."""
        return {}

    def _get_timeout(self, cell: NotebookNode | None) -> int | None:
        return max(1, int(OUTCOME.remaining() + 0.999))

    def begin(self) -> None:
        self._current = -1
        self._sizes: dict[int, int] = {}
        self._errors: dict[int, int] = {}
        self._total = 0

    def guarded(self, nb: NotebookNode, notebook: str, run: Callable[[], Any]) -> bool:
        """``run()`` the notebook; never raise for what the student's code did. Returns
        whether ``run`` completed (else every cell not run says why)."""
        self.begin()
        if over(nb):
            return False
        try:
            run()
            return True
        except CellTimeoutError:
            self._stop(nb, "timed out",
                       f"{notebook}: the time limit of {OUTCOME.budget:g} s was reached "
                       f"while running {self._where(nb)}", "TimeoutError")
        except DeadKernelError:
            self._stop(nb, "crashed", f"{notebook}: {self._why_dead()} "
                       f"while running {self._where(nb)}", "KernelDied")
        except Exception as exc:  # the kernel did not start or answer
            if self._current >= 0 and OUTCOME.remaining() <= 0:
                self._stop(nb, "timed out", f"{notebook}: the time limit of "
                           f"{OUTCOME.budget:g} s was reached", "TimeoutError")
            else:
                detail = self.kernel_state().get("log_tail", "").strip().splitlines()[-3:]
                self._stop(nb, "crashed", f"{notebook}: the sandbox kernel stopped answering "
                           f"({type(exc).__name__}: {exc}) " + " | ".join(detail), "KernelDied")
        return False

    def _where(self, nb: NotebookNode) -> str:
        if not 0 <= self._current < len(nb.cells):
            return "the notebook"
        cell = nb.cells[self._current]
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {self._current + 1}" + (f" ({grade_id})" if grade_id else "")

    def _why_dead(self) -> str:
        state = self.kernel_state()
        if state.get("oom_killed") or state.get("exit_code") == 137:
            memory = self.memory.upper().rstrip("B")
            return f"out of memory (the notebook used more than {memory}B of memory)"
        code = state.get("exit_code")
        return f"the kernel exited (exit code {code})" if code is not None else "the kernel died"

    def _stop(self, nb: NotebookNode, status: str, reason: str, ename: str) -> None:
        OUTCOME.status, OUTCOME.reason = status, reason
        mark(nb, max(self._current, 0), reason, ename, first_gets=ename)

    def process_message(self, msg: dict, cell: NotebookNode, cell_index: int):
        """Every message kind counts against the same per-cell and per-notebook budgets
        (display updates, comm/widget messages and errors included); over budget, it is
        dropped before nbclient stores anything of it."""
        kind = msg.get("msg_type", "")
        if kind.startswith("comm") or kind in ("update_display_data", "error"):
            content = msg.get("content", {})
            size = _size(content) + sum(len(b) for b in msg.get("buffers") or [])
            if kind == "error":
                self._errors[cell_index] = self._errors.get(cell_index, 0) + 1
                if self._errors[cell_index] > MAX_ERRORS:
                    OUTCOME.truncated = True
                    return None
            elif not self._admit(cell_index, size):
                return None
        return super().process_message(msg, cell, cell_index)  # type: ignore[misc]

    def _admit(self, cell_index: int, size: int) -> bool:
        used = self._sizes.get(cell_index, 0)
        if used + size > CELL_OUTPUT_LIMIT or self._total + size > NOTEBOOK_OUTPUT_LIMIT:
            OUTCOME.truncated = True
            return False
        self._sizes[cell_index] = used + size
        self._total += size
        return True

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int):
        parent = super()
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":  # errors decide scores: always kept, kept short
            content["traceback"] = [line[:2000] for line in content.get("traceback", [])[-40:]]
            content["evalue"] = str(content.get("evalue", ""))[:5000]
            return parent.output(outs, msg, display_id, cell_index)  # type: ignore[misc]
        size = _size(content)
        used = self._sizes.get(cell_index, 0)
        if "output truncated by the grader" in str(content.get("text", "")):
            OUTCOME.truncated = True  # the kernel-side cap already cut this cell
        if used >= CELL_OUTPUT_LIMIT or self._total >= NOTEBOOK_OUTPUT_LIMIT:
            if used < CELL_OUTPUT_LIMIT + 1:  # say it once per cell
                self._sizes[cell_index] = CELL_OUTPUT_LIMIT + 1
                OUTCOME.truncated = True
                outs.append(NotebookNode(output_type="stream", name="stderr",
                                         text="\n[output truncated by the grader]\n"))
            return None
        room = min(CELL_OUTPUT_LIMIT - used, NOTEBOOK_OUTPUT_LIMIT - self._total)
        if size > room and isinstance(content.get("text"), str):
            content["text"] = content["text"][:room] + "\n[output truncated by the grader]\n"
            OUTCOME.truncated = True
            self._sizes[cell_index] = CELL_OUTPUT_LIMIT + 1
            self._total += room
            return parent.output(outs, msg, display_id, cell_index)  # type: ignore[misc]
        self._sizes[cell_index] = used + size
        self._total += size
        return parent.output(outs, msg, display_id, cell_index)  # type: ignore[misc]
