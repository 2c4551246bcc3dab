"""Benchmark: how long people wait for ``make test``, from the runs this machine recorded.

Every ``make test`` appends a line to ``~/.cache/cloudlab/test-times.jsonl``
(``scripts/pytest.sh --lanes``): the lanes' wall clock, the whole command's including
set-up, whether it started in a fresh clone (no venv yet), and whether it passed. This
reports the newest passing run of each kind against its target: a warm ``make test`` in
at most 20 minutes; a fresh clone's ``.ci/run`` (which is ``make test``) in at most 90
minutes, the CI's limit. It runs no tests itself: run ``make test`` first (and once in a
fresh clone, ``d=$(mktemp -d) && git clone . $d/p && cd $d/p && bash .ci/run``).

    .venv/bin/python bench/test_times.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

from _report import Figure, at_most, info, save, skipped

WARM_S, FRESH_S = 20 * 60, 90 * 60
TIMES = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cloudlab" / \
    "test-times.jsonl"


def runs(path: Path = TIMES) -> list[dict]:
    """The recorded runs, oldest first (a torn last line is ignored)."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def main(path: Path = TIMES) -> list[Figure]:
    recorded = [r for r in runs(path) if r.get("passed")]
    if not recorded:
        return skipped(f"no passing make test recorded in {path}: run make test first")
    figures = []
    for fresh, label, bound in ((False, "warm make test (pytest, all lanes)", WARM_S),
                                (True, "fresh-clone .ci/run (set-up + tests)", FRESH_S)):
        kind = [r for r in recorded if r.get("fresh") is fresh]
        if not kind:
            figures.append(info(label, None, "s", "no such run recorded yet"))
            continue
        last = kind[-1]
        when = dt.datetime.fromtimestamp(last["finished"], dt.timezone.utc)
        value = last["total_s"] if fresh else last["pytest_s"]
        figures.append(at_most(label, float(value), "s", bound,
                               f"{when:%Y-%m-%d %H:%M} UTC in {last['checkout']}"))
        if not fresh:
            figures.append(info("warm make test, set-up included", float(last["total_s"]), "s"))
    return figures


if __name__ == "__main__":
    sys.exit(save("test_times", main()))
