"""One settings object for the whole workbook.

Precedence: an explicit argument beats a ``CLOUDLAB_*`` environment variable, which beats
the default. Bad values are rejected with the name of the variable that carried them.

>>> s = load(aws_mode="local", env={"CLOUDLAB_REGISTRY_PORT": "5001"})
>>> s.aws_mode, s.registry_port
('local', 5001)
>>> load(env={"CLOUDLAB_DOCKER": "maybe"})
Traceback (most recent call last):
...
cloudlab.errors.ConfigError: CLOUDLAB_DOCKER='maybe' is not one of: auto, on, off
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

PREFIX = "CLOUDLAB_"
LABEL = "org.cloudlab.run-id"  # every container, volume, network and instance carries it
# public registries the workbook may reach (the doctor probes them, Docker Hub pushes use them)
PUBLIC_REGISTRIES = {"Docker Hub": ("registry-1.docker.io", 443)}

_CHOICES: dict[str, tuple[str, ...]] = {
    "aws_mode": ("local", "aws"),
    "registry": ("local", "dockerhub", "ecr"),
    "docker": ("auto", "on", "off"),
}


def _project_root() -> Path | None:
    """The checkout this package was installed from in editable mode, if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() and (root / "notebooks").is_dir() else None


def _default_state_dir() -> Path:
    root = _project_root()
    return (root / ".cloudlab") if root else Path.home() / ".cloudlab"


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class Settings:
    """Every knob of the workbook; see :func:`load` for where values come from."""

    aws_mode: str = "local"  # local = moto server on 127.0.0.1, aws = real AWS (costs money)
    aws_region: str = "us-east-1"
    aws_allow_launch: bool = False  # explicit opt-in before anything is launched on real AWS
    moto_port: int = 5050
    registry_port: int = 5000
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    registry: str = "local"  # where pushes go: local registry, Docker Hub or ECR
    dockerhub_user: str = ""
    docker: str = "auto"  # auto = use Docker when it answers; on = require it; off = never
    base_image: str = "python:3.11-slim"
    state_dir: Path = field(default_factory=_default_state_dir)
    run_id: str = field(default_factory=_new_run_id)
    host: str = "127.0.0.1"

    @property
    def moto_url(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    @property
    def registry_host(self) -> str:
        return f"{self.host}:{self.registry_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.host}:{self.alertmanager_port}"

    def labels(self) -> dict[str, str]:
        """Labels for anything this run creates, so ``cloudlab cleanup`` can find it."""
        return {LABEL: self.run_id}

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load(env: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
    """Build :class:`Settings` from explicit arguments, then ``CLOUDLAB_*`` variables."""
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(Settings)}
    unknown = set(explicit) - set(known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name in explicit and explicit[name] is not None:
            values[name] = _coerce(name, f, explicit[name], source=name)
        elif (var := PREFIX + name.upper()) in env and env[var] != "":
            values[name] = _coerce(name, f, env[var], source=var)
    return Settings(**values)


def _coerce(name: str, f: dataclasses.Field, raw: Any, source: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            value: Any = int(raw)
            if not 1 <= value <= 65535:
                raise ValueError
        elif kind == "bool":
            value = _bool(raw)
        elif kind == "Path":
            value = Path(raw).expanduser()
        else:
            value = str(raw).strip()
    except (TypeError, ValueError):
        expected = {"int": "a port number 1-65535", "bool": "true or false"}.get(kind, kind)
        raise ConfigError(f"{source}={raw!r} is not {expected}") from None
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{source}={raw!r} is not one of: {', '.join(_CHOICES[name])}")
    return value


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)


_current: Settings | None = None


def settings() -> Settings:
    """The settings of this process (loaded once, from the environment)."""
    global _current
    if _current is None:
        _current = load()
    return _current


def configure(**explicit: Any) -> Settings:
    """Replace this process's settings, e.g. ``configure(aws_mode="aws")`` in a notebook.

    The run id is kept, so everything the notebook created stays findable by cleanup.
    """
    global _current
    explicit.setdefault("run_id", settings().run_id)
    _current = load(**explicit)
    return _current
