"""The same flow against real AWS: runs only when explicitly asked for (it costs money).

Set CLOUDLAB_AWS_MODE=aws, CLOUDLAB_AWS_ALLOW_LAUNCH=true and CLOUDLAB_TEST_REAL_AWS=1 with
credentials that may launch instances; the test launches one t3.micro spot instance at a
max price of 0.02 USD/h and terminates it within a minute or two.
"""

import os

import pytest

from cloudlab import aws, config, ec2
from cloudlab.ec2 import LaunchRequest
from tests.conftest import outside


@pytest.fixture
def real_cfg():
    if os.environ.get("CLOUDLAB_TEST_REAL_AWS") != "1":
        pytest.skip(outside("real AWS launches cost money: set CLOUDLAB_TEST_REAL_AWS=1, "
                            "CLOUDLAB_AWS_MODE=aws and CLOUDLAB_AWS_ALLOW_LAUNCH=true to run"))
    cfg = config.load()
    if cfg.aws_mode != "aws" or not cfg.aws_allow_launch:
        pytest.skip(outside("needs CLOUDLAB_AWS_MODE=aws and CLOUDLAB_AWS_ALLOW_LAUNCH=true"))
    ok, why = aws.reachable(cfg)
    if not ok:
        pytest.skip(outside(why))
    return cfg


def test_real_spot_launch_is_tagged_and_terminated(real_cfg):
    req = LaunchRequest("t3.micro", count=1, max_price=0.02, name="cloudlab-test")
    assert "would have succeeded" in ec2.dry_run(req, real_cfg)
    with ec2.launch(req, real_cfg) as fleet:
        row = fleet.describe().iloc[0]
        assert row["state"] == "running" and row["lifecycle"] == "spot"
        assert row["tags"]["org.cloudlab.run-id"] == real_cfg.run_id
    assert fleet.terminated
    assert not aws.sweep(real_cfg.run_id, real_cfg)["instances"]
