"""Benchmark: how fast the things that must be quick are (figures that used to be timed
assertions in the tests, where a busy machine made them fail for no fault of the code).

Targets:
* a warm ``cloudlab k8s install`` (everything cached) returns within 0.5 s;
* a cached base image bootstrap returns within 1 s;
* a busy loop limited to ``cpus=0.25`` gets between 0.15 and 0.35 of a core;
* a confined build over its 8 s limit is stopped, and cleaned up, within 40 s;
* a confined tool run over its 3 s limit is stopped within 30 s;
* a 6 s Locust profile keeps to its clock: its history spans -1.5 to 8 s.
(The first alert's delay against the expected window is ``bench/alerting.py``.)

Records ``bench/results/timings.json`` (``bench/_report.py``).

    .venv/bin/python bench/timings.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _report import Figure, at_least, at_most, info, save

import cloudlab as cl


def _seconds(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    out = fn()
    return time.monotonic() - started, out


def k8s_warm_install() -> list[Figure]:
    from cloudlab.k8s import install

    cache = install.cache_home()
    if not install.installed(cache):
        return [info("warm k8s install", None, note="not installed here: cloudlab k8s install")]
    took, _ = _seconds(lambda: install.install(cache, progress=lambda _: None))
    return [at_most("warm k8s install", took, "s", 0.5)]


def docker_figures() -> list[Figure]:
    if not cl.engine.available():
        return [info("Docker figures", None, note=f"no engine: {cl.engine.start_hint()}")]
    cfg = cl.settings()
    cl.images.bootstrap(cfg.base_image, cfg)
    took, image = _seconds(lambda: cl.images.bootstrap(cfg.base_image, cfg))
    figures = [at_most("cached base image bootstrap", took, "s", 1.0, note=image.source)]
    busy = ["python", "-c", "while True: pass"]
    with cl.docker.Container(cfg.base_image, busy, cpus=0.25, cfg=cfg) as box:
        share = box.cpu_share(samples=5)
    figures += [at_least("busy loop share at cpus=0.25 (low)", share, "cores", 0.15),
                at_most("busy loop share at cpus=0.25 (high)", share, "cores", 0.35)]
    return figures + confine_figures(cfg.base_image)


def confine_figures(base: str) -> list[Figure]:
    from cloudlab.grading import confine

    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-timings-") as tmp:
        (Path(tmp) / "Dockerfile").write_text(f"FROM {base}\nRUN echo first > /first\n"
                                              "RUN sleep 120\n")
        took, built = _seconds(lambda: confine.build(Path(tmp), limits=confine.Limits(seconds=8)))
        confine.sweep(built.build_id)
    stopped, ran = _seconds(lambda: confine.run(["sleep", "60"], confine.Limits(seconds=3)))
    return [at_most("build over its 8 s limit stopped after", took, "s", 40,
                    note=built.message[:80]),
            at_most("tool over its 3 s limit stopped after", stopped, "s", 30,
                    note=f"timed out: {ran.timed_out}")]


class _Answer(BaseHTTPRequestHandler):
    def _ok(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"prediction": [1.0], "version": "v1"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _ok

    def log_message(self, *args: object) -> None:
        pass


def loadtest_clock() -> list[Figure]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        stages = [cl.loadtest.Stage(3, 2, 10), cl.loadtest.Stage(6, 4, 10)]
        with cl.loadtest.LoadTest(url, stages, wait=(0.1, 0.2)) as test:
            t = test.wait(progress=False).history["t"]
    finally:
        httpd.shutdown()
        httpd.server_close()
    return [at_least("6 s load profile: first sample", float(t.min()), "s", -1.5),
            at_most("6 s load profile: last sample", float(t.max()), "s", 8)]


def main() -> list[Figure]:
    return k8s_warm_install() + docker_figures() + loadtest_clock()


if __name__ == "__main__":
    sys.exit(save("timings", main()))
