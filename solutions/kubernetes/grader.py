"""Trusted graders of ``kubernetes`` (instructor side: never released, never in a sandbox).

The manifests: the host's pre-grade hook (:func:`cloudlab.checks.kubernetes.manifest_side`)
read the submitted YAML defensively, checked it against the schemas and the semantic
rules, and applied it into a clean namespace of its own on the grading cluster as a
namespaced service account, before the notebook ran. Each of those graders turns one hook
result into points (``passed``).

The replica function: the answer cell is executed from its source in the grading sandbox
(``call`` probes: no notebook, no files of theirs, no network), ``desired_replicas`` is
called there with the arguments of the cases below, and only its results come back. They
are compared HERE, on the host: the expected values never leave the trusted side.
"""

from cloudlab.grading.trusted import Opaque, Raised, call, cell, expect, grader, passed

# (current_replicas, current_metric, target_metric, min_replicas, max_replicas) -> expected
VISIBLE = [((1, 200, 100, 1, 10), 2), ((4, 50, 100, 1, 10), 2), ((4, 105, 100, 1, 10), 4)]
HIDDEN = {
    "rule_tolerance": [  # |ratio - 1| <= 0.1 keeps the count; just outside it scales
        ((4, 95, 100, 1, 10), 4), ((10, 108, 100, 1, 20), 10), ((10, 92, 100, 1, 20), 10),
        ((5, 112, 100, 1, 20), 6), ((10, 85, 100, 1, 20), 9), ((3, 60, 50, 1, 10), 4)],
    "rule_clamp": [      # the result always lies in [min_replicas, max_replicas]
        ((3, 900, 50, 2, 10), 10), ((6, 5, 50, 2, 10), 2), ((12, 50, 50, 1, 10), 10),
        ((1, 50, 50, 3, 10), 3), ((2, 400, 100, 1, 6), 6)],
    "rule_zero_missing": [  # a zero metric scales to the floor; no metric (None) keeps it
        ((4, 0, 50, 1, 10), 1), ((4, 0, 50, 2, 10), 2), ((4, None, 50, 1, 10), 4),
        ((7, None, 50, 1, 10), 7), ((4, None, 50, 5, 10), 5)],
}
ANSWER_CELL = "replicas_function"
PLACEHOLDER = "raise NotImplementedError()"
FORBIDDEN = ("cloudlab", "import cl", "__import__", "importlib")


@grader("q1_valid")
def valid(sub):
    """The three files parse safely, hold the right kinds and pass the strict schemas."""
    passed(sub, "valid")


@grader("q2_consistent")
def consistent(sub):
    passed(sub, "consistent")


@grader("rule_cpu_requests")
def cpu_requests(sub):
    passed(sub, "cpu_requests")


@grader("rule_probes")
def probes(sub):
    passed(sub, "probes")


@grader("rule_pull_policy")
def pull_policy(sub):
    passed(sub, "pull_policy")


@grader("rule_cluster")
def cluster(sub):
    """Applied into a clean namespace of its own: pods Ready, endpoints, HPA on the Deployment."""
    passed(sub, "cluster")


# -- the replica function ---------------------------------------------------------------------

def _replicas(grade_id: str, cases: list, what: str):
    """A grader calling ``desired_replicas`` on ``cases`` in the sandbox, judged here."""
    probes = {f"case{i}": call("desired_replicas", *args, cells=ANSWER_CELL)
              for i, (args, _) in enumerate(cases)}

    @grader(grade_id, source=cell(ANSWER_CELL), **probes)
    def check(sub, source, **got):
        expect(bool(source.strip()) and PLACEHOLDER not in source,
               "desired_replicas is not written (the cell of part D)")
        used = [w for w in FORBIDDEN if w in source]
        expect(not used, "desired_replicas must be your own code (the standard library is "
               f"fine, the workbook's helpers are not): found {', '.join(used)}")
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
