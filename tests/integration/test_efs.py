"""EFS with mount targets on moto; the local stand-in: one volume, many containers."""

import pytest

from cloudlab import aws, efs, services


def test_file_system_with_mount_targets_is_created_and_deleted(cfg):
    with services.moto(cfg), efs.FileSystem(cfg, zones=3) as fs:
        fs_id = fs.id
        targets = fs.mount_targets()
        assert len(targets) == 3 and targets["zone"].is_unique
        assert set(targets["state"]) == {"available"}
        tags = {t["Key"]: t["Value"] for t in fs.describe()["Tags"]}
        assert tags["org.cloudlab.run-id"] == cfg.run_id
        assert fs_id in fs.mount_command()
        fs.stop()
        assert fs.id is None
        assert not aws.client("efs", cfg).describe_file_systems()["FileSystems"]
    fs.stop()  # idempotent


def test_file_system_needs_a_reachable_endpoint(cfg):
    with pytest.raises(Exception, match="no moto server answers"):
        efs.FileSystem(cfg).start()


def test_three_containers_share_one_volume(cfg, docker_engine):
    with efs.SharedVolume(cfg) as vol:
        run = vol.writers_and_readers(writers=3, lines=25, readers=2)
        assert len(run.lines) == 75 and run.intact
        assert set(run.lines["writer"]) == {"w1", "w2", "w3"}
        assert run.samples.groupby("reader")["lines_seen"].max().eq(75).all()
        name = vol.name
    assert not docker_engine.containers.list(all=True, filters={"label":
                                                                f"org.cloudlab.run-id={cfg.run_id}"})
    assert not [v for v in docker_engine.volumes.list() if v.name == name]
