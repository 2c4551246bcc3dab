"""NetworkPolicy, really enforced on the real node: kube-network-policies beside the kubelet.

kube-network-policies (Kubernetes SIG Network, v0.8.0) watches NetworkPolicies and pods and
puts an nftables table (``inet kube-network-policies``) on the node: every new connection
of a pod that a policy selects is queued (nfqueue) to the enforcer, which accepts or drops
it. The hook is POSTROUTING, so pod-to-pod traffic on the node's bridge is seen through
``br_netfilter``. Built by ``scripts/setup_netpol.sh`` (Go module proxy), cached in
``~/.cache/cloudlab/netpol/<version>/bin``.

It expects to run in a pod (``rest.InClusterConfig``: a service account token and CA under
``/var/run/secrets/kubernetes.io/serviceaccount``). Here it runs as a host process in a
mount namespace of its own (``unshare --mount``), where a tmpfs over ``/run`` holds a token
of the ``kube-network-policies`` service account (RBAC: read pods, namespaces, nodes,
NetworkPolicies) and the cluster's CA; the host's ``/run`` is untouched. On stop (SIGTERM) it
removes its nftables table itself.

>>> Enforcer.flags("real-node-1", 9999)[:2]
['--hostname-override=real-node-1', '--disable-nri']
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from ..errors import CloudlabError, UnavailableError
from ..lifecycle import Managed
from ..ports import free_port
from ..proc import GiveUp, wait_for, which
from .node import Availability

VERSION = "v0.8.0"
ACCOUNT = "kube-network-policies"
SA_DIR = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is /run here


def binary() -> Path:
    cache = Path(os.environ.get("CLOUDLAB_CACHE", Path.home() / ".cache" / "cloudlab"))
    return cache / "netpol" / VERSION / "bin" / "kube-network-policies"


def availability() -> Availability:
    """Whether the enforcer can run here; the reason names the fix."""
    if os.uname().sysname != "Linux" or os.geteuid() != 0:
        return Availability(False, "the NetworkPolicy enforcer needs Linux and root "
                                   "(nftables, nfqueue, a mount namespace)")
    if not binary().is_file():
        return Availability(False, f"no {binary()}: run scripts/setup_netpol.sh")
    if not which("unshare"):
        return Availability(False, "no unshare (util-linux)")
    missing = kernel_missing()
    if missing:
        return Availability(False, missing)
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        return Availability(False, "br_netfilter is not loaded: pod-to-pod traffic on the "
                                   "bridge would bypass the enforcer (modprobe br_netfilter)")
    return Availability(True, f"kube-network-policies {VERSION} at {binary()}")


NEEDED = {"CONFIG_NF_TABLES": "nf_tables", "CONFIG_NF_TABLES_INET": "nf_tables' inet family",
          "CONFIG_NFT_QUEUE": "nf_tables' queue expression ('queue num 100': how the "
                              "enforcer sees each new connection)",
          "CONFIG_NFT_CT": "nf_tables' conntrack expression",
          "CONFIG_NETFILTER_NETLINK_QUEUE": "nfnetlink_queue"}


def kernel_missing(config: str | None = None, release: str | None = None) -> str:
    """What this kernel lacks for the enforcer, from its ``/proc/config.gz`` (and whether a
    module could supply it); ``""`` when nothing is missing or the config is not exposed.

    >>> "CONFIG_NFT_QUEUE" in kernel_missing("CONFIG_NF_TABLES=y", "6.18")
    True
    """
    import gzip

    if config is None:
        try:
            config = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode()
        except OSError:
            return ""
    release = release or os.uname().release
    found = {}
    for line in config.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            found[key] = value
    modules = Path("/lib/modules") / release
    absent = [k for k in NEEDED if found.get(k) not in ("y", "m")
              or (found.get(k) == "m" and not modules.is_dir())]
    if not absent:
        return ""
    how = "set to m, but there is no /lib/modules/" + release if all(
        found.get(k) == "m" for k in absent) else "not set in /proc/config.gz"
    return (f"this kernel has no {', '.join(NEEDED[k] for k in absent)} ({', '.join(absent)} "
            f"{how}): nf_tables refuses the enforcer's rules ('netlink receive: no such file "
            "or directory' in its log) and NetworkPolicy is not enforced; a kernel with "
            f"{', '.join(absent)}=y or =m is needed")


def rbac() -> list[dict]:
    """The enforcer's service account and what it may read (its upstream install.yaml's)."""
    meta = {"name": ACCOUNT, "labels": {"app.kubernetes.io/managed-by": "cloudlab"}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {**meta, "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta,
         "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT,
                       "namespace": "kube-system"}]},
    ]


class Enforcer(Managed):
    """kube-network-policies for ``cluster``'s real node, for a ``with`` block."""

    def __init__(self, cluster, *, timeout: float = 60) -> None:
        if cluster.node is None:
            raise UnavailableError("NetworkPolicy enforcement needs the real node "
                                   "(Cluster('kwok', real_nodes=1))")
        self.cluster, self.timeout = cluster, timeout
        self.folder = cluster.cfg.state_dir / "netpol" / cluster.name
        self.log_path = self.folder / "kube-network-policies.log"
        self.proc: subprocess.Popen | None = None
        self.metrics_port = 0

    @staticmethod
    def flags(node: str, metrics_port: int) -> list[str]:
        return [f"--hostname-override={node}", "--disable-nri",
                f"--metrics-bind-address=127.0.0.1:{metrics_port}",
                "--netfilter-bug-1766-fix=false",  # not needed on kernels 6.12+ (this one)
                "--v=2"]

    def start(self) -> Enforcer:
        avail = availability()
        if not avail:
            raise UnavailableError(f"NetworkPolicy enforcer unavailable: {avail.reason}")
        from .api import server_of

        self.folder.mkdir(parents=True, exist_ok=True)
        sa = self.folder / "serviceaccount"
        shutil.rmtree(sa, ignore_errors=True)
        sa.mkdir(mode=0o700)
        self.cluster.apply(rbac())
        with self.cluster.api() as api:
            token, _ = api.token_request(ACCOUNT, namespace="kube-system", seconds=86400)
        cluster, _ = server_of(self.cluster.kubeconfig, self.cluster.context)
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        else:
            ca = Path(cluster["certificate-authority"]).read_bytes()
        (sa / "token").write_text(token)
        (sa / "ca.crt").write_bytes(ca)
        (sa / "namespace").write_text("kube-system")
        server = urlparse(cluster["server"])
        self.metrics_port = free_port()
        script = (f"mount -t tmpfs -o size=1m,mode=0755 tmpfs /run && mkdir -p {SA_DIR} && "
                  f"cp {sa}/token {sa}/ca.crt {sa}/namespace {SA_DIR}/ && "
                  f'exec {binary()} "$@"')
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": str(server.port or 443)}
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        try:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                 script, "kube-network-policies",
                 *self.flags(self.cluster.node.name, self.metrics_port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        finally:
            log.close()
        wait_for(self._ready, timeout=self.timeout, what="kube-network-policies to sync",
                 log=self.log_path)
        return self

    SYNC_FAILED = '"syncing nftables rules" error'

    def failed_sync(self) -> str:
        """The log's nftables sync error, if any (the kernel refused the rules)."""
        text = self.log(400)
        return text if self.SYNC_FAILED in text else ""

    def _ready(self) -> bool:
        import urllib.request

        if self.proc is not None and self.proc.poll() is not None:
            raise GiveUp(f"kube-network-policies exited (code {self.proc.returncode})")
        if self.failed_sync():
            raise GiveUp("kube-network-policies could not install its nftables rules")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=2) as resp:
            return resp.status == 200 and "Syncing nftables rules" in self.log(400)

    def stop(self) -> None:
        """SIGTERM (it removes its nftables table), then SIGKILL after 10 s; idempotent."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            self.proc = None
        with contextlib.suppress(CloudlabError):
            self.cluster.delete_manifests(rbac())
        shutil.rmtree(self.folder / "serviceaccount", ignore_errors=True)

    def log(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
