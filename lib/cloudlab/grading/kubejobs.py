"""Autograde on Kubernetes: each submission's notebook runs as a Job in a grading namespace.

Only *where the sandbox runs* changes; everything else is the local engine's code path
(:mod:`.autograde`'s pool, :mod:`.worker`, nbgrader on the host, the trusted graders, the
gradebook, feedback). The worker's nbgrader pipeline gets :class:`JobExecute` in place of
:class:`~.executor.SandboxExecute`: it sends the notebook's cells to a Job and puts the
outputs that come back into the host's own copy of the notebook.

One Job per notebook, one pod per Job, the same rules as the local sandbox:

- the grading image (:mod:`.image`), loaded into this machine's real node when the cluster
  is that node's (``imagePullPolicy: Never`` for a local image: a missing one fails fast
  with ``ErrImageNeverPull``, nothing is pulled from anywhere);
- ``automountServiceAccountToken: false``, ``enableServiceLinks: false``, no DNS;
  the namespace labelled Pod Security ``restricted`` (enforce), with a default-deny
  NetworkPolicy (ingress and egress; enforced where the cluster runs an enforcer,
  ``scripts/setup_netpol.sh`` for the real node);
- ``runAsNonRoot`` with uid/gid 1000, ``allowPrivilegeEscalation: false``, capabilities
  drop ALL, seccomp ``RuntimeDefault``, ``readOnlyRootFilesystem`` with memory-backed
  ``emptyDir`` volumes for ``/tmp`` and ``/work`` (size-limited as the local tmpfs);
- CPU and memory limits (:class:`~.sandbox.Limits`); processes: Kubernetes has no per-pod
  field, so the node's kubelet ``podPidsLimit`` applies (the real node sets it to
  :data:`cloudlab.k8s.node.POD_PIDS_LIMIT`; :meth:`Backend.prepare` reads it back
  through the node's ``configz`` and records it);
- ``activeDeadlineSeconds``: the notebook's budget plus the probe stage and start-up.

The submission's files, the host hooks' results, the probe input and the cells go in one
Secret (at most :data:`MAX_SECRET` bytes: a bigger submission is refused with the sizes),
each mounted where the local container has it (``/submission``, ``/grader/results.json``,
``/probe/input.json``, ``/job/run.json``). The trusted probes run first, in an init
container (:mod:`.probe`, as the local fallback container runs them); the kernel container
cannot see their input. Results come back through the API: each container's log, read
with ``limitBytes`` (:data:`~.podrun.MAX_RESULT`: over it, a clear error). The host
compares the probe results with the hidden cases; only this process writes the gradebook.

Failures: an environment failure (node lost, image not present, evicted, never
scheduled) is retried (``retries``); a student's timeout (the runner's own, or the Job's
``DeadlineExceeded``), crash or failure never is. The result records which it was
(:attr:`~.results.Result.failure`, :attr:`~.results.Result.retries`). Every object is
labelled with the run id; :meth:`Backend.cleanup` deletes them all (the pool calls it on any
exit, Ctrl-C included).

>>> Backend(kubeconfig="/k/config").selector()   # doctest: +ELLIPSIS
'cloudlab-run-id=...,app.kubernetes.io/managed-by=cloudlab-grader'
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from ..config import settings
from ..errors import CloudlabError
from . import budget, podrun, sandbox

log = logging.getLogger("cloudlab.grading")

NAMESPACE = "cloudlab-grading"
MANAGED = "cloudlab-grader"
RUN_LABEL = "cloudlab-run-id"
SUBMISSION_LABEL = "cloudlab-grader-submission"
MAX_SECRET = 900 * 1024  # bytes of data in the Secret (etcd stores at most ~1.5 MiB)
STARTUP = 60.0  # seconds a pod may take to start, on top of its budget
PROBE_CONTAINER, KERNEL_CONTAINER = "probe", "kernel"
ENV_WAITING = {"ErrImageNeverPull": "the grading image is not on the node",
               "ErrImagePull": "the grading image could not be pulled",
               "ImagePullBackOff": "the grading image could not be pulled",
               "InvalidImageName": "the grading image's name is invalid",
               "CreateContainerError": "the runtime could not create the container",
               "CreateContainerConfigError": "the pod's configuration could not be used"}


class EnvironmentFailure(CloudlabError):
    """The cluster failed this run (not the submission): retried."""


def _label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.") or "run"


def local_image(image: str) -> bool:
    """Whether ``image`` names no registry (so it can only come from the node itself).

    >>> local_image("cloudlab-grader:abc"), local_image("registry.example:5000/g:1")
    (True, False)
    """
    first = image.split("/", 1)[0]
    return "/" not in image or not ("." in first or ":" in first or first == "localhost")


def _quantity(memory: str) -> str:
    """Docker's ``512m`` as a Kubernetes quantity (``512Mi``).

    >>> _quantity("512m"), _quantity("1g"), _quantity("300Mi")
    ('512Mi', '1Gi', '300Mi')
    """
    m = re.fullmatch(r"(\d+)([kmg]?)b?", memory.strip().lower())
    if not m:
        return memory
    return m.group(1) + {"": "", "k": "Ki", "m": "Mi", "g": "Gi"}[m.group(2)]


@dataclass
class Run:
    """What one Job gave back."""

    job: str
    data: dict[str, Any] | None = None  # the runner's result (podrun)
    probe: list | None = None  # the probe stage's answers
    probe_error: str = ""
    failure: str = ""  # "student: ..." when the run ended without a result, by its own doing
    reason: str = ""
    status: str = ""  # "timed out" | "crashed" with failure
    seconds: float = 0.0


@dataclass
class Backend:
    """Where the sandboxes run: a namespace of the cluster a kubeconfig names."""

    kubeconfig: str | Path
    context: str | None = None
    namespace: str = NAMESPACE
    run_id: str = field(default_factory=lambda: settings().run_id)
    retries: int = 2
    queue_timeout: float = 300.0  # seconds a pod may wait for a node before it counts as
                                  # an environment failure
    load: bool | None = None  # copy the image into this machine's real node (None: when
                              # the cluster is that node's)
    simulated: bool = False  # allow kwok's simulated nodes (benchmarks only: nothing runs)
    image: str = ""
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)
    pids: str = ""  # what limits processes, as found by prepare()
    network: str = ""  # whether the NetworkPolicy is enforced, as far as prepare() can tell
    name: str = "kubernetes"

    def execute_class(self) -> type:
        return JobExecute

    # -- the API ---------------------------------------------------------------------
    def api(self):
        """A session of this process (a forked worker opens its own)."""
        from ..k8s.api import Api

        cached = getattr(self, "_api", None)
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        api = Api.from_kubeconfig(self.kubeconfig, self.context, timeout=30)
        self._api = (os.getpid(), api)
        return api

    def selector(self) -> str:
        return f"{RUN_LABEL}={_label(self.run_id)},app.kubernetes.io/managed-by={MANAGED}"

    def labels(self) -> dict[str, str]:
        return {RUN_LABEL: _label(self.run_id), "app.kubernetes.io/managed-by": MANAGED}

    # -- before and after a run ------------------------------------------------------------
    def prepare(self, image: str) -> Backend:
        """The namespace (Pod Security ``restricted``, default-deny NetworkPolicy), the image
        on the node, and what limits processes there."""
        from ..k8s.api import ApiError

        self.image = image
        api = self.api()
        api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": self.namespace, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "app.kubernetes.io/managed-by": MANAGED}}})
        api.apply(deny_all(), namespace=self.namespace)
        nodes = api.list("Node")
        if self.load or (self.load is None and self._ours(nodes)):
            self.load_image()
        try:
            self.pids = pids_limit(api, nodes, self.simulated)
        except ApiError as exc:
            self.pids = f"unknown (the node's configz did not answer: {exc})"[:200]
        self.network = network_policy(self._ours(nodes))
        return self

    def describe(self) -> str:
        """One line on where and under which limits the notebooks ran."""
        return (f"kubernetes: namespace {self.namespace} (Pod Security restricted, "
                f"default-deny NetworkPolicy: {self.network}); processes: {self.pids}")

    def _ours(self, nodes: list[dict]) -> bool:
        """Whether the cluster's nodes include this machine's real node."""
        from ..k8s import node

        owner = node.running_owner()
        return bool(owner) and any(n["metadata"]["name"] == node.NODE_NAME for n in nodes) \
            and local_image(self.image)

    def load_image(self) -> None:
        from ..k8s import node

        node.load_image(self.image)

    def cleanup(self, wait: float = 60) -> int:
        """Delete every Job, pod and Secret of this run; wait until none is left. Returns
        how many objects were found."""
        api = self.api()
        found = 0
        deadline = time.monotonic() + wait
        while True:
            left = 0
            for kind in ("Job", "Pod", "Secret"):
                with contextlib.suppress(CloudlabError):
                    items = api.list(kind, namespace=self.namespace, selector=self.selector())
                    left += len(items)
                    for obj in items:
                        with contextlib.suppress(CloudlabError):
                            api.request("DELETE", _path(kind, obj["metadata"]["name"],
                                                        self.namespace),
                                        body={"propagationPolicy": "Background",
                                              "gracePeriodSeconds": 0})
            found = max(found, left)
            if not left or time.monotonic() > deadline:
                return found
            time.sleep(0.3)

    def left(self) -> dict[str, int]:
        """How many Jobs, pods and Secrets of this run exist."""
        api = self.api()
        return {kind: len(api.list(kind, namespace=self.namespace, selector=self.selector()))
                for kind in ("Job", "Pod", "Secret")}

    # -- one notebook ------------------------------------------------------------------
    def run(self, spec: sandbox.SandboxSpec, notebook: str, cells: list[dict],
            budget_s: float, used: float, execute: dict) -> Run:
        """Run ``cells`` in a Job, retrying environment failures; what came back."""
        tries: list[str] = spec.state.setdefault("retries", [])
        probe = spec.probe
        spec.probe = None  # the first notebook only (as the local kernel container)
        while True:
            try:
                return self._once(spec, notebook, cells, budget_s, used, execute, probe)
            except EnvironmentFailure as exc:
                tries.append(str(exc)[:300])
                if len(tries) > self.retries:
                    raise
                log.warning("environment failure, retrying: %s", exc)
                if "image" in str(exc) and local_image(self.image):
                    with contextlib.suppress(Exception):
                        if self._ours(self.api().list("Node")):
                            self.load_image()
                time.sleep(min(5.0, 1.0 * len(tries)))

    def _once(self, spec: sandbox.SandboxSpec, notebook: str, cells: list[dict],
              budget_s: float, used: float, execute: dict, probe: Path | None) -> Run:
        from . import probe as probe_mod

        api = self.api()
        digest = hashlib.sha256(spec.submission.encode()).hexdigest()[:10]
        job = f"grade-{digest}-{secrets.token_hex(3)}"
        groups = json.loads((probe / sandbox.PROBE_INPUT).read_text())["groups"] \
            if probe is not None else None
        probe_s = probe_mod.budget(groups) if groups else 0.0
        deadline = int(budget_s - used + probe_s + STARTUP)
        run_json = {"notebook": notebook, "cells": cells, "budget": budget_s, "used": used,
                    "execute": execute, "memory": self.limits.memory,
                    "max_result": podrun.MAX_RESULT}
        secret, items = secret_for(job, spec, run_json, groups)
        labels = {**self.labels(), SUBMISSION_LABEL: digest}
        secret["metadata"]["labels"] = labels
        manifest = job_manifest(job, self.image, spec, self.limits, labels, items,
                                probe=groups is not None, deadline=deadline,
                                simulated=self.simulated)
        started = time.monotonic()
        try:
            api.create(secret, namespace=self.namespace)
            api.create(manifest, namespace=self.namespace)
            out = self._wait(job, deadline, groups is not None)
        except OSError as exc:  # requests' connection errors: the API server went away
            raise EnvironmentFailure(f"the API server did not answer: {exc}"[:300]) from None
        finally:
            for kind in ("Job", "Secret"):
                with contextlib.suppress(CloudlabError):
                    api.request("DELETE", _path(kind, job, self.namespace),
                                body={"propagationPolicy": "Background"})
        out.seconds = time.monotonic() - started
        return out

    def _wait(self, job: str, deadline: int, probe: bool) -> Run:
        """Poll the Job's pod until it ends; read what it left in its logs."""
        from ..k8s.api import ApiError

        api = self.api()
        created = time.monotonic()
        seen: dict | None = None
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            try:
                pods = api.list("Pod", namespace=self.namespace, selector=f"job-name={job}")
                state = api.get("Job", job, namespace=self.namespace)
            except ApiError as exc:
                raise EnvironmentFailure(f"the API server failed: {exc}") from None
            conditions = {c["type"]: c for c in (state.get("status") or {}).get(
                "conditions") or [] if c.get("status") == "True"}
            failed = conditions.get("Failed") or conditions.get("FailureTarget") or {}
            if failed.get("reason") == "DeadlineExceeded":
                return Run(job, status="timed out",
                           failure="student: DeadlineExceeded (the Job's activeDeadlineSeconds"
                                   f" of {deadline} s)",
                           reason=f"the time limit was reached (the Job's deadline of "
                                  f"{deadline} s, DeadlineExceeded)")
            pod = pods[0] if pods else None
            if pod is None:
                if seen is not None:
                    raise EnvironmentFailure(f"pod {seen['metadata']['name']} disappeared "
                                             "before it finished (node lost?)")
                if now - created > self.queue_timeout:
                    raise EnvironmentFailure(f"no pod was made for Job {job} in "
                                             f"{self.queue_timeout:g} s")
                continue
            seen = pod
            why = environment_problem(pod)
            if why:
                raise EnvironmentFailure(why)
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Pending" and not pod["spec"].get("nodeName") \
                    and now - created > self.queue_timeout:
                raise EnvironmentFailure(f"no node took the pod in {self.queue_timeout:g} s: "
                                         f"{_scheduling(pod)}")
            if phase in ("Succeeded", "Failed"):
                return self._collect(pod, probe)
            if now - created > deadline + self.queue_timeout + 30:
                raise EnvironmentFailure(f"Job {job} neither finished nor failed in "
                                         f"{now - created:.0f} s")

    def _collect(self, pod: dict, probe: bool) -> Run:
        from . import probe as probe_mod

        api = self.api()
        name = pod["metadata"]["name"]
        out = Run(pod["metadata"].get("labels", {}).get("job-name", name))
        if probe:
            try:
                text = api.logs(name, namespace=self.namespace, container=PROBE_CONTAINER,
                                limit_bytes=8 * 2**20)
                marks = [ln for ln in text.splitlines() if ln.startswith(probe_mod.MARK)]
                if not marks:
                    raise RuntimeError(f"the probe stage ended without a result: "
                                       f"{text[-300:]}")
                answers = json.loads(marks[-1][len(probe_mod.MARK):])
                if not isinstance(answers, list):
                    raise RuntimeError("the probe stage gave no usable answer")
                out.probe = answers
            except Exception as exc:
                out.probe_error = str(exc)[:300]
        kernel = _terminated(pod, KERNEL_CONTAINER)
        if not kernel:  # the kernel never started: the probe stage failed the pod
            init = _terminated(pod, PROBE_CONTAINER, "initContainerStatuses")
            out.status, out.failure = "crashed", f"student: probe stage {init.get('reason')}"
            out.reason = (f"the probe stage ended the pod ({init.get('reason')}, exit code "
                          f"{init.get('exitCode')}) before the notebook ran")
            return out
        cap = podrun.MAX_RESULT + 65536
        try:
            text = api.logs(name, namespace=self.namespace, container=KERNEL_CONTAINER,
                            limit_bytes=cap)
        except CloudlabError as exc:
            raise EnvironmentFailure(f"the pod's log could not be read: {exc}") from None
        lines = [ln for ln in text.splitlines() if ln.startswith(podrun.MARK)]
        if len(lines) == 1 and text.rstrip("\n").endswith(lines[0]):
            try:
                out.data = podrun.decode(lines[0][len(podrun.MARK):])
            except Exception as exc:
                out.status, out.failure = "crashed", "student: unreadable result"
                out.reason = f"the notebook runner's result was not readable ({exc})"[:300]
                return out
            if isinstance(out.data, dict) and out.data.get("error"):
                out.status, out.failure = "crashed", "student: " + str(out.data["error"])[:200]
                out.reason = str(out.data["error"])[:500]
                out.data = None
            return out
        out.status = "crashed"
        if len(text.encode()) >= cap:
            out.failure = "student: result over the cap"
            out.reason = (f"the pod's output is over the cap of {cap} bytes: the executed "
                          "notebook did not come back")
        elif kernel.get("reason") == "OOMKilled":
            out.failure = "student: OOMKilled"
            memory = self.limits.memory.upper().rstrip("B")
            out.reason = f"out of memory (the notebook used more than {memory}B of memory)"
        elif len(lines) > 1:
            out.failure = "student: more than one result line"
            out.reason = "the pod's output held more than one result line"
        else:
            out.failure = f"student: exit code {kernel.get('exitCode')}"
            out.reason = (f"the notebook runner ended without a result (exit code "
                          f"{kernel.get('exitCode')}, {kernel.get('reason', '')})")
        return out

    # -- the trusted probes, when the init container gave nothing ------------------------
    def probe_runner(self, labels: dict[str, str]):
        """A :data:`~.trusted.Runner` running probe groups in a Job of their own."""

        def run_in_job(groups: list[dict], timeout: float) -> list:
            spec = sandbox.SandboxSpec(self.image, "", labels.get(
                sandbox.SUBMISSION_LABEL, "probe"), limits=self.limits)
            folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"clg-kprobe-{secrets.token_hex(4)}"
            folder.mkdir(mode=0o700)
            try:
                (folder / sandbox.PROBE_INPUT).write_text(json.dumps({"groups": groups}))
                spec.probe = folder
                got = self._once(spec, "probe", [], 0.0, 0.0, {}, folder)
            finally:
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
            if got.probe is None:
                raise RuntimeError(got.probe_error or "the probe Job gave no result")
            return got.probe

        return run_in_job


