"""Benchmark: each chapter notebook headless (papermill, ``ci=True``), in seconds.

Targets: each notebook at most 2 minutes with ``ci=True`` (issue 9), the whole chapter at
most 6 minutes on a warm machine (issue 10). Services and images should already be up
(``cloudlab services up``), as in ``make run``. Records ``bench/results/notebooks.json``.

    .venv/bin/python bench/notebooks.py [NOTEBOOK...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _report import Figure, at_most, holds, info, save

from cloudlab import runner

EACH_S, TOTAL_S, JOBS = 120, 360, 2


def main(paths: list[str]) -> list[Figure]:
    chosen = [Path(p) for p in paths] or runner.notebooks()
    figures = []
    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-") as out:
        started = time.monotonic()
        results = runner.run_all(chosen, {"ci": True}, progress=False, jobs=JOBS,
                                 out_dir=Path(out))
        wall = time.monotonic() - started
    for r in results:
        figures.append(at_most(r.notebook, r.seconds, "s", EACH_S,
                               "passed" if r.status == "passed" else f"FAILED: {r.error}"))
    figures.append(holds("every notebook passed", all(r.status == "passed" for r in results)))
    if not paths:  # the total means something only for the whole chapter
        figures.append(at_most("whole chapter (wall clock)", wall, "s", TOTAL_S,
                               f"{len(results)} notebooks, {JOBS} at a time, as make run"))
        figures.append(info("sum of the notebooks' own times", sum(r.seconds for r in results),
                            "s"))
    return figures


if __name__ == "__main__":
    sys.exit(save("notebooks", main(sys.argv[1:])))
