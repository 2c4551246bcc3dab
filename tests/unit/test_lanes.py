"""make test's lanes: every service test file runs in exactly one lane, balanced on the
seconds recorded last time."""

from __future__ import annotations

import subprocess
import sys

from tests import lanes


def test_plan_balances_the_longest_lane():
    seconds = {"a": 600, "b": 300, "c": 290, "d": 10, "e": 5}
    split = lanes.plan(seconds, 2)
    assert sorted(f for lane in split for f in lane) == sorted(seconds)
    assert max(sum(seconds[f] for f in lane) for lane in split) == 605


def test_every_service_file_runs_in_exactly_one_lane():
    out = subprocess.run([sys.executable, "-m", "tests.lanes", "3"], cwd=lanes.ROOT,
                         capture_output=True, text=True, check=True).stdout
    files = [f for line in out.splitlines() for f in line.split()]
    assert len(out.splitlines()) == 3
    assert sorted(files) == lanes.service_files()
    assert any(f.startswith("tests/browser/") for f in files)


def test_record_merges_newest_figures(tmp_path):
    path = tmp_path / "seconds.json"
    lanes.record({"tests/x.py": 10.0, "tests/y.py": 3.0}, path)
    lanes.record({"tests/x.py": 12.04}, path)
    assert lanes.recorded(path) == {"tests/x.py": 12.0, "tests/y.py": 3.0}
    path.write_text("{torn")
    assert lanes.recorded(path) == {}



def test_a_wait_for_a_machine_lock_is_not_recorded_as_work(tmp_path, monkeypatch, request):
    """A file that queued behind another lane's real node is not planned as a long file.
    Wired as in a run: the lock as the test files import it, the hook as pytest loaded it
    (pytest loads tests/conftest.py a second time, under another name, for its hooks)."""
    import fcntl
    import tempfile
    import threading
    import time
    from types import SimpleNamespace

    from tests.conftest import machine_lock

    hooks = next(p for p in request.config.pluginmanager.get_plugins()
                 if getattr(p, "__file__", "") == str(lanes.ROOT / "tests" / "conftest.py"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(hooks, "_SECONDS", {})
    lanes.work(0.0)  # nothing noted before this test
    held = open(tmp_path / "cloudlab-tests-demo.lock", "a")  # noqa: SIM115
    fcntl.flock(held, fcntl.LOCK_EX)  # another holder (flock locks are per open file)
    threading.Timer(0.5, lambda: (fcntl.flock(held, fcntl.LOCK_UN), held.close())).start()
    began = time.monotonic()
    with machine_lock(["demo"]):
        time.sleep(0.2)  # the test's own work
    took = time.monotonic() - began
    assert took >= 0.7
    hooks.pytest_runtest_logreport(SimpleNamespace(nodeid="tests/x.py::t", duration=took))
    assert 0.15 <= hooks._SECONDS["tests/x.py"] < 0.45, hooks._SECONDS
