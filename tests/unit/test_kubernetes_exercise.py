"""The kubernetes exercise's rules, on the solution's own files, its variants and hostile YAML.

The cluster half of the grading needs a running API server (tests/grading); everything
here is pure: each manifest rule fails for exactly its own variant, hostile files get a
verdict and never reach a cluster, and the hidden replica cases agree with cl.hpa and the
solution.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from cloudlab import hpa
from cloudlab.checks import kubernetes as kx

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "solutions" / "kubernetes" / "kubernetes.ipynb"


def _solution_cells() -> dict[str, str]:
    nb = nbformat.read(SOURCE, as_version=4)
    out = {}
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid:
            lines = [ln for ln in c.source.splitlines()
                     if not ln.startswith(("%%writefile", "### BEGIN SOLUTION",
                                           "### END SOLUTION"))]
            out[gid] = "\n".join(lines) + "\n"
    return out


CELLS = _solution_cells()
SOLUTION = {"deployment.yaml": CELLS["deployment"], "service.yaml": CELLS["service"],
            "hpa.yaml": CELLS["hpa"]}


def verdicts(texts):
    return {key: rule(texts)["passed"] for key, rule in kx.STATIC_RULES.items()}


def edit(file, change):
    texts = dict(SOLUTION)
    obj = yaml.safe_load(texts[file])
    change(obj)
    texts[file] = yaml.safe_dump(obj, sort_keys=False)
    return texts


def container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_solution_files_pass_every_rule():
    assert all(verdicts(SOLUTION).values()), verdicts(SOLUTION)
    assert all(verdicts(kx.app_manifests()).values())


VARIANTS = {
    "valid": edit("deployment.yaml", lambda o: o["spec"].update(replica=2)),
    "consistent": edit("service.yaml", lambda o: o["spec"]["ports"][0].update(targetPort=9090)),
    "cpu_requests": edit("deployment.yaml",
                         lambda o: container(o)["resources"]["requests"].pop("cpu")),
    "probes": edit("deployment.yaml", lambda o: container(o).pop("livenessProbe")),
    "pull_policy": edit("deployment.yaml", lambda o: container(o).update(imagePullPolicy="Always")),
}


@pytest.mark.parametrize("rule", list(VARIANTS))
def test_each_variant_breaks_exactly_its_rule(rule):
    got = verdicts(VARIANTS[rule])
    assert [k for k, ok in got.items() if not ok] == [rule]


def test_more_consistency_rules_each_found():
    sel = edit("deployment.yaml", lambda o: o["spec"]["selector"].update(
        matchLabels={"app": "x"}))
    assert "spec.selector.matchLabels" in kx.consistent(sel)["message"]
    target = edit("hpa.yaml", lambda o: o["spec"]["scaleTargetRef"].update(name="web"))
    assert "scaleTargetRef Deployment/web does not exist" in kx.consistent(target)["message"]


HOSTILE = {
    "billion laughs": ("deployment.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b]\n",
                       "YAML aliases"),
    "huge document": ("service.yaml", "kind: Service\nx: " + "y" * 400_000, "byte limit"),
    "invalid YAML": ("hpa.yaml", "kind: [HorizontalPodAutoscaler\n", "line 2"),
    "two objects": ("service.yaml", CELLS["service"] + "---\n" + CELLS["service"],
                    "2 objects in one file"),
    "wrong kind": ("hpa.yaml", CELLS["service"], "should hold a HorizontalPodAutoscaler"),
    "python tag": ("hpa.yaml", "!!python/object/apply:os.system [id]\n", "constructor"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_get_a_clear_verdict(case):
    file, text, words = HOSTILE[case]
    texts = {**SOLUTION, file: text}
    got = kx.valid(texts)
    assert not got["passed"] and words in got["message"], got
    assert not any(verdicts(texts).values())             # nothing is graded from a bad file
    refused = kx.cluster_check(texts, "/nonexistent/kubeconfig")
    assert not refused["passed"] and refused["message"].startswith("not applied")


@pytest.mark.parametrize(("change", "words"), [
    (lambda o: o["metadata"].update(namespace="kube-system"), "names namespace 'kube-system'"),
    (lambda o: o.update(kind="ClusterRoleBinding", apiVersion="rbac.authorization.k8s.io/v1"),
     "should hold a Deployment"),
])
def test_manifests_reaching_outside_their_namespace_are_refused_before_any_apply(change, words):
    texts = edit("deployment.yaml", change)
    assert words in kx.valid(texts)["message"]
    refused = kx.cluster_check(texts, "/nonexistent/kubeconfig")   # never reaches kubectl
    assert not refused["passed"] and words in refused["message"]
    assert "not applied" in refused["message"]


def test_a_file_over_the_cap_is_not_read(tmp_path):
    for name, text in SOLUTION.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "hpa.yaml").write_text("x" * 3_000_000)
    (tmp_path / "service.yaml").unlink()
    (tmp_path / "service.yaml").symlink_to("/etc/passwd")
    texts = kx.read_files(tmp_path)
    assert texts["service.yaml"] is None and len(texts["hpa.yaml"]) == 262145
    assert "service.yaml is missing" in kx.valid(texts)["message"]


def test_hook_without_a_grading_cluster_says_so(tmp_path, monkeypatch):
    from cloudlab.grading.hooks import HookContext
    monkeypatch.delenv(kx.GRADING_KUBECONFIG_ENV, raising=False)
    for name, text in SOLUTION.items():
        (tmp_path / name).write_text(text)
    out = kx.manifest_side(HookContext("kubernetes", "s1", tmp_path, {}))
    assert set(out) == {*kx.STATIC_RULES, "cluster"}
    assert all(out[k]["passed"] for k in kx.STATIC_RULES)
    assert not out["cluster"]["passed"] and "no grading cluster" in out["cluster"]["message"]
    json.dumps(out)                                       # plain data for the sandbox


# -- the hidden replica cases ---------------------------------------------------------------

GRADER = ROOT / "solutions" / "kubernetes" / "grader.py"
FUNCTION_IDS = ("q3_replicas", "rule_tolerance", "rule_clamp", "rule_zero_missing")


def _grader_module():
    """The instructor's cases, as the trusted graders hold them."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("kubernetes_grader_under_test", GRADER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"VISIBLE": module.VISIBLE, "HIDDEN": module.HIDDEN}


