"""A real node joined to the kwok cluster's control plane: pods that really run.

Four processes, all from ``cloudlab k8s install``'s cache or Debian:

- ``containerd`` of its own (Debian's, with the CRI plugin): own root, state and socket,
  not the one ``dockerd`` manages; ``restrict_oom_score_adj = true`` because this kind of
  machine drops ``CAP_SYS_RESOURCE`` (without it every pod sandbox fails in runc);
- ``kubelet`` (same version as the control plane) with the bridge's gateway as its node
  IP (an address of this machine; kubelet 1.36 refuses a loopback node IP);
  ``failCgroupV1: false`` on a cgroup v1 host (kubelet 1.35+ refuses v1 otherwise) and the
  ``cgroupfs`` driver; eviction and reserves set so the host's own work keeps its share;
- ``kube-proxy`` in iptables mode (Services answer through its DNAT rules);
- ``coredns`` on the bridge's gateway address, answering ``cluster.local`` only (no
  forwarder: a name outside the cluster gets no answer, nothing is asked off the machine).

Networking: Debian's CNI plugins (``bridge``, ``host-local``, ``loopback``) on a bridge of
our own whose /24 overlaps nothing this machine routes; the Service range is routed onto
that bridge; a ``CLOUDLAB-NODE`` chain forwards nothing a pod sends anywhere but the bridge,
and ``CLOUDLAB-NODE-IN`` lets a pod open nothing on this machine but the cluster DNS.
``portmap`` is left out: a ``hostPort`` would publish on every address of the machine.

One real node per machine (iptables' KUBE-* chains are global): a second one is refused
with the name of the running one. Everything the node touches is listed in
:mod:`cloudlab.k8s.host` and undone by :func:`teardown`, also for a killed run.

>>> Node.network_name("cloudlab-r1-ab12")
'clk8s-ab12'
>>> with Cluster("kwok", real_nodes=1) as k:        # doctest: +SKIP
...     k.load_image("hello:1.0")
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import Settings
from ..errors import CloudlabError, UnavailableError
from ..lifecycle import Managed
from ..ports import free_port
from ..proc import GiveUp, alive, file_lock, run, wait_for, which
from . import host, install

RUN_ROOT = Path("/run/cloudlab-k8s")       # sockets and the machine-wide owner record
OWNER = RUN_ROOT / "node.json"
PAUSE_IMAGE = f"cloudlab.local/pause:{install.PAUSE_VERSION}"
NODE_NAME = "real-node-1"
POD_PIDS_LIMIT = 128  # processes (threads included) per pod: the local sandbox's --pids-limit
BRIDGE_PREFIX = "clk8s-"
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")
ROLES = {
    "containerd": "the node's container runtime (CRI): pulls nothing, runs the pods' "
                  "containers with runc",
    "kubelet": "the real node agent: starts the pods the scheduler put here, runs their "
               "probes, reports their status and serves logs/exec/port-forward",
    "kube-proxy": "turns Services into iptables DNAT rules to the ready pods",
    "coredns": "the cluster DNS: <service>.<namespace>.svc.cluster.local -> its address",
}


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def availability() -> Availability:
    """Whether a real node can start here; the reason names the fix."""
    if os.uname().sysname != "Linux":
        return Availability(False, "a real node needs Linux (the kubelet runs there only)")
    if os.geteuid() != 0:
        return Availability(False, "a real node needs root (network namespaces, iptables, "
                                   "cgroups); run as root, or use the kwok-only cluster")
    absent = [t for t in ("containerd", "runc", "ctr", "iptables", "ip") if not which(t)]
    if absent:
        return Availability(False, f"missing {', '.join(absent)}: apt-get install "
                                   "containerd runc iptables iproute2")
    plugins = [p for p in ("bridge", "host-local", "loopback") if not (CNI_BIN / p).exists()]
    if plugins:
        return Availability(False, f"no CNI plugins {', '.join(plugins)} in {CNI_BIN}: "
                                   "apt-get install containernetworking-plugins")
    if install.node_missing():
        return Availability(False, f"missing {', '.join(install.node_missing())} in "
                                   f"{install.bin_dir()}: run `cloudlab k8s install`")
    owner = running_owner()
    if owner:
        return Availability(False, f"a real node already runs here (cluster "
                                   f"{owner.get('cluster')}, run {owner.get('run_id')}); "
                                   f"one per machine: `cloudlab k8s down {owner.get('cluster')}`")
    return Availability(True, f"kubelet v{install.PINNED['kubernetes']} + containerd (CRI) + "
                              f"CNI bridge; cgroup v{host.cgroup_version()}")


CNI_BIN = Path("/usr/lib/cni")


def running_owner() -> dict:
    """The machine's real node record when any of its processes is alive, else {}."""
    try:
        data = json.loads(OWNER.read_text())
    except (OSError, ValueError):
        return {}
    return data if any(alive(p) for p in data.get("pids", {}).values()) else {}


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    with file_lock(RUN_ROOT / "node.lock"):
        yield


