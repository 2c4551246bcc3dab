"""Benchmark: the real Kubernetes node (kubelet + containerd + kube-proxy + CoreDNS).

Records, with the issue's goals:

* **cold build of the node's programs** (kubelet, kube-proxy, CoreDNS, pause) on top of
  the control plane's build cache, from the install record (never rebuilt here);
* **node Ready (warm)**: from ``Cluster("kwok", real_nodes=1).start()`` until the real
  node is Ready and CoreDNS answers, binaries cached (goal: <= 20 s);
* **pod of a local image Ready**: a busybox httpd pod, image already loaded into the
  node, from apply until its readiness probe passes (goal: <= 5 s);
* **Locust spike to an added READY replica**: the prediction app (notebook 07's) as one
  replica requesting 100m of CPU, an HPA (1 to 4 replicas at 50 %) on the real CPU that
  metrics-server reads from the kubelet, then Locust jumps from 1 to ``--peak`` users
  through a relay to the Service's ClusterIP (every connection through kube-proxy); the
  time from the jump until a second replica is Ready (goal: <= 60 s). The HPA controller
  syncs every 5 s here (kwok's default is 15 s); metrics-server scrapes every 15 s.

    .venv/bin/python bench/bench_k8s_node.py [--runs 2] [--peak 8] [--no-spike]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from _report import Figure, at_most, info, save, skipped

from cloudlab import busybox, config, engine
from cloudlab.errors import CloudlabError
from cloudlab.k8s import Cluster, availability, install, node

NODE_GOAL = 20.0
POD_GOAL = 5.0
SPIKE_GOAL = 60.0
SPIKE_BEFORE = 5.0      # seconds of one Locust user before the jump
SPIKE_LIMIT = 180.0     # give up on the added replica after this long


def pod(image: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"b": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "web", "image": image, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo ok > /tmp/i && exec httpd -f -p 8080 -h /tmp"],
                "readinessProbe": {"httpGet": {"path": "/i", "port": 8080},
                                   "periodSeconds": 1}}]}}


def spike(k: Cluster, peak: int) -> tuple[float | None, str]:
    """Seconds from the Locust jump until the HPA's added replica is Ready (None: not
    within :data:`SPIKE_LIMIT`), and what happened on the way."""
    from cloudlab import loadtest, manifests, predict
    from cloudlab.proc import wait_for

    ns, sel = "spike", "app.kubernetes.io/name=hello"
    image = predict.image(progress=False)
    k.load_image(image)
    dep, svc, hpa = manifests.app("hello", image, port=predict.PORT, replicas=1,
                                  min_replicas=1, max_replicas=4, cpu_percent=50, cpu="100m")
    hpa["spec"]["behavior"] = {"scaleUp": {"stabilizationWindowSeconds": 0}}
    k.create_namespace(ns)
    k.apply([dep, svc], namespace=ns)
    k.wait_ready(sel, 1, namespace=ns, timeout=180)
    t_metrics = time.monotonic()
    wait_for(k.metrics_ready, timeout=120, what="the metrics API")
    def measured() -> bool:
        try:
            return bool(k.top_pods(namespace=ns, selector=sel))
        except CloudlabError:  # the metrics API between two scrapes of a new pod
            return False

    wait_for(measured, timeout=120, what="the pod's first metrics")
    metrics_after = time.monotonic() - t_metrics
    k.apply(hpa, namespace=ns)
    stages = loadtest.spike(base=1, peak=peak, before=SPIKE_BEFORE, during=SPIKE_LIMIT,
                            after=5)
    seen: list[str] = []
    with k.service_proxy("hello", namespace=ns) as relay, \
            loadtest.LoadTest(relay, stages, wait=(0.05, 0.2)) as test:
        jump = None
        while test.running() and time.time() - test.started < SPIKE_BEFORE + SPIKE_LIMIT:
            started = test.workdir / "started"
            if jump is None and started.exists():  # the profile's clock (Locust's start)
                jump = float(started.read_text()) + SPIKE_BEFORE
            ready = k.ready_pods(namespace=ns, selector=sel)
            status = k.hpa("hello", namespace=ns)
            seen.append(f"{time.time() - (jump or time.time()):.0f}s: {ready} ready, "
                        f"desired {status.get('desired')}, cpu {status.get('cpu_percent')} %")
            if jump is not None and ready >= 2:
                return time.time() - jump, (f"metrics for the first pod after "
                                            f"{metrics_after:.0f} s; " + "; ".join(seen[-4:]))
            time.sleep(1)
    return None, "; ".join(seen[-6:])


def main() -> list[Figure]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="node starts to time (default 2)")
    ap.add_argument("--peak", type=int, default=8, help="Locust users in the spike")
    ap.add_argument("--no-spike", action="store_true", help="skip the HPA spike")
    args = ap.parse_args()
    rec = install.record().get("node", {})
    cold = rec.get("cold_build_seconds")
    build = info("build of kubelet, kube-proxy, CoreDNS, pause on the control plane's Go cache",
                 cold / 60 if cold else None,
                 "min", "install record: " + ", ".join(
                     f"{k} {v:.0f} s" for k, v in rec.get("step_seconds", {}).items())
                 if cold else "no node build recorded (`cloudlab k8s install`)")
    if not availability("kwok"):
        return [build, *skipped(f"kwok backend unavailable: {availability('kwok').reason}")]
    if engine.version() is None:
        return [build, *skipped("no Docker engine for the local image: `cloudlab engine up`")]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import machine_lock

    with machine_lock(["real-node"]):  # one real node per machine: wait for its holder
        if not node.availability():
            return [build, *skipped(f"real node unavailable: {node.availability().reason}")]
        return [build, *timed(args)]


def timed(args: argparse.Namespace) -> list[Figure]:
    """Node starts, pods, and the spike (in the last run's cluster)."""
    image = busybox.image()
    ups, pods = [], []
    spiked: tuple[float | None, str] | None = None
    load = os.getloadavg()
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
                if run == args.runs - 1 and not args.no_spike:
                    spiked = spike(k, args.peak)
    figures = [
        at_most("real node Ready (warm), best", min(ups), "s", NODE_GOAL,
                "runs: " + ", ".join(f"{s:.1f} s" for s in ups)
                + " (containerd, pause image, bridge, kube-proxy, CoreDNS, kubelet Ready)"),
        at_most("pod of a local image Ready, median", sorted(pods)[len(pods) // 2], "s",
                POD_GOAL, "runs: " + ", ".join(f"{s:.1f} s" for s in pods)),
    ]
    if spiked is not None:
        seconds, story = spiked
        figures.append(at_most(
            f"Locust spike (1 -> {args.peak} users) to an added READY replica (HPA on real "
            "CPU, metrics-server)", seconds if seconds is not None else SPIKE_LIMIT, "s",
            SPIKE_GOAL, ("" if seconds is not None else
                         f"no second replica within {SPIKE_LIMIT:g} s; ") + story))
    figures.append(info("machine load when the runs started", load[0], "",
                        f"1/5/15-minute load averages {load[0]:.2f} {load[1]:.2f} "
                        f"{load[2]:.2f} on {os.cpu_count()} cores"))
    return figures


if __name__ == "__main__":
    sys.exit(save("bench_k8s_node", main()))
