"""The kubernetes exercise's rules, on the solution's own files, its variants and hostile YAML.

The cluster half of the grading needs a running API server (tests/grading); everything
here is pure: each manifest rule fails for exactly its own variant, hostile files get a
verdict and never reach a cluster, and the hidden replica cases agree with cl.hpa and the
solution.
"""

from __future__ import annotations

import json
import os
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
FUNCTION_IDS = ("q3_replicas", "rule_tolerance", "rule_clamp", "rule_zero_missing",
                "rule_float_ratio")


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


def _variants():
    """desired_replicas written the ways the text warns about: each differs from the
    controller's float maths on exactly one kind of edge."""
    import math
    from fractions import Fraction

    def make(band, count):
        def fn(n, m, t, lo, hi):
            want = n
            if m is not None and not band(m, t):
                want = count(n, m, t)
            return min(max(want, lo), hi)
        return fn

    ratio_first = lambda n, m, t: math.ceil(m / t * n)  # noqa: E731
    return {
        "controller": make(lambda m, t: 0.9 <= m / t <= 1.1, ratio_first),
        "abs_band": make(lambda m, t: abs(m / t - 1) <= 0.1, ratio_first),
        "strict_band": make(lambda m, t: 0.9 < m / t < 1.1, ratio_first),
        "exact_band": make(lambda m, t: Fraction(9, 10) <= Fraction(m, t) <= Fraction(11, 10),
                           ratio_first),
        "exact_count": make(lambda m, t: 0.9 <= m / t <= 1.1,
                            lambda n, m, t: math.ceil(Fraction(m, t) * n)),
        "multiply_first": make(lambda m, t: 0.9 <= m / t <= 1.1,
                               lambda n, m, t: math.ceil(n * m / t)),
    }


@pytest.mark.parametrize(("variant", "only"), [
    ("controller", None), ("exact_band", None), ("abs_band", "rule_tolerance"),
    ("strict_band", "rule_tolerance"), ("exact_count", "rule_float_ratio"),
    ("multiply_first", "rule_float_ratio")])
def test_each_spelling_differs_from_the_controller_in_one_rule_only(variant, only):
    """The hidden cases are consistent with the text's choice (the controller's floats):
    a band test by ``abs`` or with strict ``<`` misses only the tolerance edges, exact
    arithmetic for the count misses only the float edges, and an exact band test (Fraction)
    is as good as the controller's."""
    fn = _variants()[variant]
    cases = _grader_module()["HIDDEN"]
    wrong = {gid for gid, group in cases.items() for args, want in group if fn(*args) != want}
    assert wrong == ({only} if only else set())


def test_both_tolerance_edges_and_a_float_edge_are_hidden_cases():
    cases = _grader_module()["HIDDEN"]
    ratios = {m / t for (_, m, t, _, _), _ in cases["rule_tolerance"]}
    assert {0.9, 1.1} <= ratios
    edges = [args for args, _ in cases["rule_float_ratio"]]
    assert (7, 290, 70, 1, 40) in edges
    assert all(hpa.desired_replicas(*a) == _variants()["exact_count"](*a) + 1 for a in edges)


def test_hidden_cases_are_not_in_public_files():
    cases = _grader_module()["HIDDEN"]
    public = "".join(p.read_text() for p in
                     (ROOT / "lib" / "cloudlab" / "checks" / "kubernetes").glob("*.py"))
    assert "def manifest_side" in public
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
    ("not 0.9 <= ratio <= 1.1", "abs(ratio - 1) > 0.2", "rule_tolerance"),
    ("not 0.9 <= ratio <= 1.1", "abs(ratio - 1) > 0.1", "rule_tolerance"),   # the 1.1 edge
    ("not 0.9 <= ratio <= 1.1", "not 0.9 < ratio < 1.1", "rule_tolerance"),  # strict
    ("math.ceil(ratio * current_replicas)",
     "math.ceil(current_replicas * current_metric / target_metric)", "rule_float_ratio"),
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
    (lambda s: "import numpy\n" + s, "standard library only"),
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
    full = kx.cluster._summary([_pod("0/2 nodes are available: 2 Insufficient cpu.")], [], dep, {})
    nowhere = kx.cluster._summary([_pod("0/2 nodes are available: 2 node(s) didn't match Pod's "
                                "node affinity/selector.")], [], dep, {})
    assert full["unschedulable"] == 0
    assert nowhere["unschedulable"] == 1


