"""Benchmark: what the jailed build engine costs a graded build (issue 18).

The grader builds a student's Dockerfile in a second ``dockerd`` inside the jail's network
namespace (``cloudlab.grading.jailengine``), so that even the engine's own fetches cannot
reach the host. This measures one submission's build through the grader's own path
(``hooks.build_image``) with that engine and with the host's engine
(``CLOUDLAB_BUILD_ENGINE=host``), each in a fresh jail, median of 3.

Target: the jailed engine adds at most 20 s to a submission's build on the 2-core machine
(the docker-hub hook builds once per submission). Also shown: the engine's start, copying
the built image out, and making the golden data root (once per base image).
Run: ``.venv/bin/python bench/jailed_build.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _report import Figure, at_most, info, save, skipped

import cloudlab as cl

RUNS = 3


def _one(folder: Path, mode: str) -> tuple[float, dict]:
    from cloudlab.grading import hooks

    os.environ["CLOUDLAB_BUILD_ENGINE"] = mode
    ctx = hooks.HookContext("docker-hub", "bench", files=folder,
                            labels={"org.cloudlab.bench": "jailed-build"}, timeout=300)
    start = time.monotonic()
    try:
        built = hooks.build_image(ctx, "Dockerfile")
        box = ctx._builders.get(True)
        seconds = dict(box.seconds) if box else {}
    finally:
        ctx.cleanup()
    if not built.ok:
        raise SystemExit(f"the {mode} build failed: {built.message}\n{built.log[-1500:]}")
    return time.monotonic() - start, seconds


def main() -> list[Figure]:
    from cloudlab.grading import jailengine

    if not cl.engine.available():
        return skipped(f"no Docker engine ({cl.engine.start_hint()})")
    why = jailengine.available()
    if why:
        return skipped(why)
    base = cl.settings().base_image
    cl.images.bootstrap(base)
    start = time.monotonic()
    jailengine._golden([base])
    golden = time.monotonic() - start
    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-") as tmp:
        folder = Path(tmp)
        (folder / "app.py").write_text("print('Hello World!')\n")
        (folder / "Dockerfile").write_text(
            f"FROM {base}\nWORKDIR /app\nCOPY app.py .\nRUN python -m compileall -q .\n"
            'ENTRYPOINT ["python", "app.py"]\n')
        host, jailed, parts = [], [], []
        for _ in range(RUNS):
            host.append(_one(folder, "host")[0])
            took, seconds = _one(folder, "jailed")
            jailed.append(took)
            parts.append(seconds)
    os.environ.pop("CLOUDLAB_BUILD_ENGINE", None)
    extra = statistics.median(jailed) - statistics.median(host)

    def median(key: str) -> float:
        return statistics.median(p.get(key, 0.0) for p in parts)

    return [
        info("build, host engine", statistics.median(host), "s", f"median of {RUNS}"),
        info("build, jailed engine", statistics.median(jailed), "s", f"median of {RUNS}"),
        at_most("added by the jailed engine", extra, "s", 20, "per submission"),
        info("engine start (copy of the golden root + dockerd)",
             median("images in") + median("up"), "s"),
        info("image copied out to the host's engine", median("image out"), "s"),
        info("golden data root (first use only)", golden, "s",
             "0 when it was there already"),
    ]


if __name__ == "__main__":
    sys.exit(save("jailed_build", main()))
