"""How ``make test`` splits the suite into lanes: separate pytest processes side by side.

The tests wait on real control loops (a kubelet, Prometheus, a grading sandbox) more than
they compute, so more lanes than cores still shortens the wall clock. A lane gets whole
test files (their module fixtures stay in one process). Each run records how long every
file took (``record``, called by tests/conftest.py); the next run balances the service
files over the service lanes with those figures, longest first into the lane that ends
soonest. A machine with no record of its own uses the figures committed in ``BASELINE``
(measured here); a file in neither counts as ``GUESS_S``.

    >>> plan({"a.py": 300, "b.py": 200, "c.py": 100, "d.py": 90}, lanes=2)
    [['a.py', 'd.py'], ['b.py', 'c.py']]

    .venv/bin/python -m tests.lanes 2     # the files of each of two service lanes, a line each
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_TIERS = ("integration", "grading", "browser")
GUESS_S = 60.0
BASELINE = Path(__file__).with_name("lane-seconds.json")
RECORD = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cloudlab" / \
    "test-durations.json"


_WAITED = [0.0]  # seconds this process waited for machine locks, not yet left out


def waited(seconds: float) -> None:
    """Note a wait for a machine lock (``tests.conftest.machine_lock``). It is kept here
    because pytest loads tests/conftest.py twice, as ``conftest`` for its hooks and as
    ``tests.conftest`` for the test files that import it: this module is loaded once."""
    _WAITED[0] += seconds


def work(duration: float) -> float:
    """``duration`` less the lock waits noted since the last call: a file's own work.

    >>> waited(2.0); work(5.0), work(5.0)
    (3.0, 5.0)
    """
    own, _WAITED[0] = max(0.0, duration - _WAITED[0]), 0.0
    return own


def plan(seconds: Mapping[str, float], lanes: int) -> list[list[str]]:
    """Split files over ``lanes`` lanes so that the longest lane is short (greedy: longest
    file first, into the lane with the least work so far); each lane's files sorted."""
    load = [0.0] * lanes
    out: list[list[str]] = [[] for _ in range(lanes)]
    for name in sorted(seconds, key=lambda n: (-seconds[n], n)):
        i = load.index(min(load))
        load[i] += seconds[name]
        out[i].append(name)
    return [sorted(files) for files in out]


def recorded(path: Path = RECORD) -> dict[str, float]:
    """Seconds per test file from the last runs (empty when none or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def record(seconds: Mapping[str, float], path: Path = RECORD) -> None:
    """Merge this run's seconds per file into the record (the lanes write it at once,
    hence the lock); a file's newest figure replaces its older one."""
    if not seconds:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = recorded(path) | {k: round(v, 1) for k, v in seconds.items()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(merged.items())), indent=1))
        tmp.replace(path)


def service_files(root: Path = ROOT) -> list[str]:
    """The service tiers' test files, relative to the repository."""
    return sorted(str(p.relative_to(root)) for tier in SERVICE_TIERS
                  for p in (root / "tests" / tier).glob("test_*.py"))


def main(argv: list[str]) -> int:
    lanes = int(argv[0]) if argv else 2
    known = recorded(BASELINE) | recorded()
    files = service_files()
    with contextlib.suppress(BrokenPipeError):
        for lane in plan({f: known.get(f, GUESS_S) for f in files}, lanes):
            print(" ".join(lane))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
