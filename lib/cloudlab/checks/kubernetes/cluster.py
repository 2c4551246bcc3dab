"""The trusted side's cluster work: apply a submission into a namespace of its own, watch.

Runs on the grader's host only (the hook, :mod:`.hook`). The namespace comes from the
grading cluster's pool (:func:`grading_pool`, :mod:`cloudlab.k8s.pool`), fenced by a
service account that may only write the exercise's three kinds there, a quota, container
limits and the Pod Security Standards (:func:`_namespace`); what the cluster made of the
objects is read over one HTTPS session per identity (:mod:`cloudlab.k8s.api`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .rules import (
    CONTAINER_LIMITS,
    FILES,
    GRADING_CONTEXT_ENV,
    GRADING_KUBECONFIG_ENV,
    QUOTA,
    READY_TIMEOUT,
    UNSCHEDULABLE_GRACE,
    Texts,
    _mf,
    over_cap,
    parse,
    result,
)

# ------------------------------------------------------------------------- the cluster

def grading_cluster() -> tuple[str, str | None] | None:
    """The grading cluster the instructor set up: ``(kubeconfig, context)``, or None."""
    path = os.environ.get(GRADING_KUBECONFIG_ENV)
    return (path, os.environ.get(GRADING_CONTEXT_ENV) or None) if path else None


@dataclass(frozen=True)
class Grading:
    """Which kind of cluster grades: ``real`` (a real node of this machine: pods run) or
    ``simulated`` (kwok's nodes: pods are marked Ready, nothing runs); the real node's
    name and bridge."""

    kind: str
    node: str = ""
    bridge: str = ""

    @property
    def real(self) -> bool:
        return self.kind == "real"

    def label(self) -> str:
        """What the feedback says about the cluster that graded.

        >>> Grading("simulated").label()
        'graded on a simulated cluster (kwok: pods are marked Ready, no container runs)'
        """
        if self.real:
            return (f"graded on a real node ({self.node}: kubelet and containerd run your "
                    "image)")
        return "graded on a simulated cluster (kwok: pods are marked Ready, no container runs)"


def grading_kind(api: Any) -> Grading:
    """``real`` when the cluster has a Ready node that is this machine's real node (its
    InternalIP routed onto the node's bridge, so the grader can load images into it and
    reach its Services without leaving the machine), else ``simulated``."""
    from ...k8s import host, node

    owner = node.running_owner()
    if not owner:
        return Grading("simulated")
    for item in api.list("Node"):
        meta = item.get("metadata") or {}
        if (meta.get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake" \
                or meta.get("name") != owner.get("node"):
            continue
        status = item.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        ips = [a.get("address") for a in status.get("addresses") or []
               if a.get("type") == "InternalIP"]
        if ready and ips and all(host.route_is_local(ip, owner.get("bridge", ""))
                                 for ip in ips):
            return Grading("real", meta["name"], owner.get("bridge", ""))
    return Grading("simulated")


def detect(kubeconfig: str | Path, context: str | None = None) -> Grading:
    """:func:`grading_kind` of the cluster a kubeconfig names (simulated if unreachable)."""
    from ...k8s.api import Api

    try:
        with Api.from_kubeconfig(kubeconfig, context, timeout=15) as api:
            return grading_kind(api)
    except Exception:
        return Grading("simulated")


def on_node(dep: Mapping[str, Any], image: str, node: str) -> dict[str, Any]:
    """The Deployment as the grader applies it on a real node: the app's container runs
    ``image`` (the submission's own build, already in the node: ``imagePullPolicy:
    Never``, the node pulls nothing) and the pods are held to the real node (merged into
    the Deployment's own nodeSelector). Everything else, the probes first, is theirs.

    >>> d = {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "x"}]}}}}
    >>> spec = on_node(d, "cloudlab.local/k:1", "real-node-1")["spec"]["template"]["spec"]
    >>> spec["containers"][0]["image"], spec["nodeSelector"]
    ('cloudlab.local/k:1', {'kubernetes.io/hostname': 'real-node-1'})
    """
    from .rules import _app_container

    out = copy.deepcopy(dict(dep))
    spec = _mf()._get(out, "spec", "template", "spec")
    if not isinstance(spec, dict):
        return out
    app = _app_container(out)
    if app is not None:
        app["image"], app["imagePullPolicy"] = image, "Never"
    pick = spec.get("nodeSelector")
    spec["nodeSelector"] = {**(pick if isinstance(pick, dict) else {}),
                            "kubernetes.io/hostname": node}
    return out


GREETING = "Hello World!"
# Nothing answering yet is waited for this long: without a readiness probe a pod is Ready
# as soon as its process starts, before the app listens (an honest probe-less answer lost
# rule_cluster that way: its liveness probe was asked once, at once; the missing readiness
# probe is graded by rule_probes alone)
GREET_TIMEOUT = 45.0
SAID_ENOUGH = 3  # answers in a row without the greeting: the app serves, and says otherwise


def greets(api: Any, ns: str, svc: Mapping[str, Any], bridge: str,
           timeout: float = GREET_TIMEOUT) -> dict[str, Any]:
    """``GET /`` through the Service (its ClusterIP, after checking the route stays on the
    node's bridge: nothing leaves the machine) until it answers the greeting: the verdict,
    with what it answered. It fails once the app answered :data:`SAID_ENOUGH` times in a
    row without the greeting, or nothing answered for ``timeout`` s."""
    import urllib.error
    import urllib.request

    from ...errors import ServiceError
    from ...k8s import host
    from ...proc import GiveUp, wait_for

    stored = api.get("Service", _mf()._name(svc), namespace=ns)
    ip = (stored.get("spec") or {}).get("clusterIP")
    ports = [p for p in (stored.get("spec") or {}).get("ports") or [] if p.get("port")]
    if not ip or ip == "None" or not ports:
        return result(False, "the Service has no ClusterIP and port to send GET / to")
    port = next((p["port"] for p in ports if p["port"] == 80), ports[0]["port"])
    host.check_local(ip, bridge)
    url = f"http://{ip}:{port}/"
    seen: dict[str, Any] = {}
    said = [0]  # answers in a row without the greeting
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy

    def answered() -> bool:
        try:
            with direct.open(url, timeout=3) as resp:
                seen.update(status=resp.status, body=resp.read(4096).decode(errors="replace"))
        except urllib.error.HTTPError as exc:
            seen.update(status=exc.code, body=exc.read(4096).decode(errors="replace"))
        except OSError as exc:
            seen.update(status=None, body=f"{type(exc).__name__}: {exc}")
        if seen.get("status") == 200 and GREETING in str(seen.get("body")):
            return True
        said[0] = said[0] + 1 if seen.get("status") is not None else 0
        if said[0] >= SAID_ENOUGH:
            raise GiveUp("the app answers, without the greeting")
        return False

    try:
        wait_for(answered, timeout=timeout, interval=0.5, what=f"GET {url}")
    except ServiceError:
        body = str(seen.get("body", "")).strip()[:120]
        said = f"HTTP {seen['status']} {body!r}" if seen.get("status") else body
        return result(False, f"GET / through the Service ({ip}:{port}) answered {said}, not "
                      f"{GREETING!r}: the app of part B says {GREETING!r}",
                      found=said, expected=GREETING)
    return result(True, f"GET / through the Service ({ip}:{port}) said {GREETING!r}")


_ANSWERED = re.compile(r"statuscode: 4\d\d")


def _events(api: Any, ns: str) -> list[dict]:
    """The namespace's events about the pods it holds now (a pool namespace is reused:
    events of an earlier submission's pods are not this one's)."""
    uids = {p["metadata"].get("uid") for p in api.list("Pod", namespace=ns)}
    return [e for e in api.list("Event", namespace=ns)
            if (e.get("involvedObject") or {}).get("uid") in uids]


def probe_refused(api: Any, ns: str, dep: Mapping[str, Any] | None = None) -> str:
    """A readiness probe the app answered with a client error (a 4xx: the app runs and
    says there is no such page, so waiting longer changes nothing), in the kubelet's
    words, or ``""``. A refused connection or a 5xx is not final (the app may still be
    starting)."""
    for e in _events(api, ns):
        message = str(e.get("message") or "")
        if e.get("reason") == "Unhealthy" and message.startswith("Readiness probe failed") \
                and _ANSWERED.search(message):
            return f"the kubelet says: {message[:200]}{_probe_said(dep)}"
    return ""


def _probe_said(dep: Mapping[str, Any] | None) -> str:
    """`` (your readinessProbe: GET /x on port http)``, or ``""``."""
    from .rules import _app_container

    probe = (_app_container(dep) or {}).get("readinessProbe") if dep else None
    get = probe.get("httpGet") if isinstance(probe, dict) else None
    if not isinstance(get, dict):
        return ""
    return f" (your readinessProbe: GET {str(get.get('path'))[:80]} on port " \
           f"{str(get.get('port'))[:20]}; the app of part B serves /healthz)"


def _port_number(container: Mapping[str, Any], port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if isinstance(p, dict) and p.get("name") == port and isinstance(p.get("containerPort"),
                                                                           int):
            return p["containerPort"]
    return None


def _first_answer(opener: Any, url: str, deadline: float) -> int | str:
    """The HTTP status ``url`` answers, asked again while nothing answers, until the
    ``time.monotonic()`` ``deadline``: a pod without a readiness probe is Ready before its
    app listens, and the kubelet too gives a liveness probe time (its delay, then several
    failures) before it restarts anything. ``"no answer (...)"`` when nothing did."""
    import urllib.error

    while True:
        try:
            with opener.open(url, timeout=3) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError as exc:
            if time.monotonic() >= deadline:
                return f"no answer ({type(exc).__name__})"
            time.sleep(0.5)


def probes_answer(api: Any, ns: str, dep: Mapping[str, Any], bridge: str,
                  wait: float = GREET_TIMEOUT) -> dict[str, Any]:
    """Every HTTP probe of the app's container (readiness, liveness, startup), asked of
    every Ready pod as the kubelet asks it (its path and port on the pod's address, checked
    to be on the node's bridge): each must answer 200-399 (the kubelet's success), or the
    kubelet would mark the pod unready or restart it. An app not listening yet is waited
    for, up to ``wait`` s for all the probes together (:func:`_first_answer`): an app
    that never listens costs one wait, not one per probe."""
    import urllib.request

    from ...k8s import host
    from .rules import _app_container

    app = _app_container(dep) or {}
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    pods = [p for p in api.list("Pod", namespace=ns)
            if not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("podIP")
            and any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])]
    wrong = []
    deadline = time.monotonic() + wait
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = (app.get(kind) or {}).get("httpGet") if isinstance(app.get(kind), dict) else None
        if not isinstance(get, dict):
            continue
        port, path = _port_number(app, get.get("port")), str(get.get("path") or "/")
        if port is None or not path.startswith("/") or get.get("scheme", "HTTP") != "HTTP":
            continue  # the kubelet itself fails such a probe: the watch saw it
        for pod in pods[:2]:
            ip = host.check_local(pod["status"]["podIP"], bridge)
            code = _first_answer(direct, f"http://{ip}:{port}{path}", deadline)
            if not (isinstance(code, int) and 200 <= code < 400):
                wrong.append(f"your {kind} GET {path} on port {get.get('port')} answers "
                             f"{code}" + (": the kubelet would restart the pod"
                                          if kind == "livenessProbe" else ""))
                break
    if wrong:
        return result(False, "; ".join(wrong), hint="the app of part B serves GET /healthz")
    return result(True, "its probes answer")


def _unhealthy(api: Any, ns: str) -> str:
    """Why the pods are not Ready, in the kubelet's words: a failing probe (its event),
    a container waiting (CrashLoopBackOff, ErrImageNeverPull ...) or exited."""
    probes = sorted({str(e.get("message") or "")[:200] for e in _events(api, ns)
                     if e.get("reason") == "Unhealthy"})
    if probes:
        return "the kubelet says: " + "; ".join(probes[:2])
    for pod in api.list("Pod", namespace=ns):
        for c in (pod.get("status") or {}).get("containerStatuses") or []:
            state = c.get("state") or {}
            why = (state.get("waiting") or state.get("terminated") or {})
            if why.get("reason") and why.get("reason") != "ContainerCreating":
                return f"container {c.get('name')}: {why.get('reason')} " \
                       f"{str(why.get('message') or '')[:160]}".rstrip()
    return ""


def cluster_check(texts: Texts, kubeconfig: str | Path, *, context: str | None = None,
                  labels: Mapping[str, str] | None = None,
                  timeout: float = READY_TIMEOUT, grading: Grading | None = None,
                  image: str | None = None) -> dict[str, Any]:
    """Apply the files into a clean namespace of their own and see them work; never raises.

    Refused before anything is applied: unreadable files, a kind other than the three,
    a cluster-scoped object, a namespace in the manifests. The objects are applied with
    server-side apply as a service account that may only write Deployments, Services and
    HPAs in that namespace. Everything goes straight to the API server over one HTTPS
    session per identity (:mod:`cloudlab.k8s.api`), no kubectl process.
    Passes when every replica is Ready on a node, the Service has ready endpoints and
    the HPA's target is the applied Deployment. On a real node (``grading.real``, with
    ``image``: the submission's own build, loaded into the node) the app's container runs
    that image (:func:`on_node`), the pods become Ready through the submission's own
    probes (a failing one is named in the kubelet's words) and ``GET /`` through the
    Service must say the greeting (:func:`greets`).

    The namespace comes from the cluster's grading pool (:func:`grading_pool`): made once
    with its service account and RBAC, held by this check alone, and emptied of every
    object the submission made (and its ReplicaSets, Pods, Endpoints) before the next
    check gets it; one that cannot be emptied is deleted, never reused.
    """
    objs, errors = parse(texts)
    if errors:
        return result(False, "not applied: " + "; ".join(errors))
    scope = [*map(str, _mf().scope_problems(objs.values())
                   + _mf().host_access_problems(objs.values())), *over_cap(objs)]
    if scope:
        return result(False, "not applied (refused before reaching the cluster): "
                      + "; ".join(scope))
    from ...k8s.api import Api, ApiError

    try:
        grader = Api.from_kubeconfig(kubeconfig, context, timeout=timeout)
    except Exception as exc:
        return result(False, f"the cluster check failed: {type(exc).__name__}: "
                      f"{str(exc)[:400]}")
    with grader, contextlib.ExitStack() as stack:
        try:
            lease = stack.enter_context(grading_pool(grader, kubeconfig, context, labels)
                                        .lease(need=timeout + 60))
            ns, token, identity = lease.namespace, *_credentials(lease.data)
            student = grader
            if token:
                student = stack.enter_context(grader.with_token(token))
            real = grading is not None and grading.real and image
            if real:
                objs["deployment.yaml"] = on_node(objs["deployment.yaml"], image,
                                                  grading.node)
            applied: dict[str, dict] = {}
            for fname, obj in objs.items():
                try:
                    applied[fname] = student.apply(obj, namespace=ns,
                                                   field_manager="submission")
                except ApiError as exc:
                    return result(False, f"the API server refused the manifests: {fname}: "
                                  f"{str(exc)[:400]}")
            # real pods take seconds (an app starts, a probe waits its period): polled
            # half as often, for a quarter of the API server's work per submission
            verdict = _watch(grader, ns, applied, timeout,
                             final=(lambda: probe_refused(grader, ns, objs["deployment.yaml"]))
                             if real else None, interval=0.5 if real else 0.2)
            if real and not verdict["passed"]:
                why = _unhealthy(grader, ns)
                if why and why not in verdict["message"]:
                    verdict["message"] += f"; {why}"
            elif real:
                for check in (lambda: probes_answer(grader, ns, objs["deployment.yaml"],
                                                    grading.bridge),
                              lambda: greets(grader, ns, applied["service.yaml"],
                                             grading.bridge)):
                    said = check()
                    verdict["message"] += f"; {said['message']}"
                    if not said["passed"]:
                        verdict = result(False, verdict["message"], found=said.get("found"),
                                         expected=said.get("expected"), hint=said.get("hint"))
                        break
            if isinstance(verdict.get("data"), dict):
                verdict["data"]["identity"] = identity
                verdict["data"]["namespace"] = ns
            return verdict
        except Exception as exc:   # a grader never crashes: 0 with the reason
            return result(False, f"the cluster check failed: {type(exc).__name__}: "
                          f"{str(exc)[:400]}")


# What a submission may leave in its namespace: its three kinds and what controllers make
# of them. The pool deletes exactly these between two submissions.
POOL_KINDS = ("HorizontalPodAutoscaler", "Deployment", "ReplicaSet", "Pod", "Service",
              "Endpoints", "EndpointSlice")
TOKEN_SECONDS = 3600


def grading_pool(api: Any, kubeconfig: str | Path, context: str | None = None,
                 labels: Mapping[str, str] | None = None) -> Any:
    """The grading cluster's pool of submission namespaces (:mod:`cloudlab.k8s.pool`):
    each made with its ``submission`` service account, Role and token, kept for reuse."""
    from ...config import LABEL
    from ...k8s.pool import NamespacePool, folder_for

    lab = {"cloudlab-grading": "true",
           **{k: v for k, v in (labels or {}).items() if k == LABEL
              and _LABEL_VALUE.fullmatch(v)}}
    return NamespacePool(api, folder_for(kubeconfig, context),
                         prepare=lambda a, ns: _prepare(a, ns, lab), kinds=POOL_KINDS,
                         prefix="grade", labels=lab, ttl=TOKEN_SECONDS)


def drain_grading_pool(kubeconfig: str | Path, context: str | None = None) -> list[str]:
    """Delete the grading pool's namespaces (grading is over); the names deleted."""
    from ...k8s.api import Api
    from ...k8s.pool import folder_for

    if not folder_for(kubeconfig, context).is_dir():
        return []
    with Api.from_kubeconfig(kubeconfig, context) as api:
        return grading_pool(api, kubeconfig, context).drain()



# Pod Security Standards level of a submission's namespace: "baseline", not "restricted".
# Baseline refuses what reaches into the node (privileged, added capabilities, hostNetwork,
# hostPID, hostIPC, hostPath, hostPort), the same list the grader refuses before apply.
# Restricted would also demand runAsNonRoot, allowPrivilegeEscalation: false, dropping ALL
# capabilities and a seccomp profile in every pod: the exercise does not teach
# securityContext, so it would refuse every Deployment written from the text (the
# exercise's text states this choice).
POD_SECURITY = "baseline"
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_LABEL_KEY = re.compile(r"(?:[a-z0-9.-]{1,253}/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]
# What a submission may do, in its own namespace only: the exercise's three kinds.
SUBMISSION_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["services"], "verbs": WRITE},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
]


