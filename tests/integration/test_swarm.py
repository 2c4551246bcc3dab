"""Swarm on the real engine: deploy, discover, scale, roll, roll back, autoscale, clean up.

Traffic goes only to 127.0.0.1 (the balancer and Prometheus publish there); the overlay's
task addresses are only ever used from inside the stack's network.
"""

from __future__ import annotations

import pytest
import requests
import yaml

from cloudlab import autoscale, engine, loadtest, swarm
from cloudlab.config import LABEL
from tests.conftest import machine_lock


def leftovers(run_id: str) -> dict[str, list[str]]:
    api = engine.client(timeout=30)
    flt = {"label": f"{LABEL}={run_id}"}
    found = {"containers": [c.name for c in api.containers.list(all=True, filters=flt)],
             "networks": [n.name for n in api.networks.list(filters=flt)]}
    if swarm.state() == "active":
        found["services"] = [s.name for s in api.services.list(filters=flt)]
    return {k: v for k, v in found.items() if v}


def swarm_networks() -> set[str]:
    """The networks joining a swarm creates (other helpers' networks come and go)."""
    return {n.name for n in engine.client().networks.list()} & {"docker_gwbridge", "ingress"}


@pytest.fixture(scope="module")
def swarm_held():
    """The engine's one Swarm, for this module alone (notebook 10 waits meanwhile)."""
    with machine_lock(["swarm"]):
        yield


@pytest.fixture(scope="module")
def before(docker_engine, swarm_held):
    return swarm.state(), swarm_networks()


@pytest.fixture(scope="module")
def stack(mcfg, before):
    with swarm.Stack(replicas=1, cfg=mcfg) as st:
        yield st
    assert leftovers(mcfg.run_id) == {}
    assert swarm.state() == before[0]
    assert swarm_networks() == before[1]


def test_the_balancer_finds_replicas_through_dns_and_scales(stack):
    assert stack.url.startswith("http://127.0.0.1:")
    assert stack.stats_url.startswith("http://127.0.0.1:")  # published on loopback only
    stack.lb.raw.reload()
    bound = stack.lb.raw.attrs["HostConfig"]["PortBindings"]
    assert len(bound) == 2 and all(b["HostIp"] == "127.0.0.1" for bs in bound.values() for b in bs)
    assert len(stack.resolve("tasks.predict")) == 1
    assert requests.get(stack.url + "/healthz", timeout=5).json()["status"] == "ok"
    stack.scale(2)  # returns once the balancer sends to both (it re-resolves every 2 s)
    assert stack.desired() == 2 and stack.running() == 2 and stack.balanced() == 2
    assert len(stack.resolve("tasks.predict")) == 2
    replicas = {requests.get(stack.url + "/predict", timeout=10).json()["replica"]
                for _ in range(12)}
    assert len(replicas) == 2  # the balancer picked up the new replica


def test_rolling_update_then_rollback(stack):
    assert stack.update(version="v2") == "completed"
    assert stack.versions(8) == {"v2": 8}
    assert set(stack.tasks(running=True)["version"]) == {"v2"}
    assert stack.rollback() == "rollback_completed"
    assert stack.versions(8) == {"v1": 8}


def test_every_object_carries_the_run_id(stack, mcfg):
    api = engine.client(timeout=30)
    service = stack.service()
    assert service.attrs["Spec"]["Labels"][LABEL] == mcfg.run_id
    assert api.networks.get(stack.network).attrs["Labels"][LABEL] == mcfg.run_id
    assert all(c.labels.get(LABEL) == mcfg.run_id for c in stack.containers())
    assert stack.lb.raw.labels[LABEL] == mcfg.run_id


def test_a_short_locust_run_through_the_balancer(stack):
    result = loadtest.run(stack.url, [loadtest.Stage(6, 4, 4)], progress=False)
    assert result.total["requests"] > 5
    assert result.total["failures"] == 0
    assert len(result.history) >= 2


def test_autoscaler_reads_prometheus_and_holds_when_it_goes_down(stack):
    scaler = autoscale.for_stack(stack, target_cpu=60, max_replicas=3)
    requests.get(stack.url + "/predict", timeout=10)
    first = scaler.step()
    assert first.reason != "metrics unavailable", first
    stack.prometheus.raw.stop(timeout=5)  # Prometheus dies in the middle of the run
    try:
        held = scaler.step()
    finally:  # the stack is shared by the module's tests: bring it back
        stack.prometheus.raw.start()
    assert held.reason == "metrics unavailable"
    assert held.replicas == held.current == stack.desired() >= 1
    assert "holding" in held.detail and "cannot be read" in held.detail
    from cloudlab.proc import wait_for
    wait_for(lambda: scaler.step().reason != "metrics unavailable", timeout=60,
             what="the stack's Prometheus to answer again")


def test_a_compose_file_with_an_unknown_key_is_refused(tmp_path):
    doc = swarm.compose(image="cloudlab-predict:x")
    doc["services"]["predict"]["replicaz"] = 3
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(swarm.SwarmError, match="replicaz"):
        swarm.check_compose(path)


def test_a_compose_file_with_a_missing_image_is_refused(tmp_path):
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(swarm.compose(image="cloudlab-no-such-image:1")))
    with pytest.raises(swarm.SwarmError, match=r"not present.*cloudlab-no-such-image:1"):
        swarm.check_compose(path)
