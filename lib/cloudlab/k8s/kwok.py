"""The offline backend: a real control plane over real etcd, with kwok's simulated nodes.

``kwokctl create cluster --runtime binary`` starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, the kwok controller and metrics-server as local
processes from the cached binaries (see :mod:`cloudlab.k8s.install`). The nodes are
Node objects that kwok keeps Ready; pods scheduled on them get a Running status and an IP
from kwok, but **no process runs**. Their CPU and memory usage is emulated by kwok from
the pod's annotations (``kwok.x-k8s.io/usage-cpu``), served on the kubelet's
``/metrics/resource`` path, scraped by the real metrics-server: so the real HPA controller
acts on it.

>>> [doc["kind"] for doc in config_docs()]
['ClusterResourceUsage', 'Metric', 'KwokctlConfiguration']
>>> node("kwok-node-1")["metadata"]["annotations"]["kwok.x-k8s.io/node"]
'fake'
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import Settings
from ..errors import CloudlabError
from ..proc import alive, file_lock, which
from . import install

log = logging.getLogger("cloudlab.k8s")

CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"
MEMORY_ANNOTATION = "kwok.x-k8s.io/usage-memory"
DEFAULT_CPU = "1m"
DEFAULT_MEMORY = "16Mi"

# What each process of the control plane does (shown by Cluster.processes()).
ROLES = {
    "etcd": "the cluster's database: every object you apply is stored here, nowhere else",
    "kube-apiserver": "the only door: authenticates, validates, stores in etcd, serves watches",
    "kube-controller-manager": "the control loops: Deployment -> ReplicaSet -> Pods, "
                               "EndpointSlices, the HorizontalPodAutoscaler...",
    "kube-scheduler": "picks a node for every pod that has none",
    "kwok-controller": "plays the kubelet of kwok's simulated nodes (if any): keeps them Ready, "
                       "marks their pods Running, emulates their CPU/memory; runs no container",
    "metrics-server": "scrapes CPU/memory per pod from every node's kubelet (kwok's emulation, "
                      "or a real node's cgroups) and serves the metrics.k8s.io API the HPA reads",
}


def _usage(annotation: str, default: str) -> str:
    return (f'"{annotation}" in pod.metadata.annotations '
            f'? Quantity(pod.metadata.annotations["{annotation}"]) : Quantity("{default}")')


def config_docs(metrics_manifests: Path | None = None,
                patches: list[dict] | None = None) -> list[dict]:
    """kwok resources (pod usage from annotations, the kubelet's resource metrics) and
    kwokctl's options (loopback only; metrics-server's manifests from a local folder;
    ``patches``: extra flags per component, as kwokctl's ``componentsPatches``)."""
    options: dict = {"bindAddress": "127.0.0.1"}
    if metrics_manifests is not None:
        options["metricsServerManifests"] = [str(metrics_manifests)]
    docs: list[dict] = [
        {"kind": "ClusterResourceUsage", "apiVersion": "kwok.x-k8s.io/v1alpha1",
         "metadata": {"name": "usage-from-annotation"},
         "spec": {"usages": [{"usage": {
             "cpu": {"expression": _usage(CPU_ANNOTATION, DEFAULT_CPU)},
             "memory": {"expression": _usage(MEMORY_ANNOTATION, DEFAULT_MEMORY)}}}]}},
        {"kind": "Metric", "apiVersion": "kwok.x-k8s.io/v1alpha1",
         "metadata": {"name": "metrics-resource"},
         "spec": {"path": "/metrics/nodes/{nodeName}/metrics/resource", "metrics": _METRICS}},
        # every component listens on loopback only (kwokctl's default is 0.0.0.0: an etcd
        # without authentication open to the network)
        {"kind": "KwokctlConfiguration", "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
         "options": options, **({"componentsPatches": patches} if patches else {})},
    ]
    return docs


def config_yaml(metrics_manifests: Path | None = None,
                patches: list[dict] | None = None) -> str:
    return yaml.safe_dump_all(config_docs(metrics_manifests, patches), sort_keys=False)


# A shorter HPA sync period than the default 15 s, so a notebook sees the controller act
# sooner (metrics-server keeps its 15 s resolution: it refuses anything at or below its
# 10 s kubelet request timeout).
EXTRA_ARGS = ("kube-controller-manager=horizontal-pod-autoscaler-sync-period=5s",)
# A grading cluster (``Cluster(grading=True)``, ``cloudlab k8s up --grading``) runs only the
# control loops a graded submission exercises: Deployments, ReplicaSets, EndpointSlices,
# the HPA, what namespaces and their service accounts need, and the resource quotas that
# cap each submission's namespace (the quota admission refuses every pod until this
# controller has computed the quota's usage). The others (Jobs, StatefulSets, DaemonSets,
# the v1 Endpoints and their mirroring, disruption budgets...) would only watch and write
# on every pod of every submission. Measured here (before the quota controller joined):
# about a fifth less control-plane CPU per graded submission than the full set.
GRADING_CONTROLLERS = ("deployment-controller", "replicaset-controller",
                       "endpointslice-controller", "horizontal-pod-autoscaler-controller",
                       "garbage-collector-controller", "namespace-controller",
                       "serviceaccount-controller", "root-ca-certificate-publisher-controller",
                       "resourcequota-controller",
                       "node-lifecycle-controller")  # it lifts the new nodes' not-ready taint
GRADING_ARGS = ("kube-controller-manager=controllers=" + ",".join(GRADING_CONTROLLERS),)


def _metric(name: str, dimension: str, kind: str, value: str, labels: tuple[str, ...] = ()
            ) -> dict:
    exprs = {"container": "container.name", "namespace": "pod.metadata.namespace",
             "pod": "pod.metadata.name"}
    out: dict = {"name": name, "dimension": dimension, "kind": kind, "help": name,
                 "value": value}
    if labels:
        out["labels"] = [{"name": lb, "value": exprs[lb]} for lb in labels]
    return out


# The kubelet's /metrics/resource, as kwok's documentation gives it.
_METRICS = [
    _metric("scrape_error", "node", "gauge", "0"),
    _metric("container_start_time_seconds", "container", "gauge", "pod.SinceSecond()",
            ("container", "namespace", "pod")),
    _metric("container_cpu_usage_seconds_total", "container", "counter",
            'pod.CumulativeUsage("cpu", container.name)', ("container", "namespace", "pod")),
    _metric("container_memory_working_set_bytes", "container", "gauge",
            'pod.Usage("memory", container.name)', ("container", "namespace", "pod")),
    _metric("pod_cpu_usage_seconds_total", "pod", "counter", 'pod.CumulativeUsage("cpu")',
            ("namespace", "pod")),
    _metric("pod_memory_working_set_bytes", "pod", "gauge", 'pod.Usage("memory")',
            ("namespace", "pod")),
    _metric("node_cpu_usage_seconds_total", "node", "counter", 'node.CumulativeUsage("cpu")'),
    _metric("node_memory_working_set_bytes", "node", "gauge", 'node.Usage("memory")'),
]


def node(name: str, cpu: str = "4", memory: str = "16Gi", pods: int = 110) -> dict:
    """A fake node kwok manages; metrics-server reads its emulated kubelet metrics."""
    capacity = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0",
                            "metrics.k8s.io/resource-metrics-path":
                                f"/metrics/nodes/{name}/metrics/resource"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "kwok"},
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


