"""Benchmark: autograde on Kubernetes (``--on kubernetes``) against the local engine, and
1,000 grading Jobs scheduled over 50 simulated nodes.

1. **Same batch, both engines** (needs this machine's real node; holds the ``real-node``
   lock): the ``demo`` submissions (correct, wrong, untouched, crashing) graded by the local
   engine and as Jobs on a kwok control plane with the real node, the same number at once.
   Records each wall time, seconds per submission, the CPU-seconds per submission the
   machine spent, and whether every score is the same.
2. **Scheduling at scale** (kwok only: nothing runs): 1,000 grading Jobs (the real
   manifests of :func:`cloudlab.grading.kubejobs.job_manifest`, Pod Security ``restricted``
   namespace) created by 8 clients over 50 simulated nodes. Records the API's create
   latency (median, p95), the pods placed per second, and the time until all are placed.

The capacity note in ``bench/REPORT.md`` (``bench/report.py``) turns these figures into
nodes and time for 300 and 3,000 students.

    .venv/bin/python bench/grading_k8s.py [--batch 8] [--parallel 4] [--jobs 1000] [--nodes 50]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _report import Figure, at_most, holds, info, save, skipped

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "grading" / "fixtures"))

KINDS = ("correct", "partial", "untouched", "exit")


def busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (``/proc/stat``)."""
    import os

    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def pod_seconds() -> float:
    """CPU-seconds of every pod of this machine's real node so far (its ``kubepods``
    cgroup, v1 or v2); 0 when there is none. The node is ours alone while the bench holds
    the ``real-node`` lock."""
    for path in ("/sys/fs/cgroup/cpuacct/kubepods/cpuacct.usage",
                 "/sys/fs/cgroup/cpu,cpuacct/kubepods/cpuacct.usage"):
        try:
            return int(Path(path).read_text()) / 1e9
        except (OSError, ValueError):
            continue
    try:
        stat = Path("/sys/fs/cgroup/kubepods/cpu.stat").read_text().split()
        return int(stat[stat.index("usage_usec") + 1]) / 1e6
    except (OSError, ValueError):
        return 0.0


