"""Benchmark: grading 30 ``kubernetes`` submissions (goal: >= 1 submission/s on 2 cores).

Every submission is graded the trusted way: the notebook in its sandbox, the pre-grade hook
reading and checking the YAML, then applying it into a clean namespace of one kwok grading
cluster (``grading=True``: only the controllers grading needs; the namespaces come from
the cluster's pool) and waiting for Ready pods and endpoints; the trusted graders calling
the replica function through the grading sandbox's probes. The cluster is started before timing
starts (its start-up is the k8s benchmark's). Records the time, the rate, the machine's
busy CPU-seconds per submission and the score distribution in
``bench/results/kubernetes_grading.json`` (``bench/_report.py``), or the reason when the
cluster is not available here.

With ``--real-node`` the grading cluster is kwok's control plane with this machine's real
node (goal: >= 0.5 submission/s on 2 cores): each submission's Dockerfile is built
confined (once per distinct build input: the batch's submissions share one, so one build
is in the timing), its image runs in place of ``hello-cli:1.1``, the pods must become
Ready through the submission's own probes and ``GET /`` through the Service must greet.
The grading node took the course's base image in when it started, as every grading node
does (its layers are unpacked once per cluster, not with the batch's first image).
Recorded in ``bench/results/kubernetes_grading_real.json``; the machine holds the
``real-node`` lock of the tests meanwhile.

    .venv/bin/python bench/kubernetes_grading.py [--submissions 30] [--workers N] [--real-node]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from _report import Figure, at_least, holds, info, save, skipped

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "grading" / "fixtures"))


def busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (``/proc/stat``)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_seconds(pids: list[int]) -> float:
    """CPU-seconds of this process, its reaped children (the grading workers) and ``pids``
    (the control plane): what the grading itself burnt, whatever else the machine runs.
    The kernel containers (run by dockerd) are not in it."""
    import resource

    used = sum(getattr(resource.getrusage(who), f) for who in
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def missing(real: bool = False) -> str | None:
    if importlib.util.find_spec("cloudlab.k8s") is None:
        return "the Kubernetes cluster module (cloudlab.k8s) is not installed"
    from cloudlab import k8s

    kwok = k8s.available().get("kwok")
    if not kwok:
        return f"kwok backend unavailable: {getattr(kwok, 'reason', '')}"
    if real:
        from cloudlab.grading import jailengine

        if jailengine.available():
            return f"no jailed build engine: {jailengine.available()}"
    return None


def main() -> list[Figure]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=30)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--real-node", action="store_true",
                   help="grade on kwok's control plane with this machine's real node")
    args = p.parse_args()
    if why := missing(args.real_node):
        return skipped(why)

    import k8s_submissions as S

    from cloudlab import config, k8s
    from cloudlab.checks import kubernetes as kx
    from cloudlab.grading import Course, autograde, image, release

    kinds = list(S.VARIANTS)
    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-k8s-") as tmp:
        root = Path(tmp)
        shutil.copytree(S.SOURCE.parent, root / "solutions" / S.NAME)
        shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        course = Course(root)
        release.release(course, S.NAME)
        for i in range(args.submissions):
            edits, _ = S.VARIANTS[kinds[i % len(kinds)]]
            S.submit(course, f"student{i:03d}", S.notebook(course, edits))
        tag = image.ensure(course)
        cfg = config.load(env={}, state_dir=root / "state",
                          run_id="bench-k8s-grading-" + secrets.token_hex(3))
        shape = {"real_nodes": 1} if args.real_node else {"nodes": 2}
        with held(args.real_node), k8s.Cluster("kwok", cfg=cfg, grading=True,
                                               **shape) as cluster:  # raises if no node
            os.environ[kx.GRADING_KUBECONFIG_ENV] = str(cluster.kubeconfig)
            if cluster.context:
                os.environ[kx.GRADING_CONTEXT_ENV] = cluster.context
            workers = args.workers or autograde.default_workers()
            load = os.getloadavg()[0]
            plane = [p.pid for p in cluster.processes() if p.pid]
            own, busy, start = own_seconds(plane), busy_seconds(), time.perf_counter()
            results = autograde.autograde(course, S.NAME, workers=workers, timeout=120,
                                          image=tag, progress=False, hook_timeout=400)
            seconds = time.perf_counter() - start
            busy, own = busy_seconds() - busy, own_seconds(plane) - own
            made = kx.hook.builds(cluster.kubeconfig, cluster.context) if args.real_node \
                else []
    bad = [r for r in results if r.status != "graded"]
    scores = dict(sorted(Counter(r.score for r in results).items()))
    built = sum(b.get("build_seconds", 0) + b.get("load_seconds", 0) for b in made)
    kind = ("real node: own image, own probes, GET / through the Service"
            if args.real_node else "kwok's simulated pods")
    wrong = [r.student for r in results
             if r.score != S.TOTAL - sum(t.points for t in r.tests if t.name == S.VARIANTS[
                 kinds[int(r.student[7:]) % len(kinds)]][1])]
    return [
        info("kubernetes grading", seconds, "s",
             f"{len(results)} submissions, {workers} workers, {kind}; scores {scores}"),
        at_least("kubernetes grading rate" + (" (real pods)" if args.real_node else ""),
                 len(results) / seconds, "submissions/s", 0.5 if args.real_node else 1,
                 f"{kind}; the 1-minute load average was {load:.2f} at the start"
                 + ("; includes the one confined image build the batch needs"
                    if args.real_node else "")),
        *([info("confined image builds in the batch", built, "s",
                f"{len(made)} build(s) (jailed engine, pip through the package-index proxy)"
                " and load(s) into the node's containerd, inside the timed batch; the rate "
                f"without them: {len(results) / max(seconds - built, 1e-9):.2f} "
                "submissions/s")] if args.real_node else []),
        holds("every submission scored as its variant should", not wrong,
              "; ".join(lost(r, kinds) for r in results if r.student in wrong[:3])),
        info("machine CPU per submission", busy / max(len(results), 1), "CPU-s",
             f"busy time of all {os.cpu_count()} cores over the batch (anything else running "
             f"counts too: the 1-minute load average was {load:.1f} when it started)"),
        info("grader and control plane CPU per submission", own / max(len(results), 1),
             "CPU-s", "the grading workers and the cluster's processes only (not the "
             "kernel containers nor dockerd): other load on the machine does not count"),
        holds("every submission graded", not bad,
              ", ".join(f"{r.student} ({r.reason})" for r in bad)),
    ]

def lost(result, kinds: list[str]) -> str:
    """What a wrongly scored submission lost, and the grader's words for it."""
    kind = kinds[int(result.student[7:]) % len(kinds)]
    tests = ", ".join(f"{t.name} ({t.message.strip()[:300]})" for t in result.tests
                      if not t.passed)
    return f"{result.student} ({kind}) lost {tests or 'nothing'}"


@contextlib.contextmanager
def held(real: bool) -> Iterator[None]:
    """The tests' ``real-node`` machine lock while a real node runs (one per machine): a
    node that runs elsewhere on the machine is waited for, not reported as missing."""
    if not real:
        yield
        return
    sys.path.insert(0, str(ROOT))
    from tests.conftest import machine_lock

    with machine_lock(["real-node"]):
        yield


if __name__ == "__main__":
    name = "kubernetes_grading_real" if "--real-node" in sys.argv else "kubernetes_grading"
    raise SystemExit(save(name, main()))