def network_policy(local_node: bool) -> str:
    """Whether the default-deny policy is enforced: on this machine's real node, whether its
    enforcer can run (:mod:`cloudlab.k8s.netpol`); elsewhere, the cluster's own enforcer."""
    if not local_node:
        return "enforced by the cluster's own NetworkPolicy enforcer, if it runs one"
    from ..k8s import netpol

    avail = netpol.availability()
    return ("enforceable: start cl.k8s.netpol.Enforcer beside the node" if avail else
            f"NOT enforced here: {avail.reason}")


def default_kubeconfig() -> Path:
    """``$KUBECONFIG``, else ``~/.kube/config``, else the kubeconfig of the cluster whose real
    node runs on this machine (``cloudlab k8s up --real-node``)."""
    from ..k8s import node

    env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if env:
        return Path(env)
    home = Path.home() / ".kube" / "config"
    if home.is_file():
        return home
    owner = node.running_owner()
    if owner.get("cluster") and owner.get("base"):
        state = Path(owner["base"]).parents[1]  # <state>/k8s-node/<cluster>
        found = state / "k8s" / f"{owner['cluster']}.kubeconfig"
        if found.is_file():
            return found
    raise CloudlabError("no kubeconfig: pass --kubeconfig PATH (your course's cluster), set "
                        "KUBECONFIG, or start this machine's cluster with `cloudlab k8s up "
                        "--real-node`")


