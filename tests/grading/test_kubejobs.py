"""Autograde on Kubernetes (``--on kubernetes``): the same batch, graded by the local engine
and as Jobs on this machine's real node, gives the same results and gradebook; every Job
follows the sandbox's rules (Pod Security ``restricted`` admits it, and refuses a pod that
breaks them); and a KeyboardInterrupt mid-run leaves no Job, pod or Secret behind.

One cluster (kwok's control plane + the real node) for the module; the real node is one per
machine, so the module holds the ``real-node`` lock.
"""

from __future__ import annotations

import _thread
import contextlib
import secrets
import threading
import time

import pytest
import submissions as S
from gradingkit import make_course

from cloudlab import config
from cloudlab.grading import autograde, kubejobs
from cloudlab.k8s import Cluster, availability, node
from cloudlab.k8s.api import ApiError
from tests.conftest import machine_lock, outside

KWOK = availability("kwok")
pytestmark = pytest.mark.skipif(not KWOK, reason=f"kwok backend unavailable: {KWOK.reason}")
# correct, wrong, crashing (the kernel exits), timing out (an endless loop)
BATCH = {"alice": "correct", "bob": "partial", "carol": "exit", "dave": "infinite"}
TIMEOUT = 20


@pytest.fixture(scope="module")
def kube(tmp_path_factory, grading_image):
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("kjobs-state"),
                      run_id=f"test-kjobs-{secrets.token_hex(2)}")
    with machine_lock(["real-node"]):  # then ask: another holder's node may just be going
        avail = node.availability()
        if not avail:
            pytest.skip(f"real node unavailable: {avail.reason}")
        with Cluster("kwok", real_nodes=1, cfg=cfg) as k:
            yield k


def backend(kube, **kw) -> kubejobs.Backend:
    return kubejobs.Backend(kubeconfig=kube.kubeconfig, context=kube.context,
                            run_id=f"kjobs-{secrets.token_hex(3)}", **kw)


def grade(root, image, **kw):
    course = make_course(root)
    for student, kind in BATCH.items():
        S.make(root, student, kind)
    results = autograde.autograde(course, "demo", workers=4, timeout=TIMEOUT, progress=False,
                                  image=image, **kw)
    return course, {r.student: r for r in results}


def gradebook(course) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        return {(s.student.id, g.name): (g.auto_score, g.needs_manual_grade)
                for s in gb.find_assignment("demo").submissions
                for nb in s.notebooks for g in nb.grades}


@pytest.fixture(scope="module")
def both(kube, grading_image, tmp_path_factory):
    local = grade(tmp_path_factory.mktemp("local"), grading_image)
    on = backend(kube)
    on.at_once = []  # how many Jobs of the run exist, sampled while it grades
    done = threading.Event()

    def sample() -> None:
        api = backend(kube).api()
        while not done.wait(0.3):
            with contextlib.suppress(Exception):
                on.at_once.append(len(api.list("Job", namespace=on.namespace,
                                               selector=on.selector())))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        remote = grade(tmp_path_factory.mktemp("kube"), grading_image, backend=on)
    finally:
        done.set()
        sampler.join(5)
    return local, remote, on


def test_the_same_batch_scores_the_same_on_kubernetes(both):
    (_, local), (_, remote), _ = both
    assert set(local) == set(remote) == set(BATCH)
    for student in BATCH:
        a, b = local[student], remote[student]
        assert (b.status, b.score, b.max_score) == (a.status, a.score, a.max_score), student
        assert [(t.name, t.score, t.passed, t.message) for t in b.tests] == \
            [(t.name, t.score, t.passed, t.message) for t in a.tests], student
        assert b.reason == a.reason, student
        assert (a.backend, b.backend) == ("local", "kubernetes")
    assert (remote["alice"].score, remote["alice"].max_score) == (6, 6)
    assert 0 < remote["bob"].score < 6
    assert remote["carol"].status == "crashed" and "exit code 1" in remote["carol"].reason
    assert remote["dave"].status == "timed out"
    # the student's own failures, never retried
    assert remote["carol"].failure.startswith("student") and not remote["carol"].retries
    assert remote["dave"].failure.startswith("student") and not remote["dave"].retries
    assert remote["alice"].probes == "kernel pod (init container)"