# -- "standard library only": the probe cannot import the workbook or a package ------------

LIB = str(ROOT / "lib")
HEX = b"import cloudlab.hpa".hex()
NAME = "ns['clo' + 'udlab']"
LIBCALL = ("    return {mod}.hpa.desired_replicas(current_replicas, current_metric, "
           "target_metric, min_replicas, max_replicas)\n")
# Written so that no word of 3669b86's list (cloudlab, import cl, __import__, importlib)
# appears: each scored full marks there.
SNEAKY = {
    "split": "    ns = {}\n    exec('imp' + 'ort clo' + 'udlab.hpa', ns)\n"
    + LIBCALL.format(mod=NAME),
    "hex": f"    ns = {{}}\n    exec(bytes.fromhex('{HEX}').decode(), ns)\n"
    + LIBCALL.format(mod=NAME),
    "sys.path": f"    import sys\n    sys.path.insert(0, {LIB!r})\n    ns = {{}}\n"
    "    exec('imp' + 'ort clo' + 'udlab.hpa', ns)\n" + LIBCALL.format(mod=NAME),
    "read the source": f"    ns = {{'__name__': 'x'}}\n    exec(open({LIB!r} + '/clo' + "
    "'udlab/hpa.py').read(), ns)\n    return ns['desired_replicas'](current_replicas, "
    "current_metric, target_metric, min_replicas, max_replicas)\n",
    "importlib": "    import importlib\n    cl = importlib.import_module('cloud' + 'lab.hpa')\n"
    + LIBCALL.format(mod="importlib.import_module('cloudlab')"),
}


@pytest.mark.parametrize("how", list(SNEAKY))
def test_an_obfuscated_import_of_the_workbook_scores_nothing(tmp_path, how):
    """Each of these scored 5/5 on 3669b86 (issue 18, item 5). The answer cell now runs in
    a ``python -I -S`` interpreter fenced by Landlock: the workbook cannot be imported,
    found on a path added at run time, or read."""
    source = ("def desired_replicas(current_replicas, current_metric, target_metric, "
              "min_replicas, max_replicas):\n" + SNEAKY[how])
    got = grade_function(tmp_path, source)
    assert all(v.fraction == 0 for v in got.values()), got
    assert all(re.search(r"ModuleNotFoundError|PermissionError", v.message)
               for v in got.values()), got


HONEST = {
    "fractions": '''
from fractions import Fraction
import math

def desired_replicas(current_replicas, current_metric, target_metric, min_replicas,
                     max_replicas):
    if current_metric is None:
        return max(min_replicas, min(current_replicas, max_replicas))
    ratio = Fraction(current_metric) / Fraction(target_metric)
    if Fraction(9, 10) <= ratio <= Fraction(11, 10):       # the band, exactly
        want = current_replicas
    else:                                                  # the count, as the controller
        want = math.ceil(float(ratio) * current_replicas)
    return max(min_replicas, min(want, max_replicas))
''',
    "decimal": '''
import decimal, math
def desired_replicas(n, metric, target, lo, hi):
    want = n
    if metric is not None:
        ratio = metric / target
        if not (decimal.Decimal("0.9") <= decimal.Decimal(ratio).quantize(
                decimal.Decimal("1e-9")) <= decimal.Decimal("1.1")):
            want = math.ceil(ratio * n)
    return sorted((lo, want, hi))[1]
''',
    "statistics and a lambda": '''
import math, statistics
clamp = lambda x, lo, hi: int(statistics.median([lo, x, hi]))
def desired_replicas(current_replicas, current_metric, target_metric, min_replicas,
                     max_replicas):
    """Mentions cloudlab.hpa and importlib in a docstring: words are not graded."""
    if current_metric is None:
        return clamp(current_replicas, min_replicas, max_replicas)
    r = current_metric / target_metric
    return clamp(current_replicas if 1 - 0.1 <= r <= 1 + 0.1 else math.ceil(r * current_replicas),
                 min_replicas, max_replicas)
''',
}


