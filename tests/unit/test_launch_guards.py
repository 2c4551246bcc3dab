"""Guardrails before any launch, the GCP/Azure equivalents and the CI job texts."""

import gzip

import pytest
import yaml

from cloudlab import aws, busybox, config, ec2, multicloud, nfsops, vm
from cloudlab.ec2 import LaunchError, LaunchRefused, LaunchRequest
from cloudlab.errors import UnavailableError


@pytest.mark.parametrize(("req", "needle"), [
    (LaunchRequest(max_price=-0.5), "max price must be zero or more"),
    (LaunchRequest(max_price=None), "spot request needs a max price"),
    (LaunchRequest(max_price=0.1, count=0), "count must be a whole number"),
    (LaunchRequest(max_price=0.1, market="auction"), "market must be one of"),
    (LaunchRequest(max_price=0.1, api="fleet"), "api must be one of"),
    (LaunchRequest("", max_price=0.1), "instance type must be a name"),
])
def test_bad_requests_are_rejected_by_name(req, needle):
    with pytest.raises(LaunchError, match=needle):
        req.check()


def test_on_demand_needs_no_max_price():
    assert ec2.on_demand(LaunchRequest("m4.large")).check().market == "on-demand"


def test_aws_mode_refuses_without_opt_in_before_any_call(monkeypatch):
    def no_calls(*a, **k):
        raise AssertionError("no AWS call may happen before the opt-in")

    monkeypatch.setattr(aws, "client", no_calls)
    cfg = config.load(env={}, aws_mode="aws")
    with pytest.raises(LaunchRefused, match="CLOUDLAB_AWS_ALLOW_LAUNCH=true"), \
            ec2.launch(LaunchRequest("t3.micro", max_price=0.01), cfg):
        pass


def test_opt_in_comes_from_the_environment_and_caps_still_apply():
    cfg = config.load(env={"CLOUDLAB_AWS_MODE": "aws", "CLOUDLAB_AWS_ALLOW_LAUNCH": "true"})
    ec2.guard(LaunchRequest("t3.micro", max_price=0.01), cfg)  # allowed
    with pytest.raises(LaunchRefused, match="exceeds the cap of 2"):
        ec2.guard(LaunchRequest("t3.micro", count=5, max_price=0.01), cfg)


def test_gcloud_and_az_from_the_same_request():
    req = LaunchRequest("m4.xlarge", count=2, max_price=0.08)
    g = multicloud.gcloud(req, run_id="20250101-000000-abcd")
    assert g.argv[:4] == ["gcloud", "compute", "instances", "create"]
    assert "--provisioning-model=SPOT" in g.argv and "--machine-type=n2-standard-4" in g.argv
    a = multicloud.az(req, run_id="x")
    assert a.argv[a.argv.index("--priority") + 1] == "Spot"
    assert a.argv[a.argv.index("--max-price") + 1] == "0.08"
    assert a.argv[a.argv.index("--size") + 1] == "Standard_D4s_v5"
    assert "NOT EXECUTED" in str(g) and "NOT EXECUTED" in str(a)
    plain = multicloud.az(ec2.on_demand(req), run_id="x")
    assert "--priority" not in plain.argv


def test_ci_job_texts_test_before_they_deploy():
    jf = nfsops.jenkinsfile()
    assert jf.index("stage('Test')") < jf.index("stage('Deploy')") and "mv -Tf" in jf
    wf = yaml.safe_load(nfsops.github_actions())
    assert wf["jobs"]["deploy"]["needs"] == "test"
    assert "rsync -a" in wf["jobs"]["deploy"]["steps"][-1]["run"]


def test_sample_project_tests_pass_and_broken_ones_fail(tmp_path):
    import subprocess
    import sys

    for broken, code in ((False, 0), (True, 1)):
        src = nfsops.sample_project(tmp_path / str(broken), "v1", broken=broken)
        done = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "."],
                              cwd=src, capture_output=True)
        assert done.returncode == code


def test_initramfs_is_a_newc_archive_with_init_and_busybox(cfg):
    try:
        busybox.binary()
    except UnavailableError as exc:  # only "not installed" skips; any other error fails
        pytest.skip(str(exc))
    blob = gzip.decompress(vm.initramfs(cfg).read_bytes())
    assert blob.startswith(b"070701")
    for name in (b"init\0", b"bin/busybox\0", b"dev/console\0", b"TRAILER!!!\0"):
        assert name in blob
    assert vm.initramfs(cfg) == vm.initramfs(cfg)  # cached by content


def test_vm_rejects_bad_arguments(cfg):
    with pytest.raises(ValueError, match="accel"):
        vm.VM(cfg, accel="xen")
    with pytest.raises(ValueError, match="kind must be one of"):
        vm.measure("unikernel", cfg=cfg)
