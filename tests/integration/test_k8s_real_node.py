"""A real node joined to the kwok control plane: pods of a local image run, answer, log,
exec, port-forward; a Service answers through kube-proxy; names resolve through CoreDNS;
the kubeconfig backend drives the same cluster; and nothing is left behind, after a
normal stop, an exception, a KeyboardInterrupt mid-start or a killed run.

One cluster serves the verb tests (module scope: CPU is scarce); the leak tests start
their own, because tearing down is what they check. Skipped, with the reason and the
fix, where a real node cannot run (not root, binaries not built, no Docker engine).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from cloudlab import busybox, config, engine
from cloudlab.errors import CloudlabError, UnavailableError
from cloudlab.k8s import Cluster, availability, host, node
from cloudlab.k8s import sweep as k8s_sweep
from cloudlab.proc import wait_for
from tests.conftest import machine_lock

KWOK = availability("kwok")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not KWOK, reason=f"kwok backend unavailable: {KWOK.reason}"),
]
APP = "app.kubernetes.io/name=web"
PAGE = "hello from a real pod"


def settings(tmp_path_factory, tag: str) -> config.Settings:
    return config.load(env={}, state_dir=tmp_path_factory.mktemp(f"node-{tag}"),
                       run_id=f"test-node-{tag}-{secrets.token_hex(2)}")


def web(image: str, replicas: int = 2, probe_path: str = "/index.html") -> list[dict]:
    """busybox httpd serving one page on 8080, Ready once the page answers."""
    labels = {"app.kubernetes.io/name": "web"}
    script = (f"mkdir -p /www && echo '{PAGE}' > /www/index.html && echo serving $(hostname) "
              "&& exec httpd -f -p 8080 -h /www")
    container = {"name": "web", "image": image, "imagePullPolicy": "Never",
                 "command": ["sh", "-c", script],
                 "ports": [{"containerPort": 8080, "name": "http"}],
                 "resources": {"requests": {"cpu": "50m"}},
                 "readinessProbe": {"httpGet": {"path": probe_path, "port": "http"},
                                    "periodSeconds": 1}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [container],
                                        "terminationGracePeriodSeconds": 1}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
    ]


@pytest.fixture(scope="module", autouse=True)
def one_real_node():
    """One real node per machine (its iptables chains are machine-wide): notebook 07, in
    make test's other lane, waits while this module runs, and the other way round."""
    with machine_lock(["real-node"]):
        avail = node.availability()   # asked under the lock: a node another run holds is
        if not avail:                 # waited for, not a reason to skip
            pytest.skip(f"real node unavailable: {avail.reason}")
        yield


@pytest.fixture(scope="module")
def image():
    if engine.version() is None:
        pytest.skip("no Docker engine to take the image from: `cloudlab engine up`")
    try:
        return busybox.image()
    except UnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def kube(tmp_path_factory, image):
    with Cluster("kwok", real_nodes=1, cfg=settings(tmp_path_factory, "verbs")) as k:
        k.load_image(image)
        yield k


