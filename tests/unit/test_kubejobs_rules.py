"""The Kubernetes grading backend without a cluster: the Job's rules, the Secret's cap,
which failures are the environment's, and what comes back from the pod."""

from __future__ import annotations

import json
import os

import nbformat.v4 as v4
import pytest

from cloudlab.errors import CloudlabError
from cloudlab.grading import kubejobs, podrun, sandbox

pytestmark = pytest.mark.unit
ITEMS = {"submission": [], "grader": [], "probe": [{"key": "probe", "path": "input.json"}],
         "job": [{"key": "run", "path": "run.json"}]}


def manifest(**kw) -> dict:
    spec = sandbox.SandboxSpec("cloudlab-grader:abc", "demo", "ann/demo")
    return kubejobs.job_manifest("grade-x", "cloudlab-grader:abc", spec, sandbox.Limits(),
                                 {"cloudlab-run-id": "r1"}, ITEMS, probe=True, deadline=95,
                                 **kw)


def test_every_container_of_the_job_follows_the_sandbox_rules():
    job = manifest()
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 95
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert [c["name"] for c in pod["initContainers"] + pod["containers"]] == ["probe", "kernel"]
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                      "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}
        assert c["resources"]["limits"] == {"cpu": "1000m", "memory": "512Mi"}
        assert c["imagePullPolicy"] == "Never"  # a local image is never pulled
    kernel = pod["containers"][0]
    assert "probe" not in {m["name"] for m in kernel["volumeMounts"]}  # hidden arguments
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    affinity = json.dumps(pod["affinity"])
    assert '"NotIn"' in affinity and "kwok" in affinity  # never onto a simulated node
    assert "affinity" not in manifest(simulated=True)["spec"]["template"]["spec"]


def test_an_image_from_a_registry_is_pulled_if_absent():
    spec = sandbox.SandboxSpec("x", "demo", "a/demo")
    job = kubejobs.job_manifest("j", "registry.course.example:5000/grader:1", spec,
                                sandbox.Limits(), {}, ITEMS, probe=False, deadline=10)
    assert job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_a_submission_over_the_secret_cap_is_refused_with_its_sizes(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * (kubejobs.MAX_SECRET + 1))
    (tmp_path / "small.txt").write_text("hi")
    spec = sandbox.SandboxSpec("i", "demo", "a/demo", files=tmp_path)
    with pytest.raises(CloudlabError, match=r"over the Kubernetes backend's cap.*big.bin"):
        kubejobs.secret_for("j", spec, {"cells": []}, None)
    (tmp_path / "big.bin").unlink()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("x = 1")
    secret, items = kubejobs.secret_for("j", spec, {"cells": []}, [{"probes": []}])
    assert set(secret["data"]) == {"f0", "f1", "probe", "run"}
    assert sorted(i["path"] for i in items["submission"]) == ["small.txt", "sub/b.py"]
    assert items["probe"] == [{"key": "probe", "path": "input.json"}]


@pytest.mark.parametrize("pod, expected", [
    ({"status": {"phase": "Failed", "reason": "Evicted", "message": "low memory"}}, "evicted"),
    ({"status": {"phase": "Unknown"}}, "node was lost"),
    ({"status": {"phase": "Pending", "containerStatuses": [
        {"name": "kernel", "state": {"waiting": {"reason": "ErrImageNeverPull"}}}]}},
     "ErrImageNeverPull"),
    ({"status": {"phase": "Running", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]}},
     "disrupted"),
    ({"status": {"phase": "Failed", "containerStatuses": [
        {"name": "kernel", "state": {"terminated": {"reason": "OOMKilled"}}}]}}, ""),
    ({"status": {"phase": "Failed", "containerStatuses": [
        {"name": "kernel", "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]}}, ""),
])
def test_only_the_clusters_failures_count_as_environment(pod, expected):
    got = kubejobs.environment_problem(pod)
    assert (expected in got) if expected else got == ""


def test_outputs_come_back_into_the_hosts_cells_only():
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# hi"), v4.new_code_cell("print(1)")])
    nb.cells[1].metadata["nbgrader"] = {"grade_id": "q1", "checksum": "abc"}
    data = {"cells": [{"outputs": []}, {"outputs": [
        {"output_type": "stream", "name": "stdout", "text": "1\n"}], "execution_count": 1,
        "source": "forged", "metadata": {"nbgrader": {"grade_id": "other"}}}]}
    kubejobs.apply(nb, data)
    assert nb.cells[1].outputs[0]["text"] == "1\n" and nb.cells[1].execution_count == 1
    assert nb.cells[1].source == "print(1)"
    assert nb.cells[1].metadata["nbgrader"] == {"grade_id": "q1", "checksum": "abc"}
    with pytest.raises(RuntimeError, match="does not match"):
        kubejobs.apply(nb, {"cells": [{"outputs": []}]})
    assert kubejobs.cells_of(nb)[1] == {"type": "code", "source": "print(1)", "grade_id": "q1"}


def test_a_result_over_the_cap_says_so():
    line = podrun.result_line({"cells": [os.urandom(4000).hex()]}, cap=500)
    assert "over the cap of 500 bytes" in podrun.decode(line[len(podrun.MARK):])["error"]
    ok = podrun.result_line({"cells": []})
    assert podrun.decode(ok[len(podrun.MARK):]) == {"cells": []}


def test_the_cli_takes_the_kubernetes_options():
    from cloudlab import cli

    args = cli.parser().parse_args(["grade", "autograde", "demo", "--on", "kubernetes",
                                    "--kubeconfig", "/k/config", "--parallel", "3"])
    assert (args.on, args.kubeconfig, args.parallel, args.namespace) == \
        ("kubernetes", "/k/config", 3, kubejobs.NAMESPACE)


def test_the_enforcer_says_which_kernel_feature_is_missing(tmp_path):
    from cloudlab.k8s import netpol

    full = "\n".join(f"{k}=y" for k in netpol.NEEDED)
    assert netpol.kernel_missing(full, "6.18") == ""
    no_queue = full.replace("CONFIG_NFT_QUEUE=y", "# CONFIG_NFT_QUEUE is not set")
    assert "CONFIG_NFT_QUEUE not set" in netpol.kernel_missing(no_queue, "6.18")
    as_module = full.replace("CONFIG_NFT_QUEUE=y", "CONFIG_NFT_QUEUE=m")
    assert "no /lib/modules/0.0-none" in netpol.kernel_missing(as_module, "0.0-none")
