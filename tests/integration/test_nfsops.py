"""NFSOps end to end: tested deploys, a blocked bad deploy, rollback, servers follow."""

import pytest

from cloudlab import nfsops


@pytest.fixture
def pipeline(cfg, docker_engine):
    with nfsops.Pipeline(servers=2, cfg=cfg) as p:
        yield p
    labels = {"label": f"org.cloudlab.run-id={cfg.run_id}"}
    assert not docker_engine.containers.list(all=True, filters=labels)
    assert not docker_engine.volumes.list(filters=labels)


def test_deploy_block_and_rollback(pipeline, tmp_path):
    assert set(pipeline.served().values()) == {None}, "nothing deployed yet"
    with pipeline.watch(interval=0.05) as watch:
        first = pipeline.deploy(nfsops.sample_project(tmp_path / "a", "v1"))
        assert first.status == "deployed" and set(pipeline.served().values()) == {"v1"}
        second = pipeline.deploy(nfsops.sample_project(tmp_path / "b", "v2"))
        assert set(pipeline.served().values()) == {"v2"}
        bad = pipeline.deploy(nfsops.sample_project(tmp_path / "c", "v3", broken=True))
        assert bad.status == "blocked" and "FAILED" in bad.log
        assert set(pipeline.served().values()) == {"v2"}, "a failing test blocks the deploy"
        back = pipeline.rollback()
        assert back.release == first.release and set(pipeline.served().values()) == {"v1"}
        watch.settle(rounds=2)
    assert pipeline.releases() == [first.release, second.release]
    seen = nfsops.timeline(watch)
    assert {"v1", "v2"} <= set(seen["version"]) and "v3" not in set(seen["version"])
    assert seen["version"].iloc[-1] == "v1", "the last samples show the rollback"


def test_rollback_needs_an_earlier_release(pipeline, tmp_path):
    pipeline.deploy(nfsops.sample_project(tmp_path / "a", "v1"))
    with pytest.raises(ValueError, match="nothing to roll back"):
        pipeline.rollback()
    with pytest.raises(ValueError, match="no release 'nope'"):
        pipeline.switch("nope")
