"""``cloudlab cleanup`` with no run id: everything of every run goes, and is counted.

Run in a state dir of its own, with its own moto server, and with ``DOCKER_HOST`` aimed at
nothing: a cleanup without a run id removes every cloudlab-labelled object on the engine,
and the engine here is shared (other runs, other people). Its Docker half is the same code
as a run's cleanup (tests/integration/test_engine.py); what is proved here is the rest:
AWS resources of several runs, the clusters, the services, and the counts it prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloudlab import aws, config, dr, k8s, services
from cloudlab.k8s import kwok
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _cleanup(state: Path, moto_port: int) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "CLOUDLAB_STATE_DIR": str(state),
           "CLOUDLAB_MOTO_PORT": str(moto_port), "CLOUDLAB_AWS_MODE": "local",
           "DOCKER_HOST": f"unix://{state}/no-engine.sock"}
    for name in ("REGISTRY", "PROMETHEUS", "ALERTMANAGER"):
        env[f"CLOUDLAB_{name}_PORT"] = str(free_port())
    done = subprocess.run([sys.executable, "-m", "cloudlab.cli", "cleanup"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("removed: "))
    return {kind: int(n) for n, kind in re.findall(r"(\d+) ([a-z_ ]+?)(?:,|$)", line[9:])}


def _settings(state: Path, moto_port: int, run_id: str) -> config.Settings:
    return config.load(env={}, state_dir=state, moto_port=moto_port, aws_mode="local",
                       run_id=run_id)


def test_cleanup_without_a_run_id_removes_every_runs_aws_resources_and_services(tmp_path):
    state, port = tmp_path / "state", free_port()
    runs = [_settings(state, port, f"test-cleanall-{i}") for i in (1, 2)]
    moto = services.moto(runs[0]).start()
    try:
        for cfg in runs:  # two runs that crashed: nothing calls stop()
            dr.BackupBucket(cfg).start()
            dr.Queue(cfg).start()
        counts = _cleanup(state, port)
        assert moto.pid() is None, "the services of this state dir are stopped"
        assert (counts["buckets"], counts["queues"]) == (2, 4), counts  # queue + dead letters
        assert counts["clusters"] == 0, counts
        moto.start()
        assert not aws.client("s3", runs[0]).list_buckets()["Buckets"]
        assert not aws.client("sqs", runs[0]).list_queues().get("QueueUrls")
    finally:
        moto.stop()


def test_cleanup_without_a_run_id_counts_and_removes_every_runs_clusters(tmp_path):
    if not (avail := k8s.availability("kwok")):
        pytest.skip(f"kwok backend unavailable: {avail.reason} (cloudlab k8s install)")
    state, port = tmp_path / "state", free_port()
    clusters = []
    for i in (1, 2):
        cfg = _settings(state, port, f"test-cleanall-{i}")
        clusters.append(k8s.Cluster("kwok", nodes=1, cfg=cfg).start())  # left running
    assert len(kwok.names(clusters[0].cfg)) == 2
    counts = _cleanup(state, port)
    assert counts["clusters"] == 2, counts
    assert kwok.names(clusters[0].cfg) == []
