"""Benchmark: the real Kubernetes node (kubelet + containerd + kube-proxy + CoreDNS).

Records, with the issue's goals:

* **cold build of the node's programs** (kubelet, kube-proxy, CoreDNS, pause) on top of
  the control plane's build cache, from the install record (never rebuilt here);
* **node Ready (warm)**: from ``Cluster("kwok", real_nodes=1).start()`` until the real
  node is Ready and CoreDNS answers, binaries cached (goal: <= 20 s);
* **pod of a local image Ready**: a busybox httpd pod, image already loaded into the
  node, from apply until its readiness probe passes (goal: <= 5 s).

    .venv/bin/python bench/bench_k8s_node.py [--runs 2]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

from _report import Figure, at_most, info, save, skipped

from cloudlab import busybox, config, engine
from cloudlab.k8s import Cluster, availability, install, node

NODE_GOAL = 20.0
POD_GOAL = 5.0


def pod(image: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"b": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "web", "image": image, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo ok > /tmp/i && exec httpd -f -p 8080 -h /tmp"],
                "readinessProbe": {"httpGet": {"path": "/i", "port": 8080},
                                   "periodSeconds": 1}}]}}


def main() -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="node starts to time (default 2)")
    args = ap.parse_args()
    rec = install.record().get("node", {})
    cold = rec.get("cold_build_seconds")
    build = info("build of kubelet, kube-proxy, CoreDNS, pause on the control plane's Go cache",
                 cold / 60 if cold else None,
                 "min", "install record: " + ", ".join(
                     f"{k} {v:.0f} s" for k, v in rec.get("step_seconds", {}).items())
                 if cold else "no node build recorded (`cloudlab k8s install`)")
    for what, avail in (("kwok backend", availability("kwok")), ("real node",
                                                                node.availability())):
        if not avail:
            return [build, *skipped(f"{what} unavailable: {avail.reason}")]
    if engine.version() is None:
        return [build, *skipped("no Docker engine for the local image: `cloudlab engine up`")]
    image = busybox.image()
    ups, pods = [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
            cfg = config.load(env={}, state_dir=Path(tmp),
                              run_id=f"bench-node-{secrets.token_hex(2)}")
            k = Cluster("kwok", real_nodes=1, cfg=cfg)
            with k:
                ups.append(k.node.ready_seconds)
                k.load_image(image)
                for i in range(3):
                    name = f"p{run}-{i}"
                    started = time.monotonic()
                    k.apply(pod(image, name), namespace="default")
                    k.wait_ready(f"b={name}", 1, namespace="default", timeout=60)
                    pods.append(time.monotonic() - started)
    return [
        build,
        at_most("real node Ready (warm), best", min(ups), "s", NODE_GOAL,
                "runs: " + ", ".join(f"{s:.1f} s" for s in ups)
                + " (containerd, pause image, bridge, kube-proxy, CoreDNS, kubelet Ready)"),
        at_most("pod of a local image Ready, median", sorted(pods)[len(pods) // 2], "s",
                POD_GOAL, "runs: " + ", ".join(f"{s:.1f} s" for s in pods)),
    ]


if __name__ == "__main__":
    sys.exit(save("bench_k8s_node", main()))
