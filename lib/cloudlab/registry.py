"""Image registries: tag, push and pull with progress; list and inspect through the HTTP API.

Three registries, one way of working:

* the local CNCF Distribution registry (``cl.services.registry()``), optionally with
  htpasswd (bcrypt) authentication turned on by :func:`auth`;
* Docker Hub, with a username and an *access token* read from the environment or typed
  into a password prompt: never written into a notebook, its outputs or a config file;
* Amazon ECR through boto3: repository and login token (moto locally); pushing needs
  real AWS.

Credentials travel per call (``auth=``) inside the Docker SDK; nothing is written to
``~/.docker/config.json``. :func:`logout` also removes what a ``docker login`` stored.

>>> ref = reference("hello", "1", host="127.0.0.1:5000")
>>> ref
'127.0.0.1:5000/hello:1'
>>> split(ref)
('127.0.0.1:5000/hello', '1')
>>> with cl.services.registry():                                  # doctest: +SKIP
...     digest = push(tag("hello:1", ref))
...     tags("hello")
['1']
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests

from . import engine
from .config import PUBLIC_REGISTRIES, Settings, settings
from .errors import CloudlabError, UnavailableError
from .proc import run, which

MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))
TOKEN_VAR = "CLOUDLAB_DOCKERHUB_TOKEN"
USER_VAR = "CLOUDLAB_DOCKERHUB_USER"


class RegistryError(CloudlabError):
    """A push, pull or registry API call failed; the message says why and what to do."""


@dataclass(frozen=True)
class Credentials:
    """A registry login. The secret never shows in a repr, a traceback or an output.

    >>> Credentials("ada", "s3cret", "127.0.0.1:5000")
    Credentials(username='ada', registry='127.0.0.1:5000')
    """

    username: str
    password: str = field(repr=False)
    registry: str = ""  # empty = Docker Hub

    def auth_config(self) -> dict[str, str]:
        config = {"username": self.username, "password": self.password}
        if self.registry:
            config["serveraddress"] = self.registry
        return config


# ---------------------------------------------------------------------------- references
def reference(repository: str, tag: str = "latest", host: str | None = None) -> str:
    """``host/repository:tag`` (no host = Docker Hub)."""
    return f"{host}/{repository}:{tag}" if host else f"{repository}:{tag}"


def split(ref: str) -> tuple[str, str]:
    """(repository, tag or digest) of an image reference; the tag defaults to latest.

    >>> split("127.0.0.1:5000/a/b@sha256:ab")
    ('127.0.0.1:5000/a/b', 'sha256:ab')
    >>> split("127.0.0.1:5000/hello")
    ('127.0.0.1:5000/hello', 'latest')
    """
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    head, _, last = ref.rpartition("/")
    if ":" in last:
        name, tag = last.rsplit(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return ref, "latest"


def host_of(ref: str) -> str:
    """The registry host of a reference ('' for Docker Hub).

    >>> host_of("127.0.0.1:5000/hello:1"), host_of("ada/hello:1")
    ('127.0.0.1:5000', '')
    """
    first, sep, _ = ref.partition("/")
    return first if sep and ("." in first or ":" in first or first == "localhost") else ""


def local_ref(repository: str, tag: str = "latest", cfg: Settings | None = None) -> str:
    """A reference in the local registry of these settings."""
    return reference(repository, tag, (cfg or settings()).registry_host)


# ------------------------------------------------------------------- tag / push / pull
def tag(image: str | Any, ref: str) -> str:
    """Give the local image ``image`` the name ``ref``; returns ``ref``.

    ``image`` is a name or id, or what ``cl.docker.build`` returned (its ``tag`` is used).
    """
    name = getattr(image, "tag", image)
    if not isinstance(name, str) or not name:
        raise RegistryError(f"cannot tag {image!r}: expected an image name or the result of "
                            "cl.docker.build(...)")
    image = name
    api = engine.client(timeout=30)
    try:
        found = api.images.get(image)
    except docker.errors.ImageNotFound:
        raise RegistryError(f"cannot tag {image!r}: no such image locally "
                            "(build it first with cl.docker.build)") from None
    repo, version = split(ref)
    found.tag(repo, version)
    return ref


def push(ref: str, *, auth: Credentials | None = None, progress: bool = True,
         timeout: int = 600) -> str:
    """Push ``ref`` to its registry; returns the manifest digest the registry reported."""
    repo, version = split(ref)
    api = engine.client(timeout=timeout)
    try:
        api.images.get(ref)
    except docker.errors.ImageNotFound:
        raise RegistryError(f"cannot push {ref}: no local image has that name "
                            f"(tag one first: cl.registry.tag(image, {ref!r}))") from None
    kwargs = {"auth_config": auth.auth_config()} if auth else {}
    digest = ""
    with _Progress(progress, f"push {_short(ref)}") as bar:
        try:
            for chunk in api.api.push(repo, tag=version, stream=True, decode=True, **kwargs):
                if "error" in chunk:
                    raise _explain("push", ref, chunk["error"])
                digest = (chunk.get("aux") or {}).get("Digest", digest)
                bar.update(chunk)
        except docker.errors.APIError as exc:
            raise _explain("push", ref, exc.explanation or str(exc)) from None
    if not digest:
        raise RegistryError(f"push {ref}: the registry reported no digest")
    return digest


def pull(ref: str, *, auth: Credentials | None = None, progress: bool = True,
         timeout: int = 600):
    """Pull ``ref`` (a tag or ``repo@sha256:...``); returns the SDK image."""
    return fetch(ref, auth=auth, progress=progress, timeout=timeout).image


@dataclass
class Fetched:
    """A pull: the image, and what happened to each of its layers."""

    image: Any
    layers: Any  # DataFrame: layer, status (Pull complete / Already exists), bytes_fetched


def fetch(ref: str, *, auth: Credentials | None = None, progress: bool = True,
          timeout: int = 600) -> Fetched:
    """Pull ``ref`` and report each layer: downloaded ("Pull complete", with its size)
    or skipped because the engine already had it ("Already exists")."""
    import pandas as pd

    repo, version = split(ref)
    api = engine.client(timeout=timeout)
    kwargs = {"auth_config": auth.auth_config()} if auth else {}
    with _Progress(progress, f"pull {_short(ref)}") as bar:
        try:
            for chunk in api.api.pull(repo, tag=version, stream=True, decode=True, **kwargs):
                if "error" in chunk:
                    raise _explain("pull", ref, chunk["error"])
                bar.update(chunk)
        except docker.errors.APIError as exc:
            raise _explain("pull", ref, exc.explanation or str(exc)) from None
    layers = pd.DataFrame([{"layer": layer, "status": bar.status.get(layer, ""),
                            "bytes_fetched": bar.layers.get(layer, (0, 0))[1]}
                           for layer in bar.order], columns=["layer", "status", "bytes_fetched"])
    return Fetched(api.images.get(ref), layers)


def _short(ref: str) -> str:
    """A reference short enough for a progress bar (digests cut to 12 hex digits)."""
    return re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]+", r"\1…", ref)


def _explain(action: str, ref: str, message: str) -> RegistryError:
    host = host_of(ref) or "Docker Hub"
    low = message.lower()
    if any(k in low for k in ("connection refused", "no such host", "dial tcp",
                              "i/o timeout", "network is unreachable", "eof")):
        hint = ("start it: `cloudlab services up registry` (or cl.services.registry())"
                if host.startswith(("127.0.0.1", "localhost")) else "check the network")
        return RegistryError(f"cannot {action} {ref}: the registry at {host} does not answer; "
                             f"{hint}")
    if any(k in low for k in ("no basic auth", "unauthorized", "authentication required",
                              "denied")):
        return RegistryError(f"cannot {action} {ref}: {host} refused the credentials or needs "
                             "a login (pass auth=cl.registry.Credentials(...))")
    if "manifest unknown" in low or "not found" in low:
        return RegistryError(f"cannot {action} {ref}: {host} has no such image or tag")
    return RegistryError(f"cannot {action} {ref}: {message}")


class _Progress:
    """Byte progress over all layers of a push or pull stream (a tqdm bar)."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled = enabled
        self.desc = desc
        self.layers: dict[str, tuple[int, int]] = {}
        self.status: dict[str, str] = {}  # each layer's latest status line
        self.order: list[str] = []  # layers in the order the engine first mentioned them
        self.bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=0, desc=self.desc, unit="B", unit_scale=True,
                            unit_divisor=1024)
        return self

    def update(self, chunk: Mapping[str, Any]) -> None:
        layer, status = chunk.get("id", ""), chunk.get("status", "")
        detail = chunk.get("progressDetail") or {}
        if layer and status and not status.startswith(("Pulling from", "Digest", "Status")):
            if layer not in self.status:
                self.order.append(layer)
            self.status[layer] = status
        if layer and detail.get("total"):
            self.layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif layer and status in ("Pushed", "Layer already exists", "Pull complete",
                                  "Already exists") and layer in self.layers:
            total = self.layers[layer][1]
            self.layers[layer] = (total, total)
        if self.bar is not None:
            self.bar.total = sum(t for _, t in self.layers.values())
            self.bar.n = sum(c for c, _ in self.layers.values())
            if status and not layer:
                self.bar.set_postfix_str(status[:60], refresh=False)
            self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------- HTTP API v2 + digests
