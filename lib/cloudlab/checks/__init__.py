"""Checks that exercise tests call, with messages written for students.

Every graded exercise builds on three things:

* :func:`expect` - one condition; when false it raises :class:`CheckFailed`, whose text
  says what was expected, what was found and gives a hint (never a bare traceback);
* :func:`register` - marks a function ``fn(namespace)`` as a *visible* check of one
  question of one assignment (per-exercise checkers live in ``cloudlab/checks/<name>.py``,
  ``docker-hub`` -> ``docker_hub.py``);
* :func:`check` - what a student calls in a notebook: ``cl.check("q1")`` runs that
  question's visible checks against the notebook's variables, prints friendly feedback
  and returns True/False without raising. Test cells use :func:`verify`, which raises
  instead so that nbgrader records the failure (with the same message).

The exercise notebook names its assignment in its first cell: ``ASSIGNMENT = "docker-hub"``.

>>> expect(1 + 1 == 2, "one plus one is two")
>>> answer = 6 + 7
>>> try:
...     expect(answer == 42, "the answer should be 42", expected=42, found=answer,
...            hint="multiply, do not add")
... except CheckFailed as failure:
...     print(failure)
the answer should be 42
    expected: 42
    found:    13
    hint:     multiply, do not add
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import reprlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CheckFailed", "check", "expect", "register", "registered", "trusted", "verify"]

CheckFn = Callable[[dict], None]
_REGISTRY: dict[tuple[str, str], list[CheckFn]] = {}
TRUSTED_RESULTS_ENV = "CLOUDLAB_TRUSTED_RESULTS"
GRADING_ASSIGNMENT_ENV = "CLOUDLAB_GRADING_ASSIGNMENT"

_repr = reprlib.Repr()
_repr.maxstring = 160
_repr.maxother = 160
_repr.maxlist = _repr.maxdict = _repr.maxset = _repr.maxtuple = 8


class CheckFailed(AssertionError):
    """A check did not pass; carries ``expected``, ``found`` and ``hint`` for the student."""

    def __init__(self, message: str, *, expected: Any = None, found: Any = None,
                 hint: str | None = None) -> None:
        self.message = str(message)
        self.expected = expected
        self.found = found
        self.hint = hint
        super().__init__(self.message)

    def __str__(self) -> str:
        lines = [self.message]
        if self.expected is not None or self.found is not None:
            lines.append(f"    expected: {_show(self.expected)}")
            lines.append(f"    found:    {_show(self.found)}")
        if self.hint:
            lines.append(f"    hint:     {self.hint}")
        return "\n".join(lines)


def _show(value: Any) -> str:
    return value if isinstance(value, str) and "\n" not in value and len(value) < 160 \
        else _repr.repr(value)


def expect(condition: bool, message: str, *, expected: Any = None, found: Any = None,
           hint: str | None = None) -> None:
    """Raise :class:`CheckFailed` with ``message`` (and the details given) unless true."""
    if not condition:
        raise CheckFailed(message, expected=expected, found=found, hint=hint)


def _key(assignment: str) -> str:
    return assignment.strip().lower().replace("_", "-")


def module_name(assignment: str) -> str:
    """The checker module of an assignment: ``docker-hub`` -> ``cloudlab.checks.docker_hub``."""
    return f"{__name__}.{_key(assignment).replace('-', '_')}"


def register(assignment: str, question: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: ``fn(namespace)`` becomes a visible check of ``question``.

    >>> @register("example", "q1")
    ... def answer_is_42(ns):
    ...     expect(ns.get("answer") == 42, "answer should be 42",
    ...            expected=42, found=ns.get("answer"))
    >>> check("q1", {"ASSIGNMENT": "example", "answer": 42})
    ✓ q1: passed (1 check)
    True
    """
    def decorate(fn: CheckFn) -> CheckFn:
        checks = _REGISTRY.setdefault((_key(assignment), question), [])
        if fn not in checks:
            checks.append(fn)
        return fn

    return decorate


def registered(assignment: str, question: str | None = None) -> dict[str, list[CheckFn]]:
    """The visible checks of ``assignment`` (importing its checker module), by question."""
    _load(assignment)
    key = _key(assignment)
    return {q: list(fns) for (a, q), fns in _REGISTRY.items()
            if a == key and (question is None or q == question)}


def _load(assignment: str) -> None:
    try:
        importlib.import_module(module_name(assignment))
    except ModuleNotFoundError as exc:
        if exc.name != module_name(assignment):
            raise


def _caller_namespace(depth: int = 2) -> dict:
    try:
        shell = get_ipython()  # type: ignore[name-defined]
        if shell is not None and shell.user_ns is not None:
            return shell.user_ns
    except NameError:
        pass
    frame = inspect.stack()[depth].frame
    return frame.f_globals


def current_assignment(namespace: dict) -> str | None:
    """The assignment being worked on: the grader's setting, else ``ASSIGNMENT`` in the notebook."""
    found = (os.environ.get(GRADING_ASSIGNMENT_ENV) or namespace.get("ASSIGNMENT")
             or os.environ.get("CLOUDLAB_ASSIGNMENT"))
    return str(found) if found else None