def test_the_gradebooks_agree(both):
    (local_course, _), (remote_course, _), _ = both
    assert gradebook(remote_course) == gradebook(local_course)


def test_parallelism_is_bounded_by_the_flag(both):
    *_, on = both
    assert 2 <= max(on.at_once) <= 4, on.at_once  # --parallel 4: never more Jobs at once


def test_the_run_leaves_nothing_and_records_the_pids_limit(both):
    *_, on = both
    assert on.left() == {"Job": 0, "Pod": 0, "Secret": 0}
    assert f"podPidsLimit={node.POD_PIDS_LIMIT}" in on.pids
    assert on.network.startswith(("enforceable", "NOT enforced here: this kernel")), on.network
    assert "restricted" in on.describe() and on.pids in on.describe()


def test_pod_security_restricted_admits_the_job_and_refuses_a_privileged_pod(both, kube):
    *_, on = both
    api = on.api()
    ns = api.get("Namespace", on.namespace)["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
    from cloudlab.grading import sandbox

    spec = sandbox.SandboxSpec(on.image, "demo", "x/demo")
    manifest = kubejobs.job_manifest("dry", on.image, spec, sandbox.Limits(), on.labels(),
                                     {"submission": [], "grader": [], "probe": [],
                                      "job": [{"key": "run", "path": "run.json"}]},
                                     probe=False, deadline=30)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dry"},
           "spec": manifest["spec"]["template"]["spec"]}
    api.request("POST", f"/api/v1/namespaces/{on.namespace}/pods", body=pod,
                params={"dryRun": "All"})
    bad = {**pod, "spec": {**pod["spec"], "containers": [{
        **pod["spec"]["containers"][0],
        "securityContext": {"privileged": True, "runAsUser": 0}}]}}
    with pytest.raises(ApiError, match="violates PodSecurity"):
        api.request("POST", f"/api/v1/namespaces/{on.namespace}/pods", body=bad,
                    params={"dryRun": "All"})
    container = pod["spec"]["containers"][0]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "512Mi"}
    assert manifest["spec"]["activeDeadlineSeconds"] == 30


def test_keyboard_interrupt_mid_run_deletes_every_job_and_pod(kube, grading_image, tmp_path):
    on = backend(kube)
    course = make_course(tmp_path)
    for student in ("ann", "ben", "cid"):
        S.make(tmp_path, student, "infinite")
    seen: list[dict] = []

    def interrupt_once_placed() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                pods = on.api().list("Pod", namespace=on.namespace, selector=on.selector())
            except Exception:
                pods = []
            if any(p["spec"].get("nodeName") for p in pods):  # on the node, starting
                seen.append(on.left())
                _thread.interrupt_main()
                return
            time.sleep(0.3)

    watcher = threading.Thread(target=interrupt_once_placed, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        autograde.autograde(course, "demo", workers=3, timeout=60, progress=False,
                            image=grading_image, backend=on)
    watcher.join(5)
    assert seen and seen[0]["Job"] >= 1 and seen[0]["Pod"] >= 1, seen
    assert on.left() == {"Job": 0, "Pod": 0, "Secret": 0}


PROBE = ("import socket, sys\n"
         "try:\n"
         "    socket.create_connection((sys.argv[1], 8080), timeout=3).close()\n"
         "    print('OPEN')\n"
         "except OSError as exc:\n"
         "    print('BLOCKED', type(exc).__name__)\n")


def _reach(on: kubejobs.Backend, image: str, address: str) -> str:
    """What a pod of the grading namespace (restricted, default-deny) gets when it
    connects to ``address``:8080."""
    api = on.api()
    name = f"reach-{secrets.token_hex(3)}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": on.labels()},
           "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never",
                                    "command": ["python3", "-I", "-c", PROBE, address],
                                    "securityContext": kubejobs.security_context()}]}}
    api.create(pod, namespace=on.namespace)
    try:
        from cloudlab.proc import wait_for

        wait_for(lambda: (api.get("Pod", name, namespace=on.namespace)["status"].get("phase")
                          in ("Succeeded", "Failed")), timeout=90, what=f"pod {name}")
        return api.logs(name, namespace=on.namespace).strip()
    finally:
        api.delete("Pod", name, namespace=on.namespace)