def _url(registry: str | None, cfg: Settings | None) -> str:
    registry = registry or (cfg or settings()).registry_host
    if registry.startswith(("http://", "https://")):
        return registry.rstrip("/")
    local = registry.startswith(("127.0.0.1", "localhost"))
    return f"{'http' if local else 'https'}://{registry}"


def api_get(path: str, *, registry: str | None = None, auth: Credentials | None = None,
            method: str = "GET", headers: Mapping[str, str] | None = None,
            cfg: Settings | None = None) -> requests.Response:
    """Call the registry HTTP API v2 (basic auth, or the bearer-token dance when asked)."""
    url = _url(registry, cfg) + path
    creds = (auth.username, auth.password) if auth else None
    headers = dict(headers or {})
    try:
        reply = requests.request(method, url, headers=headers, auth=creds, timeout=10)
        challenge = reply.headers.get("WWW-Authenticate", "")
        if reply.status_code == 401 and challenge.lower().startswith("bearer"):
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            realm = params.pop("realm", "")
            token = requests.get(realm, params=params, auth=creds, timeout=10)
            token.raise_for_status()
            value = token.json().get("token") or token.json().get("access_token")
            headers["Authorization"] = f"Bearer {value}"
            reply = requests.request(method, url, headers=headers, timeout=10)
    except requests.ConnectionError:
        raise RegistryError(f"the registry at {url.split('/v2')[0]} does not answer; start "
                            "it: `cloudlab services up registry`") from None
    if reply.status_code == 401:
        raise RegistryError(f"{url}: 401 unauthorized (auth is on: pass auth=Credentials(...))")
    if reply.status_code == 404:
        raise RegistryError(f"{url}: 404 no such repository or tag")
    reply.raise_for_status()
    return reply


