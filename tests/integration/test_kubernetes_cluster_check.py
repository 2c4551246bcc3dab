"""The kubernetes exercise's cluster check on a kwok cluster: apply, watch, fence, clean up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cloudlab import k8s
from cloudlab.checks import kubernetes as kx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_kubernetes_exercise as ex


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from cloudlab import config
    avail = k8s.available().get("kwok")
    if not avail:
        pytest.skip(f"kwok backend unavailable: {getattr(avail, 'reason', 'not installed')}")
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("state"),
                      run_id="test-kubernetes-cluster-check")
    with k8s.Cluster("kwok", nodes=2, cfg=cfg, grading=True) as c:
        yield c


def check(cluster, texts, timeout=30):
    return kx.cluster_check(texts, cluster.kubeconfig, context=cluster.context, timeout=timeout)


def test_the_solution_runs_as_a_namespaced_service_account(cluster):
    got = check(cluster, ex.SOLUTION)
    assert got["passed"], got
    # the check passes once the Service has endpoints; the endpoint slice controller may
    # not have added the second Ready pod yet (it batches its updates)
    assert got["data"]["ready"] == 2 and 1 <= got["data"]["endpoints"] <= 2
    assert got["data"]["identity"].startswith("system:serviceaccount:grade-")


def test_pods_that_never_schedule_fail_with_the_schedulers_words(cluster):
    texts = ex.edit("deployment.yaml", lambda o: o["spec"]["template"]["spec"].update(
        nodeSelector={"disktype": "ssd"}))
    got = check(cluster, texts, timeout=8)
    assert not got["passed"] and "0 of 2 pods Ready" in got["message"]
    assert "node affinity/selector" in got["message"]


def test_an_hpa_in_an_older_api_version_is_applied_in_that_version(cluster):
    hpa_v1 = ("apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\n"
              "metadata:\n  name: hello\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n"
              "    kind: Deployment\n    name: hello\n  minReplicas: 1\n  maxReplicas: 5\n"
              "  targetCPUUtilizationPercentage: 50\n")
    got = check(cluster, {**ex.SOLUTION, "hpa.yaml": hpa_v1})
    assert got["passed"], got


def test_the_api_server_refuses_an_unknown_field(cluster):
    got = check(cluster, ex.VARIANTS["valid"])
    assert not got["passed"] and "spec.replica: field not declared" in got["message"]


def test_the_submission_identity_cannot_reach_outside_its_namespace(cluster):
    from cloudlab.k8s.api import ApiError
    ns = "grade-fence-test"
    with cluster.api() as grader:
        try:
            kx.cluster._namespace(grader, ns, {})
            student, identity = kx.cluster._student(grader, ns)
            assert identity.startswith("system:serviceaccount:") and student is not grader
            with student:
                secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "escaped"}}
                for obj, where in (
                        ({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "escaped"}}, None),
                        ({"apiVersion": "rbac.authorization.k8s.io/v1",
                          "kind": "ClusterRoleBinding", "metadata": {"name": "escaped"},
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "ClusterRole", "name": "admin"},
                          "subjects": [{"kind": "User", "name": "me",
                                        "apiGroup": "rbac.authorization.k8s.io"}]}, None),
                        (kx.cluster._mf().load(ex.SOLUTION["deployment.yaml"])[0], "default"),
                        (secret, ns)):
                    with pytest.raises(ApiError) as info:
                        student.create(obj, namespace=where)
                    assert info.value.status == 403 and "forbidden" in str(info.value), obj
                assert student.apply(kx.cluster._mf().load(ex.SOLUTION["service.yaml"])[0],
                                     namespace=ns)["metadata"]["namespace"] == ns
        finally:
            grader.delete("Namespace", ns)
    assert not cluster.exists("namespace", "escaped")
    assert not cluster.exists("deployment", "hello", namespace="default")


def test_the_grading_cluster_runs_only_the_controllers_grading_needs(cluster):
    (kcm,) = [p for p in cluster.processes() if p.name == "kube-controller-manager"]
    assert "--controllers=" + ",".join(k8s.kwok.GRADING_CONTROLLERS) in kcm.command


def test_a_namespace_is_reused_only_once_emptied(cluster):
    """Checks one after another share one pool namespace, and what a submission left
    there never counts for the next: its Ready pods must not pass unschedulable ones."""
    first = check(cluster, ex.SOLUTION)
    assert first["passed"], first
    stuck = check(cluster, ex.edit("deployment.yaml", lambda o: o["spec"]["template"]["spec"]
                                   .update(nodeSelector={"disktype": "ssd"})), timeout=8)
    assert not stuck["passed"] and "0 of 2 pods Ready" in stuck["message"], stuck
    again = check(cluster, ex.SOLUTION)
    assert again["passed"] and again["data"]["namespace"] == first["data"]["namespace"]
    assert again["data"]["identity"] == first["data"]["identity"]
    left = cluster.get("deployments,replicasets,services,hpa,pods,endpointslices",
                       namespace=first["data"]["namespace"])["items"]
    assert left == []


def test_concurrent_graders_never_share_a_namespace(cluster, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from cloudlab.k8s.pool import NamespacePool
    with cluster.api() as api:
        pool = NamespacePool(api, tmp_path / "pool", prepare=lambda a, ns: {"ns": ns},
                             kinds=kx.POOL_KINDS, prefix="pooltest")
        try:
            held = [pool.acquire() for _ in range(3)]
            assert len({lease.namespace for lease in held}) == 3
            assert [lease.data["ns"] for lease in held] == [x.namespace for x in held]
            for lease in held:
                assert pool.release(lease)
            with ThreadPoolExecutor(4) as run:   # 4 at once: at most 4 namespaces, no two alike
                def hold(i: int) -> str:
                    with pool.lease() as lease:   # nobody else's Service, nothing left
                        api.apply({"apiVersion": "v1", "kind": "Service",
                                   "metadata": {"name": f"mine-{i}"},
                                   "spec": {"ports": [{"port": 80}]}},
                                  namespace=lease.namespace)
                        got = api.list("Service", namespace=lease.namespace)
                        assert [s["metadata"]["name"] for s in got] == [f"mine-{i}"]
                        return lease.namespace
                used = list(run.map(hold, range(12)))
            assert len(set(used)) <= 4
        finally:
            gone = pool.drain()
        assert len(gone) >= 3
        assert all(api.get("Namespace", ns)["metadata"].get("deletionTimestamp")
                   for ns in gone)


def test_a_finalizer_a_submission_left_is_stripped_and_the_namespace_reused(cluster, tmp_path):
    """On 3669b86 a finalizer kept the object, and the namespace it was in stayed
    Terminating for ever once the pool discarded it (issue 18, item 7)."""
    from cloudlab.k8s.pool import NamespacePool
    with cluster.api() as api:
        pool = NamespacePool(api, tmp_path / "pool", prepare=lambda a, ns: {},
                             kinds=kx.POOL_KINDS, prefix="pooltest", reset_timeout=10)
        held = pool.acquire()
        blocked = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
                   "spec": {"ports": [{"port": 80}]}}
        api.apply(blocked, namespace=held.namespace)
        try:
            assert pool.release(held)          # the finalizer is stripped: clean, reused
            assert api.list("Service", namespace=held.namespace) == []
            with pool.lease() as again:
                assert not again.fresh and again.namespace == held.namespace
        finally:
            pool.drain()


def test_a_namespace_that_cannot_be_emptied_is_discarded(cluster, tmp_path, monkeypatch):
    from cloudlab.k8s.pool import NamespacePool
    with cluster.api() as api:
        pool = NamespacePool(api, tmp_path / "pool", prepare=lambda a, ns: {},
                             kinds=kx.POOL_KINDS, prefix="pooltest", reset_timeout=2)
        held = pool.acquire()
        monkeypatch.setattr(pool, "_unblock", lambda ns: 1)   # an object that never goes
        try:
            assert not pool.release(held)   # not emptied in time: not reusable
            assert api.get("Namespace", held.namespace)["metadata"].get("deletionTimestamp")
            monkeypatch.undo()
            with pool.lease() as fresh:
                assert fresh.fresh and fresh.namespace != held.namespace
        finally:
            pool.drain()


def test_grading_namespaces_are_emptied_then_deleted_by_drain(cluster):
    """After a check, the pool's namespaces hold nothing a submission made; draining the
    pool deletes them. (The test makes its own check: it may run alone.)"""
    from cloudlab.k8s import pool
    from cloudlab.proc import wait_for

    assert check(cluster, ex.SOLUTION)["passed"]

    def emptied() -> bool:
        left = cluster.get("deployments,services,hpa,pods", all_namespaces=True)["items"]
        return not [i for i in left if i["metadata"]["namespace"].startswith("grade-")]

    wait_for(emptied, timeout=30, interval=0.5, what="the grading namespaces to be emptied")
    assert list(pool.folder_for(cluster.kubeconfig, cluster.context).glob("slot-*.json"))
    gone = kx.drain_grading_pool(cluster.kubeconfig, cluster.context)
    assert gone
    spaces = {n["metadata"]["name"]: n for n in cluster.get("namespaces")["items"]}
    assert all(spaces[ns]["status"].get("phase") == "Terminating" for ns in gone
               if ns in spaces)
    assert not list(pool.folder_for(cluster.kubeconfig, cluster.context).glob("slot-*"))


def _gone(cluster, ns: str) -> bool:
    return ns not in cluster.namespaces()


def test_a_submission_with_finalizers_everywhere_leaves_nothing(cluster):
    """Finalizers on the Deployment, its pods (through the template), the Service and the
    HPA: the check still grades it, then the pool empties the namespace, and draining the
    pool deletes it for good (on 3669b86 it stayed Terminating)."""
    from cloudlab.proc import wait_for
    hold = ["example.com/hold"]
    texts = ex.edit("deployment.yaml", lambda o: (o["metadata"].update(finalizers=list(hold)),
                                                  o["spec"]["template"]["metadata"].update(
                                                      finalizers=list(hold))))
    for name in ("service.yaml", "hpa.yaml"):
        texts[name] = ex.edit(name, lambda o: o["metadata"].update(
            finalizers=list(hold)))[name]
    got = check(cluster, texts)
    assert got["passed"], got
    ns = got["data"]["namespace"]
    left = cluster.get("deployments,replicasets,services,hpa,pods,endpointslices",
                       namespace=ns)["items"]
    assert left == []
    assert ns in kx.drain_grading_pool(cluster.kubeconfig, cluster.context)
    wait_for(lambda: _gone(cluster, ns), timeout=60, interval=0.5,
             what=f"{ns} to be deleted (not held Terminating by a finalizer)")


def test_each_pool_namespace_has_a_quota_limits_and_the_baseline(cluster):
    got = check(cluster, ex.SOLUTION)
    assert got["passed"], got
    ns = got["data"]["namespace"]
    quota = cluster.get("resourcequota", "submission", namespace=ns)
    assert quota["spec"]["hard"] == kx.QUOTA or all(
        k in quota["spec"]["hard"] for k in kx.QUOTA)
    limits = cluster.get("limitrange", "submission", namespace=ns)["spec"]["limits"][0]
    assert limits["max"] == kx.CONTAINER_LIMITS["max"]
    labels = cluster.get("namespace", ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"


def test_an_over_quota_submission_is_refused_clearly_and_starves_no_one(cluster):
    """Ten replicas asking for a whole CPU each would hold every CPU of the two nodes (4
    each); the namespace's quota lets two of them in, the verdict names the quota, and a
    submission checked at the same time gets its pods."""
    from concurrent.futures import ThreadPoolExecutor

    def hog(o):
        o["spec"]["replicas"] = 10
        ex.container(o)["resources"] = {"requests": {"cpu": "1", "memory": "128Mi"},
                                        "limits": {"cpu": "1", "memory": "128Mi"}}
    with ThreadPoolExecutor(2) as run:
        greedy = run.submit(check, cluster, ex.edit("deployment.yaml", hog), 20)
        honest = run.submit(check, cluster, ex.SOLUTION, 30)
        greedy, honest = greedy.result(), honest.result()
    assert honest["passed"], honest
    assert not greedy["passed"]
    assert "quota" in greedy["message"] and "exceeded quota" in greedy["message"], greedy
    assert greedy["found"]["pods"] <= 2


def test_a_pod_reaching_into_the_node_is_refused_by_the_cluster_too(cluster):
    """Defence in depth: were the refusal before apply ever missed, the namespace's Pod
    Security baseline refuses the pods (the verdict says so)."""
    texts = ex.edit("deployment.yaml", lambda o: o["spec"]["template"]["spec"].update(
        hostNetwork=True))
    objs, _ = kx.parse(texts)
    with cluster.api() as api, \
            kx.grading_pool(api, cluster.kubeconfig, cluster.context).lease() as lease:
        applied = {f: api.apply(o, namespace=lease.namespace) for f, o in objs.items()}
        got = kx.cluster._watch(api, lease.namespace, applied, 15)
    assert not got["passed"] and "PodSecurity" in got["message"], got


def test_stopping_a_cluster_removes_its_pool_folder(tmp_path):
    from cloudlab import config
    from cloudlab.k8s import pool
    cfg = config.load(env={}, state_dir=tmp_path / "state", run_id="test-pool-folder")
    c = k8s.Cluster("kwok", name="pool-folder-test", cfg=cfg)
    c.context = "kwok-pool-folder-test"
    folders = [pool.folder_for(c.kubeconfig, c.context), pool.folder_for(c.kubeconfig)]
    for folder in folders:   # reached with the context, or with the current one
        folder.mkdir(parents=True)
        (folder / "slot-0.json").write_text("{}")
    c.stop()   # never started: stopping is still safe, and the folders go
    assert not any(folder.exists() for folder in folders)