def _solution_function():
    namespace: dict = {}
    exec(CELLS["replicas_function"], namespace)
    return namespace["desired_replicas"]


def test_hidden_cases_agree_with_the_documented_algorithm_and_the_solution():
    cases = _grader_module()
    solution = _solution_function()
    every = cases["VISIBLE"] + [c for group in cases["HIDDEN"].values() for c in group]
    assert len(every) >= 15
    for args, want in every:
        assert hpa.desired_replicas(*args) == want, args
        got = solution(*args)
        assert got == want and type(got) is int, args


def test_hidden_cases_stay_off_the_tolerance_boundary():
    """A ratio of exactly 0.9 or 1.1 depends on float rounding: no hidden case uses one."""
    for group in _grader_module()["HIDDEN"].values():
        for (_, metric, target, _, _), _ in group:
            if metric is not None:
                assert abs(abs(metric / target - 1) - 0.1) > 0.005


def test_hidden_cases_are_not_in_public_files():
    cases = _grader_module()["HIDDEN"]
    public = (ROOT / "lib" / "cloudlab" / "checks" / "kubernetes.py").read_text()
    for group in cases.values():
        for args, _ in group:
            assert repr(args) not in public


def test_the_released_placeholder_is_named():
    texts = {**SOLUTION, "service.yaml": "# YOUR CODE HERE\nraise NotImplementedError()\n"}
    assert "service.yaml still holds the placeholder" in kx.valid(texts)["message"]


def test_visible_checks_on_files_here_and_on_the_graders_results(tmp_path, monkeypatch):
    from cloudlab.checks import TRUSTED_RESULTS_ENV, CheckFailed
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(TRUSTED_RESULTS_ENV, raising=False)
    with pytest.raises(CheckFailed, match=r"deployment\.yaml is missing"):
        kx.q1_valid({})
    for name, text in SOLUTION.items():
        (tmp_path / name).write_text(text)
    kx.q1_valid({})
    kx.q2_consistent({})
    ns = {}
    exec(CELLS["replicas_function"], ns)
    kx.q3_replicas(ns)
    with pytest.raises(CheckFailed, match="doubles"):
        kx.q3_replicas({"desired_replicas": lambda *a: 1})
    with pytest.raises(CheckFailed, match="return an int") as info:
        kx.q3_replicas({"desired_replicas": lambda *a: float(ns["desired_replicas"](*a))})
    assert "expected: int" in str(info.value) and "found:    float" in str(info.value)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"valid": {"passed": False, "message": "refused by grader"},
                                   "consistent": {"passed": True, "message": "ok"}}))
    monkeypatch.setenv(TRUSTED_RESULTS_ENV, str(results))
    with pytest.raises(CheckFailed, match="refused by grader"):
        kx.q1_valid({})
    kx.q2_consistent({})


