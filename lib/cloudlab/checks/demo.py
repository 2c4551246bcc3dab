"""Visible checks of the ``demo`` assignment: the pattern every exercise's checker follows.

The grading engine's tests and benchmark use ``demo`` (tests/grading/fixtures). A checker
module registers one or more functions per question; each receives the notebook's variables
and calls :func:`cloudlab.checks.expect` with a message a student can act on. Hidden tests
are NOT written here (this file is public): they live in the instructor's
``solutions/demo/grader.py``, whose verdicts are the only scores (see
:mod:`cloudlab.grading.trusted`).
"""

from __future__ import annotations

from . import expect, register

ASSIGNMENT = "demo"


def _function(ns: dict, name: str):
    fn = ns.get(name)
    expect(callable(fn), f"define a function called {name}()",
           hint=f"write `def {name}(...):` in the answer cell and run it")
    return fn


@register(ASSIGNMENT, "q1")
def add_adds(ns: dict) -> None:
    add = _function(ns, "add")
    found = add(2, 3)
    expect(found == 5, "add(2, 3) should return the sum of its arguments",
           expected=5, found=found, hint="use `return a + b` (printing is not returning)")


@register(ASSIGNMENT, "q2")
def mean_of_list(ns: dict) -> None:
    mean = _function(ns, "mean")
    found = mean([1, 2, 3, 4])
    expect(found == 2.5, "mean([1, 2, 3, 4]) should be 2.5", expected=2.5, found=found,
           hint="divide the sum by how many values there are")


@register(ASSIGNMENT, "q3")
def squares_list(ns: dict) -> None:
    found = ns.get("squares")
    expect(found == [n * n for n in range(1, 6)],
           "squares should hold the squares of 1 to 5, in order",
           expected=[1, 4, 9, 16, 25], found=found, hint="try a list comprehension")