# ------------------------------------------------------------------------ manifests
def _path(kind: str, name: str, namespace: str) -> str:
    from ..k8s.api import kind_path

    return kind_path(kind, name, namespace=namespace)


def deny_all() -> dict:
    """The namespace's default-deny NetworkPolicy: no ingress, no egress, for every pod."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "labels": {
                "app.kubernetes.io/managed-by": MANAGED}},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def _files(folder: Path | None) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    if folder is None or not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out.append((path.relative_to(folder).as_posix(), path.read_bytes()))
    return out


def secret_for(job: str, spec: sandbox.SandboxSpec, run_json: dict, groups: list | None
               ) -> tuple[dict, dict[str, list[dict]]]:
    """The Secret holding everything the pod reads, and the volume items per mount.
    Refused (:class:`CloudlabError`, with the sizes) over :data:`MAX_SECRET` bytes."""
    data: dict[str, bytes] = {}
    items: dict[str, list[dict]] = {"submission": [], "grader": [], "probe": [], "job": []}
    for index, (rel, blob) in enumerate(_files(spec.files)):
        data[f"f{index}"] = blob
        items["submission"].append({"key": f"f{index}", "path": rel})
    if spec.trusted is not None and spec.trusted.is_file():
        data["trusted"] = spec.trusted.read_bytes()
        items["grader"].append({"key": "trusted", "path": Path(sandbox.TRUSTED_PATH).name})
    if groups is not None:
        data["probe"] = json.dumps({"groups": groups}).encode()
        items["probe"].append({"key": "probe", "path": sandbox.PROBE_INPUT})
    data["run"] = json.dumps(run_json).encode()
    items["job"].append({"key": "run", "path": "run.json"})
    size = sum(len(v) for v in data.values())
    if size > MAX_SECRET:
        biggest = sorted(((len(data[i["key"]]), i["path"]) for i in items["submission"]),
                         reverse=True)[:3]
        raise CloudlabError(
            f"this submission is {size // 1024} KiB once packed (files, cells, hook results), "
            f"over the Kubernetes backend's cap of {MAX_SECRET // 1024} KiB (a Secret must "
            f"fit in etcd); biggest files: "
            + ", ".join(f"{p} ({n // 1024} KiB)" for n, p in biggest))
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": job},
              "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    return secret, items


def security_context(uid: int = 1000) -> dict:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def job_manifest(job: str, image: str, spec: sandbox.SandboxSpec, limits: sandbox.Limits,
                 labels: dict[str, str], items: dict[str, list[dict]], *, probe: bool,
                 deadline: int, simulated: bool = False) -> dict:
    """The Job of one notebook run (see the module docstring for every rule)."""
    from .trusted import PROBE_SCRIPT

    uid = 1000
    memory = _quantity(limits.memory)
    cpu = f"{int(limits.cpus * 1000)}m"
    resources = {"limits": {"cpu": cpu, "memory": memory},
                 "requests": {"cpu": f"{max(50, int(limits.cpus * 250))}m", "memory": memory}}
    env = [{"name": k, "value": v} for k, v in {
        "HOME": "/tmp", "PYTHONUNBUFFERED": "1", "MPLCONFIGDIR": "/tmp/matplotlib",
        "CLOUDLAB_DOCKER": "off", "CLOUDLAB_GRADING_ASSIGNMENT": spec.assignment,
        "CLOUDLAB_TRUSTED_RESULTS": sandbox.TRUSTED_PATH,
        "CLOUDLAB_MAX_OUTPUT": str(limits.max_output)}.items()]
    secret = {"secretName": job, "defaultMode": 0o444}
    volumes = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": _quantity(limits.tmp_size)}},
        {"name": "work", "emptyDir": {"medium": "Memory",
                                      "sizeLimit": _quantity(limits.work_size)}},
        {"name": "job", "secret": {**secret, "items": items["job"]}},
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "work", "mountPath": sandbox.WORK},
              {"name": "job", "mountPath": "/job", "readOnly": True}]
    if items["submission"]:
        volumes.append({"name": "submission", "secret": {**secret,
                                                         "items": items["submission"]}})
        mounts.append({"name": "submission", "mountPath": "/submission", "readOnly": True})
    if items["grader"]:
        volumes.append({"name": "grader", "secret": {**secret, "items": items["grader"]}})
        mounts.append({"name": "grader", "mountPath": str(Path(sandbox.TRUSTED_PATH).parent),
                       "readOnly": True})
    kernel = {"name": KERNEL_CONTAINER, "image": image,
              "imagePullPolicy": "Never" if local_image(image) else "IfNotPresent",
              "command": ["python3", "-I", "-m", "cloudlab.grading.podrun", "/job/run.json"],
              "workingDir": sandbox.WORK, "env": env, "resources": resources,
              "securityContext": security_context(uid), "volumeMounts": mounts,
              "terminationMessagePolicy": "File"}
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "enableServiceLinks": False, "terminationGracePeriodSeconds": 1,
        "dnsPolicy": "None", "dnsConfig": {"nameservers": ["127.0.0.1"]},
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [kernel], "volumes": volumes}
    if probe:
        from .probe import SWEEP_ENV

        volumes += [{"name": "probe-tmp", "emptyDir": {"medium": "Memory", "sizeLimit":
                                                       _quantity(limits.tmp_size)}},
                    {"name": "probe", "secret": {**secret, "items": items["probe"]}}]
        pod["initContainers"] = [{
            "name": PROBE_CONTAINER, "image": image,
            "imagePullPolicy": kernel["imagePullPolicy"],
            # sh is init here (as docker's --init for the local probe container): the probe
            # runner kills every process but init after each group; its exit never stops
            # the notebook from running (no answer: the host runs them again elsewhere)
            "command": ["/bin/sh", "-c",
                        f"python3 -I {PROBE_SCRIPT} /probe/{sandbox.PROBE_INPUT}; exit 0"],
            "workingDir": "/tmp", "resources": resources,
            "env": [{"name": "HOME", "value": "/tmp"}, {"name": SWEEP_ENV, "value": "all"},
                    {"name": "CLOUDLAB_DOCKER", "value": "off"}],
            "securityContext": security_context(uid),
            "volumeMounts": [{"name": "probe-tmp", "mountPath": "/tmp"},
                             {"name": "probe", "mountPath": "/probe", "readOnly": True}]}]
    if not simulated:  # never onto kwok's simulated nodes, where nothing runs
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "type", "operator": "NotIn", "values": ["kwok"]}]}]}}}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job, "labels": labels},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": max(1, deadline),
                     "ttlSecondsAfterFinished": 3600,  # a grader killed outright
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


# --------------------------------------------------------------------- pod status
def _terminated(pod: dict, container: str, key: str = "containerStatuses") -> dict:
    for status in (pod.get("status") or {}).get(key) or []:
        if status.get("name") == container:
            return (status.get("state") or {}).get("terminated") or \
                (status.get("lastState") or {}).get("terminated") or {}
    return {}


def environment_problem(pod: dict) -> str:
    """Why the cluster (not the submission) is failing this pod, or ``""``.

    >>> environment_problem({"status": {"phase": "Failed", "reason": "Evicted",
    ...                                 "message": "low on memory"}})
    'the pod was evicted: low on memory'
    """
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return f"the pod was evicted: {status.get('message', '')}".strip()
    if status.get("phase") == "Unknown" or status.get("reason") in ("NodeLost", "Terminated",
                                                                    "NodeShutdown"):
        return f"the pod's node was lost ({status.get('reason') or status.get('phase')})"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return f"the pod was disrupted: {cond.get('reason')}: {cond.get('message', '')}"
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in ENV_WAITING:
                return (f"{waiting['reason']}: {ENV_WAITING[waiting['reason']]} "
                        f"({waiting.get('message', '')[:200]})")
    return ""


def _scheduling(pod: dict) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") != "True":
            return cond.get("message") or cond.get("reason") or "unschedulable"
    return "not scheduled"


def pids_limit(api, nodes: list[dict], simulated: bool = False) -> str:
    """What limits a grading pod's processes: the kubelet's ``podPidsLimit`` of each real
    node (its ``configz``), as text."""
    found = []
    for n in nodes:
        name = n["metadata"]["name"]
        if not simulated and n["metadata"].get("labels", {}).get("type") == "kwok":
            continue
        config = api.request("GET", f"/api/v1/nodes/{name}/proxy/configz")
        value = (config.get("kubeletconfig") or {}).get("podPidsLimit", -1)
        found.append(f"{name}: podPidsLimit={value}" + (" (no limit)" if value in (-1, 0)
                                                          else ""))
    return "; ".join(found) or "no real node"


# ------------------------------------------------------------------ the preprocessor
def cells_of(nb) -> list[dict]:
    """What the pod gets of a notebook: each cell's type, source and grade id."""
    return [{"type": "code" if c.cell_type == "code" else "markdown", "source": c.source,
             "grade_id": (c.metadata.get("nbgrader") or {}).get("grade_id")} for c in nb.cells]