def _run(question: str, namespace: dict) -> int:
    """Run the visible checks of ``question``; raise CheckFailed on the first failure."""
    assignment = current_assignment(namespace)
    if assignment is None:
        raise CheckFailed("this notebook does not say which assignment it belongs to",
                          hint='its first cell should set ASSIGNMENT = "<assignment name>"; '
                               "run that cell first")
    checks = registered(assignment).get(question)
    if not checks:
        known = ", ".join(sorted(registered(assignment))) or "none"
        raise CheckFailed(f"there is no check called {question!r} in assignment {assignment!r}",
                          hint=f"the questions with checks are: {known}")
    for fn in checks:
        try:
            fn(namespace)
        except CheckFailed:
            raise
        except NotImplementedError:
            raise CheckFailed(f"{question}: this question is not answered yet",
                              hint="replace `raise NotImplementedError()` in its answer cell "
                                   "with your code, run that cell, then check again") from None
        except NameError as exc:
            raise CheckFailed(f"{question}: something the check needs is not defined yet ({exc})",
                              hint="run the cells above this one (top to bottom), then check "
                                   "again") from None
        except Exception as exc:
            raise CheckFailed(f"{question}: the check could not run: "
                              f"{type(exc).__name__}: {exc}",
                              hint="look at the cells this question asks for; an error there "
                                   "usually explains this") from None
    return len(checks)


def check(question: str, namespace: dict | None = None) -> bool:
    """Run ``question``'s visible checks, print what passed or what to fix; True if all pass."""
    ns = namespace if namespace is not None else _caller_namespace()
    try:
        count = _run(question, ns)
    except CheckFailed as failure:
        text = str(failure)
        print(f"✗ {question}: " + text.replace("\n", "\n  "))
        return False
    print(f"✓ {question}: passed ({count} check{'s' if count != 1 else ''})")
    return True


def verify(question: str, namespace: dict | None = None, *, keep_going: bool = False) -> None:
    """Like :func:`check` but raises :class:`CheckFailed`: for nbgrader test cells.

    With ``keep_going=True`` in a Jupyter kernel, a failure is shown as the cell's error
    output (so nbgrader's validate and ``cloudlab grade validate`` count the test as failed)
    but the cell itself completes: *Run All* goes on to the next parts, whose cells write
    the files the grader reads. Outside a kernel it raises as usual.

    >>> @register("example", "q9")
    ... def never(ns):
    ...     expect(False, "not yet")
    >>> verify("q9", {"ASSIGNMENT": "example"}, keep_going=True)
    Traceback (most recent call last):
    ...
    cloudlab.checks.CheckFailed: q9: not yet
    """
    ns = namespace if namespace is not None else _caller_namespace()
    try:
        _run(question, ns)
    except CheckFailed as failure:
        if not failure.message.startswith(question):
            failure.message = f"{question}: {failure.message}"
        shell = _kernel_shell() if keep_going else None
        if shell is None:
            raise failure.with_traceback(None) from None
        text = f"{type(failure).__name__}: {failure}"
        shell._showtraceback(type(failure), failure, text.splitlines())


def _kernel_shell() -> Any:
    """The IPython shell of a Jupyter kernel (one that publishes outputs), else None."""
    try:
        from IPython import get_ipython as _get
    except ImportError:
        return None
    shell = _get()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def trusted(key: str) -> Any:
    """A result the grader computed outside the sandbox (say, building your Dockerfile).

    Returns the result's data when it passed; raises :class:`CheckFailed` with the grader's
    message otherwise. The scores of test cells that call ``trusted("key")`` are also decided
    by the grader itself, so they cannot be faked from inside the notebook.
    """
    path = Path(os.environ.get(TRUSTED_RESULTS_ENV, "/grader/results.json"))
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CheckFailed(f"{key}: this check runs only when your work is graded",
                          hint="the grader builds and runs your files on its own machine; "
                               "use the visible checks to test your work now") from None
    entry = results.get(key)
    if not isinstance(entry, dict):
        raise CheckFailed(f"{key}: the grader has no result for this check",
                          hint="is the file it needs part of your submission?")
    if not entry.get("passed"):
        raise CheckFailed(f"{key}: {entry.get('message') or 'failed'}",
                          expected=entry.get("expected"), found=entry.get("found"),
                          hint=entry.get("hint"))
    return entry.get("data")


def _install_friendly_tracebacks() -> None:
    """In IPython, show a failed check as its message instead of a traceback."""
    shell = None
    try:
        from IPython import get_ipython as _get

        shell = _get()
    except Exception:  # not running under IPython
        return
    if shell is None or getattr(shell, "custom_exceptions", ()):
        return

    def show(shell, etype, value, tb, tb_offset=None):  # IPython's custom_exc signature
        text = f"{etype.__name__}: {value}"
        shell._showtraceback(etype, value, text.splitlines())

    shell.set_custom_exc((CheckFailed,), show)


if "IPython" in sys.modules:
    _install_friendly_tracebacks()

# the chapter notebooks' self-checks: `cl.checks.chapter.your_turn("09")` with no import
from . import chapter as chapter  # noqa: E402