def grader_seconds() -> float:
    """CPU-seconds of this process and its reaped children (the grading workers)."""
    import resource

    return sum(getattr(resource.getrusage(who), f) for who in
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def _grade(root: Path, batch: int, parallel: int, image: str, backend=None):
    import submissions as S
    from gradingkit import make_course

    from cloudlab.grading import autograde

    course = make_course(root)
    for i in range(batch):
        S.make(root, f"s{i:03d}", KINDS[i % len(KINDS)])
    busy, pods, own = busy_seconds(), pod_seconds(), grader_seconds()
    start = time.monotonic()
    results = autograde.autograde(course, "demo", workers=parallel, timeout=30,
                                  progress=False, image=image, backend=backend)
    return results, time.monotonic() - start, {
        "busy": busy_seconds() - busy, "pods": pod_seconds() - pods,
        "grader": grader_seconds() - own}


def both_engines(batch: int, parallel: int) -> list[Figure]:
    from cloudlab import config, engine
    from cloudlab.grading import Course, image, kubejobs
    from cloudlab.k8s import Cluster, availability, node
    from tests.conftest import machine_lock

    if engine.version() is None:
        return [info("same batch: skipped", "no Docker engine", "", "`cloudlab engine up`")]
    if not availability("kwok"):
        return [info("same batch: skipped", availability("kwok").reason)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-kjobs-"))
    try:
        tag = image.ensure(Course(tmp / "image"))
        local, local_s, local_cpu = _grade(tmp / "local", batch, parallel, tag)
        cfg = config.load(env={}, state_dir=tmp / "state",
                          run_id=f"bench-kjobs-{secrets.token_hex(2)}")
        with machine_lock(["real-node"]):
            avail = node.availability()
            if not avail:
                return [info("same batch: kubernetes skipped", avail.reason)]
            with Cluster("kwok", real_nodes=1, cfg=cfg) as k:
                on = kubejobs.Backend(kubeconfig=k.kubeconfig, context=k.context)
                remote, remote_s, remote_cpu = _grade(tmp / "kube", batch, parallel, tag, on)
        same = [(r.student, r.status, r.score) for r in local] == \
            [(r.student, r.status, r.score) for r in remote]
        per = statistics.median(r.seconds for r in remote)
        return [
            info("local engine: batch wall time", local_s, "s",
                 f"{batch} submissions, {parallel} at once"),
            info("kubernetes: batch wall time", remote_s, "s",
                 f"{batch} submissions, {parallel} Jobs at once, real node"),
            info("local engine: seconds per submission (median)",
                 statistics.median(r.seconds for r in local), "s"),
            info("kubernetes: seconds per submission (median)", per, "s",
                 "Job created to result read, plus nbgrader on the host"),
            info("local engine: machine busy CPU-seconds per submission",
                 local_cpu["busy"] / batch, "s", "whole shared machine (other work included)"),
            info("kubernetes: machine busy CPU-seconds per submission",
                 remote_cpu["busy"] / batch, "s", "whole shared machine (other work included)"),
            info("kubernetes: pod CPU-seconds per submission", remote_cpu["pods"] / batch, "s",
                 "the node's kubepods cgroup: what a course cluster's nodes spend"),
            info("kubernetes: grader CPU-seconds per submission",
                 remote_cpu["grader"] / batch, "s",
                 "the instructor's side: nbgrader, trusted graders, API calls"),
            holds("same scores and statuses on both engines", same),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def simulate(jobs: int, nodes: int, clients: int = 8) -> list[Figure]:
    from cloudlab import config
    from cloudlab.grading import kubejobs, sandbox
    from cloudlab.k8s import Cluster, availability

    if not availability("kwok"):
        return [info("simulation: skipped", availability("kwok").reason)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-kjobs-sim-"))
    cfg = config.load(env={}, state_dir=tmp, run_id=f"bench-sim-{secrets.token_hex(2)}")
    try:
        with Cluster("kwok", nodes=nodes, node_cpu="8", cfg=cfg, start_timeout=180) as k:
            on = kubejobs.Backend(kubeconfig=k.kubeconfig, context=k.context,
                                  simulated=True, image="cloudlab-grader:bench")
            on.prepare(on.image)
            limits = sandbox.Limits()
            spec = sandbox.SandboxSpec(on.image, "demo", "bench/demo")
            items = {"submission": [], "grader": [], "probe": [],
                     "job": [{"key": "run", "path": "run.json"}]}
            latencies: list[float] = []
            lock = threading.Lock()

            def create(share: range) -> None:
                api = kubejobs.Backend(kubeconfig=k.kubeconfig, context=k.context).api()
                for i in share:
                    manifest = kubejobs.job_manifest(f"sim-{i:05d}", on.image, spec, limits,
                                                     on.labels(), items, probe=True,
                                                     deadline=120, simulated=True)
                    t0 = time.monotonic()
                    api.create(manifest, namespace=on.namespace)
                    with lock:
                        latencies.append(time.monotonic() - t0)

            start = time.monotonic()
            threads = [threading.Thread(target=create, args=(range(c, jobs, clients),))
                       for c in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            created = time.monotonic() - start
            api = on.api()
            placed, deadline = 0, time.monotonic() + 600
            while time.monotonic() < deadline:
                pods = api.list("Pod", namespace=on.namespace, selector=on.selector())
                placed = sum(1 for p in pods if p["spec"].get("nodeName"))
                if placed >= jobs:
                    break
                time.sleep(0.5)
            all_placed = time.monotonic() - start
            spread = len({p["spec"].get("nodeName") for p in pods if p["spec"].get("nodeName")})
            latencies.sort()
            return [
                info("simulation: Jobs", jobs, "", f"over {nodes} kwok nodes of 8 CPUs, "
                     f"{clients} clients"),
                at_most("simulation: API create latency (median)",
                        statistics.median(latencies) * 1000, "ms", 200),
                info("simulation: API create latency (p95)",
                     latencies[int(0.95 * (len(latencies) - 1))] * 1000, "ms"),
                info("simulation: time to create all Jobs", created, "s"),
                info("simulation: pods placed per second", placed / all_placed, "pods/s",
                     "Job controller + scheduler, from the first create"),
                at_most("simulation: time to place all", all_placed, "s", 300,
                        f"{placed} of {jobs} placed, on {spread} nodes"),
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--skip-batch", action="store_true", help="only the simulation")
    args = p.parse_args()
    try:
        from cloudlab.k8s import availability
    except ImportError:
        return save("grading_k8s", skipped("cloudlab.k8s is not installed"))
    if not availability("kwok"):
        return save("grading_k8s", skipped(f"kwok backend: {availability('kwok').reason}"))
    figures = [] if args.skip_batch else both_engines(args.batch, args.parallel)
    figures += simulate(args.jobs, args.nodes)
    return save("grading_k8s", figures)


if __name__ == "__main__":
    sys.exit(main())