def _path(repository: str) -> str:
    """A repository path of the reference grammar, or a RegistryError (never a URL)."""
    from .imageref import ReferenceError, check_repository

    try:
        return check_repository(repository)
    except ReferenceError as exc:
        raise RegistryError(str(exc)) from None


def _version(ref: str) -> str:
    from .imageref import ReferenceError, check_version

    try:
        return check_version(ref)
    except ReferenceError as exc:
        raise RegistryError(str(exc)) from None


def repositories(registry: str | None = None, *, auth: Credentials | None = None,
                 cfg: Settings | None = None) -> list[str]:
    """``GET /v2/_catalog``: the repositories in a registry."""
    return api_get("/v2/_catalog", registry=registry, auth=auth, cfg=cfg).json()["repositories"]


def tags(repository: str, registry: str | None = None, *, auth: Credentials | None = None,
         cfg: Settings | None = None) -> list[str]:
    """``GET /v2/<repository>/tags/list``: the tags of a repository."""
    body = api_get(f"/v2/{_path(repository)}/tags/list", registry=registry, auth=auth,
                   cfg=cfg).json()
    return sorted(body.get("tags") or [])


def manifest_digest(repository: str, ref: str = "latest", registry: str | None = None, *,
                    auth: Credentials | None = None, cfg: Settings | None = None) -> str:
    """``HEAD /v2/<repository>/manifests/<ref>``: the digest the registry serves.

    Both parts must follow the reference grammar: a path such as ``ada/../classmate``
    would be normalised by HTTP into another student's repository.
    """
    reply = api_get(f"/v2/{_path(repository)}/manifests/{_version(ref)}", registry=registry,
                    auth=auth, method="HEAD", headers={"Accept": MANIFEST_TYPES}, cfg=cfg)
    return reply.headers["Docker-Content-Digest"]


