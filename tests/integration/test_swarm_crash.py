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
    swarm.Stack(replicas=1, cfg=crash).start()  # its atexit stop: the test below
    assert leftovers(crash.run_id)
    # the run "crashes": nothing calls stop() (until its process exits: see below)
    counts = cleanup.sweep(crash.run_id, cfg=crash, stop_services=False)
    assert counts["services"] == 1 and counts["swarm left"] == (before[0] != "active")
    assert leftovers(crash.run_id) == {}
    assert swarm.state() == before[0]
    assert swarm_networks() == before[1]


def test_a_late_stop_of_a_swept_stack_leaves_no_one_elses_swarm(mcfg, before):
    """A crashed run's Stack object still exists in its process; its ``atexit`` stop runs
    when that process exits, long after the sweep, while another run may have made a swarm
    of its own. That swarm must stay (it once did not: another lane's test_swarm.py lost its
    swarm in the middle of the module, "This node is not a swarm manager")."""
    from cloudlab import config

    crash = config.load(env={}, state_dir=mcfg.state_dir / "late", run_id=mcfg.run_id + "-y")
    orphan = swarm.Stack(replicas=1, cfg=crash).start()
    cleanup.sweep(crash.run_id, cfg=crash, stop_services=False)
    other = swarm.Swarm(cfg=config.load(env={}, state_dir=mcfg.state_dir / "other")).start()
    try:
        assert swarm.state() == "active"
        orphan.stop()  # what atexit does when the crashed run's process exits
        assert swarm.state() == "active", "a late stop left a swarm someone else made"
        assert swarm.sweep(crash.run_id, crash) == 0  # nor does a second sweep
    finally:
        other.stop()
    assert swarm.state() == before[0]
    assert swarm_networks() == before[1]
