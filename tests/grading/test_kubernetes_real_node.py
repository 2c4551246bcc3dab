"""The ``kubernetes`` exercise graded on a real node: the student's own image, probes, greeting.

One grading cluster for the module: kwok's control plane with this machine's real node
(``Cluster("kwok", real_nodes=1, grading=True)``) and one autograde run over a batch made
from the solution notebook. For every submission the hook builds the submitted Dockerfile
confined (the jailed engine of ``docker-hub``), loads it into the node and runs it in place
of ``hello-cli:1.1``. Honest answers written other ways get full marks; a probe on a path
the app does not serve, an app with another greeting, a privileged container and a
hostPath volume each lose exactly what the exercise's text says they cost. Identical build
inputs are built once: the batch makes two images (the greeting variant edits app.py).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import threading
import time

import pytest
from k8s_submissions import NAME, SOURCE, TOTAL, notebook, submit

from cloudlab import config, engine, k8s
from cloudlab.checks import kubernetes as kx
from cloudlab.grading import Course, autograde, jailengine, release
from cloudlab.k8s import node
from tests.conftest import machine_lock

KWOK = k8s.availability("kwok")
JAIL = jailengine.available()
pytestmark = [
    pytest.mark.skipif(not KWOK, reason=f"kwok backend unavailable: {KWOK.reason}"),
    pytest.mark.skipif(JAIL is not None, reason=f"no jailed build engine: {JAIL}"),
]

PROBES = [("deployment", "            port: http\n", "            port: 8080\n")] * 2
# student -> (notebook edits, app file edits, the tests it loses)
REAL: dict[str, tuple[list, dict, set[str]]] = {
    "solution": ([], {}, set()),
    # honest, written otherwise: numbers for port names, equal quantities, Never, no args
    # (the image's CMD is serve), a flow-style Service, the HPA in autoscaling/v1
    "numbers": ([*PROBES, ("service", "targetPort: http", "targetPort: 8080"),
                 ("deployment", "cpu: 100m\n            memory: 128Mi\n          limits:",
                  "cpu: \"0.1\"\n            memory: \"134217728\"\n          limits:"),
                 ("deployment", "imagePullPolicy: IfNotPresent", "imagePullPolicy: Never"),
                 ("deployment", '        args: ["serve", "--port", "8080"]\n', "")], {}, set()),
    "flowv1": ([("service", "spec:\n  type: ClusterIP\n  selector:\n    app.kubernetes.io/name"
                 ": hello\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n",
                 "spec: {selector: {app.kubernetes.io/name: hello}, ports: [{port: 80, "
                 "targetPort: http}]}\n"),
                ("hpa", "apiVersion: autoscaling/v2", "apiVersion: autoscaling/v1"),
                ("hpa", "  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n"
                        "      target:\n        type: Utilization\n"
                        "        averageUtilization: 50\n",
                 "  targetCPUUtilizationPercentage: 50\n")], {}, set()),
    # wrong: each loses what the text's table says
    "badprobe": ([("deployment", "path: /healthz", "path: /health")] * 2, {},
                 {"rule_probes", "rule_cluster"}),
    "greeting": ([], {"app.py": ('return "Hello World!\\n"', 'return "Hello, Moon!\\n"')},
                 {"rule_cluster"}),
    "privileged": ([("deployment", "        imagePullPolicy: IfNotPresent\n",
                     "        imagePullPolicy: IfNotPresent\n        securityContext:\n"
                     "          privileged: true\n")], {}, {"q1_valid", "rule_cluster"}),
    "hostpath": ([("deployment", "    spec:\n      containers:\n",
                   "    spec:\n      volumes:\n      - name: root\n        hostPath:\n"
                   "          path: /\n      containers:\n")], {}, {"q1_valid", "rule_cluster"}),
    # hostile but correct: its GET / greets, after trying to open a port of the grading
    # host (the node's gateway: every pod's default route). Full marks; the host's
    # server (bound on that address for the test) must never see a connection.
    "hostprobe": ([], {"app.py": ('    return "Hello World!\\n"', "HOSTILE")}, set()),
}
HOSTILE = """    import socket
    for line in open("/proc/net/route").read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            gateway = socket.inet_ntoa(bytes.fromhex(fields[2])[::-1])
            try:
                socket.create_connection((gateway, {port}), timeout=1).close()
            except OSError:
                pass
    return "Hello World!\\n"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if engine.version() is None:
        pytest.skip("no Docker engine to build the submissions' images: `cloudlab engine up`")
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("k8s-real-grading"),
                      run_id="test-kreal-" + secrets.token_hex(3))
    with machine_lock(["real-node"]):  # one real node per machine: wait for the holder
        avail = node.availability()          # asked under the lock (a running one is busy)
        if not avail:
            pytest.skip(f"real node unavailable: {avail.reason}")
        with k8s.Cluster("kwok", real_nodes=1, cfg=cfg, grading=True) as c:
            yield c