def delete(repository: str, ref: str, registry: str | None = None, *,
           auth: Credentials | None = None, cfg: Settings | None = None) -> str:
    """``DELETE /v2/<repository>/manifests/<digest>``: remove an image (every tag of it).

    Needs a registry with deletes enabled (the local one has). Returns the digest.
    """
    digest = ref if ref.startswith("sha256:") else manifest_digest(
        repository, ref, registry, auth=auth, cfg=cfg)
    api_get(f"/v2/{_path(repository)}/manifests/{_version(digest)}", registry=registry,
            auth=auth, method="DELETE", cfg=cfg)
    return digest


def remote_digest(ref: str, auth: Credentials | None = None) -> str:
    """The manifest digest of ``ref`` as the registry reports it, asked through the engine.

    Works for any registry the engine can reach (Docker Hub and ECR included).
    """
    api = engine.client(timeout=60)
    try:
        info = api.api.inspect_distribution(ref, auth_config=auth.auth_config() if auth else None)
    except docker.errors.APIError as exc:
        raise _explain("inspect", ref, exc.explanation or str(exc)) from None
    return info["Descriptor"]["digest"]


def local_digests(image: str) -> dict[str, str]:
    """The ``RepoDigests`` of a local image: repository -> digest it was pushed/pulled as."""
    api = engine.client(timeout=30)
    try:
        found = api.images.get(image)
    except docker.errors.ImageNotFound:
        raise RegistryError(f"no local image {image!r}") from None
    return dict(d.split("@", 1) for d in found.attrs.get("RepoDigests") or [])


def digest_matches(ref: str, auth: Credentials | None = None) -> bool:
    """Whether the local image's recorded digest equals the one the registry serves."""
    repo, _ = split(ref)
    local = local_digests(ref).get(repo)
    return local is not None and local == remote_digest(ref, auth)