@dataclass(frozen=True)
class Plan:
    """Addresses chosen before the control plane starts (the API server needs the
    Service range; the kubelet and CoreDNS the gateway)."""

    pod_cidr: str
    service_cidr: str

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def dns(self) -> str:
        return self.gateway

    @classmethod
    def choose(cls, pod_cidr: str | None = None, service_cidr: str | None = None) -> Plan:
        taken = host.local_networks()
        pod = pod_cidr or host.pick_subnet(taken, host.POD_CANDIDATES)
        svc = service_cidr or host.pick_subnet([*taken, pod], host.SERVICE_CANDIDATES)
        for cidr in (pod, svc):
            if host.overlaps(cidr, taken):
                raise host.HostError(f"{cidr} overlaps a network of this machine "
                                     f"({', '.join(taken)}); choose another")
        return cls(pod, svc)


def apiserver_patches(cluster_dir: Path, plan: Plan) -> list[dict]:
    """kwokctl component patches for a cluster with a real node: the API server reaches
    the kubelet by its InternalIP (never a DNS lookup of the node's name) with
    the admin certificate; kwok manages only its own (annotated) nodes."""
    pki = cluster_dir / "pki"
    return [
        {"name": "kube-apiserver", "extraArgs": [
            {"key": "kubelet-preferred-address-types", "value": "InternalIP"},
            {"key": "kubelet-client-certificate", "value": str(pki / "admin.crt")},
            {"key": "kubelet-client-key", "value": str(pki / "admin.key")},
            {"key": "service-cluster-ip-range", "value": plan.service_cidr}]},
        {"name": "kwok-controller", "extraArgs": [
            {"key": "manage-all-nodes", "value": "false"},
            {"key": "manage-nodes-with-annotation-selector",
             "value": "kwok.x-k8s.io/node=fake"}]},
    ]