@pytest.fixture(scope="module")
def app(kube, image):
    ns = kube.create_namespace("web")
    kube.apply(web(image), namespace=ns)
    kube.wait_ready(APP, 2, namespace=ns, timeout=120)
    return ns


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_the_node_is_real_and_ready(kube):
    nodes = kube.get("nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [node.NODE_NAME]
    info = nodes[0]["status"]["nodeInfo"]
    assert info["kubeletVersion"] == kube.version()
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert {p["name"]: p["running"] for p in kube.node.processes()} == dict.fromkeys(
        node.COMPONENTS, True)
    assert "kwok.x-k8s.io/node" not in nodes[0]["metadata"].get("annotations", {})


def test_a_pod_of_a_local_image_runs_and_logs(kube, app):
    pods = kube.pods(namespace=app, selector=APP)
    assert all(p["ready"] and p["node"] == node.NODE_NAME for p in pods)
    for p in pods:
        assert p["ip"] and p["ip"].rsplit(".", 1)[0] == kube.node.plan.gateway.rsplit(".", 1)[0]
        host.check_local(p["ip"], kube.node.bridge)
        assert get(f"http://{p['ip']}:8080/index.html").strip() == PAGE
    name = pods[0]["name"]
    assert kube.logs(f"pod/{name}", namespace=app).strip() == f"serving {name}"


def test_exec_runs_inside_the_pod(kube, app):
    name = kube.pods(namespace=app, selector=APP)[0]["name"]
    assert kube.exec(f"pod/{name}", "cat", "/www/index.html", namespace=app).strip() == PAGE
    assert kube.exec(f"pod/{name}", "hostname", namespace=app).strip() == name


def test_port_forward_reaches_the_pod(kube, app):
    with kube.port_forward("deployment/web", 8080, namespace=app) as url:
        assert url.startswith("http://127.0.0.1:")
        assert get(url + "/index.html").strip() == PAGE


def test_a_service_answers_through_kube_proxy(kube, app):
    url = kube.service_url("web", namespace=app)
    wait_for(lambda: len(kube.endpoints("web", namespace=app)) == 2, timeout=30,
             what="2 endpoints")
    answered = wait_for(lambda: get(url + "/index.html"), timeout=30,
                        what="the Service's rules from kube-proxy")
    assert answered.strip() == PAGE
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    ip = url.split("//")[1].split(":")[0]
    assert f"-d {ip}/32" in rules and "KUBE-SVC-" in rules


def test_names_resolve_through_coredns(kube, app):
    name = kube.pods(namespace=app, selector=APP)[0]["name"]
    svc_ip = kube.get("service", "web", namespace=app)["spec"]["clusterIP"]
    out = kube.exec(f"pod/{name}", "nslookup", f"web.{app}.svc.cluster.local", namespace=app)
    assert svc_ip in out
    # the short name, through the pod's search path, and the page through the name
    page = kube.exec(f"pod/{name}", "wget", "-qO-", "http://web/index.html", namespace=app)
    assert page.strip() == PAGE
    resolv = kube.exec(f"pod/{name}", "cat", "/etc/resolv.conf", namespace=app)
    assert f"nameserver {kube.node.plan.dns}" in resolv


def test_kubectl_run_prints_the_output(kube, image):
    ns = kube.create_namespace("once")
    assert kube.run_pod("once", image, namespace=ns,
                        command=["echo", "ran for real"]).strip() == "ran for real"


def test_a_failing_readiness_probe_keeps_a_pod_out_of_the_service(kube, image):
    ns = kube.create_namespace("probe")
    kube.apply(web(image, replicas=1, probe_path="/missing"), namespace=ns)
    wait_for(lambda: kube.pods(namespace=ns, selector=APP)
             and kube.pods(namespace=ns, selector=APP)[0]["phase"] == "Running",
             timeout=60, what="the pod to run")
    time.sleep(3)
    assert kube.ready_pods(namespace=ns, selector=APP) == 0
    assert kube.endpoints("web", namespace=ns) == []


def test_metrics_server_scrapes_the_real_kubelet(kube, app):
    pods = {p["name"] for p in kube.pods(namespace=app, selector=APP)}
    # metrics-server reports a pod once it has two of its samples: one pod may come first
    usage = wait_for(lambda: (u := kube.top_pods(namespace=app, selector=APP))
                     and set(u) == pods and u, timeout=120,
                     what=f"metrics for every web pod ({', '.join(sorted(pods))})")
    assert set(usage) == pods
    assert all(v >= 0 for v in usage.values())


def test_kubeconfig_backend_drives_the_same_cluster(kube, app, tmp_path):
    conf = tmp_path / "kubeconfig"
    conf.write_text(kube.kubectl("config", "view", "--raw", "--minify", "--flatten").stdout)
    with Cluster("kubeconfig", kubeconfig=conf) as other:
        assert other.real_pods
        assert other.version() == kube.version()
        assert other.ready_pods(namespace=app, selector=APP) == 2
        with other.namespace("from-kubeconfig") as ns:
            assert ns in kube.namespaces()
        name = other.pods(namespace=app, selector=APP)[0]["name"]
        assert other.exec(f"pod/{name}", "cat", "/www/index.html", namespace=app).strip() == PAGE
    wait_for(lambda: "from-kubeconfig" not in kube.namespaces(), timeout=60,
             what="the kubeconfig backend to delete its namespace")


def test_an_address_off_the_machine_is_refused(kube):
    """A documentation address (TEST-NET-3) routes through the default gateway: refused
    (the check asks the kernel for the route; nothing is sent)."""
    with pytest.raises(host.HostError, match="refusing"):
        host.check_local("203.0.113.9", kube.node.bridge)
    assert host.route_is_local(kube.node.plan.gateway, kube.node.bridge)


def test_a_second_real_node_is_refused(kube, tmp_path_factory):
    with pytest.raises(UnavailableError, match="already runs here"):
        Cluster("kwok", real_nodes=1, cfg=settings(tmp_path_factory, "second")).start()


# -- nothing left behind -------------------------------------------------------------------

def clean(base: Path, bridge: str) -> dict[str, list]:
    """What is left of a node: every list must be empty."""
    left = host.leftovers(base, bridge, node.run_dir(base))
    left["owner"] = [node.OWNER] if node.OWNER.exists() else []
    return {k: v for k, v in left.items() if v}


def test_stop_leaves_nothing(kube):
    """The module's cluster goes first: one real node per machine, and the leak tests
    below each start their own."""
    base, bridge = kube.node.base, kube.node.bridge
    assert clean(base, bridge)  # running: processes, chains, bridge, cgroups, mounts
    kube.stop()
    assert clean(base, bridge) == {}


@pytest.fixture
def no_node_running(kube):
    kube.stop()
    yield


def test_an_exception_mid_start_leaves_nothing(tmp_path_factory, monkeypatch, no_node_running):
    cfg = settings(tmp_path_factory, "boom")
    real = node.Node._coredns_ready

    def boom(self):
        assert real  # the kubelet, kube-proxy and CoreDNS are running by now
        raise node.GiveUp("injected failure after every process started")

    monkeypatch.setattr(node.Node, "_coredns_ready", boom)
    cluster = Cluster("kwok", real_nodes=1, cfg=cfg)
    with pytest.raises(CloudlabError, match="injected failure"), cluster:
        pass
    assert clean(node.folder(cfg, cluster.name), node.Node.network_name(cluster.name)) == {}


def test_a_keyboard_interrupt_mid_start_leaves_nothing(tmp_path_factory, monkeypatch,
                                                       no_node_running):
    cfg = settings(tmp_path_factory, "ctrlc")
    real_start = node.Node._start

    def interrupt(self, component, cmd):
        real_start(self, component, cmd)
        if component == "kubelet":
            raise KeyboardInterrupt

    monkeypatch.setattr(node.Node, "_start", interrupt)
    cluster = Cluster("kwok", real_nodes=1, cfg=cfg)
    with pytest.raises(KeyboardInterrupt), cluster:
        pass
    assert clean(node.folder(cfg, cluster.name), node.Node.network_name(cluster.name)) == {}


def test_a_killed_run_is_cleaned_by_cleanup(tmp_path_factory, image, no_node_running):
    cfg = settings(tmp_path_factory, "killed")
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from cloudlab import config
        from cloudlab.k8s import Cluster
        cfg = config.load(env={{}}, state_dir=Path({str(cfg.state_dir)!r}),
                          run_id={cfg.run_id!r})
        k = Cluster("kwok", real_nodes=1, cfg=cfg).start()
        k.load_image({image!r})
        k.apply({web(image, replicas=1)!r}, namespace="default")
        k.wait_ready({APP!r}, 1, namespace="default", timeout=120)
        print(k.name, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    swept = None
    try:
        name = proc.stdout.readline().strip()
        assert name, "the child could not start its cluster"
        base, bridge = node.folder(cfg, name), node.Node.network_name(name)
        assert clean(base, bridge)  # running: processes, chains, bridge, cgroups, mounts
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert clean(base, bridge)["processes"]  # the kill leaves the node behind...
        swept = k8s_sweep(cfg.run_id, cfg)  # ...until cleanup --run-id sweeps it
        assert swept == 1
        assert clean(base, bridge) == {}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if swept is None:
            k8s_sweep(cfg.run_id, cfg)
