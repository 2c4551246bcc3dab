"""The pure rules of ``kubernetes``: the three files' text in, a result dict out.

No cluster, no Docker: the host's hook (:mod:`.hook`), the cluster check
(:mod:`.cluster`) and the student's visible checks (:mod:`.student_side`) all call these.
YAML is read by :mod:`cloudlab.manifests`, imported on first use (the grading kernel
imports this module and has no YAML library).

>>> good = app_manifests()
>>> valid(good)["passed"], consistent(good)["passed"], cpu_requests(good)["passed"]
(True, True, True)
>>> del good["deployment.yaml"]
>>> valid(good)["message"]
'deployment.yaml is missing'
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

__all__ = [
    "ANSWER_CELL",
    "APP_NAME",
    "ASSIGNMENT",
    "CONTAINER_LIMITS",
    "CPU_PERCENT",
    "FILES",
    "GRADING_CONTEXT_ENV",
    "GRADING_KUBECONFIG_ENV",
    "IMAGE",
    "KEYS",
    "LABEL",
    "MAX_REPLICAS",
    "MIN_REPLICAS",
    "PLACEHOLDER",
    "PORT",
    "QUOTA",
    "READY_TIMEOUT",
    "REPLICAS",
    "REPLICA_CAP",
    "REQUESTS",
    "SERVE_APP",
    "SERVE_DOCKERFILE",
    "SERVE_REQUIREMENTS",
    "SERVICE_PORT",
    "STATIC_RULES",
    "UNSCHEDULABLE_GRACE",
    "Texts",
    "app_manifests",
    "consistent",
    "cpu_requests",
    "deployment_values",
    "hpa_values",
    "over_cap",
    "parse",
    "probes",
    "pull_policy",
    "quantity",
    "read_files",
    "result",
    "service_values",
    "valid",
    "write_app",
]

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
    from ... import manifests

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
