"""Shared fixtures. Tiers are folders: unit/, integration/, notebooks/, grading/, browser/."""

from __future__ import annotations

import contextlib
import fcntl
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import cloudlab as cl
from cloudlab import config, engine

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "notebooks", "grading", "browser")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        tier = parts[0] if parts[0] in TIERS else "unit"
        item.add_marker(getattr(pytest.mark, tier))


@contextlib.contextmanager
def machine_lock(names: Iterable[str]) -> Iterator[None]:
    """Hold what is global to the machine (``swarm``: the engine's one Swarm) while a test
    uses it: ``make test``'s two lanes are separate processes, so this is a file lock.
    Names are taken in sorted order, so two holders never wait on each other."""
    with contextlib.ExitStack() as stack:
        for name in sorted(set(names)):
            f = stack.enter_context(open(Path(tempfile.gettempdir()) /
                                         f"cloudlab-tests-{name}.lock", "w"))
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_settings(state_dir: Path) -> config.Settings:
    """Settings with a private state dir and free ports: never touches the user's services."""
    return config.load(
        env={},
        state_dir=state_dir,
        moto_port=free_port(),
        registry_port=free_port(),
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
    )


@pytest.fixture
def cfg(tmp_path: Path) -> config.Settings:
    """Settings with a private state dir and free ports: never touches the user's services."""
    return private_settings(tmp_path / "state")


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker client, starting dockerd when possible; skips with the reason otherwise."""
    try:
        engine.up()
    except cl.CloudlabError as exc:
        pytest.skip(f"needs a Docker engine: {exc}")
    return engine.client()
