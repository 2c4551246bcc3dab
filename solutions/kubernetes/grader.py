"""Trusted graders of ``kubernetes`` (instructor side: never released, never in a sandbox).

The host's pre-grade hooks (:mod:`cloudlab.checks.kubernetes`) did the work before the
notebook ran: ``manifest_side`` read the submitted YAML defensively, checked it against
the schemas and the semantic rules, and applied it into a fresh namespace of the grading
cluster as a namespaced service account; ``function_side`` ran the submitted
``desired_replicas`` in a fresh locked-down container (no network, no workbook) on the
arguments of the cases below and compared the results HERE, on the host. The expected
values never leave the trusted side. Each grader turns one hook result into points.
"""

from cloudlab.grading.trusted import grader, passed

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


@grader("q3_replicas")
def replicas_visible(sub):
    passed(sub, "replicas_visible")


@grader("rule_tolerance")
def tolerance(sub):
    passed(sub, "tolerance")


@grader("rule_clamp")
def clamp(sub):
    passed(sub, "clamp")


@grader("rule_zero_missing")
def zero_missing(sub):
    passed(sub, "zero_missing")
