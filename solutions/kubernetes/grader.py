"""Trusted graders of ``kubernetes`` (instructor side: never released, never in a sandbox).

The manifests: the host's pre-grade hook (:func:`cloudlab.checks.kubernetes.manifest_side`)
read the submitted YAML defensively, checked it against the schemas and the semantic
rules, and applied it into a clean namespace of its own on the grading cluster as a
namespaced service account, before the notebook ran (on a real node, with the image built
from the submitted Dockerfile, confined, in place of hello-cli:1.1). Each of those graders
turns one hook result into points (``passed``).

The replica function: the answer cell is executed from its source in the grading sandbox
(``call`` probes: no notebook, no files of theirs, no network), in an interpreter that can
import the standard library and nothing else (``stdlib_only``: the text says "standard
library only"), ``desired_replicas`` is called there with the arguments of the cases
below, and only its results come back. They are compared HERE, on the host: the expected
values never leave the trusted side.

The arithmetic is the controller's (the text says so): the ratio as a float first, then
``ceil(ratio * current_replicas)``; the band ``0.9 <= ratio <= 1.1`` compared on the ratio
itself, both edges inside. Every expected value below is what ``cl.hpa`` (the same float
maths) gives; tests/unit/test_kubernetes_exercise.py checks that, and that exact
arithmetic differs from it only in ``rule_float_ratio``.
"""

from cloudlab.grading.trusted import Opaque, Raised, call, cell, expect, grader, passed

# (current_replicas, current_metric, target_metric, min_replicas, max_replicas) -> expected
VISIBLE = [((1, 200, 100, 1, 10), 2), ((4, 50, 100, 1, 10), 2), ((4, 105, 100, 1, 10), 4)]
HIDDEN = {
    "rule_tolerance": [  # 0.9 <= ratio <= 1.1 keeps the count (both edges); outside scales
        ((4, 95, 100, 1, 10), 4), ((10, 108, 100, 1, 20), 10), ((10, 92, 100, 1, 20), 10),
        ((10, 110, 100, 1, 20), 10), ((20, 45, 50, 1, 40), 20),    # on the edges
        ((5, 112, 100, 1, 20), 6), ((10, 85, 100, 1, 20), 9), ((3, 60, 50, 1, 10), 4)],
    "rule_clamp": [      # the result always lies in [min_replicas, max_replicas]
        ((3, 900, 50, 2, 10), 10), ((6, 5, 50, 2, 10), 2), ((12, 50, 50, 1, 10), 10),
        ((1, 50, 50, 3, 10), 3), ((2, 400, 100, 1, 6), 6)],
    "rule_zero_missing": [  # a zero metric scales to the floor; no metric (None) keeps it
        ((4, 0, 50, 1, 10), 1), ((4, 0, 50, 2, 10), 2), ((4, None, 50, 1, 10), 4),
        ((7, None, 50, 1, 10), 7), ((4, None, 50, 5, 10), 5)],
    "rule_float_ratio": [  # float edges: the controller's float maths, not exact fractions
        ((7, 290, 70, 1, 40), 30), ((11, 250, 110, 1, 40), 26)],
}
ANSWER_CELL = "replicas_function"
PLACEHOLDER = "raise NotImplementedError()"


@grader("q1_valid")
def valid(sub):
    """The three files parse safely, hold the right kinds and pass the strict schemas."""
    passed(sub, "valid")


@grader("q2_consistent")
def consistent(sub):
    passed(sub, "consistent")


@grader("rule_cpu_requests")
def cpu_requests(sub):
    """The container requests 100m of CPU and 128Mi of memory (equal quantities count)."""
    passed(sub, "cpu_requests")


@grader("rule_probes")
def probes(sub):
    passed(sub, "probes")


@grader("rule_pull_policy")
def pull_policy(sub):
    passed(sub, "pull_policy")


@grader("rule_deployment_values")
def deployment_values(sub):
    """Named hello: 2 replicas of hello-cli:1.1 in a container hello, 8080 named http."""
    passed(sub, "deployment_values")


@grader("rule_service_values")
def service_values(sub):
    """Named hello, type ClusterIP (or unset: the default), port 80."""
    passed(sub, "service_values")


@grader("rule_hpa_values")
def hpa_values(sub):
    """Named hello, on the Deployment hello, 1 to 5 replicas, 50 % average CPU."""
    passed(sub, "hpa_values")


@grader("rule_cluster")
def cluster(sub):
    """Own namespace: Ready pods, endpoints, HPA; real node: own image, own probes, GET / greets."""
    passed(sub, "cluster")


# -- the replica function ---------------------------------------------------------------------

def _replicas(grade_id: str, cases: list, what: str):
    """A grader calling ``desired_replicas`` on ``cases`` in the sandbox, judged here."""
    probes = {f"case{i}": call("desired_replicas", *args, cells=ANSWER_CELL, stdlib_only=True)
              for i, (args, _) in enumerate(cases)}

    @grader(grade_id, source=cell(ANSWER_CELL), **probes)
    def check(sub, source, **got):
        expect(bool(source.strip()) and PLACEHOLDER not in source,
               "desired_replicas is not written (the cell of part D)")
        missing = [v for v in got.values() if isinstance(v, Raised)
                   and v.kind in ("ModuleNotFoundError", "ImportError")]
        expect(not missing, "desired_replicas must be your own code with the standard library "
               "only: where it runs, the workbook's helpers and third-party packages (numpy, "
               f"...) cannot be imported ({missing[0] if missing else ''})")
        wrong = []
        for i, (args, want) in enumerate(cases):
            value = got[f"case{i}"]
            if isinstance(value, Raised | Opaque):      # it raised, hung or gave an object
                wrong.append(f"desired_replicas{tuple(args)} gave {value}")
            elif type(value) is not int:                # a bool or a float is never right
                wrong.append(f"desired_replicas{tuple(args)} gave {type(value).__name__} "
                             f"{value!r}, not an int")
            elif value != want:
                wrong.append(f"desired_replicas{tuple(args)} gave {value!r}")
        expect(not wrong, f"{what}: {len(wrong)} of {len(cases)} cases wrong, e.g. "
               f"{wrong[0] if wrong else ''}")

    check.fn.__name__ = grade_id
    return check


replicas_visible = _replicas("q3_replicas", VISIBLE, "the documentation's examples")
tolerance = _replicas("rule_tolerance", HIDDEN["rule_tolerance"], "the 0.1 tolerance band")
clamp = _replicas("rule_clamp", HIDDEN["rule_clamp"], "min/max clamping")
zero_missing = _replicas("rule_zero_missing", HIDDEN["rule_zero_missing"],
                         "zero and missing metrics")
float_ratio = _replicas("rule_float_ratio", HIDDEN["rule_float_ratio"],
                        "the controller's float arithmetic (ratio first, then the ceiling)")
