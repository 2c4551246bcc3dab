"""Locust for real, against a small HTTP server in this process (no Docker needed)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudlab import loadtest


class Answer(BaseHTTPRequestHandler):
    def _ok(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"prediction": [1.0], "version": "v1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _ok

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_profile_runs_to_its_end_and_comes_back_as_frames(server):
    stages = [loadtest.Stage(3, 2, 10), loadtest.Stage(6, 4, 10)]
    with loadtest.LoadTest(server, stages, wait=(0.1, 0.2)) as test:
        result = test.wait(progress=False)
        assert (test.workdir / "started").exists()  # the profile's own clock
    assert not test.running()
    assert result.total["requests"] > 10 and result.total["failures"] == 0
    assert set(result.stats["Name"]) >= {"/predict", "/healthz", "Aggregated"}
    # how well the run keeps to the profile's clock is a figure: bench/timings.py
    assert result.history["t"].is_monotonic_increasing and len(result.history) > 1
    assert set(result.by_users().index) <= {2, 4}


def test_a_counter_is_sampled_while_locust_runs_and_becomes_a_rate_per_step(server):
    calls = []

    def count() -> float:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("a busy server timed out once")  # a gap, not a failed test
        return 3.0 * len(calls)

    stages = [loadtest.Stage(4, 2, 10), loadtest.Stage(8, 4, 10)]
    with loadtest.LoadTest(server, stages, wait=(0.1, 0.2), counters={"ticks": count}) as test:
        result = test.wait(progress=False)
        workdir = test.workdir
    assert not workdir.exists()  # its temporary folder goes with it
    samples = result.counters
    assert list(samples.columns) == ["t", "ticks"] and len(samples) == len(calls) - 1 >= 6
    assert samples["t"].is_monotonic_increasing and samples["t"].iloc[0] < 1
    rates = result.steps(settle=1)["ticks"]
    assert rates.notna().all() and (rates > 1).all()  # ~3 a second, sampled once a second