class Node(Managed):
    """The real node of cluster ``cluster`` (a kwok control plane already up).

    ``kubeconfig``: the cluster's admin kubeconfig; ``pki``: its CA folder (the kubelet
    trusts client certificates signed by it). Start order: containerd (+ pause image),
    bridge and fence, kube-proxy, CoreDNS, kubelet; stop (:func:`teardown`) undoes all.
    """

    def __init__(self, cfg: Settings, cluster: str, kubeconfig: Path, context: str,
                 pki: Path, plan: Plan, *, name: str = NODE_NAME, timeout: float = 90) -> None:
        self.cfg, self.cluster, self.plan, self.name = cfg, cluster, plan, name
        self.admin_kubeconfig, self.context, self.pki = kubeconfig, context, pki
        self.timeout = timeout
        self.base = folder(cfg, cluster)
        self.run_dir = run_dir(self.base)
        self.bridge = self.network_name(cluster)
        self.ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self.started_at = 0.0
        self.ready_seconds: float | None = None  # start() to Ready (set by the Cluster)
        self.base_seconds: float | None = None  # taking the base image in (a grading node)

    @staticmethod
    def network_name(cluster: str) -> str:
        """The bridge's (and CNI network's) name: ``clk8s-`` + the last part of the cluster's name
        (interface names are at most 15 characters)."""
        return BRIDGE_PREFIX + cluster.rsplit("-", 1)[-1][:9]

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Node:
        avail = availability()
        if not avail:
            raise UnavailableError(f"real node unavailable: {avail.reason}")
        started = self.started_at = time.monotonic()
        with _machine_lock():
            stale = _read_owner()
            if stale and not running_owner():
                teardown(Path(stale["base"]), stale.get("bridge", ""))  # a killed run's
            elif running_owner():
                raise UnavailableError(f"real node unavailable: {availability().reason}")
            self._write_layout()
            self._write_owner()
            self._start("containerd", [which("containerd") or "containerd", "--config",
                                       str(self.base / "containerd.toml")])
            wait_for(self._containerd_up, timeout=30, what="the node's containerd",
                     log=self.log_path("containerd"))
        self._import_pause()
        host.make_bridge(self.bridge, f"{self.plan.gateway}/24", self.plan.service_cidr)
        host.fence(self.bridge, closed_ports=[self.ports["kubelet"]], dns=self.plan.dns)
        bins = install.node_paths()
        self._start("kube-proxy", [str(bins["kube-proxy"]), "--config",
                                   str(self.base / "kube-proxy.yaml"), "--v=1"])
        self._start("coredns", [str(bins["coredns"]), "-conf", str(self.base / "Corefile")])
        self._start("kubelet", [str(bins["kubelet"]), "--config", str(self.base / "kubelet.yaml"),
                                "--kubeconfig", str(self.base / "kubeconfig"),
                                # under /run: its sockets (pod-resources, plugins) need
                                # short paths
                                "--root-dir", str(self.run_dir / "kubelet"),
                                "--hostname-override", self.name,
                                "--node-ip", self.plan.gateway,
                                "--v=1"])
        self._write_owner()
        wait_for(self._coredns_ready, timeout=30, what="CoreDNS to sync with the API server",
                 log=self.log_path("coredns"))
        for address in (self.plan.gateway, str(ipaddress.ip_network(
                self.plan.service_cidr)[1])):
            host.check_local(address, self.bridge)
        self.ready_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop every process and undo every change to the host; idempotent."""
        for proc in self._procs.values():  # our own children: reap them
            with contextlib.suppress(OSError):
                proc.poll()
        teardown(self.base, self.bridge)
        for proc in self._procs.values():
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._procs.clear()

    # -- what the cluster uses ------------------------------------------------------------
    def load_image(self, image: str) -> str:
        """Copy ``image`` from the Docker engine into the node's containerd (``docker save``
        into ``ctr images import``, as ``kind load docker-image`` does). Returns its name."""
        return load_image(image, self.socket)

    def load_program(self, image: str, program: Path) -> str:
        """Make ``image`` in the node's containerd from one program of this machine and its
        shared libraries (:func:`program_image`); no Docker engine needed. Returns its name."""
        done = subprocess.run(self._ctr("images", "import", "-"),
                              input=program_image(image, program), capture_output=True,
                              timeout=120)
        if done.returncode != 0:
            raise CloudlabError(f"importing {image} failed: {done.stderr.decode()}")
        return image

    def images(self) -> list[str]:
        """Image names in the node's containerd (namespace ``k8s.io``)."""
        out = run(self._ctr("images", "ls", "-q"), timeout=30).stdout.split()
        return sorted(i for i in out if not i.startswith("sha256:"))

    def processes(self) -> list[dict]:
        """One row per node process: name, pid, running, role."""
        pids = _read_owner().get("pids", {}) if _read_owner().get("base") == str(self.base) \
            else {}
        return [{"name": n, "pid": pids.get(n), "running": bool(pids.get(n)) and alive(pids[n]),
                 "role": ROLES[n]} for n in COMPONENTS]

    def log(self, component: str, lines: int = 40) -> str:
        path = self.log_path(component)
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(text[-lines:])

    # -- internals -----------------------------------------------------------------------
    def log_path(self, component: str) -> Path:
        return self.base / "logs" / f"{component}.log"

    def _ctr(self, *args: str) -> list[str]:
        return [which("ctr") or "ctr", "--address", str(self.socket), "--namespace", "k8s.io",
                *args]

    def _start(self, component: str, cmd: list[str]) -> None:
        log = open(self.log_path(component), "ab")  # noqa: SIM115 (the child keeps it)
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=self.base)
        finally:
            log.close()
        self._procs[component] = proc
        self._write_owner()
        time.sleep(0.2)
        if proc.poll() is not None:
            raise CloudlabError(f"{component} exited at once (code {proc.returncode})"
                                f"{_tail(self.log_path(component))}")

    def _alive(self, component: str) -> None:
        proc = self._procs.get(component)
        if proc is not None and proc.poll() is not None:
            raise GiveUp(f"{component} exited (code {proc.returncode})")

    def _containerd_up(self) -> bool:
        self._alive("containerd")
        done = subprocess.run(self._ctr("plugins", "ls"), capture_output=True, text=True,
                              timeout=10)
        return done.returncode == 0 and any(
            "io.containerd.grpc.v1" in line and "cri" in line.split() and "ok" in line
            for line in done.stdout.splitlines())

    def _coredns_ready(self) -> bool:
        import urllib.request

        self._alive("coredns")
        self._alive("kubelet")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['coredns-ready']}/ready",
                                    timeout=2) as resp:
            return resp.status == 200

    def _import_pause(self) -> None:
        """The sandbox image, made here from the cached ``pause`` program (an OCI archive
        with one layer: /pause), imported into the node's containerd."""
        data = oci_archive(PAUSE_IMAGE, {"pause": install.node_paths()["pause"]},
                           entrypoint=["/pause"])
        done = subprocess.run(self._ctr("images", "import", "-"), input=data,
                              capture_output=True, timeout=120)
        if done.returncode != 0:
            raise CloudlabError(f"importing {PAUSE_IMAGE} failed: {done.stderr.decode()}")
        # kubelet's image GC must never remove the sandbox image
        subprocess.run(self._ctr("images", "label", PAUSE_IMAGE, "io.cri-containerd.pinned=pinned"),
                       capture_output=True, timeout=30)

    def _write_owner(self) -> None:
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        before = _read_owner() if _read_owner().get("base") == str(self.base) else {}
        pids = {**before.get("pids", {}), **{n: p.pid for n, p in self._procs.items()}}
        OWNER.write_text(json.dumps({"cluster": self.cluster, "run_id": self.cfg.run_id,
                                     "base": str(self.base), "bridge": self.bridge,
                                     "node": self.name, "pids": pids}))

    def _write_layout(self) -> None:
        for sub in ("logs", "pod-logs", "cni", "ipam", "containerd"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.run_dir / "kubelet").mkdir(parents=True, exist_ok=True)
        self.ports = {k: free_port() for k in ("kubelet", "kubelet-healthz", "proxy-healthz",
                                                "proxy-metrics", "coredns-ready")}
        kubeconfig = run(["kubectl", "--kubeconfig", str(self.admin_kubeconfig), "config",
                          "view", "--raw", "--minify", "--flatten", "--context", self.context],
                         timeout=30).stdout
        (self.base / "kubeconfig").write_text(kubeconfig)
        (self.base / "containerd.toml").write_text(self.containerd_config())
        (self.base / "cni" / "10-cloudlab.conflist").write_text(json.dumps(self.cni_config(),
                                                                           indent=2))
        (self.base / "kubelet.yaml").write_text(yaml.safe_dump(self.kubelet_config()))
        (self.base / "kube-proxy.yaml").write_text(yaml.safe_dump(self.proxy_config()))
        (self.base / "Corefile").write_text(self.corefile())

    def containerd_config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{self.base / 'containerd'}"
