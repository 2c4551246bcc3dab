"""Benchmark: the hello-world image, naive vs optimised Dockerfile.

Targets (issue 4):
* the optimised image is at least 40% smaller than the naive one,
* and within 15 MB of its base image;
* a rebuild after a one-line code change, with a warm cache, takes at most 2 s.

Records its figures in ``bench/results/docker_images.json`` (see ``bench/_report.py``),
prints them and exits 1 when a target is missed.
Run: ``.venv/bin/python bench/docker_images.py`` (or ``make bench``).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from _report import Figure, at_least, at_most, holds, info, save, skipped

import cloudlab as cl

REBUILDS = 3


def main() -> list[Figure]:
    cfg = cl.settings()
    if not cl.engine.available():
        return skipped(f"no Docker engine ({cl.engine.start_hint()})")
    base = cfg.base_image
    full = cl.project.full_base_of(base)
    for tag in (base, full):
        image = cl.images.bootstrap(tag)
        print(f"base {tag}: {image.source}, {cl.images.size(tag) / 1e6:.1f} MB")
    naive_tag, best_tag = f"cloudlab-bench-naive:{cfg.run_id}", f"cloudlab-bench-best:{cfg.run_id}"
    try:
        with tempfile.TemporaryDirectory(prefix="cloudlab-bench-") as tmp:
            folder = cl.project.create(tmp, step="naive", cfg=cfg)
            naive = cl.project.measure(folder, "naive", naive_tag, cfg=cfg)
            best = cl.project.measure(folder, "multi-stage", best_tag, cfg=cfg)
            times = []
            for _ in range(REBUILDS):  # warm cache: each rebuild follows a one-line change
                cl.project.change_code(folder)
                start = time.monotonic()
                cl.docker.build(folder, best_tag, progress=False, cfg=cfg)
                times.append(time.monotonic() - start)
        base_mb = cl.images.size(base) / 1e6
        smaller = 1 - best["size_mb"] / naive["size_mb"]
        over_base = best["size_mb"] - base_mb
        rebuild = statistics.median(times)
        return [
            info("base image", base_mb, "MB", base),
            info("naive image", naive["size_mb"], "MB", f"FROM {naive['base']}"),
            info("optimised image", best["size_mb"], "MB", f"FROM {best['base']}"),
            at_least("optimised smaller than naive", 100 * smaller, "%", 40),
            at_most("optimised over its base", over_base, "MB", 15, base),
            at_most("rebuild after a 1-line change", rebuild, "s", 2,
                    f"median of {REBUILDS}, warm cache; naive {naive['rebuild_s']:.2f} s"),
            holds("both images print Hello World!",
                  naive["output"] == best["output"] == "Hello World!",
                  f"{naive['output']!r} / {best['output']!r}"),
        ]
    finally:
        cl.images.remove_labelled(cfg.run_id)


if __name__ == "__main__":
    sys.exit(save("docker_images", main()))
