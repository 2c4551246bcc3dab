"""The kwok cluster for real: every verb, the HPA on emulated CPU, and nothing left behind.

One cluster serves the verb tests (module scope keeps the CPU cost low); the leak tests
start their own, because tearing down is what they check.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloudlab import CloudlabError, UnavailableError, config
from cloudlab.k8s import Cluster, availability, install, kwok
from cloudlab.k8s import sweep as k8s_sweep
from cloudlab.proc import wait_for
from tests.conftest import outside

KWOK = availability("kwok")
pytestmark = pytest.mark.skipif(not KWOK, reason=f"kwok backend unavailable: {KWOK.reason}")

APP = "app.kubernetes.io/name=web"


def settings(tmp_path_factory, tag: str) -> config.Settings:
    return config.load(env={}, state_dir=tmp_path_factory.mktemp(f"k8s-{tag}"),
                       run_id=f"test-k8s-{tag}-{secrets.token_hex(2)}")


def web(replicas: int = 3, image: str = "hello:1.0", cpu: str = "100m") -> list[dict]:
    labels = {"app.kubernetes.io/name": "web"}
    container = {"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 5000, "name": "http"}],
                 "resources": {"requests": {"cpu": cpu}},
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
    ]


def ours_running(cluster_dir) -> list[str]:
    """Processes whose command line mentions the cluster's folder (kwokctl's children)."""
    done = subprocess.run(["pgrep", "-af", str(cluster_dir)], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    with Cluster("kwok", nodes=2, cfg=settings(tmp_path_factory, "verbs")) as k:
        yield k


def test_the_control_plane_is_real_processes(kube):
    procs = {p.name: p for p in kube.processes()}
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kwok-controller", "metrics-server"):
        assert procs[name].running and procs[name].role, name
        assert procs[name].binary.startswith(str(install.bin_dir())), procs[name]
    assert kube.version() == f"v{install.PINNED['kubernetes']}"
    assert len(kube.get("nodes")["items"]) == 2 and kube.ports()


def test_apply_service_endpoints_and_scale(kube):
    with kube.namespace() as ns:
        out = kube.apply(web(3), namespace=ns)
        assert any("serverside-applied" in line for line in out)
        assert kube.wait_ready(APP, 3, namespace=ns) == 3
        pods = kube.pods(namespace=ns, selector=APP)
        assert {p["phase"] for p in pods} == {"Running"} and all(p["ip"] for p in pods)
        wait_for(lambda: len(kube.endpoints("web", namespace=ns)) == 3, timeout=30,
                 what="3 endpoints")
        assert all(e.endswith(":5000") for e in kube.endpoints("web", namespace=ns))
        kube.scale("deployment/web", 5, namespace=ns)
        kube.rollout_status("deployment/web", namespace=ns, timeout=60)
        assert kube.ready_pods(namespace=ns, selector=APP) == 5
        wait_for(lambda: len(kube.endpoints("web", namespace=ns)) == 5, timeout=30,
                 what="5 endpoints")
        assert ns in kube.namespaces()
    wait_for(lambda: ns not in kube.namespaces(), timeout=60, what=f"{ns} to go")


def test_rolling_update_then_undo(kube):
    with kube.namespace() as ns:
        kube.apply(web(2), namespace=ns)
        kube.rollout_status("deployment/web", namespace=ns, timeout=60)
        kube.set_image("deployment/web", "web", "hello:2.0", namespace=ns)
        kube.rollout_status("deployment/web", namespace=ns, timeout=60)
        sets = kube.replicasets(namespace=ns, selector=APP)
        assert [(r["revision"], r["image"]) for r in sets] == [(1, "hello:1.0"),
                                                                (2, "hello:2.0")]
        assert sets[0]["desired"] == 0 and sets[1]["ready"] == 2
        assert "2" in kube.rollout_history("deployment/web", namespace=ns)
        kube.rollout_undo("deployment/web", namespace=ns)
        kube.rollout_status("deployment/web", namespace=ns, timeout=60)
        images = {p["image"] for p in kube.pods(namespace=ns, selector=APP)
                  if not p["deleting"]}
        assert images == {"hello:1.0"}


def test_dry_run_wait_get_delete(kube):
    with kube.namespace() as ns:
        kube.apply(web(1), namespace=ns, dry_run=True)
        assert not kube.exists("deployment", "web", namespace=ns)
        kube.apply(web(1), namespace=ns)
        kube.wait("deployment/web", condition="condition=Available", namespace=ns, timeout=60)
        assert kube.get("deployment", "web", namespace=ns)["spec"]["replicas"] == 1
        kube.delete("deployment", "web", namespace=ns)
        assert not kube.exists("deployment", "web", namespace=ns)
        with pytest.raises(Exception, match="refusing"):
            kube.delete("pods", namespace=ns)


def test_no_logs_or_port_forward_without_real_pods(kube):
    assert not kube.real_pods
    with pytest.raises(UnavailableError, match="no container or process runs"):
        kube.logs("deployment/web")
    with pytest.raises(UnavailableError, match="no container or process runs"):
        kube.run_pod("once", "busybox", command=["echo", "hi"])


def test_the_real_hpa_scales_on_emulated_cpu(kube):
    """metrics-server reads kwok's emulated usage; kube-controller-manager's HPA acts on it."""
    wait_for(kube.metrics_ready, timeout=90, what="the metrics API")
    with kube.namespace() as ns:
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "web"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                           "name": "web"},
                        "minReplicas": 1, "maxReplicas": 6,
                        "metrics": [{"type": "Resource", "resource": {
                            "name": "cpu", "target": {"type": "Utilization",
                                                      "averageUtilization": 50}}}]}}
        kube.apply([*web(2), hpa], namespace=ns)
        kube.wait_ready(APP, 2, namespace=ns)
        kube.emulate_cpu(150, selector=APP, namespace=ns)  # 150% of the 100m request
        wait_for(lambda: len(kube.top_pods(namespace=ns, selector=APP)) == 2, timeout=90,
                 what="metrics of both pods")
        # 2 pods at 150 % against a 50 % target: ceil(2 * 150 / 50) = 6
        status = wait_for(lambda: (h := kube.hpa("web", namespace=ns))["desired"] == 6 and h,
                          timeout=120, interval=1, what="the HPA to ask for 6 replicas")
        assert abs(status["cpu_percent"] - 150) <= 2  # the controller rounds the usage it reads


def test_teardown_leaves_no_process_port_or_folder(tmp_path_factory):
    cfg = settings(tmp_path_factory, "leak")
    k = Cluster("kwok", nodes=1, cfg=cfg)
    with pytest.raises(RuntimeError, match="boom"), k:
        pids, ports = kwok.pids(cfg, k.name), k.ports()
        assert pids and ports and ours_running(kwok.cluster_dir(cfg, k.name))
        raise RuntimeError("boom")
    # none runs (a killed one can stay a zombie: this machine's init does not reap)
    assert not any(kwok.running_pid(p) for p in pids.values())
    # its ports are free of its processes (another cluster may take a number meanwhile)
    assert not _listeners(set(ports)) & set(pids.values())
    assert not ours_running(kwok.cluster_dir(cfg, k.name))
    assert not kwok.cluster_dir(cfg, k.name).exists() and not k.kubeconfig.exists()
    k.stop()  # idempotent


def test_interrupt_midway_through_start_leaves_nothing(tmp_path_factory, monkeypatch):
    cfg = settings(tmp_path_factory, "interrupt")
    k = Cluster("kwok", nodes=1, cfg=cfg)

    def interrupted(*args, **kwargs):  # the control plane is up, the nodes not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(k, "apply", interrupted)
    with pytest.raises(KeyboardInterrupt):
        k.start()
    assert not ours_running(kwok.cluster_dir(cfg, k.name))
    assert not kwok.cluster_dir(cfg, k.name).exists()


def test_cleanup_removes_a_crashed_runs_cluster(tmp_path_factory):
    cfg = settings(tmp_path_factory, "crash")
    other = Cluster("kwok", cfg=cfg)  # a run that died before its teardown: no stop()
    kwok.create(cfg, other.name, other.kubeconfig)
    assert ours_running(kwok.cluster_dir(cfg, other.name))
    assert k8s_sweep("some-other-run", cfg) == 0  # scoped by run id
    assert k8s_sweep(cfg.run_id, cfg) == 1
    assert not ours_running(kwok.cluster_dir(cfg, other.name))
    assert kwok.names(cfg) == []


def test_a_component_that_died_while_starting_is_started_again(kube, caplog):
    """What a busy machine does to kwokctl's all-at-once start: metrics-server gone."""
    pid = kwok.pids(kube.cfg, kube.name)["metrics-server"]
    os.kill(pid, 9)
    wait_for(lambda: not kwok.running_pid(pid), timeout=10, what="metrics-server to die")
    with pytest.raises(CloudlabError, match="metrics-server exited"):
        kwok.check_running(kube.cfg, kube.name)
    with caplog.at_level("WARNING", logger="cloudlab.k8s"):
        assert list(kwok.revive(kube.cfg, kube.name)) == ["metrics-server"]
    assert "metrics-server exited while starting" in caplog.text
    kwok.check_running(kube.cfg, kube.name)  # all running again
    assert kwok.pids(kube.cfg, kube.name)["metrics-server"] != pid
    assert kwok.revive(kube.cfg, kube.name) == {}  # nothing dead: nothing restarted
    # and it serves again: the HPA's metrics API answers
    wait_for(lambda: kube.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes",
                                  check=False).returncode == 0,
             timeout=60, what="the metrics API to answer again")