@dataclass(frozen=True)
class Process:
    """One process of the control plane."""

    name: str
    pid: int | None
    running: bool
    role: str
    command: str = ""
    binary: str = ""  # the program file the process runs (links resolved)

    def __str__(self) -> str:
        state = f"pid {self.pid}" if self.running else "not running"
        return f"{self.name:<24} {state:<11} {self.role}"


def workdir_root(cfg: Settings) -> Path:
    """``KWOK_WORKDIR`` for our clusters: under the workbook's state dir, not ~/.kwok."""
    return cfg.state_dir / "kwok"


def cluster_dir(cfg: Settings, name: str) -> Path:
    return workdir_root(cfg) / "clusters" / name


def config_path(cfg: Settings, name: str) -> Path:
    """Our kwokctl config for cluster ``name`` (beside, not inside, kwokctl's clusters/)."""
    return workdir_root(cfg) / f"{name}.kwok.yaml"


def env(cfg: Settings) -> dict[str, str]:
    """kwokctl's environment: our workdir, our kubectl first on PATH, local manifests."""
    out = {**os.environ, "KWOK_WORKDIR": str(workdir_root(cfg))}
    kubectl = which("kubectl")
    if kubectl:  # kwokctl runs `kubectl kustomize`; otherwise it would download a kubectl
        out["PATH"] = os.pathsep.join([str(Path(kubectl).parent), out.get("PATH", "")])
    return out


