"""Spot and on-demand launches on a private moto server: tagging, failure, cleanup, DryRun."""

import json
import os
import subprocess
import sys

import pytest

import cloudlab as cl
from cloudlab import aws, cleanup, ec2, services
from cloudlab.config import LABEL
from cloudlab.ec2 import LaunchError, LaunchRequest, PermissionDenied


@pytest.fixture
def moto_cfg(cfg):
    with services.moto(cfg):
        yield cfg


def _live(cfg, run_id=None):
    """Instances still alive on the (private) moto server, with their tags."""
    res = aws.client("ec2", cfg).describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": aws.LIVE_STATES}])["Reservations"]
    return [i for r in res for i in r["Instances"]
            if run_id is None or {"Key": LABEL, "Value": run_id} in i.get("Tags", [])]


def _open_requests(cfg):
    reqs = aws.client("ec2", cfg).describe_spot_instance_requests()["SpotInstanceRequests"]
    return [r for r in reqs if r["State"] in ("open", "active")]


@pytest.mark.parametrize("api", ["request", "run"])
def test_spot_launch_is_tagged_and_terminated(moto_cfg, api):
    req = LaunchRequest("t3.micro", count=2, max_price=0.01, api=api)
    with ec2.launch(req, moto_cfg) as fleet:
        df = fleet.describe()
        assert list(df["state"]) == ["running", "running"]
        assert set(df["lifecycle"]) == {"spot"}
        assert all(t[LABEL] == moto_cfg.run_id for t in df["tags"])
        if api == "request":
            assert set(fleet.requests()["status"]) == {"fulfilled"}
    assert not _live(moto_cfg) and not _open_requests(moto_cfg)
    fleet.stop()  # idempotent


def test_on_demand_launch(moto_cfg):
    with ec2.launch(ec2.on_demand(LaunchRequest("m4.large")), moto_cfg) as fleet:
        assert list(fleet.describe()["lifecycle"]) == ["on-demand"]
    assert not _live(moto_cfg)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_failure_mid_launch_leaves_nothing_running(moto_cfg, monkeypatch, failure):
    """Fail after the spot requests are fulfilled, before the instances are tagged."""
    seen = {}

    def fail(fleet):
        seen["instances"] = list(fleet.instance_ids)
        assert _live(moto_cfg), "the instances exist at this point"
        raise failure("injected failure")

    monkeypatch.setattr(ec2, "_tag", fail)
    with pytest.raises(failure, match="injected"), \
            ec2.launch(LaunchRequest("t3.micro", count=3, max_price=0.01), moto_cfg):
        pytest.fail("the block must not run")
    assert len(seen["instances"]) == 3
    assert not _live(moto_cfg), "every instance must be terminated"
    assert not _open_requests(moto_cfg), "every spot request must be cancelled"


def test_failure_inside_the_block_terminates(moto_cfg):
    with pytest.raises(ZeroDivisionError), \
            ec2.launch(LaunchRequest("t3.micro", max_price=0.01, api="run"), moto_cfg):
        assert len(_live(moto_cfg)) == 1
        1 / 0  # noqa: B018
    assert not _live(moto_cfg)


def test_cleanup_sweeps_seeded_leftovers_of_one_run_only(moto_cfg):
    client = aws.client("ec2", moto_cfg)
    image = ec2.default_image(moto_cfg)
    ours = aws.tags(moto_cfg)
    theirs = [{"Key": LABEL, "Value": "someone-else"}]
    client.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.micro",
                         TagSpecifications=[{"ResourceType": "instance", "Tags": ours}])
    client.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                         TagSpecifications=[{"ResourceType": "instance", "Tags": theirs}])
    client.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    client.request_spot_instances(  # its instance carries no tag: found via the request
        SpotPrice="0.01", InstanceCount=1,
        LaunchSpecification={"ImageId": image, "InstanceType": "t3.micro"},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": ours}])
    fs = cl.efs.FileSystem(moto_cfg, zones=2).start()
    fs.id = None  # forget it, as a crashed notebook would

    counts = cleanup.sweep(moto_cfg.run_id, moto_cfg, stop_services=False)
    assert (counts["instances"], counts["spot_requests"], counts["file_systems"]) == (3, 1, 1)
    assert not _live(moto_cfg, moto_cfg.run_id) and not _open_requests(moto_cfg)
    assert len(_live(moto_cfg)) == 2, "other runs' and untagged instances stay"
    assert not aws.client("efs", moto_cfg).describe_file_systems()["FileSystems"]


def test_cli_cleanup_with_run_id(moto_cfg):
    client = aws.client("ec2", moto_cfg)
    client.run_instances(ImageId=ec2.default_image(moto_cfg), MinCount=1, MaxCount=1,
                         InstanceType="t3.micro",
                         TagSpecifications=[{"ResourceType": "instance",
                                             "Tags": aws.tags(moto_cfg)}])
    env = {**os.environ, "CLOUDLAB_STATE_DIR": str(moto_cfg.state_dir),
           "CLOUDLAB_MOTO_PORT": str(moto_cfg.moto_port), "CLOUDLAB_DOCKER": "off"}
    done = subprocess.run([sys.executable, "-m", "cloudlab.cli", "cleanup", "--run-id",
                           moto_cfg.run_id, "--keep-services"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 instances" in done.stdout
    assert not _live(moto_cfg)


def test_unknown_instance_type_is_named(moto_cfg):
    with pytest.raises(LaunchError, match=r"unknown instance type .m4.larg.*m4.large"), \
            ec2.launch(LaunchRequest("m4.larg", max_price=0.1), moto_cfg):
        pass
    assert not _live(moto_cfg)


def test_dry_run_succeeds_without_creating_anything(moto_cfg):
    answer = ec2.dry_run(LaunchRequest("t3.micro", count=2, max_price=0.01), moto_cfg)
    assert "would have succeeded" in answer
    assert not _live(moto_cfg) and not _open_requests(moto_cfg)


def test_dry_run_without_permission_is_reported(cfg, monkeypatch):
    """moto with IAM enforcement: a user allowed to describe, not to launch."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3")  # the setup calls below
    with services.moto(cfg):
        iam = aws.client("iam", cfg)
        iam.create_user(UserName="student")
        iam.put_user_policy(UserName="student", PolicyName="read-only", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["ec2:Describe*", "ssm:GetParameter"],
                 "Resource": "*"}]}))
        key = iam.create_access_key(UserName="student")["AccessKey"]
        monkeypatch.setattr(aws, "LOCAL_CREDENTIALS", {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"]})
        req = LaunchRequest("t3.micro", max_price=0.01)
        with pytest.raises(PermissionDenied, match=r"DryRun of ec2:RequestSpotInstances was "
                                                   r"refused \(AccessDenied\)"):
            ec2.dry_run(req, cfg)
        with pytest.raises(PermissionDenied), ec2.launch(req, cfg):
            pass
        assert not aws.client("ec2", cfg).describe_instances()["Reservations"]


def test_spot_price_history_is_flagged_as_placeholder_on_moto(moto_cfg):
    df = ec2.spot_price_history(["m4.large"], moto_cfg)
    assert df.attrs["placeholder"] is True and len(df) > 0
