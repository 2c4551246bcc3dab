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