def names(cfg: Settings) -> list[str]:
    """The kwok clusters under our state dir (up or half torn down)."""
    root = workdir_root(cfg) / "clusters"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def pids(cfg: Settings, name: str) -> dict[str, int]:
    """Component -> pid, from kwokctl's pid files."""
    out = {}
    for f in sorted((cluster_dir(cfg, name) / "pids").glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            out[f.stem] = int(f.read_text().strip())
    return out


def processes(cfg: Settings, name: str) -> list[Process]:
    """The control plane's processes with what each does, read from the live system."""
    out = []
    for comp, pid in pids(cfg, name).items():
        running = running_pid(pid)
        cmd = exe = ""
        if running:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                exe = os.path.realpath(f"/proc/{pid}/exe")
        out.append(Process(comp, pid, running, ROLES.get(comp, ""), cmd.strip(), exe))
    order = list(ROLES)
    return sorted(out, key=lambda p: order.index(p.name) if p.name in order else 99)



CREATE_LOCK = Path(tempfile.gettempdir()) / "cloudlab-kwokctl-create.lock"


@contextlib.contextmanager
def _one_create_at_a_time() -> Iterator[None]:
    """Hold the machine's kwokctl-create lock. kwokctl chooses each component's port by
    probing downwards from 32767 for one nobody listens on; two creates at the same moment
    choose the same ports, and each cluster's components then bind (or talk to) the other's
    (seen: "x509: certificate signed by unknown authority" from the other cluster's API
    server). One create at a time, until its components listen, chooses apart."""
    with file_lock(CREATE_LOCK):
        yield


def create(cfg: Settings, name: str, kubeconfig: Path, timeout: float = 120,
           extra_args: tuple[str, ...] = (), patches: list[dict] | None = None) -> None:
    """``kwokctl create cluster`` with the cached binaries; raises with kwokctl's output.
    ``extra_args``: more ``component=flag=value`` (:data:`GRADING_ARGS`, say);
    ``patches``: more flags through the config file (kwokctl's ``--extra-args`` loses
    track of a component named again after another one was, so several flags for several
    components go this way: see :func:`cloudlab.k8s.node.apiserver_patches`)."""
    bins = install.paths()
    conf = config_path(cfg, name)
    conf.parent.mkdir(parents=True, exist_ok=True)
    manifests = install.metrics_manifests()
    conf.write_text(config_yaml(manifests if (manifests / "kustomization.yaml").is_file()
                                else None, patches))
    cmd = [str(bins["kwokctl"]), "create", "cluster", "--name", name, "--runtime", "binary",
           "--config", str(conf), "--kubeconfig", str(kubeconfig), "--quiet-pull",
           "--enable", "metrics-server", "--wait", f"{int(timeout)}s",
           # RBAC and admission as on a real cluster (kwokctl's defaults, said out loud):
           # a namespaced service account is confined to its namespace; graders rely on it
           "--kube-authorization", "--kube-admission",
           *(arg for pair in (*EXTRA_ARGS, *extra_args) for arg in ("--extra-args", pair)),
           "--kube-apiserver-binary", str(bins["kube-apiserver"]),
           "--kube-controller-manager-binary", str(bins["kube-controller-manager"]),
           "--kube-scheduler-binary", str(bins["kube-scheduler"]),
           "--kwok-controller-binary", str(bins["kwok"]),
           "--etcd-binary", str(bins["etcd"]),
           "--metrics-server-binary", str(bins["metrics-server"])]
    with _one_create_at_a_time():
        done = subprocess.run(cmd, capture_output=True, text=True, env=env(cfg),
                              timeout=timeout + 30, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise CloudlabError(f"kwokctl could not create cluster {name!r} (exit "
                            f"{done.returncode}):\n{(done.stdout + done.stderr).strip()[-3000:]}"
                            f"{_component_logs(cfg, name)}")


def revive(cfg: Settings, name: str, timeout: float = 60) -> dict[str, str]:
    """Start again, once, every component that died while the cluster came up; returns
    each one's name and the log lines that say why.

    ``kwokctl`` forks all the components at once and waits for none: metrics-server reads
    a ConfigMap from the API server as it starts and exits at once if that server is not
    listening yet (``connection refused``), which a busy machine makes likely. Called once
    the nodes are Ready (the API server serves by then), so a second start succeeds; a
    component that dies again is left for :func:`check_running` to report.
    """
    dead = {p.name: logs(cfg, name, p.name, 6) for p in processes(cfg, name) if not p.running}
    if not dead:
        return {}
    for component, why in dead.items():
        log.warning("cluster %s: %s exited while starting; starting it again. Its log:\n%s",
                    name, component, why)
        # kwokctl thinks a pid is running while it is a zombie: forget the dead ones
        (cluster_dir(cfg, name) / "pids" / f"{component}.pid").unlink(missing_ok=True)
    _start_again(cfg, name, list(dead), timeout)
    return dead


def port_clash(cfg: Settings, name: str) -> list[str]:
    """The components of cluster ``name`` that died because their port was taken between
    kwokctl choosing it and the component binding it (another cluster starting at the
    same moment, or any program's outgoing connection: kwokctl picks in the ephemeral
    range). A restart would meet the same port: the cluster must be made again."""
    return [p.name for p in processes(cfg, name)
            if not p.running and "address already in use" in logs(cfg, name, p.name, 20)]


def restart(cfg: Settings, name: str, component: str, why: str, timeout: float = 60) -> None:
    """Stop ``component`` of cluster ``name`` and start it again, logging ``why`` and the
    tail of its log: for a component that runs but does not act (see ``Cluster.start``)."""
    log.warning("cluster %s: %s; restarting %s. Its log:\n%s", name, why, component,
                logs(cfg, name, component, 6))
    pid = pids(cfg, name).get(component)
    if pid:
        _terminate(pid)
    (cluster_dir(cfg, name) / "pids" / f"{component}.pid").unlink(missing_ok=True)
    _start_again(cfg, name, [component], timeout)


def _start_again(cfg: Settings, name: str, components: list[str], timeout: float) -> None:
    """``kwokctl start cluster``: starts every component whose pid file is gone."""
    done = subprocess.run([str(install.paths()["kwokctl"]), "start", "cluster", "--name", name],
                          capture_output=True, text=True, env=env(cfg), timeout=timeout + 30,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise CloudlabError(f"kwokctl could not restart {', '.join(components)} of cluster "
                            f"{name!r} (exit {done.returncode}):\n"
                            f"{(done.stdout + done.stderr)[-2000:]}{_component_logs(cfg, name)}")


def delete(cfg: Settings, name: str, timeout: float = 60) -> None:
    """Stop every process of cluster ``name`` and remove its files; idempotent.

    ``kwokctl delete cluster`` first; then whatever pid is still alive gets SIGTERM, then
    SIGKILL, and the cluster's folder (etcd data, certificates, logs) is removed.
    """
    before = pids(cfg, name)
    if cluster_dir(cfg, name).exists():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run([str(install.paths()["kwokctl"]), "delete", "cluster", "--name", name],
                           capture_output=True, env=env(cfg), timeout=timeout,
                           stdin=subprocess.DEVNULL)
    for pid in before.values():
        _terminate(pid)
    shutil.rmtree(cluster_dir(cfg, name), ignore_errors=True)
    config_path(cfg, name).unlink(missing_ok=True)


def running_pid(pid: int) -> bool:
    """Alive and not a zombie (a crashed component stays a zombie until reaped)."""
    if not alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def check_running(cfg: Settings, name: str) -> None:
    """Raise with the log tail of every control-plane process that is not running."""
    dead = [p.name for p in processes(cfg, name) if not p.running]
    if dead:
        tails = "".join(f"\n--- {d}.log (last lines) ---\n{logs(cfg, name, d, 12)}"
                        for d in dead)
        raise CloudlabError(f"cluster {name!r}: {', '.join(dead)} exited{tails}")


def _terminate(pid: int, timeout: float = 10) -> None:
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _component_logs(cfg: Settings, name: str, lines: int = 15) -> str:
    out = []
    for log in sorted((cluster_dir(cfg, name) / "logs").glob("*.log")):
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        if text:
            out.append(f"\n--- {log.name} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "".join(out)


def logs(cfg: Settings, name: str, component: str, lines: int = 40) -> str:
    """The tail of one control-plane component's log."""
    path = cluster_dir(cfg, name) / "logs" / f"{component}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
