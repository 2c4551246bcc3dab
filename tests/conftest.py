"""Shared fixtures. Tiers are folders: unit/, integration/, notebooks/, grading/, browser/.

``CLOUDLAB_STRICT=1`` (CI sets it) turns every skip into a failure, except the skips whose
reason comes from :func:`outside`: what no setup of this machine can provide (real AWS,
Docker Hub, a GPU, kind's node image). A missing binary, service or engine is a failure
there, so a broken setup cannot give a green run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import cloudlab as cl
from cloudlab import config, engine, ports
from cloudlab.proc import file_lock
from tests import lanes

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "notebooks", "grading", "browser")
STRICT = os.environ.get("CLOUDLAB_STRICT") == "1"
OUTSIDE = "outside this machine: "  # the reason's prefix of a skip that strict mode keeps


def outside(reason: str) -> str:
    """A skip reason for what no setup here can fix; strict mode keeps these skips.

    >>> outside("needs a GPU")
    'outside this machine: needs a GPU'
    """
    return OUTSIDE + reason


def _strict(report: pytest.TestReport | pytest.CollectReport, reason: str) -> None:
    if STRICT and report.skipped and not reason.startswith(OUTSIDE):
        report.outcome = "failed"
        report.longrepr = (f"CLOUDLAB_STRICT=1: this skip can be fixed on this machine, so it "
                           f"fails: {reason}")


def _reason(excinfo: pytest.ExceptionInfo | None) -> str:
    if excinfo is None or not isinstance(excinfo.value, pytest.skip.Exception):
        return ""
    return str(excinfo.value.msg or "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = (yield).get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        _strict(report, _reason(call.excinfo))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = (yield).get_result()
    if report.skipped:
        longrepr = report.longrepr
        _strict(report, longrepr[2] if isinstance(longrepr, tuple) else str(longrepr))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        tier = parts[0] if parts[0] in TIERS else "unit"
        item.add_marker(getattr(pytest.mark, tier))


_SECONDS: dict[str, float] = {}  # this run's seconds per test file, for tests/lanes.py


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # a file's own work, not the time it queued behind another lane's hold of the machine
    name = report.nodeid.split("::", 1)[0]
    _SECONDS[name] = _SECONDS.get(name, 0.0) + lanes.work(report.duration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # make test's lanes ask for it; an interrupted run's partial figures are not kept
    if os.environ.get("CLOUDLAB_RECORD_DURATIONS") == "1" and exitstatus in (0, 1):
        lanes.record(_SECONDS)


@contextlib.contextmanager
def machine_lock(names: Iterable[str]) -> Iterator[None]:
    """Hold what is global to the machine (``swarm``: the engine's one Swarm) while a test
    uses it: ``make test``'s two lanes are separate processes, so this is a file lock.
    Names are taken in sorted order, so two holders never wait on each other. The wait
    is left out of the file's recorded time (the lane plan balances work, not queueing)."""
    with contextlib.ExitStack() as stack:
        began = time.monotonic()
        for name in sorted(set(names)):
            stack.enter_context(file_lock(Path(tempfile.gettempdir()) /
                                          f"cloudlab-tests-{name}.lock"))
        lanes.waited(time.monotonic() - began)
        yield


def free_port() -> int:
    """A port reserved for this test process until it exits (see :mod:`cloudlab.ports`)."""
    return ports.free_port()


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
    """A Docker client, starting dockerd when possible; skips with the reason otherwise
    (only the tests that ask for it: a machine without an engine runs everything else)."""
    try:
        engine.up()
    except cl.CloudlabError as exc:
        pytest.skip(f"needs a Docker engine: {exc}")
    return engine.client()
