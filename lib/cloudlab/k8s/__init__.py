"""Kubernetes for real, offline: one :class:`Cluster`, three backends, kubectl's verbs.

The default backend, ``kwok``, runs the real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) from binaries cached by ``cloudlab k8s install``,
with kwok's simulated nodes and pods and metrics-server on kwok's emulated usage, and
optionally a real node where pods really run (``real_nodes=1``, :mod:`.node`). ``kind``
and ``kubeconfig`` (any existing cluster) use the same verbs.

>>> import cloudlab as cl
>>> sorted(cl.k8s.BACKENDS)
['kind', 'kubeconfig', 'kwok']
>>> with cl.k8s.Cluster() as k:              # doctest: +SKIP
...     with k.namespace() as ns:
...         k.apply(manifests, namespace=ns)
...         k.wait_ready("app=web", 3, namespace=ns)
"""

from __future__ import annotations

import importlib
from typing import Any

from . import host, install, kwok, node
from .cluster import (
    BACKENDS,
    Availability,
    Cluster,
    availability,
    cluster_name,
    clusters,
    down,
    ours,
    sweep,
    to_yaml,
)
from .install import PINNED, InstallError, installed


def __getattr__(name: str) -> Any:
    """``gke`` on first use: its commands come from cloudlab.multicloud, whose import
    (pandas) costs a second, and code that only talks to a cluster (a grading worker per
    submission) should not pay it."""
    if name == "gke":
        return importlib.import_module(f"{__name__}.gke")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available() -> dict[str, Availability]:
    """Every backend's availability, each with its exact reason."""
    return {b: availability(b) for b in BACKENDS}


__all__ = ["BACKENDS", "PINNED", "Availability", "Cluster", "InstallError", "availability",
           "available", "cluster_name", "clusters", "down", "gke", "host", "install", "installed",
           "kwok", "node", "ours", "sweep", "to_yaml"]
