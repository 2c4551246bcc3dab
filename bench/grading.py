"""Benchmark: sandboxed parallel autograde vs plain sequential ``nbgrader autograde``.

60 generated submissions of the ``demo`` fixture assignment (a third correct, a third
partial, a third wrong) are graded twice on this machine, in two identical courses:

* ``cloudlab``: every submission in its own locked-down container, N parallel workers;
* ``nbgrader``: the stock ``nbgrader autograde demo`` command, kernels on the host, one
  submission after another (its only mode).

Each side grades the batch ``--rounds`` times (default 3), alternating which goes first, so
a machine whose speed drifts during the run weighs on both. Both must agree on every score,
every round. Records the median times and the median of the rounds' ratios (target: >= 2x)
in ``bench/results/grading.json`` (see ``bench/_report.py``). The grading image is built
(or found cached) before timing starts.

    .venv/bin/python bench/grading.py [--submissions 60] [--workers N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "grading" / "fixtures"
sys.path.insert(0, str(FIXTURES))

import submissions as S  # noqa: E402
from _report import Figure, at_least, holds, info, save, skipped  # noqa: E402

from cloudlab import engine  # noqa: E402
from cloudlab.grading import Course, autograde, image, release  # noqa: E402

KINDS = ("correct", "partial", "wrong")


def build_course(root: Path, n: int) -> Course:
    shutil.copytree(FIXTURES / "solutions", root / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    course = Course(root)
    release.release(course, "demo")
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        folder = S.make(root, f"student{i:03d}", "partial" if kind == "wrong" else kind)
        if kind == "wrong":  # every answer present but wrong
            text = (folder / "demo.ipynb").read_text()
            text = text.replace("return a + b", "return a - b")
            text = text.replace("squares = [n * n for n in range(1, 6)]", "squares = []")
            (folder / "demo.ipynb").write_text(text)
    return course


def scores(course: Course) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        return {s.student.id: float(s.score) for s in gb.assignment_submissions("demo")}


def ours(course: Course, workers: int, tag: str) -> tuple[float, list]:
    """Seconds to grade every submission with cloudlab, and the results."""
    start = time.perf_counter()
    results = autograde.autograde(course, "demo", workers=workers, timeout=120, image=tag,
                                  progress=False)
    return time.perf_counter() - start, results


def theirs(root: Path) -> float:
    """Seconds for the stock ``nbgrader autograde demo --force`` in the course ``root``."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.perf_counter()
    done = subprocess.run([str(bin_dir / "nbgrader"), "autograde", "demo", "--force"],
                          cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader autograde failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> list[Figure]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=60)
    p.add_argument("--workers", type=int, default=autograde.default_workers())
    p.add_argument("--rounds", type=int, default=3,
                   help="times each side grades the batch, alternating which goes first")
    args = p.parse_args()
    if not engine.available():
        return skipped(f"the sandboxes need a Docker engine ({engine.start_hint()})")

    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-") as tmp:
        mine = build_course(Path(tmp) / "sandboxed", args.submissions)
        host = Path(tmp) / "host"
        shutil.copytree(mine.root, host, symlinks=True)
        tag = image.ensure(mine)
        release.ensure_in_gradebook(mine, "demo")

        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        bad: list = []
        same = True
        for r in range(args.rounds):  # alternate, so a drifting machine hurts both sides
            for side in (("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")):
                if side == "ours":
                    seconds, results = ours(mine, args.workers, tag)
                    bad += [x for x in results if x.status != "graded"]
                else:
                    seconds = theirs(host)
                times[side].append(seconds)
            same = same and scores(mine) == scores(Course(host))
            print(f"round {r + 1}: cloudlab {times['ours'][-1]:.1f} s, nbgrader "
                  f"{times['theirs'][-1]:.1f} s, ratio "
                  f"{times['theirs'][-1] / times['ours'][-1]:.2f}", file=sys.stderr)

        n = args.submissions
        ratios = [t / o for o, t in zip(times["ours"], times["theirs"], strict=True)]
        each = ", ".join(f"{x:.2f}" for x in ratios)
        where = f"{n} submissions of 'demo' ({', '.join(KINDS)}), {os.cpu_count()} cores"
        fast, slow = statistics.median(times["ours"]), statistics.median(times["theirs"])
        return [
            info("cloudlab: sandboxed, parallel", fast, "s",
                 f"median of {args.rounds}; {args.workers} workers, "
                 f"{n / fast:.2f} submissions/s; {where}"),
            info("nbgrader autograde: host, sequential", slow, "s",
                 f"median of {args.rounds}; {n / slow:.2f} submissions/s"),
            at_least("grading ratio (nbgrader / cloudlab)", statistics.median(ratios), "x", 2,
                     f"median of {args.rounds} alternating rounds ({each})"),
            holds("same scores in both gradebooks", same),
            holds("every submission graded by cloudlab", not bad,
                  "; ".join(f"{r.student}: {r.status} ({r.reason})" for r in bad[:5])),
        ]


if __name__ == "__main__":
    raise SystemExit(save("grading", main()))
