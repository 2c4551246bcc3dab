"""cl.hpa against the real HPA controller: the same usage, the same decision.

kwok emulates each pod's CPU use; metrics-server serves it; the real
kube-controller-manager's HPA controller scales the Deployment. cl.hpa, fed the same
per-pod numbers, must ask for the same replica count.
"""

from __future__ import annotations

import pytest

from cloudlab import hpa
from cloudlab import manifests as mf
from cloudlab.proc import wait_for
from tests.integration.conftest import kwok_cluster

REQUEST_M = 100          # the container's CPU request, millicores
TARGET = 50              # averageUtilization, percent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with kwok_cluster(tmp_path_factory, "test-hpa-controller", nodes=2) as c:
        wait_for(c.metrics_ready, timeout=90, what="the metrics API")
        yield c


def _deploy(cluster, ns, millicores, behavior=None):
    """Two Ready replicas using ``millicores`` each as the metrics API reports it; only
    then the HPA, so the controller's first reading is the whole, steady usage (made
    together, it could act on a sample taken while the usage was still changing)."""
    objs = mf.app("web", "hello-cli:1.1", replicas=2, min_replicas=1, max_replicas=10,
                  cpu_percent=TARGET, cpu=f"{REQUEST_M}m", namespace=ns)
    if behavior:
        objs[2]["spec"]["behavior"] = behavior
    selector = "app.kubernetes.io/name=web"
    cluster.apply(objs[:2], namespace=ns)
    cluster.wait_ready(selector, 2, namespace=ns)
    cluster.emulate_cpu(millicores, selector=selector, namespace=ns)
    wait_for(lambda: (top := cluster.top_pods(namespace=ns, selector=selector))
             and len(top) == 2 and all(abs(m - millicores) <= 2 for m in top.values()),
             timeout=120, interval=2, what=f"the metrics API to report {millicores}m per pod")
    cluster.apply(objs[2:], namespace=ns)


def _first_decision(cluster, ns, timeout=120):
    return wait_for(lambda: (h := cluster.hpa("web", namespace=ns))["desired"] not in (None, 0, 2)
                    and h, timeout=timeout, interval=1, what="the HPA controller to act")


@pytest.mark.parametrize("millicores", [150, 90])
def test_scale_up_matches_the_controller(cluster, millicores):
    with cluster.namespace() as ns:
        _deploy(cluster, ns, millicores)
        seen = _first_decision(cluster, ns)
        percent = millicores * 100 / REQUEST_M
        ours = hpa.Autoscaler(1, 10).step(0, 2, hpa.Metric(TARGET, [percent, percent]))
        assert seen["desired"] == ours.replicas, (seen, ours)


def test_scale_down_without_a_window_matches_the_controller(cluster):
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    with cluster.namespace() as ns:
        _deploy(cluster, ns, 10, behavior)
        seen = _first_decision(cluster, ns)
        ours = hpa.Autoscaler(1, 10, behavior=behavior).step(0, 2, hpa.Metric(TARGET, [10, 10]))
        assert seen["desired"] == ours.replicas == 1, (seen, ours)
