"""Trusted graders of ``kubernetes`` (instructor side: never released, never in a sandbox).

Manifests: the host's pre-grade hook (:func:`cloudlab.checks.kubernetes.manifest_side`)
read the submitted YAML defensively, checked it against the schemas and the semantic
rules, and applied it into a fresh namespace of the grading cluster as a namespaced
service account; its results reach these graders as plain data (``passed``).

The replica function: the answer cell is executed from its source in a fresh sandbox and
``desired_replicas`` called there with the hidden cases below; only the results come back.
The expected values never leave this file.
"""

from cloudlab.grading.trusted import call, cell, expect, grader, passed

ANSWER = "replicas_function"

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
FORBIDDEN = ("cloudlab", "import cl", "__import__", "importlib")


def _probes(cases):
    return {f"case{i}": call("desired_replicas", *args, cells=ANSWER)
            for i, (args, _) in enumerate(cases)}


def _own_code(source):
    expect(bool(source.strip()), "there is no desired_replicas cell in the submission")
    used = [w for w in FORBIDDEN if w in source]
    expect(not used, "desired_replicas must be your own code (the standard library is fine; "
           f"the workbook's helpers are not): found {', '.join(used)}")


def _compare(cases, got, what):
    wrong = []
    for i, (args, want) in enumerate(cases):
        found = got[f"case{i}"]
        if not (found == want and type(found) is int):
            wrong.append(f"desired_replicas{args} gave {found!r}")
    expect(not wrong, f"{what}: {len(wrong)} of {len(cases)} hidden cases wrong, e.g. "
           f"{wrong[0] if wrong else ''}")


# ----------------------------------------------------------------------- manifests
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
    """Applied into a fresh namespace: pods Ready, Service endpoints, HPA on the Deployment."""
    passed(sub, "cluster")


# ----------------------------------------------------------------------- the HPA maths
@grader("q3_replicas", source=cell(ANSWER), **_probes(VISIBLE))
def replicas_visible(sub, source, **got):
    _own_code(source)
    _compare(VISIBLE, got, "the documentation's examples")


@grader("rule_tolerance", source=cell(ANSWER), **_probes(HIDDEN["rule_tolerance"]))
def tolerance(sub, source, **got):
    _own_code(source)
    _compare(HIDDEN["rule_tolerance"], got, "the 0.1 tolerance band")


@grader("rule_clamp", source=cell(ANSWER), **_probes(HIDDEN["rule_clamp"]))
def clamp(sub, source, **got):
    _own_code(source)
    _compare(HIDDEN["rule_clamp"], got, "min/max clamping")


@grader("rule_zero_missing", source=cell(ANSWER), **_probes(HIDDEN["rule_zero_missing"]))
def zero_missing(sub, source, **got):
    _own_code(source)
    _compare(HIDDEN["rule_zero_missing"], got, "zero and missing metrics")
