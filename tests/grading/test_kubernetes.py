"""The ``kubernetes`` exercise, graded for real: sandboxed autograde + a kwok grading cluster.

One autograde run grades a batch of submissions made from the solution notebook: the
solution, the untouched release, one variant per hidden rule that breaks exactly that
rule, and hostile ones (a billion-laughs file, a manifest naming kube-system, a
cluster-scoped object). Each submission is what a student's folder holds after running
the notebook: the notebook and the files its ``%%writefile`` cells wrote.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time

import pytest
from k8s_submissions import HOSTILE, NAME, SOURCE, TOTAL, VARIANTS, notebook, submit

from cloudlab import config, k8s
from cloudlab.checks import kubernetes as kx
from cloudlab.grading import Course, autograde, release
from cloudlab.grading.hooks import after_hooks_for, hooks_for

MATHS = 2 + 1 + 1 + 1 + 1    # q3_replicas and the four hidden rules of part D


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    avail = k8s.available().get("kwok")
    if not avail:
        pytest.skip(f"kwok backend unavailable: {getattr(avail, 'reason', 'not installed')}")
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("k8s-state"),
                      run_id="test-kubernetes-" + secrets.token_hex(3))
    with k8s.Cluster("kwok", nodes=2, cfg=cfg, grading=True) as c:
        yield c


@pytest.fixture(scope="module")
def graded(grading_image, cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("kubernetes-course")
    shutil.copytree(SOURCE.parent, root / "solutions" / NAME)
    course = Course(root)
    release.release(course, NAME)
    assert not (course.release / NAME / "grader.py").exists()
    for student, (edits, _) in VARIANTS.items():
        submit(course, student, notebook(course, edits))
    for student, edits in HOSTILE.items():
        submit(course, student, notebook(course, edits))
    submit(course, "untouched", notebook(course, [], answered=False), files=False)
    mp = pytest.MonkeyPatch()
    mp.setenv(kx.GRADING_KUBECONFIG_ENV, str(cluster.kubeconfig))
    if cluster.context:
        mp.setenv(kx.GRADING_CONTEXT_ENV, cluster.context)
    try:
        start = time.monotonic()
        results = autograde.autograde(course, NAME, workers=3, timeout=90, progress=False,
                                      image=grading_image, hook_timeout=120)
        seconds = time.monotonic() - start
    finally:
        mp.undo()
    yield course, {r.student: r for r in results}, seconds
    shutil.rmtree(root, ignore_errors=True)


def _scores(result) -> dict[str, tuple[float, float]]:
    return {t.name: (t.score, t.points) for t in result.tests}


def _why(result, test: str) -> str:
    return next(t.message for t in result.tests if t.name == test)


def test_the_solution_scores_full_marks(graded):
    _, results, seconds = graded
    r = results["solution"]
    failed = {t.name: t.message for t in r.tests if not t.passed}
    assert (r.status, failed) == ("graded", {}), r.reason
    assert r.score == r.max_score == TOTAL
    print(f"\ngraded {len(results)} submissions in {seconds:.1f} s")


def test_the_feedback_says_a_simulated_cluster_graded(graded):
    """kwok-only: the cluster's verdict starts by saying that no container ran, and the
    setup cell's output (in the feedback, passed or failed) says so too."""
    course, results, _ = graded
    assert _why(results["unschedulable"], "rule_cluster").startswith(
        "[graded on a simulated cluster (kwok")
    nb = json.loads((course.autograded / "solution" / NAME / f"{NAME}.ipynb")
                    .read_text())
    cell = next(c for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "setup")
    printed = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
    assert "graded on a simulated cluster" in printed, cell.get("outputs")


def test_the_untouched_release_scores_zero(graded):
    _, results, _ = graded
    r = results["untouched"]
    assert (r.status, r.score, r.max_score) == ("graded", 0, TOTAL)
    assert "deployment.yaml is missing" in _why(r, "q1_valid")


@pytest.mark.parametrize("student", [s for s, v in VARIANTS.items() if not v[1]])
def test_correct_answers_however_written_score_full_marks(graded, student):
    _, results, _ = graded
    r = results[student]
    assert (r.status, r.score) == ("graded", TOTAL), {t.name: t.message for t in r.tests
                                                      if not t.passed}