def apply(nb, data: dict[str, Any]) -> None:
    """Put the pod's outputs into the host's notebook (sources and metadata stay the host's)."""
    cells = data.get("cells")
    if not isinstance(cells, list) or len(cells) != len(nb.cells):
        raise RuntimeError("the pod's result does not match the notebook's cells")
    for cell, got in zip(nb.cells, cells, strict=True):
        if cell.cell_type != "code":
            continue
        outputs = got.get("outputs") if isinstance(got, dict) else None
        if not isinstance(outputs, list):
            raise RuntimeError("the pod's result has a cell without outputs")
        cell.outputs = [nbformat.from_dict(o) for o in outputs if isinstance(o, dict)]
        count = got.get("execution_count")
        cell.execution_count = count if isinstance(count, int) else None
    if isinstance(data.get("language_info"), dict):
        nb.metadata["language_info"] = nbformat.from_dict(data["language_info"])
    nbformat.validate(nb)


class JobExecute(Preprocessor):
    """nbgrader's Execute step, run as a Kubernetes Job (:class:`Backend`); never raises
    for what the student did."""

    enabled = Bool(True)

    def preprocess(self, nb, resources):
        from .worker import nbgrader_extra

        spec = sandbox.active()
        backend: Backend = spec.backend
        notebook = (resources or {}).get("nbgrader", {}).get("notebook", "notebook")
        outcome = budget.current()
        if budget.over(nb):
            return nb, resources
        execute = nbgrader_extra()["Execute"]
        try:
            got = backend.run(spec, notebook, cells_of(nb), outcome.budget,
                              outcome.budget - outcome.remaining(), execute)
        except EnvironmentFailure as exc:
            tries = spec.state.get("retries", [])
            reason = (f"{notebook}: the cluster failed this run {len(tries)} time(s), last: "
                      f"{exc} (not the submission's fault: regrade it)")
            spec.state["failure"] = f"environment: {str(exc)[:200]}"
            outcome.status, outcome.reason = "crashed", reason
            budget.mark(nb, 0, reason, "KernelDied", first_gets="KernelDied")
            return nb, resources
        if got.probe is not None:
            spec.state["probe"] = got.probe
        elif got.probe_error:
            spec.state["probe_error"] = got.probe_error
        spec.state["probe_where"] = "kernel pod (init container)"
        if got.data is None:
            spec.state["failure"] = got.failure
            reason = f"{notebook}: {got.reason}"
            outcome.status, outcome.reason = got.status or "crashed", reason
            budget.mark(nb, 0, reason, "TimeoutError" if got.status == "timed out"
                        else "KernelDied", first_gets="TimeoutError"
                        if got.status == "timed out" else "KernelDied")
            return nb, resources
        apply(nb, got.data)
        pod = got.data.get("outcome") or {}
        if pod.get("status") in ("timed out", "crashed") and outcome.status == "graded":
            outcome.status, outcome.reason = pod["status"], str(pod.get("reason", ""))[:2000]
            spec.state["failure"] = f"student: {pod['status']}"
        outcome.truncated = outcome.truncated or bool(pod.get("truncated"))
        return nb, resources