def _namespace(api: Any, ns: str, labels: Mapping[str, str]) -> None:
    """The namespace, its ``submission`` service account and the Role that fences it, its
    quota and container limits (:data:`QUOTA`, :data:`CONTAINER_LIMITS`) and the Pod
    Security Standards' level :data:`POD_SECURITY` enforced on it (defence in depth
    behind the refusal of host access before apply)."""
    lab = {"cloudlab-grading": "true",
           **{k: v for k, v in labels.items() if _LABEL_KEY.fullmatch(k)
              and _LABEL_VALUE.fullmatch(v)},
           "pod-security.kubernetes.io/enforce": POD_SECURITY,
           "pod-security.kubernetes.io/enforce-version": "latest"}
    for obj in ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": lab}},
                {"apiVersion": "v1", "kind": "ResourceQuota",
                 "metadata": {"name": "submission", "namespace": ns},
                 "spec": {"hard": dict(QUOTA)}},
                {"apiVersion": "v1", "kind": "LimitRange",
                 "metadata": {"name": "submission", "namespace": ns},
                 "spec": {"limits": [{"type": "Container", **copy.deepcopy(CONTAINER_LIMITS)}]}},
                {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "submission", "namespace": ns}},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                 "metadata": {"name": "submission", "namespace": ns},
                 "rules": SUBMISSION_RULES},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "submission", "namespace": ns},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "submission"},
                 "subjects": [{"kind": "ServiceAccount", "name": "submission",
                               "namespace": ns}]}):
        api.apply(obj, field_manager="cloudlab-grader")
    _await_quota(api, ns)


