"""Benchmark: sandboxed parallel autograde vs plain sequential ``nbgrader autograde``.

60 generated submissions of the ``demo`` fixture assignment (a third correct, a third
partial, a third wrong) are graded twice on this machine, in two identical courses:

* ``cloudlab``: every submission in its own locked-down container, N parallel workers;
* ``nbgrader``: the stock ``nbgrader autograde demo`` command, kernels on the host, one
  submission after another (its only mode).

Both runs must agree on every score. Records both times and the ratio (target: >= 2x) in
``bench/results/grading.json`` (see ``bench/_report.py``). The grading image is built (or
found cached) before timing starts.

    .venv/bin/python bench/grading.py [--submissions 60] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def main() -> list[Figure]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=60)
    p.add_argument("--workers", type=int, default=autograde.default_workers())
    args = p.parse_args()
    if not engine.available():
        return skipped(f"the sandboxes need a Docker engine ({engine.start_hint()})")

    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-") as tmp:
        ours = build_course(Path(tmp) / "sandboxed", args.submissions)
        theirs = Path(tmp) / "host"
        shutil.copytree(ours.root, theirs, symlinks=True)
        tag = image.ensure(ours)
        release.ensure_in_gradebook(ours, "demo")

        start = time.perf_counter()
        results = autograde.autograde(ours, "demo", workers=args.workers, timeout=120,
                                      image=tag)
        sandboxed = time.perf_counter() - start
        bad = [r for r in results if r.status != "graded"]

        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
                                    f"{os.environ.get('PATH', '')}")
        start = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde",
                               "demo", "--force"], cwd=theirs, env=env,
                              capture_output=True, text=True)
        host = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"nbgrader autograde failed:\n{done.stderr[-3000:]}")

        n = args.submissions
        same = scores(ours) == scores(Course(theirs))
        where = f"{n} submissions of 'demo' ({', '.join(KINDS)}), {os.cpu_count()} cores"
        return [
            info("cloudlab: sandboxed, parallel", sandboxed, "s",
                 f"{args.workers} workers, {n / sandboxed:.2f} submissions/s; {where}"),
            info("nbgrader autograde: host, sequential", host, "s",
                 f"{n / host:.2f} submissions/s"),
            at_least("grading ratio (nbgrader / cloudlab)", host / sandboxed, "x", 2),
            holds("same scores in both gradebooks", same),
            holds("every submission graded by cloudlab", not bad,
                  "; ".join(f"{r.student}: {r.status} ({r.reason})" for r in bad)),
        ]


if __name__ == "__main__":
    raise SystemExit(save("grading", main()))