state = "{self.run_dir / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.run_dir / 'containerd.sock.ttrpc'}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.base / 'opt'}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.base / 'cni'}"
    max_conf_num = 1
  [{cri}.registry]
    config_path = ""
"""

    def cni_config(self) -> dict:
        return {"cniVersion": "1.0.0", "name": self.bridge, "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(self.base / "ipam"),
                      "ranges": [[{"subnet": self.plan.pod_cidr,
                                   "gateway": self.plan.gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "loopback"}]}

    def kubelet_config(self) -> dict:
        conf: dict = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # The node's address (InternalIP, what the API server and metrics-server dial:
            # never a name) is the bridge's gateway: kubelet 1.36 refuses a loopback one
            # ("nodeIP can't be loopback address"). Pods cannot open it (fence()).
            "address": self.plan.gateway, "port": self.ports["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.ports["kubelet-healthz"],
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [self.plan.dns], "clusterDomain": "cluster.local",
            "resolvConf": "",            # pods never get the host's resolvers
            "failSwapOn": False,
            "podLogsDir": str(self.base / "pod-logs"),
            "staticPodPath": "",
            "maxPods": 40,
            "podPidsLimit": POD_PIDS_LIMIT,
            "serializeImagePulls": False,
            # The kubelet only ever evicts pods; these thresholds keep it from doing so for
            # the ordinary load of a shared machine, and the reserves keep the pods' cgroup
            # (kubepods) from taking the CPU and memory the host's own work needs.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                             "nodefs.inodesFree": "2%", "imagefs.available": "2%"},
            "systemReserved": {"cpu": "500m", "memory": "512Mi"},
            "enforceNodeAllocatable": ["pods"],
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "nodeStatusUpdateFrequency": "4s",
            "volumeStatsAggPeriod": "0s",
        }
        if host.cgroup_version() == 1:
            conf["failCgroupV1"] = False  # KEP-5573: kubelet 1.35+ refuses v1 without it
        return conf

    def proxy_config(self) -> dict:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.base / "kubeconfig")},
            "mode": "iptables", "clusterCIDR": self.plan.pod_cidr,
            "hostnameOverride": self.name, "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy-metrics']}",
            # NodePorts only on the bridge's gateway (no route_localnet, nothing public)
            "nodePortAddresses": [f"{self.plan.gateway}/32"],
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
            "conntrack": {"maxPerCore": 0, "min": 0},   # leave the host's conntrack alone
        }

    def corefile(self) -> str:
        return f"""cluster.local:53 {{
    bind {self.plan.dns}
    ready 127.0.0.1:{self.ports['coredns-ready']}
    errors
    cache 5
    kubernetes cluster.local {{
        kubeconfig {self.base / 'kubeconfig'} {self.context}
        pods insecure
    }}
}}
"""


def folder(cfg: Settings, cluster: str) -> Path:
    """The node's files (configs, logs, kubelet root, containerd root) for ``cluster``."""
    return cfg.state_dir / "k8s-node" / cluster


