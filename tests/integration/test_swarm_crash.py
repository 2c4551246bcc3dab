"""Swarm: what a crashed run left is removed by ``cleanup.sweep``, swarm membership too.

Apart from test_swarm.py so that it never shares the swarm with that module's stack.
"""

from __future__ import annotations

import pytest

from cloudlab import cleanup, swarm
from tests.conftest import machine_lock
from tests.integration.test_swarm import leftovers, swarm_networks


@pytest.fixture(scope="module")
def before(docker_engine):
    with machine_lock(["swarm"]):  # the engine's one Swarm: this test leaves and joins it
        yield swarm.state(), swarm_networks()


def test_cleanup_after_a_crash_leaves_nothing(mcfg, before):
    from cloudlab import config

    # a module of its own: test_swarm.py's shared stack is gone (module fixtures end with
    # their module), and this test needs the swarm to itself
    crash = config.load(env={}, state_dir=mcfg.state_dir / "crash", run_id=mcfg.run_id + "-x")
    orphan = swarm.Stack(replicas=1, cfg=crash).start()
    assert leftovers(crash.run_id)
    del orphan  # the run "crashes": nothing calls stop()
    counts = cleanup.sweep(crash.run_id, cfg=crash, stop_services=False)
    assert counts["services"] == 1 and counts["swarm left"] == (before[0] != "active")
    assert leftovers(crash.run_id) == {}
    assert swarm.state() == before[0]
    assert swarm_networks() == before[1]