QUOTA_TIMEOUT = 20.0


def _await_quota(api: Any, ns: str) -> None:
    """Wait until the cluster's quota controller has counted the namespace's usage (until
    then the quota admission refuses every pod)."""
    from ...errors import ServiceError
    from ...proc import wait_for

    def counted() -> bool:
        status = api.get("ResourceQuota", "submission", namespace=ns).get("status") or {}
        return set(status.get("hard") or {}) >= set(QUOTA) and "used" in status

    try:
        wait_for(counted, timeout=QUOTA_TIMEOUT, interval=0.2, what=f"the quota of {ns}")
    except ServiceError:
        raise ServiceError(f"the grading cluster did not count the quota of {ns} within "
                           f"{QUOTA_TIMEOUT:g} s: does it run the resource quota controller "
                           "(kube-controller-manager --controllers ...resourcequota-controller)?"
                           ) from None


def _prepare(api: Any, ns: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A pool namespace's fence and credentials: :func:`_namespace`, then a token of its
    service account (``token``: empty when the grader's own identity must be used), when
    the token expires (as the server says) and who applies the manifests (``identity``)."""
    from ...k8s.api import ApiError

    _namespace(api, ns, labels)
    token, expires = "", time.time() + TOKEN_SECONDS
    with contextlib.suppress(ApiError):
        token, expires = api.token_request("submission", namespace=ns, seconds=TOKEN_SECONDS)
    student, identity = _fence(api, ns, token)
    if student is api:
        token = ""
    else:
        student.close()
    return {"token": token, "identity": identity, "expires": expires}


def _credentials(data: Mapping[str, Any]) -> tuple[str, str]:
    return str(data.get("token") or ""), str(data.get("identity") or "")


def _student(api: Any, ns: str, seconds: int = 600) -> tuple[Any, str]:
    """A session holding only a short-lived token of the namespace's service account.

    If the cluster cannot issue tokens (no TokenRequest API) or does not enforce RBAC,
    the grader's own session is used and the allow-list checked before apply is the
    only fence; the second value says which identity applied the manifests.
    """
    from ...k8s.api import ApiError

    try:
        token = api.token("submission", namespace=ns, seconds=seconds)
    except ApiError:
        token = ""
    return _fence(api, ns, token)


def _fence(api: Any, ns: str, token: str) -> tuple[Any, str]:
    """A session with ``token`` if it is confined by RBAC, else the grader's (see
    :func:`_student`), and which identity it is."""
    if not token:
        return api, "grader (the cluster issues no service-account tokens)"
    student = api.with_token(token)
    try:
        outside = student.allowed("create", "clusterrolebindings",
                                  group="rbac.authorization.k8s.io")
    except BaseException:
        student.close()
        raise
    if outside:
        student.close()
        return api, "grader (the cluster does not enforce RBAC)"
    return student, (f"system:serviceaccount:{ns}:submission (Deployments, Services and "
                     f"HPAs in {ns} only)")


def _watch(api: Any, ns: str, applied: Mapping[str, dict], timeout: float,
           final: Callable[[], str] | None = None, interval: float = 0.2) -> dict[str, Any]:
    """Poll the namespace's pods and the Service's EndpointSlices every ``interval`` s
    until every replica is Ready with endpoints, the scheduler gave up on a pod, ``final()``
    (asked every fifth poll, at most once a second) says why waiting is pointless, or
    ``timeout`` passed."""
    from ...errors import ServiceError
    from ...proc import GiveUp, wait_for

    dep, svc, hpa = (applied[f] for f in FILES)
    want = dep.get("spec", {}).get("replicas", 1)
    want = want if isinstance(want, int) and want > 0 else 1
    began = time.monotonic()
    seen: dict[str, Any] = {"state": None, "stuck": None, "asked": 0.0}
    selector = f"kubernetes.io/service-name={_mf()._name(svc)}"

    def settled() -> bool:
        state = _summary(api.list("Pod", namespace=ns),
                         api.list("EndpointSlice", namespace=ns, selector=selector), dep, hpa)
        seen["state"] = state
        if state["ready"] >= want and state["endpoints"] > 0:
            return True
        refused = _refused(api.list("ReplicaSet", namespace=ns))
        if refused:
            seen["refused"] = refused
            raise GiveUp("the namespace's quota or limits refused a pod")
        now = time.monotonic()  # the grading cluster's nodes never change: no point waiting
        seen["stuck"] = (seen["stuck"] or now) if state["unschedulable"] else None
        if seen["stuck"] is not None and now - seen["stuck"] > UNSCHEDULABLE_GRACE:
            raise GiveUp("a pod cannot be scheduled")
        if final is not None and now - seen["asked"] >= max(1.0, 5 * interval):
            seen["asked"] = now
            seen["final"] = final()
            if seen["final"]:
                raise GiveUp(seen["final"])
        return False

    try:
        wait_for(settled, timeout=timeout, interval=interval,
                 what=f"the pods of {ns} to be Ready")
    except ServiceError:
        state = seen["state"]
        if seen.get("refused"):
            return result(False, "the grading namespace's quota or container limits refused "
                          f"the pods (the text states the limits): {seen['refused']}",
                          found=state)
        if state is None:
            raise
        if seen.get("final"):
            return result(False, f"after {time.monotonic() - began:.0f} s: {state['ready']} "
                          f"of {want} pods Ready: {seen['final']}", found=state)
        return result(False, f"after {time.monotonic() - began:.0f} s: {state['ready']} of "
                      f"{want} pods Ready, {state['endpoints']} ready endpoints behind the "
                      "Service" + (f" ({state['pending']})" if state["pending"] else ""),
                      found=state)
    state = seen["state"]
    if not state["hpa_target"]:
        return result(False, "the HPA does not target the Deployment that was applied",
                      found=state)
    return result(True, f"{state['ready']} pods Ready on {state['nodes']}, "
                  f"{state['endpoints']} endpoints behind the Service, the HPA targets "
                  f"deployment/{state['deployment']}", data=state)


def _refused(replicasets: list[dict]) -> str:
    """Why a ReplicaSet could not create its pods (the quota's or the limit range's own
    words), or ``""``."""
    for rs in replicasets:
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
                return str(c.get("message") or c.get("reason") or "ReplicaFailure")[:300]
    return ""


def _summary(pods: list[dict], slices: list[dict], dep: dict, hpa: dict) -> dict[str, Any]:
    """What the cluster made of the objects (``dep``/``hpa``: as the server stored them)."""
    dname = _mf()._name(dep)
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    ready = [p for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                    for c in p.get("status", {}).get("conditions", []))
             and p.get("spec", {}).get("nodeName")]
    pending = sorted({c.get("message", "")[:120] for p in pods
                      for c in p.get("status", {}).get("conditions", [])
                      if c.get("status") == "False" and c.get("message")})
    # "Insufficient cpu" passes as other submissions' namespaces drain: only a pod that
    # fits no node at all (a selector, affinity or taint) is final
    unschedulable = sum(1 for p in pods for c in p.get("status", {}).get("conditions", [])
                        if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
                        and "Insufficient" not in str(c.get("message", "")))
    endpoints = sum(1 for s in slices for e in (s.get("endpoints") or [])
                    if (e.get("conditions") or {}).get("ready"))
    target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return {"ready": len(ready), "pods": len(pods), "endpoints": endpoints,
            "unschedulable": unschedulable,
            "nodes": sorted({p["spec"]["nodeName"] for p in ready}),
            "pending": "; ".join(pending[:2]), "deployment": dname,
            "hpa_target": target.get("kind") == "Deployment" and target.get("name") == dname
            and dep.get("kind") == "Deployment"}