# ----------------------------------------------------------------- local registry auth
def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (the only scheme the registry accepts).

    >>> import bcrypt
    >>> user, hashed = htpasswd_line("ada", "s3cret").split(":", 1)
    >>> user, bcrypt.checkpw(b"s3cret", hashed.encode())
    ('ada', True)
    """
    if not username or ":" in username:
        raise ValueError(f"username {username!r} must be non-empty and contain no ':'")
    if not password:
        raise ValueError("password must not be empty")
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"{username}:{hashed}"


def enable_auth(service, users: Mapping[str, str]) -> None:
    """Turn on htpasswd auth on a local ``Registry`` service (restarted when running)."""
    if not users:
        raise ValueError("give at least one user: {'name': 'password'}")
    service.dir.mkdir(parents=True, exist_ok=True)
    service.htpasswd.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in users.items()))
    service.htpasswd.chmod(0o600)
    service.restart()


def disable_auth(service) -> None:
    """Turn auth off again (restarted when running); idempotent."""
    existed = service.htpasswd.exists()
    service.htpasswd.unlink(missing_ok=True)
    if existed:
        service.restart()


@contextlib.contextmanager
def auth(service, username: str, password: str) -> Iterator[Credentials]:
    """Auth on for the duration of a ``with`` block, off again after (even on errors)."""
    try:
        enable_auth(service, {username: password})
        yield Credentials(username, password, f"{service.cfg.host}:{service.port}")
    finally:
        disable_auth(service)


# ------------------------------------------------------------------------------ Docker Hub
def dockerhub_credentials(prompt: bool = False, cfg: Settings | None = None
                          ) -> Credentials | None:
    """Docker Hub login from ``CLOUDLAB_DOCKERHUB_USER`` + ``CLOUDLAB_DOCKERHUB_TOKEN``.

    With ``prompt=True`` what is missing is asked for (the token with a password prompt,
    which works in Jupyter too), so it never appears in a notebook or its outputs.
    None when there is no login.
    """
    cfg = cfg or settings()
    user = cfg.dockerhub_user or os.environ.get(USER_VAR, "")
    token = os.environ.get(TOKEN_VAR, "")
    if prompt and not user:
        user = input("Docker Hub user name: ").strip()
    if prompt and user and not token:
        token = getpass.getpass(f"Docker Hub access token for {user}: ").strip()
    if not (user and token):
        return None
    return Credentials(user, token, "")


def dockerhub_reason(creds: Credentials | None = None, cfg: Settings | None = None) -> str:
    """Why the Docker Hub parts are skipped here ('' when they can run)."""
    if creds is None and dockerhub_credentials(cfg=cfg) is None:
        return (f"no Docker Hub login: set {USER_VAR} and {TOKEN_VAR} (an access token from "
                "your Docker Hub account settings, not your password) before starting Jupyter, "
                "or ask to be prompted")
    if not _hub_reachable():
        return "Docker Hub is not reachable from this machine (offline)"
    return ""


def _hub_reachable() -> bool:
    import socket

    host, port = PUBLIC_REGISTRIES["Docker Hub"]
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def login(creds: Credentials) -> str:
    """Check a login with the registry through the engine (stores nothing on disk)."""
    api = engine.client(timeout=60)
    try:
        reply = api.login(creds.username, creds.password, registry=creds.registry or None,
                          reauth=True)
    except docker.errors.APIError as exc:
        raise _explain("log in to", creds.registry or "Docker Hub",
                       exc.explanation or str(exc)) from None
    return reply.get("Status", "Login Succeeded")


def logout(registry: str = "") -> None:
    """Remove stored credentials for ``registry`` ('' = Docker Hub), as ``docker logout``."""
    if which("docker") is None:
        return
    run(["docker", "logout", *([registry] if registry else [])], check=False, timeout=30)


# ------------------------------------------------------------------------------------ ECR
def ecr_repository(name: str, cfg: Settings | None = None) -> dict[str, Any]:
    """Create (or find) an ECR repository tagged with the run id; its description."""
    from . import aws

    cfg = cfg or settings()
    ecr = aws.client("ecr", cfg)
    try:
        return ecr.create_repository(repositoryName=name, tags=aws.tags(cfg))["repository"]
    except ecr.exceptions.RepositoryAlreadyExistsException:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]


def ecr_delete(name: str, cfg: Settings | None = None) -> None:
    """Delete an ECR repository and its images; idempotent."""
    from . import aws

    ecr = aws.client("ecr", cfg or settings())
    with contextlib.suppress(ecr.exceptions.RepositoryNotFoundException):
        ecr.delete_repository(repositoryName=name, force=True)


def ecr_login(cfg: Settings | None = None) -> Credentials:
    """An ECR login from ``get_authorization_token`` (valid 12 hours)."""
    from . import aws

    data = aws.client("ecr", cfg or settings()).get_authorization_token()
    entry = data["authorizationData"][0]
    user, _, password = base64.b64decode(entry["authorizationToken"]).decode().partition(":")
    registry = entry["proxyEndpoint"].split("://", 1)[-1].rstrip("/")
    return Credentials(user, password, registry)


def ecr_push_reason(cfg: Settings | None = None) -> str:
    """Why an image cannot be pushed to ECR here ('' when it can)."""
    cfg = cfg or settings()
    if cfg.aws_mode != "aws":
        return ("pushing to ECR needs real AWS (CLOUDLAB_AWS_MODE=aws): the local moto "
                "server creates repositories and login tokens but serves no image storage")
    return ""


def ecr_push(image: str, repository: str, version: str = "latest",
             cfg: Settings | None = None, progress: bool = True) -> str:
    """Tag ``image`` into an ECR repository and push it (real AWS only); the digest."""
    cfg = cfg or settings()
    if reason := ecr_push_reason(cfg):
        raise UnavailableError(reason)
    uri = ecr_repository(repository, cfg)["repositoryUri"]
    creds = ecr_login(cfg)
    return push(tag(image, f"{uri}:{version}"), auth=creds, progress=progress)