@pytest.mark.parametrize("how", list(HONEST))
def test_honest_standard_library_answers_score_full_marks(tmp_path, how):
    got = grade_function(tmp_path, HONEST[how])
    assert {gid: v.fraction for gid, v in got.items()} == dict.fromkeys(FUNCTION_IDS, 1.0), got


def test_the_isolated_interpreter_refuses_when_it_cannot_fence():
    """Without Landlock the stdlib-only group is not run at all (fail closed), with the
    reason; never run unfenced. (The syscall number is made unknown: ENOSYS, as on a
    kernel without Landlock.)"""
    import subprocess
    import sys

    from cloudlab.grading import probe
    group = {"cells": ["a"], "sources": ["def f():\n    return 1\n"], "timeout": 10,
             "stdlib_only": True, "probes": [{"kind": "call", "name": "f", "args": []}]}
    data = os.memfd_create("group")
    os.write(data, json.dumps(group).encode())
    os.lseek(data, 0, os.SEEK_SET)
    read, write = os.pipe()
    code = ("import sys; path = sys.argv[1]; ns = {'__name__': 'probe', '__file__': path}; "
            "exec(compile(open(path).read(), path, 'exec'), ns); ns['_LL_CREATE'] = 99999; "
            "ns['isolated'](int(sys.argv[2]), int(sys.argv[3]))")
    done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", code, probe.__file__,
                           str(data), str(write)], pass_fds=(data, write), timeout=60)
    os.close(write)
    os.close(data)
    with os.fdopen(read) as f:
        answer = json.loads(f.readline())
    assert done.returncode == 0
    assert [a["raised"] for a in answer] == ["IsolationError"]
    assert "cannot fence" in answer[0]["message"] and "no Landlock" in answer[0]["message"]


# -- every stated value is graded; unusual but correct files pass -----------------------------

STATED = {
    "deployment_values": [
        edit("deployment.yaml", lambda o: container(o).update(image="hello-cli:1.0")),
        edit("deployment.yaml", lambda o: o["spec"].update(replicas=3)),
        edit("deployment.yaml", lambda o: container(o)["ports"][0].update(containerPort=8081)),
        edit("deployment.yaml", lambda o: container(o).update(name="app")),
    ],
    "service_values": [
        edit("service.yaml", lambda o: o["spec"].update(type="NodePort")),
        edit("service.yaml", lambda o: o["spec"]["ports"][0].update(port=8080)),
    ],
    "hpa_values": [
        edit("hpa.yaml", lambda o: o["spec"].update(minReplicas=2, maxReplicas=10)),
        edit("hpa.yaml", lambda o: o["spec"]["metrics"][0]["resource"]["target"].update(
            averageUtilization=80)),
        edit("hpa.yaml", lambda o: o["spec"].pop("metrics")),         # the default: 80 %
    ],
    "cpu_requests": [
        edit("deployment.yaml", lambda o: container(o)["resources"]["requests"].update(
            memory="256Mi")),
        edit("deployment.yaml", lambda o: container(o)["resources"]["requests"].update(
            cpu="200m")),
    ],
    "probes": [
        edit("deployment.yaml", lambda o: container(o)["livenessProbe"]["httpGet"].update(
            path="/")),
    ],
}


@pytest.mark.parametrize(("rule", "i"), [(r, i) for r, v in STATED.items() for i in range(len(v))])
def test_each_stated_value_is_graded_by_exactly_its_rule(rule, i):
    """An HPA from 2 to 10 at 80 % scored full marks on 3669b86 (issue 19)."""
    got = verdicts(STATED[rule][i])
    assert [k for k, ok in got.items() if not ok] == [rule], got


