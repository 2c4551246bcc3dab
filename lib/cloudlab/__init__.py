"""cloudlab: the helper library of the workbook *Virtualization, Containers and Elasticity*.

Notebooks do ``import cloudlab as cl`` and call short verbs named after what they teach.
Submodules load on first use, so importing the package is instant.

>>> import cloudlab as cl
>>> cl.settings().aws_mode in ("local", "aws")
True
"""

from __future__ import annotations

import importlib
from typing import Any

from .checks import check
from .config import configure, settings
from .errors import CloudlabError, CommandError, ConfigError, ServiceError, UnavailableError

__version__ = "0.1.0"

_SUBMODULES = ("aws", "busybox", "ec2", "efs", "multicloud", "nfsops", "pricing", "vm",
               "cleanup", "cli", "config", "doctor", "engine", "errors", "images", "lifecycle",
               "ports", "proc", "runner", "services", "docker", "lint", "registry", "project",
               "checks", "grading", "hub", "hubaccess", "hubexchange", "userenv",
               # the chapter's second half: one subject each
               "k8s", "hpa", "manifests", "prometheus", "loadtest", "predict", "swarm",
               "autoscale", "alerting", "dr")

__all__ = ["CloudlabError", "CommandError", "ConfigError", "ServiceError", "UnavailableError",
           "check", "configure", "settings", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'cloudlab' has no attribute {name!r}")

