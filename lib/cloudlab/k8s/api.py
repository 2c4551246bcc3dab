"""Talk to a Kubernetes API server directly over HTTPS, with a kubeconfig's credentials.

kubectl costs a Go start-up and an API discovery per call (a tenth of a CPU-second or
more); a grader that applies, watches and deletes per submission pays that many times.
:class:`Api` keeps one HTTPS session instead: server-side apply per object, get/list,
create, delete. It knows the kinds it is asked about by name (:data:`KINDS`): anything
else is refused with the list, never guessed.

>>> kind_path("Deployment", "web", namespace="demo")
'/apis/apps/v1/namespaces/demo/deployments/web'
>>> with Api.from_kubeconfig(cluster.kubeconfig) as api:      # doctest: +SKIP
...     api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
...     [p["metadata"]["name"] for p in api.list("Pod", namespace="demo")]
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CloudlabError

# kind -> (API prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "Event": ("/api/v1", "events", True),
    "Pod": ("/api/v1", "pods", True),
    "Service": ("/api/v1", "services", True),
    "Endpoints": ("/api/v1", "endpoints", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "ResourceQuota": ("/api/v1", "resourcequotas", True),
    "LimitRange": ("/api/v1", "limitranges", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "SelfSubjectAccessReview": ("/apis/authorization.k8s.io/v1", "selfsubjectaccessreviews",
                                False),
}


def _namespaced(kind: str) -> bool:
    return KINDS.get(kind, ("", "", False))[2]


class ApiError(CloudlabError):
    """The API server said no (``status``: its HTTP code; the message is the server's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")
_API_VERSION = re.compile(r"v1|[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"
                          r"/v[0-9]+(?:(?:alpha|beta)[0-9]+)?")


def kind_path(kind: str, name: str | None = None, *, namespace: str | None = None,
              api_version: str | None = None) -> str:
    """The REST path of ``kind`` (a collection, or one object with ``name``), in the
    group/version ``api_version`` (default: the kind's stable one). A name that is not a
    DNS subdomain (``../``, ``/``) is refused before it reaches a URL.

    >>> kind_path("HorizontalPodAutoscaler", namespace="a", api_version="autoscaling/v1")
    '/apis/autoscaling/v1/namespaces/a/horizontalpodautoscalers'
    """
    for what, value in (("name", name), ("namespace", namespace)):
        if value is not None and not _NAME.fullmatch(str(value)):
            raise CloudlabError(f"{what} {str(value)[:80]!r} is not a valid Kubernetes name "
                                "(lower-case letters, digits, '-' and '.')")
    if kind not in KINDS:
        raise CloudlabError(f"unknown kind {kind!r} for the API client; known: "
                            f"{', '.join(sorted(KINDS))}")
    prefix, plural, namespaced = KINDS[kind]
    if api_version is not None:
        if not _API_VERSION.fullmatch(str(api_version)):
            raise CloudlabError(f"apiVersion {str(api_version)[:80]!r} is not a group/version")
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced and not namespace:
        raise CloudlabError(f"{kind} is namespaced: pass namespace=")
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


def _pick(entries: list[dict], name: str | None, what: str) -> dict:
    found = next((e for e in entries if e.get("name") == name), None) if name else \
        (entries[0] if entries else None)
    if found is None:
        raise CloudlabError(f"the kubeconfig has no {what} {name or ''}".rstrip())
    return found.get(what, {})


def server_of(kubeconfig: str | Path, context: str | None = None) -> tuple[dict, dict]:
    """The ``cluster`` and ``user`` entries a kubeconfig's context points at."""
    import yaml  # kubeconfigs are YAML (kind's, kwok's, cloud providers')

    config = yaml.safe_load(Path(kubeconfig).read_text()) or {}
    ctx = _pick(config.get("contexts") or [], context or config.get("current-context"),
                "context")
    return (_pick(config.get("clusters") or [], ctx.get("cluster"), "cluster"),
            _pick(config.get("users") or [], ctx.get("user"), "user"))


class Api:
    """One HTTPS session with an API server; a context manager (``close`` is idempotent).

    ``cluster``/``user``: a kubeconfig's entries (certificate files or ``*-data``, a token).
    """

    def __init__(self, cluster: Mapping[str, Any], user: Mapping[str, Any], *,
                 timeout: float = 30) -> None:
        import requests

        self.server = str(cluster["server"]).rstrip("/")
        self.timeout = timeout
        self.cluster, self.user = dict(cluster), dict(user)
        self._tmp = Path(tempfile.mkdtemp(prefix="cl-k8s-api-"))
        # the key files go with the object even when nobody calls close() (or at exit)
        self._gone = weakref.finalize(self, shutil.rmtree, self._tmp, ignore_errors=True)
        self.session = requests.Session()
        # the kubeconfig alone decides: no proxy, CA bundle or netrc from the environment
        self.session.trust_env = False
        try:
            if cluster.get("insecure-skip-tls-verify"):
                self.session.verify = False
            else:
                self.session.verify = self._file(cluster, "certificate-authority") or True
            cert, key = self._file(user, "client-certificate"), self._file(user, "client-key")
            if cert and key:
                self.session.cert = (cert, key)
            if user.get("token"):
                self.session.headers["Authorization"] = f"Bearer {user['token']}"
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | Path, context: str | None = None, *,
                        timeout: float = 30) -> Api:
        cluster, user = server_of(kubeconfig, context)
        return cls(cluster, user, timeout=timeout)

    def with_token(self, token: str) -> Api:
        """Another session to the same server, authenticated by ``token`` only."""
        return Api(self.cluster, {"token": token}, timeout=self.timeout)

    def _file(self, entry: Mapping[str, Any], key: str) -> str | None:
        if entry.get(f"{key}-data"):
            path = self._tmp / key
            path.write_bytes(base64.b64decode(entry[f"{key}-data"]))
            path.chmod(0o600)
            return str(path)
        return str(entry[key]) if entry.get(key) else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.close()
        self._gone()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- verbs -----------------------------------------------------------------------
    def request(self, method: str, path: str, *, body: Any = None,
                params: Mapping[str, str] | None = None,
                content_type: str = "application/json") -> dict[str, Any]:
        """One call; the decoded answer, or :class:`ApiError` with the server's message."""
        data = None if body is None else json.dumps(body)
        got = self.session.request(method, self.server + path, data=data, params=params,
                                   headers={"Content-Type": content_type,
                                            "Accept": "application/json"},
                                   timeout=self.timeout)
        try:
            answer = got.json()
        except ValueError:
            answer = {"message": got.text[:500]}
        if got.status_code >= 400:
            raise ApiError(got.status_code, str(answer.get("message") or got.reason)
                           if isinstance(answer, dict) else got.reason)
        return answer

    def text(self, path: str, *, params: Mapping[str, str] | None = None,
             timeout: float | None = None) -> str:
        """A GET whose answer is text (a pod's log): at most what ``params`` allow."""
        got = self.session.get(self.server + path, params=params, timeout=timeout or
                               self.timeout, headers={"Accept": "*/*"})
        if got.status_code >= 400:
            try:
                message = str(got.json().get("message") or got.reason)
            except ValueError:
                message = got.text[:500] or got.reason
            raise ApiError(got.status_code, message)
        return got.text

    def logs(self, pod: str, *, namespace: str, container: str | None = None,
             limit_bytes: int | None = None) -> str:
        """A pod's (container's) log, at most ``limit_bytes`` of it."""
        params = {**({"container": container} if container else {}),
                  **({"limitBytes": str(limit_bytes)} if limit_bytes else {})}
        return self.text(kind_path("Pod", pod, namespace=namespace) + "/log", params=params)

    def apply(self, obj: Mapping[str, Any], *, namespace: str | None = None,
              field_manager: str = "cloudlab", force: bool = True) -> dict[str, Any]:
        """Server-side apply of one object (``namespace``: for a namespaced kind); the
        object as the server stored it."""
        meta = obj.get("metadata") or {}
        kind = str(obj.get("kind"))
        ns = (namespace or meta.get("namespace")) if _namespaced(kind) else None
        return self.request("PATCH", kind_path(kind, meta.get("name"), namespace=ns,
                                               api_version=obj.get("apiVersion")),
                            body=obj, content_type="application/apply-patch+yaml",
                            params={"fieldManager": field_manager, "fieldValidation": "Strict",
                                    "force": "true" if force else "false"})

    def create(self, obj: Mapping[str, Any], *, namespace: str | None = None
               ) -> dict[str, Any]:
        kind = str(obj.get("kind"))
        ns = (namespace or (obj.get("metadata") or {}).get("namespace")) \
            if _namespaced(kind) else None
        return self.request("POST", kind_path(kind, namespace=ns,
                                              api_version=obj.get("apiVersion")), body=obj)

    def get(self, kind: str, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        return self.request("GET", kind_path(kind, name, namespace=namespace))

    def list(self, kind: str, *, namespace: str | None = None,
             selector: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The objects of ``kind`` (``limit``: at most that many, enough to ask "any?")."""
        params = {"labelSelector": selector} if selector else {}
        if limit:
            params["limit"] = str(limit)
        got = self.request("GET", kind_path(kind, namespace=namespace), params=params or None)
        return got.get("items") or []

    def delete(self, kind: str, name: str, *, namespace: str | None = None,
               missing_ok: bool = True) -> None:
        """Delete without waiting (the garbage collector removes what it owned)."""
        try:
            self.request("DELETE", kind_path(kind, name, namespace=namespace),
                         body={"propagationPolicy": "Background"})
        except ApiError as exc:
            if not (missing_ok and exc.status == 404):
                raise

    def delete_collection(self, kind: str, *, namespace: str | None = None,
                          body: Mapping[str, Any] | None = None) -> None:
        """Delete every object of ``kind`` (in ``namespace``) in one call; ``body``: the
        DeleteOptions (default: background propagation)."""
        self.request("DELETE", kind_path(kind, namespace=namespace),
                     body=dict(body or {"propagationPolicy": "Background"}))

    def allowed(self, verb: str, resource: str, *, group: str = "",
                namespace: str | None = None) -> bool:
        """Whether this identity may ``verb`` ``resource`` (``kubectl auth can-i``)."""
        attrs = {"verb": verb, "resource": resource, "group": group,
                 **({"namespace": namespace} if namespace else {})}
        got = self.create({"apiVersion": "authorization.k8s.io/v1",
                           "kind": "SelfSubjectAccessReview",
                           "spec": {"resourceAttributes": attrs}})
        return bool((got.get("status") or {}).get("allowed"))

    def token(self, service_account: str, *, namespace: str, seconds: int = 600) -> str:
        """A short-lived token of a service account (the TokenRequest API)."""
        return self.token_request(service_account, namespace=namespace, seconds=seconds)[0]

    def token_request(self, service_account: str, *, namespace: str, seconds: int = 600
                      ) -> tuple[str, float]:
        """A service account's token and when it expires (epoch seconds, as the server
        set it: a cluster may cap the lifetime asked for)."""
        import calendar
        import time

        got = self.request("POST", kind_path("ServiceAccount", service_account,
                                             namespace=namespace) + "/token",
                           body={"apiVersion": "authentication.k8s.io/v1",
                                 "kind": "TokenRequest",
                                 "spec": {"expirationSeconds": seconds}})
        status = got.get("status") or {}
        try:
            expires = float(calendar.timegm(time.strptime(
                str(status.get("expirationTimestamp")), "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            expires = time.time() + seconds
        return str(status.get("token") or ""), expires