def names(cfg: Settings) -> list[str]:
    """Clusters with a real node's folder under our state dir, or the machine's running
    node when its folder is there."""
    root = cfg.state_dir / "k8s-node"
    found = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    owner = _read_owner()
    if owner.get("base", "").startswith(str(root) + "/"):
        found.add(owner["cluster"])
    return sorted(found)


def run_dir(base: Path) -> Path:
    """Its sockets and runtime state: short paths under /run (a socket path has at most
    107 bytes)."""
    return RUN_ROOT / hashlib.sha256(str(base).encode()).hexdigest()[:10]


def _read_owner() -> dict:
    try:
        return json.loads(OWNER.read_text())
    except (OSError, ValueError):
        return {}


def teardown(base: Path, bridge: str = "") -> dict[str, int]:
    """Undo a node whose files are in ``base``: kubelet first (it would restart pods),
    then every container and shim, containerd, kube-proxy and CoreDNS; then the iptables
    chains (v4 and v6), the bridge, the pods' cgroups, every mount under the node's
    folders, the log links and CNI's cache; then the folders. Idempotent."""
    counts: dict[str, int] = {}
    owner = _read_owner()
    pids = owner.get("pids", {}) if owner.get("base") == str(base) else {}
    rdir = run_dir(base)
    sock = rdir / "containerd.sock"
    host.terminate([pids.get("kubelet", 0)], timeout=10)
    host.terminate(host.processes_mentioning(str(base / "kubelet.yaml")), timeout=5)
    if sock.exists() and which("ctr"):
        ctr = [which("ctr") or "ctr", "--address", str(sock), "--namespace", "k8s.io"]
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True,
                                   timeout=10).stdout.split()
            for t in tasks:
                subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", t], capture_output=True,
                               timeout=10)
            counts["containers"] = len(tasks)
    host.remove_cgroups()  # kills every pod process too
    shims = host.processes_mentioning(str(sock))  # containerd-shim-runc-v2 -address <sock>
    others = [pids.get(n, 0) for n in ("containerd", "kube-proxy", "coredns")]
    others += host.processes_mentioning(str(base / "containerd.toml"))
    others += host.processes_mentioning(str(base / "Corefile"))
    others += host.processes_mentioning(str(base / "kube-proxy.yaml"))
    host.terminate([*shims, *others], timeout=10)
    counts["processes"] = len([p for p in [*shims, *others] if p])
    counts["chains"] = host.remove_chains()
    counts["bridges"] = int(host.remove_bridge(bridge)) if bridge else 0
    counts["cgroups"] = host.remove_cgroups()
    counts["mounts"] = host.unmount(base, rdir)
    counts["log links"] = host.remove_log_links(base / "pod-logs")
    if bridge:
        counts["cni cache"] = host.remove_cni_cache(bridge)
    shutil.rmtree(rdir, ignore_errors=True)
    if not host.mounts_under(base):
        shutil.rmtree(base, ignore_errors=True)
    if owner.get("base") == str(base):
        OWNER.unlink(missing_ok=True)
    return counts