def test_the_default_deny_policy_is_enforced_on_the_real_node(both, kube, grading_image):
    """Without an enforcer the NetworkPolicy is only an object: a grading pod reaches a web
    pod of another namespace. With kube-network-policies running, it cannot; once the
    enforcer stops (and removes its nftables table), it can again."""
    from cloudlab import busybox
    from cloudlab.k8s import netpol

    missing = netpol.kernel_missing()
    if missing:  # a kernel built without it, and no modules to load: nothing here fixes that
        pytest.skip(outside(f"NetworkPolicy enforcer: {missing}"))
    avail = netpol.availability()
    if not avail:
        pytest.skip(f"NetworkPolicy enforcer unavailable: {avail.reason}")
    *_, on = both
    web = busybox.image()
    kube.load_image(web)
    ns = kube.create_namespace(f"web-{secrets.token_hex(2)}")
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web",
                                                                "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": web,
                                         "imagePullPolicy": "Never",
                                         "command": ["sh", "-c", "mkdir -p /w && echo hi > "
                                                     "/w/index.html && exec httpd -f -p 8080 "
                                                     "-h /w"]}],
                         "terminationGracePeriodSeconds": 1}}, namespace=ns)
    kube.wait_ready("app=web", 1, namespace=ns, timeout=90)
    address = kube.pods(namespace=ns, selector="app=web")[0]["ip"]
    assert _reach(on, grading_image, address) == "OPEN"  # the policy alone does nothing
    with netpol.Enforcer(kube) as enforcer:
        got = _reach(on, grading_image, address)
        assert got.startswith("BLOCKED"), f"{got}\n{enforcer.log()}"
    assert _reach(on, grading_image, address) == "OPEN"  # its rules went with it


def test_an_image_missing_on_the_node_is_an_environment_failure_retried(kube, tmp_path):
    """``ErrImageNeverPull`` is the cluster's failure: retried, then reported as such (the
    student's own timeouts and crashes above never are)."""
    on = backend(kube, load=False, retries=1)
    course = make_course(tmp_path)
    S.make(tmp_path, "eve", "correct")
    [got] = autograde.autograde(course, "demo", workers=1, timeout=20, progress=False,
                                image="cloudlab-grader:not-on-the-node", backend=on)
    assert got.status == "crashed" and got.score == 0, got
    assert got.failure.startswith("environment: ErrImageNeverPull"), got.failure
    assert len(got.retries) == 2 and all("ErrImageNeverPull" in r for r in got.retries)
    assert "not the submission's fault" in got.reason
    assert on.left() == {"Job": 0, "Pod": 0, "Secret": 0}


def test_host_hooks_run_on_the_instructors_side_and_the_feedback_says_so(kube, grading_image,
                                                                          tmp_path):
    """A pre-grade hook (the docker-hub build, the kubernetes cluster check) needs the
    instructor's machine: it runs there, its result reaches the pod read-only, and the
    result and feedback say where it ran."""
    import os

    from cloudlab.grading import feedback, hooks

    def host_check(ctx):
        (tmp_path / "hook-ran").write_text(str(os.getpid()))
        return {"host_check": {"passed": True, "message": "checked on the host"}}

    on = backend(kube)
    course = make_course(tmp_path / "course")
    S.make(tmp_path / "course", "fay", "correct")
    with hooks.registered("demo", host_check):
        [got] = autograde.autograde(course, "demo", workers=1, timeout=TIMEOUT,
                                    progress=False, image=grading_image, backend=on)
    assert (tmp_path / "hook-ran").is_file()  # a process of this machine wrote it
    assert (got.status, got.score) == ("graded", 6), got
    assert "ran there, not in the kubernetes cluster" in got.reason
    [page] = feedback.feedback(course, "demo")
    assert "not in the kubernetes cluster" in page.read_text()