@pytest.fixture(scope="module")
def host_server(cluster):
    """A TCP server on the node's gateway (an address of this machine, on the bridge):
    what a pod would reach of the grading host. Yields the connections it accepted."""
    server = socket.create_server((cluster.node.plan.gateway, 0))
    server.settimeout(0.2)
    seen: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            seen.append(peer[0])
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1], seen
    finally:
        stop.set()
        server.close()


@pytest.fixture(scope="module")
def graded(grading_image, cluster, host_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("kubernetes-real-course")
    shutil.copytree(SOURCE.parent, root / "solutions" / NAME)
    course = Course(root)
    release.release(course, NAME)
    for student, (edits, app, _) in REAL.items():
        app = {f: (old, HOSTILE.format(port=host_server[0]) if new == "HOSTILE" else new)
               for f, (old, new) in app.items()}
        submit(course, student, notebook(course, edits), app=app)
    mp = pytest.MonkeyPatch()
    mp.setenv(kx.GRADING_KUBECONFIG_ENV, str(cluster.kubeconfig))
    mp.setenv(kx.GRADING_CONTEXT_ENV, cluster.context)
    try:
        start = time.monotonic()
        results = autograde.autograde(course, NAME, workers=3, timeout=120, progress=False,
                                      image=grading_image, hook_timeout=400)
        print(f"\ngraded {len(results)} submissions on the real node in "
              f"{time.monotonic() - start:.1f} s")
    finally:
        mp.undo()
    yield course, {r.student: r for r in results}
    shutil.rmtree(root, ignore_errors=True)


def _scores(result) -> dict[str, tuple[float, float]]:
    return {t.name: (t.score, t.points) for t in result.tests}


def _why(result, test: str) -> str:
    return next(t.message for t in result.tests if t.name == test)


def _printed(course: Course, student: str, grade_id: str) -> str:
    nb = json.loads((course.autograded / student / NAME / f"{NAME}.ipynb").read_text())
    cell = next(c for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))


@pytest.mark.parametrize("student", [s for s, v in REAL.items() if not v[2]])
def test_honest_answers_score_full_marks_on_the_real_node(graded, student):
    course, results = graded
    r = results[student]
    assert (r.status, r.score) == ("graded", TOTAL), (
        r.reason, {t.name: t.message for t in r.tests if not t.passed})
    assert "graded on a real node" in _printed(course, student, "setup")


@pytest.mark.parametrize("student", [s for s, v in REAL.items() if v[2]])
def test_each_fault_costs_exactly_what_the_text_says(graded, student):
    _, results = graded
    lost = REAL[student][2]
    full, mine = _scores(results["solution"]), _scores(results[student])
    assert results[student].status == "graded", results[student].reason
    changed = {name for name in full if mine[name] != full[name]}
    assert changed == lost, {t.name: t.message for t in results[student].tests
                             if not t.passed}
    assert results[student].score == TOTAL - sum(full[t][1] for t in lost)


def test_the_feedback_says_why_in_the_kubelets_and_the_apps_words(graded):
    _, results = graded
    probe = _why(results["badprobe"], "rule_cluster")
    assert probe.startswith("[graded on a real node"), probe
    assert "/health" in probe and "404" in probe, probe
    hello = _why(results["greeting"], "rule_cluster")
    assert "Hello, Moon!" in hello and "Hello World!" in hello, hello
    for student in ("privileged", "hostpath"):
        assert "refused before reaching the cluster" in _why(results[student], "rule_cluster")


def test_a_pod_opens_nothing_on_the_grading_host(graded, host_server):
    """The hostprobe app ran (its GET / answered, so its connection attempt was made) and
    the host's server on the bridge saw nothing: the node's fence (CLOUDLAB-NODE-IN)
    lets a pod reach the cluster DNS only."""
    _, results = graded
    assert results["hostprobe"].score == TOTAL
    assert host_server[1] == [], f"a pod opened a port of the grading host: {host_server[1]}"


def test_what_the_run_loaded_and_made_goes_when_it_ends(graded, cluster):
    from cloudlab.proc import wait_for

    wait_for(lambda: not [n for n in cluster.namespaces() if n.startswith("grade-")],
             timeout=60, what="the grading namespaces to go")
    assert not [i for i in cluster.node.images() if i.startswith(kx.hook.IMAGE_PREFIX)]
    assert not engine.client().images.list(name=kx.hook.IMAGE_PREFIX + "*")