def sweep(cfg: Settings, clusters: list[str]) -> int:
    """Tear down the nodes of ``clusters`` (and the machine's node when it is one of
    them, even if its folder is gone). Returns how many nodes went."""
    count = 0
    owner = _read_owner()
    for name in clusters:
        base = folder(cfg, name)
        mine = owner.get("cluster") == name
        if base.exists() or mine:
            teardown(Path(owner["base"]) if mine else base,
                     owner.get("bridge", "") if mine else Node.network_name(name))
            count += 1
    return count


def running_socket() -> Path:
    """The containerd socket of the machine's running real node (raises if none runs)."""
    owner = running_owner()
    if not owner:
        raise UnavailableError("no real node runs on this machine: "
                               "`cloudlab k8s up --real-node`")
    return run_dir(Path(owner["base"])) / "containerd.sock"


def _ctr_cmd(socket: Path | None, *args: str) -> list[str]:
    return [which("ctr") or "ctr", "--address", str(socket or running_socket()),
            "--namespace", "k8s.io", *args]


def has_image(image: str, socket: Path | None = None) -> bool:
    """Whether the node's containerd holds ``image`` (its full name, as ``ctr`` lists it).

    >>> has_image("x:1", Path("/nonexistent.sock"))
    False
    """
    done = subprocess.run(_ctr_cmd(socket, "images", "ls", "-q", f"name=={image}"),
                          capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and image in done.stdout.split()


def remove_image(image: str, socket: Path | None = None) -> bool:
    """Remove ``image`` from the node's containerd (pods still using it keep running);
    True if it was there."""
    done = subprocess.run(_ctr_cmd(socket, "images", "rm", image), capture_output=True,
                          text=True, timeout=60)
    return done.returncode == 0


def load_image(image: str, socket: Path | None = None, timeout: float = 300) -> str:
    """Copy ``image`` from the Docker engine into a real node's containerd: ``socket``'s,
    or the machine's running node (a grader holding only a kubeconfig uses this)."""
    from .. import engine

    socket = socket or running_socket()
    if engine.version() is None:
        raise UnavailableError("no Docker engine to take the image from: `cloudlab engine up`")
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        imp = subprocess.run([which("ctr") or "ctr", "--address", str(socket), "--namespace",
                              "k8s.io", "images", "import", "-"], stdin=save.stdout,
                             capture_output=True, text=True, timeout=timeout)
    finally:
        if save.stdout:
            save.stdout.close()
    err = save.stderr.read().decode() if save.stderr else ""
    if save.wait(timeout=60) != 0:
        raise CloudlabError(f"docker save {image} failed: {err.strip()}")
    if imp.returncode != 0:
        raise CloudlabError(f"ctr images import of {image} failed: {imp.stderr.strip()}")
    return image


def sweep_orphans() -> dict[str, int]:
    """With no real node running here: remove what a lost one left (KUBE-* chains, ``clk8s-``
    bridges, kubepods cgroups, its /run folder). ``cloudlab cleanup`` without a run id."""
    with _machine_lock():  # a node being started holds it until its owner record is written
        if running_owner():
            return {}
        owner = _read_owner()
        if owner.get("base"):
            teardown(Path(owner["base"]), owner.get("bridge", ""))
        counts = {"chains": host.remove_chains(), "cgroups": host.remove_cgroups(),
                  "bridges": sum(host.remove_bridge(b) for b in host.bridges(BRIDGE_PREFIX)
                                 if Path(f"/sys/class/net/{b}/bridge").is_dir())}
        for d in RUN_ROOT.iterdir():
            if d.is_dir():
                host.unmount(d)
                shutil.rmtree(d, ignore_errors=True)
    return counts


def oci_archive(name: str, files: dict[str, Path], entrypoint: list[str], *,
                compresslevel: int = 9) -> bytes:
    """An OCI image archive (``ctr images import`` reads it) with one layer of ``files``
    (path in the image -> file here, symbolic links followed; parent folders are added),
    made without any engine."""
    layer_io = io.BytesIO()
    with tarfile.open(fileobj=layer_io, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders = sorted({str(parent) for inside in files
                          for parent in Path(inside.lstrip("/")).parents if str(parent) != "."})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for inside, path in files.items():
            info = tar.gettarinfo(str(Path(path).resolve()), arcname=inside.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    raw = layer_io.getvalue()
    layer = gzip.compress(raw, compresslevel=compresslevel, mtime=0)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    config = json.dumps({
        "architecture": install._arch(), "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    **blob(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}}]})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, data in [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                           ("index.json", index.encode()),
                           *((f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items())]:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def shared_libraries(program: Path) -> dict[str, Path]:
    """The shared libraries a dynamically linked ``program`` loads (its interpreter too),
    as ``ldd`` lists them: path in an image -> file here. Empty for a static program.

    >>> "lib64/ld-linux-x86-64.so.2" in shared_libraries(Path("/bin/ls"))   # doctest: +SKIP
    True
    """
    done = subprocess.run(["ldd", str(program)], capture_output=True, text=True, timeout=30)
    found = {}
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0] if words else ""
        if path.startswith("/"):
            found[path.lstrip("/")] = Path(path)
    return found


def program_image(name: str, program: Path, args: list[str] | None = None) -> bytes:
    """An OCI image archive holding one program of this machine and the shared libraries it
    loads, nothing else (no shell, no package manager): the ``FROM scratch`` image of a
    single binary. Its entrypoint is the program at its own path.

    >>> data = program_image("local/prometheus:2", Path("/usr/bin/prometheus"))  # doctest: +SKIP
    """
    program = Path(program)
    inside = str(program).lstrip("/")
    return oci_archive(name, {inside: program, **shared_libraries(program)},
                       entrypoint=["/" + inside, *(args or [])], compresslevel=1)


def _tail(log: Path, lines: int = 20) -> str:
    if not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return f"\n--- {log} (last {len(text)} lines) ---\n" + "\n".join(text)