def test_a_component_that_runs_but_does_not_act_is_restarted(kube, caplog):
    before = kwok.pids(kube.cfg, kube.name)["kube-controller-manager"]
    with caplog.at_level("WARNING", logger="cloudlab.k8s"):
        kwok.restart(kube.cfg, kube.name, "kube-controller-manager", "a test says so")
    assert "a test says so; restarting kube-controller-manager" in caplog.text
    after = kwok.pids(kube.cfg, kube.name)["kube-controller-manager"]
    assert after != before and not kwok.running_pid(before) and kwok.running_pid(after)
    kwok.check_running(kube.cfg, kube.name)
    # and it acts: a Deployment gets its ReplicaSet from the new controller manager
    with kube.namespace() as ns:
        kube.apply(web(1), namespace=ns)
        wait_for(lambda: kube.get("replicasets", namespace=ns)["items"], timeout=60,
                 what="a ReplicaSet from the restarted controller manager")


def test_ten_clusters_back_to_back_then_two_at_once(tmp_path_factory):
    """The start a student meets in notebook 07 never fails at random: 10 in a row, then 2
    side by side (ports chosen by two kwokctl at the same moment), each with every
    component running, and nothing left behind."""
    cfg = settings(tmp_path_factory, "stress")
    for _ in range(10):
        with Cluster("kwok", nodes=1, cfg=cfg) as k:
            kwok.check_running(cfg, k.name)
            assert [n["metadata"]["name"] for n in k.json("get", "nodes")["items"]] == [
                "kwok-node-1"]
    assert kwok.names(cfg) == []

    def up_then_down(_: int) -> str:
        with Cluster("kwok", nodes=1, cfg=cfg) as k:
            kwok.check_running(cfg, k.name)
            return k.name

    with ThreadPoolExecutor(2) as pool:
        assert len(set(pool.map(up_then_down, range(2)))) == 2
    assert kwok.names(cfg) == []
    assert not ours_running(kwok.workdir_root(cfg))


@pytest.mark.parametrize("backend", ["kind", "kubeconfig"])
def test_other_backends_use_the_same_verbs(backend, tmp_path_factory):
    avail = availability(backend)
    if not avail:
        # kind needs its node image (from a registry), kubeconfig a cluster elsewhere
        pytest.skip(outside(f"{backend} backend unavailable here: {avail.reason}"))
    with Cluster(backend, cfg=settings(tmp_path_factory, backend)) as k, k.namespace() as ns:
        k.apply(web(1, image="registry.k8s.io/pause:3.10"), namespace=ns)
        k.wait_ready(APP, 1, namespace=ns, timeout=180)
        assert k.real_pods and len(k.endpoints("web", namespace=ns)) == 1


def _listeners(ports: set[int]) -> set[int]:
    """The pids listening on any of ``ports`` (``ss -ltnp``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    found: set[int] = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3].rsplit(":", 1)[-1].isdigit() \
                and int(fields[3].rsplit(":", 1)[-1]) in ports:
            found |= {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
    return found