def _flow(texts):
    """Every file in YAML flow style, spread over several lines."""
    import json as js
    return {name: "{\n" + ",\n".join(f"  {js.dumps(k)}: {js.dumps(v)}"
                                      for k, v in yaml.safe_load(text).items()) + "\n}\n"
            for name, text in texts.items()}


UNUSUAL = {
    "flow style": _flow(SOLUTION),
    "json from python": {n: json.dumps(yaml.safe_load(t), indent=2)
                         for n, t in SOLUTION.items()},
    "equal quantities": edit("deployment.yaml", lambda o: container(o)["resources"].update(
        requests={"cpu": 0.1, "memory": "134217728"})),
    "defaults left out": {**edit("deployment.yaml", lambda o: container(o).pop(
        "imagePullPolicy")), **{k: v for k, v in edit("service.yaml", lambda o: o["spec"].pop(
            "type")).items() if k == "service.yaml"}, **{k: v for k, v in edit(
                "hpa.yaml", lambda o: o["spec"].pop("minReplicas")).items()
                if k == "hpa.yaml"}},
    "probes by number": edit("deployment.yaml", lambda o: [
        container(o)[p]["httpGet"].update(port=8080) for p in ("readinessProbe",
                                                               "livenessProbe")]),
    "autoscaling/v1": {**SOLUTION, "hpa.yaml": (
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: hello}\n"
        "spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: hello}\n"
        "  minReplicas: 1\n  maxReplicas: 5\n  targetCPUUtilizationPercentage: 50\n")},
    "selector by expression": edit("deployment.yaml", lambda o: o["spec"].update(selector={
        "matchLabels": {"app.kubernetes.io/name": "hello"},
        "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                              "values": ["hello"]}]})),
}


@pytest.mark.parametrize("how", list(UNUSUAL))
def test_correct_but_unusual_files_pass_every_rule(how):
    got = verdicts(UNUSUAL[how])
    assert all(got.values()), {k: kx.STATIC_RULES[k](UNUSUAL[how])["message"]
                               for k, ok in got.items() if not ok}


@pytest.mark.parametrize(("change", "words"), [
    (lambda o: container(o).update(securityContext={"privileged": True}), "privileged"),
    (lambda o: o["spec"]["template"]["spec"].update(hostNetwork=True), "hostNetwork"),
    (lambda o: o["spec"]["template"]["spec"].update(
        volumes=[{"name": "root", "hostPath": {"path": "/"}}]), "hostPath"),
    (lambda o: container(o)["ports"][0].update(hostPort=80), "hostPort"),
    (lambda o: container(o).update(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}}),
     "SYS_ADMIN"),
])
def test_pods_reaching_into_the_node_are_refused_on_purpose(change, words):
    """A hostNetwork pod lost the cluster points on 3669b86 only by an accident of the
    simulated nodes; now it is refused (q1_valid and rule_cluster) before any apply."""
    texts = edit("deployment.yaml", change)
    got = verdicts(texts)
    assert [k for k, ok in got.items() if not ok] == ["valid"], got
    assert words in kx.valid(texts)["message"] and "refused" in kx.valid(texts)["message"]
    refused = kx.cluster_check(texts, "/nonexistent/kubeconfig")
    assert not refused["passed"] and "refused before reaching the cluster" in \
        refused["message"] and words in refused["message"]


def test_more_replicas_than_the_cap_are_refused_before_the_cluster():
    texts = edit("deployment.yaml", lambda o: o["spec"].update(replicas=kx.REPLICA_CAP + 1))
    refused = kx.cluster_check(texts, "/nonexistent/kubeconfig")
    assert not refused["passed"] and "over the grading limit of 10 replicas" in \
        refused["message"]
    hpa = edit("hpa.yaml", lambda o: o["spec"].update(maxReplicas=50))
    assert "maxReplicas 50 is over" in kx.cluster_check(hpa, "/x")["message"]
    ok = edit("hpa.yaml", lambda o: o["spec"].update(maxReplicas=10))   # a near miss: not refused
    assert "over the grading limit" not in kx.cluster_check(ok, "/x")["message"]