def grade_function(tmp_path: Path, source: str) -> dict:
    """The replica graders' verdicts for an answer cell (the probes run as a local child
    process here; in the grading engine they run in the sandbox: tests/grading)."""
    from cloudlab.grading import trusted
    graders = trusted.load(ROOT / "solutions", "kubernetes")
    sub = trusted.Submission("kubernetes", "s1", files=tmp_path,
                             cells={kx.ANSWER_CELL: source}, answer_cells=[kx.ANSWER_CELL])
    return trusted.run(graders, sub, FUNCTION_IDS, runner=trusted.local_runner)


def test_the_solutions_function_passes_every_replica_grader(tmp_path):
    got = grade_function(tmp_path, CELLS["replicas_function"])
    assert {gid: v.fraction for gid, v in got.items()} == dict.fromkeys(FUNCTION_IDS, 1.0), got


@pytest.mark.parametrize(("old", "new", "lost"), [
    ("0.1 + 1e-12", "0.2", "rule_tolerance"),
    ("min(max(desired, min_replicas), max_replicas)", "max(desired, min_replicas)",
     "rule_clamp"),
    ("if current_metric is not None:", "if True:", "rule_zero_missing"),
])
def test_each_variant_loses_exactly_its_rule_with_a_case_named(tmp_path, old, new, lost):
    got = grade_function(tmp_path, CELLS["replicas_function"].replace(old, new))
    assert {gid for gid, v in got.items() if v.fraction < 1} == {lost}
    assert re.search(r"\d+ of \d+ cases wrong, e\.g\. desired_replicas\(\d", got[lost].message)


@pytest.mark.parametrize(("change", "words"), [
    (lambda s: "import cloudlab\n" + s, "your own code"),
    (lambda s: s.replace("return int(", "return float("), "gave float"),
    (lambda s: s.replace("return int(", "return bool("), "gave bool"),
    (lambda s: s.replace("return int(", "return 1 // 0 + int("), "ZeroDivisionError"),
    (lambda s: "", "desired_replicas is not written"),
    (lambda s: "# YOUR CODE HERE\nraise NotImplementedError()", "not answered yet"),
])
def test_broken_functions_score_zero_with_a_reason(tmp_path, change, words):
    got = grade_function(tmp_path, change(CELLS["replicas_function"]))
    assert all(v.fraction == 0 for v in got.values()), got
    assert all(words in v.message for v in got.values()), got


def test_the_checker_imports_without_a_yaml_library():
    """The grading image imports every checker module and has no YAML library."""
    import subprocess
    import sys
    code = ("import builtins\nreal = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] in ('yaml', 'kubernetes_validate', 'jsonschema'):\n"
            "        raise ModuleNotFoundError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "import cloudlab.checks.kubernetes\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _pod(message: str) -> dict:
    return {"metadata": {"name": "hello-1"}, "spec": {},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                       "reason": "Unschedulable", "message": message}]}}


def test_only_a_pod_that_fits_no_node_counts_as_unschedulable():
    """A full cluster frees up as other submissions' namespaces drain (wait); a selector no
    node matches never does (the verdict comes after a short grace)."""
    from cloudlab.checks import kubernetes as kx

    dep = {"kind": "Deployment", "metadata": {"name": "hello"}}
    full = kx._summary([_pod("0/2 nodes are available: 2 Insufficient cpu.")], [], dep, {})
    nowhere = kx._summary([_pod("0/2 nodes are available: 2 node(s) didn't match Pod's "
                                "node affinity/selector.")], [], dep, {})
    assert full["unschedulable"] == 0
    assert nowhere["unschedulable"] == 1
