"""Benchmark: the offline Kubernetes cluster (kwok backend) on this machine.

Records, with the issue's goals:

* **cold build**: how long `cloudlab k8s install` took to get the binaries the first time
  (read from the install record, or the build log; never rebuilt here);
* **cluster up (warm)**: `Cluster().start()` with the binaries cached, until every node is
  Ready (goal: <= 30 s);
* **apply to Ready, 10 replicas**: server-side apply of a Deployment and Service until
  10 pods are Ready and the Service has 10 endpoints.

The fourth figure of the issue, grading 30 `kubernetes` submissions, belongs to the
exercise's grader (``bench/kubernetes_grading.py``). Records
``bench/results/bench_k8s.json`` (``bench/_report.py``).

    .venv/bin/python bench/bench_k8s.py [--runs 2]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

from _report import Figure, at_most, info, save, skipped

from cloudlab import config
from cloudlab import manifests as mf
from cloudlab.k8s import Cluster, availability, install
from cloudlab.proc import wait_for

UP_GOAL = 30.0


def cluster_for_bench(state: Path, nodes: int = 2) -> Cluster:
    """A kwok cluster in a private state dir with its own run id (the caller starts it)."""
    cfg = config.load(env={}, state_dir=state, run_id=f"bench-k8s-{secrets.token_hex(2)}")
    return Cluster("kwok", nodes=nodes, cfg=cfg)


def cold_build() -> tuple[float | None, str]:
    rec = install.record()
    if rec.get("cold_build_seconds"):
        sources = set(rec.get("sources", {}).values())
        return rec["cold_build_seconds"], f"install record ({', '.join(sorted(sources))})"
    log = install.build_dir() / "build.log"
    seconds = install.build_seconds(log)
    return seconds, f"build log {log}" if seconds else "no finished build recorded"


def apply_to_ready(k: Cluster, replicas: int = 10) -> float:
    objs = mf.app("bench", "course/hello:1.0", port=5000, replicas=replicas)[:2]
    with k.namespace() as ns:
        started = time.monotonic()
        k.apply(objs, namespace=ns)
        k.wait_ready("app.kubernetes.io/name=bench", replicas, namespace=ns, timeout=120)
        wait_for(lambda: len(k.endpoints("bench", namespace=ns)) == replicas, timeout=60,
                 what=f"{replicas} endpoints")
        return time.monotonic() - started


def main() -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="cluster starts to time (default 2)")
    args = ap.parse_args()
    seconds, source = cold_build()
    build = info("cold build of the binaries", seconds / 60 if seconds else None, "min",
                 source)
    avail = availability("kwok")
    if not avail:
        return [build, *skipped(f"kwok backend unavailable, nothing else to time: "
                                f"{avail.reason}")]
    ups, applies = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-k8s-") as tmp:
            k = cluster_for_bench(Path(tmp))
            started = time.monotonic()
            with k:
                ups.append(time.monotonic() - started)
                applies.append(apply_to_ready(k))
    return [
        build,
        at_most("cluster up (warm), best", min(ups), "s", UP_GOAL,
                "runs: " + ", ".join(f"{s:.1f} s" for s in ups)),
        info("apply to Ready, 10 replicas, best", min(applies), "s",
             "runs: " + ", ".join(f"{s:.1f} s" for s in applies)),
    ]

if __name__ == "__main__":
    sys.exit(save("bench_k8s", main()))
