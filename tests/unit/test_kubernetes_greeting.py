"""The real-node checks of the running app: an app that is slow to listen is waited for;
an app that answers something else is judged at once (``checks.kubernetes.cluster.greets``
and ``probes_answer``)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from cloudlab.checks.kubernetes import cluster
from tests.conftest import free_port


class _Api:
    """The grader's API client, as far as the checks use it: the stored Service, and one
    Ready pod at 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port

    def get(self, kind, name, namespace=None):
        return {"spec": {"clusterIP": "127.0.0.1", "ports": [{"port": self.port}]}}

    def list(self, kind, namespace=None):
        return [{"metadata": {"name": "hello-1"}, "status": {
            "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}]


def _deployment(port: int, path: str = "/healthz", readiness: bool = False) -> dict:
    probe = {"httpGet": {"path": path, "port": "http"}}
    app = {"name": "hello", "ports": [{"name": "http", "containerPort": port}],
           "livenessProbe": probe, **({"readinessProbe": probe} if readiness else {})}
    return {"spec": {"template": {"spec": {"containers": [app]}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"}}


def _serve(port: int, body: str, after: float = 0.0) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path in ("/", "/healthz") else 404)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    holder = {}

    def start():
        time.sleep(after)  # the app's start: nothing listens meanwhile
        holder["server"] = server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        server.serve_forever(poll_interval=0.1)

    threading.Thread(target=start, daemon=True).start()
    return holder


@pytest.fixture
def port():
    return free_port()


def test_an_app_that_listens_late_is_waited_for(port):
    """No readiness probe: the pod is Ready before its app listens (the rule on probes
    grades that; the greeting must not cost the points a second time)."""
    holder = _serve(port, "Hello World!\n", after=18)
    try:
        verdict = cluster.greets(_Api(port), "ns", SERVICE, "lo")
    finally:
        holder["server"].shutdown()
    assert verdict["passed"], verdict


def _judged(port: int, body: str, check) -> tuple[dict, float]:
    """``check()``'s verdict on an app that answers ``body`` at once, and its seconds."""
    holder = _serve(port, body)
    time.sleep(0.3)
    started = time.monotonic()
    try:
        return check(), time.monotonic() - started
    finally:
        holder["server"].shutdown()


def test_an_app_with_another_greeting_is_judged_without_waiting(port):
    verdict, seconds = _judged(port, "Hallo Welt\n",
                               lambda: cluster.greets(_Api(port), "ns", SERVICE, "lo"))
    assert not verdict["passed"]
    assert "Hallo Welt" in verdict["message"] and "Hello World!" in verdict["message"]
    assert seconds < 10, "a wrong greeting was waited on to the timeout"


def test_nothing_listening_fails_at_the_timeout_saying_so(port):
    verdict = cluster.greets(_Api(port), "ns", SERVICE, "lo", timeout=2)
    assert not verdict["passed"]
    assert "ConnectionRefusedError" in verdict["message"] or "refused" in verdict["message"]


def test_a_liveness_probe_of_an_app_that_listens_late_is_waited_for(port):
    """No readiness probe (rule_probes grades that alone): the pod is Ready at once, its
    app listens seconds later, and the kubelet would not have restarted it meanwhile."""
    holder = _serve(port, "ok\n", after=6)
    try:
        verdict = cluster.probes_answer(_Api(port), "ns", _deployment(port), "lo")
    finally:
        holder["server"].shutdown()
    assert verdict["passed"], verdict


def test_a_probe_on_a_path_the_app_does_not_serve_fails_at_once(port):
    verdict, seconds = _judged(port, "ok\n", lambda: cluster.probes_answer(
        _Api(port), "ns", _deployment(port, "/health", True), "lo"))
    assert not verdict["passed"] and "GET /health " in verdict["message"] \
        and "answers 404" in verdict["message"], verdict
    assert seconds < 10


def test_an_app_that_never_listens_costs_one_wait_for_all_its_probes(port):
    """Readiness and liveness on a port nothing serves: one wait in all, not one each."""
    started = time.monotonic()
    verdict = cluster.probes_answer(_Api(port), "ns", _deployment(port, readiness=True),
                                    "lo", wait=2)
    assert not verdict["passed"] and "no answer" in verdict["message"], verdict
    assert time.monotonic() - started < 3.9, "each probe waited out the whole wait"
