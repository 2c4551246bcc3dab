"""A pool of namespaces that graders reuse: one per concurrent grader, never shared, never dirty.

Creating a namespace and deleting it again is the costliest thing a grader asks of a
control plane: the namespace controller's deletion walks every resource type the API
server serves, and the namespace's service account, Role, RoleBinding and token are
written anew each time. A :class:`NamespacePool` makes each namespace once and hands it
out again and again:

- **exclusive**: a lease holds an ``flock`` on its slot's file, so two graders (processes
  or threads) never hold the same namespace; a grader that dies releases its lock with it,
  and the namespace it left is emptied by the next holder before use;
- **clean**: on release every object of the kinds a grader may leave behind (``kinds``:
  what a submission can create and what controllers make from it) is deleted, and one
  poll waits until none is left, stripping the finalizers that would keep one (a
  submission may set them on its objects and on its pods' template). Only then is the
  slot marked clean;
- **discarded when in doubt**: if emptying fails or times out, the namespace is deleted
  and the slot's next lease makes a fresh one: a dirty namespace is never reused.

``prepare(api, namespace)`` is called when a namespace is made (and again when the data it
returned expires): it creates what the namespace needs (a service account, its RBAC) and
returns JSON data kept with the slot (a token, say; an ``expires`` key in it, in epoch
seconds, makes it stale sooner than ``ttl``). :meth:`NamespacePool.drain` deletes
every namespace of the pool when grading ends.

>>> pool = NamespacePool(api, folder, prepare=lambda api, ns: {},     # doctest: +SKIP
...                      kinds=("Deployment", "ReplicaSet", "Pod"))
>>> with pool.lease() as lease:                                        # doctest: +SKIP
...     api.apply(deployment, namespace=lease.namespace)
>>> pool.drain()                                                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CloudlabError
from .api import Api, ApiError, kind_path

MAX_SLOTS = 64
# Deleted in this order: the HPA first (it would scale what is being deleted), then the
# owners before what they own (a controller racing the delete re-creates nothing for long).
DELETE_ORDER = ("HorizontalPodAutoscaler", "Deployment", "ReplicaSet", "Pod", "Service",
                "Endpoints", "EndpointSlice")


def folder_for(kubeconfig: str | Path, context: str | None = None) -> Path:
    """Where the pool of the cluster a kubeconfig (and context) names keeps its slots:
    under the workbook's state dir, one folder per kubeconfig file and context.

    >>> folder_for("/a/kubeconfig") == folder_for("/a/kubeconfig", None)
    True
    """
    import hashlib

    from ..config import settings

    key = f"{os.path.realpath(kubeconfig)}|{context or ''}"
    return settings().state_dir / "k8s-pools" / hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Lease:
    """One namespace held exclusively until :meth:`NamespacePool.release`."""

    namespace: str
    data: dict[str, Any]
    slot: int
    fresh: bool  # made for this lease (not reused)
    _fd: int = field(default=-1, repr=False)


class NamespacePool:
    """Namespaces of one cluster reused one grader at a time (see the module's doc).

    ``folder``: where the slots' lock files and state live (one folder per cluster and
    pool; made private). ``labels``: put on every namespace. ``ttl``: seconds the data of
    ``prepare`` stays good (a token's lifetime); a lease needing it longer than what is
    left (``need`` seconds) calls ``prepare`` again.
    """

    def __init__(self, api: Api, folder: str | Path, *,
                 prepare: Callable[[Api, str], dict[str, Any]], kinds: Sequence[str],
                 prefix: str = "pool", labels: Mapping[str, str] | None = None,
                 ttl: float = 3600, reset_timeout: float = 20) -> None:
        unknown = [k for k in kinds if k not in DELETE_ORDER]
        if unknown:
            raise CloudlabError(f"the pool cannot empty {', '.join(unknown)}; it knows "
                                f"{', '.join(DELETE_ORDER)}")
        self.api, self.prepare, self.prefix = api, prepare, prefix
        self.kinds = tuple(k for k in DELETE_ORDER if k in kinds)
        self.labels = dict(labels or {})
        self.ttl, self.reset_timeout = ttl, reset_timeout
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # the slots keep service-account tokens

    # -- leasing ---------------------------------------------------------------------
    def acquire(self, need: float = 600) -> Lease:
        """A namespace no other grader holds, emptied and ready (made if need be).
        ``need``: seconds the lease's data (a token) must stay good."""
        slot, fd = self._lock()
        try:
            state = self._read(fd)
            reused = self._reuse(state, need) if state.get("clean") else None
            if reused is None:
                if state.get("namespace"):  # dirty or gone: never reused
                    self._discard(state["namespace"])
                state = self._make()
            else:
                state = reused
            self._write(fd, {**state, "clean": False})
            return Lease(state["namespace"], state["data"], slot, reused is None, fd)
        except BaseException:
            os.close(fd)
            raise

    def release(self, lease: Lease) -> bool:
        """Empty the namespace and give it back; True when it will be reused. If it cannot
        be emptied (an error, a timeout) it is deleted and the slot starts afresh."""
        if lease._fd < 0:
            return False
        try:
            clean = self._empty(lease.namespace)
            if clean:
                self._write(lease._fd, {**self._read(lease._fd), "clean": True})
            else:
                self._discard(lease.namespace)
                self._write(lease._fd, {})
            return clean
        finally:
            os.close(lease._fd)
            lease._fd = -1

    @contextlib.contextmanager
    def lease(self, need: float = 600) -> Iterator[Lease]:
        """``acquire`` / ``release`` around a block (released on any exception too)."""
        got = self.acquire(need)
        try:
            yield got
        finally:
            self.release(got)

    def drain(self) -> list[str]:
        """Delete every namespace the pool made (grading is over); the names deleted.
        Slots held right now are skipped (their holder releases them)."""
        gone = []
        for path in sorted(self.folder.glob("slot-*.json")):
            fd = os.open(path, os.O_RDWR)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                ns = self._read(fd).get("namespace")
                if ns:
                    self._discard(ns)
                    gone.append(ns)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return gone

    # -- inside ----------------------------------------------------------------------
    def _lock(self) -> tuple[int, int]:
        for slot in range(MAX_SLOTS):
            fd = os.open(self.folder / f"slot-{slot}.json", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return slot, fd
        raise CloudlabError(f"all {MAX_SLOTS} namespaces of the pool in {self.folder} are "
                            "in use: fewer concurrent graders, please")

    def _reuse(self, state: dict[str, Any], need: float) -> dict[str, Any] | None:
        """The slot's state if its namespace is still the one it made and alive."""
        ns = state["namespace"]
        try:  # the cluster may have been re-created since: the same uid or nothing
            meta = self.api.get("Namespace", ns).get("metadata") or {}
        except ApiError:
            return None
        if meta.get("uid") != state.get("uid") or meta.get("deletionTimestamp"):
            return None
        if float(state.get("expires", 0)) - time.time() < need:
            data = self.prepare(self.api, ns)
            state = {**state, "data": data, "expires": self._expires(data)}
        return state

    def _make(self) -> dict[str, Any]:
        for attempt in range(3):  # created, never adopted: a taken name is another's
            ns = f"{self.prefix}-{secrets.token_hex(4)}"
            try:
                made = self.api.create({"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": ns, "labels": self.labels}})
                break
            except ApiError as exc:
                if exc.status != 409 or attempt == 2:
                    raise
        try:
            data = self.prepare(self.api, ns)
        except BaseException:
            self._discard(ns)
            raise
        return {"namespace": ns, "uid": made["metadata"]["uid"], "data": data,
                "expires": self._expires(data)}

    def _expires(self, data: Mapping[str, Any]) -> float:
        """When ``prepare``'s data goes stale: ``ttl`` from now, or its own ``expires``
        (epoch seconds) if sooner."""
        until = time.time() + self.ttl
        with contextlib.suppress(TypeError, ValueError):
            until = min(until, float(data.get("expires", until)))
        return until

    def _empty(self, ns: str) -> bool:
        """Delete every object of the pool's kinds in ``ns``; True once none is left."""
        from ..proc import wait_for

        try:
            for kind in self.kinds:
                body: dict[str, Any] = {"propagationPolicy": "Background"}
                if kind == "Pod":  # no kubelet waits on them: gone at once
                    body["gracePeriodSeconds"] = 0
                self.api.delete_collection(kind, namespace=ns, body=body)
            wait_for(lambda: not self._unblock(ns), timeout=self.reset_timeout, interval=0.1,
                     what=f"{ns} to be emptied")
            return True
        except Exception:
            return False

    def _unblock(self, ns: str) -> int:
        """Strip the finalizers of every object of the pool's kinds left in ``ns`` (they are
        being deleted: nothing but a finalizer keeps them); how many objects are left."""
        left = 0
        for kind in self.kinds:
            for obj in self.api.list(kind, namespace=ns):
                left += 1
                meta = obj.get("metadata") or {}
                if meta.get("finalizers"):
                    with contextlib.suppress(ApiError):  # gone meanwhile
                        self.api.request("PATCH", kind_path(kind, meta.get("name"),
                                                            namespace=ns),
                                         body={"metadata": {"finalizers": None}},
                                         content_type="application/merge-patch+json")
        return left

    def _discard(self, ns: str) -> None:
        """Delete the namespace, first stripping finalizers a submission left in it (they
        would hold it ``Terminating`` for ever)."""
        with contextlib.suppress(Exception):
            self._unblock(ns)
        with contextlib.suppress(Exception):
            self.api.delete("Namespace", ns)

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
        try:
            got = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return got if isinstance(got, dict) else {}

    @staticmethod
    def _write(fd: int, state: Mapping[str, Any]) -> None:
        raw = json.dumps(state).encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, raw)