@pytest.mark.parametrize("student", [s for s, v in VARIANTS.items() if v[1]])
def test_each_hidden_rule_costs_exactly_its_points(graded, student):
    _, results, _ = graded
    lost = VARIANTS[student][1]
    full, mine = _scores(results["solution"]), _scores(results[student])
    assert results[student].status == "graded", results[student].reason
    changed = {name for name in full if mine[name] != full[name]}
    assert changed == {lost}, {t.name: t.message for t in results[student].tests
                               if not t.passed}
    assert results[student].score == TOTAL - full[lost][1]
    assert _why(results[student], lost)


def test_hostile_manifests_get_a_verdict_and_touch_nothing_outside(graded, cluster):
    _, results, _ = graded
    laughs = results["laughs"]
    assert laughs.status == "graded" and laughs.score == MATHS       # the maths still counts
    assert "YAML aliases" in _why(laughs, "q1_valid")
    kube = results["kubesystem"]
    assert "names namespace 'kube-system'" in _why(kube, "q1_valid")
    assert "refused before reaching the cluster" in _why(kube, "rule_cluster")
    assert not cluster.exists("deployment", "hello", namespace="kube-system")
    crb = results["clusterrole"]
    assert "should hold a HorizontalPodAutoscaler" in _why(crb, "q1_valid")
    assert _scores(crb)["rule_cluster"][0] == 0
    assert not cluster.exists("clusterrolebinding", "hello")
    unknown = results["unknownfield"]
    assert "unknown field 'replica'" in _why(unknown, "q1_valid")
    assert unknown.score == TOTAL - 2 - 3            # the API server refuses it as well
    for student in ("fromlibrary", "hexlibrary"):   # no spelling of the import gets through
        lib = results[student]
        assert "standard library only" in _why(lib, "rule_tolerance"), student
        assert lib.score == TOTAL - MATHS, student
    host = results["hostnetwork"]
    assert "hostNetwork" in _why(host, "q1_valid")
    assert "refused before reaching the cluster" in _why(host, "rule_cluster")
    assert host.score == TOTAL - 2 - 3


def test_the_grading_namespaces_go_when_the_run_ends(graded, cluster):
    """Submissions were applied into namespaces of the cluster's pool; the run's
    after-grading hook (``finish_grading``) deletes them (their emptying between two
    submissions is tested in tests/integration/test_kubernetes_cluster_check.py)."""
    from cloudlab.proc import wait_for
    assert kx.finish_grading in after_hooks_for(NAME)
    wait_for(lambda: not [n for n in cluster.namespaces() if n.startswith("grade-")],
             timeout=60, what="the grading namespaces to go")
    left = cluster.get("deployments,replicasets,services,hpa,pods,endpointslices",
                       all_namespaces=True)["items"]
    assert not [i for i in left if i["metadata"]["namespace"].startswith("grade-")]


def test_every_test_cell_is_decided_on_the_trusted_side():
    """The manifest cells read the hook's results (``passed``); the replica cells' graders
    call ``desired_replicas`` through trusted probes and compare on the host."""
    from cloudlab.grading import trusted
    assert kx.manifest_side in set(hooks_for(NAME))
    nb = json.loads(SOURCE.read_text())
    tests = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade") and c["cell_type"] == "code"}
    keys = {gid: re.findall(r'trusted\("([\w-]+)"\)', src) for gid, src in tests.items()}
    hooked = {gid: k for gid, k in keys.items() if k}
    assert all(len(k) == 1 for k in hooked.values()), keys
    assert {k[0] for k in hooked.values()} == set(kx.KEYS)
    graders = (SOURCE.parent / "grader.py").read_text()
    for gid, (key,) in hooked.items():
        assert re.search(rf'@grader\("{gid}"\)\ndef \w+\(sub\):\n(    """.*"""\n)?'
                         rf'    passed\(sub, "{key}"\)', graders), gid
    loaded = trusted.load(SOURCE.parents[1], NAME)
    assert set(loaded) == set(tests)
    for gid in set(tests) - set(hooked):
        calls = [p for p in loaded[gid].probes.values() if isinstance(p, trusted.Call)]
        assert calls and all(p.function == "desired_replicas" and p.cells == (kx.ANSWER_CELL,)
                             for p in calls), gid
