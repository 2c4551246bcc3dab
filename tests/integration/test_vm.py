"""The tiny VM really boots (software emulation here) and the container really starts."""

import os
import signal

import pytest

from cloudlab import services, vm
from cloudlab.errors import UnavailableError
from cloudlab.proc import alive, which


@pytest.fixture(scope="module")
def vm_cfg(tmp_path_factory):
    """One state dir (and so one kernel download) for the module."""
    from cloudlab import config

    if which(vm.QEMU) is None:
        pytest.skip(f"{vm.QEMU} is not installed: apt-get install qemu-system-x86")
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("vm") / "state")
    try:
        vm.kernel(cfg)
        vm.initramfs(cfg)
    except UnavailableError as exc:
        pytest.skip(f"no kernel or busybox for the tiny VM: {exc}")
    return cfg


def _qemu_pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()
            and vm.QEMU in services._cmdline(int(p)) and alive(int(p))}


def test_kernel_is_fetched_once_and_cached(vm_cfg):
    first = vm.kernel(vm_cfg)
    assert first.name.startswith("vmlinuz-") and first.stat().st_size > 1_000_000
    assert vm.kernel(vm_cfg) == first
    assert vm.kernel_deb(vm_cfg) is not None


def test_vm_boots_to_the_marker_and_is_stopped(vm_cfg):
    before = _qemu_pids()
    with vm.VM(vm_cfg) as machine:
        assert machine.ready_seconds > 0
        assert machine.ready_line.startswith(vm.MARKER + " guest-uptime=")
        assert _qemu_pids() - before
    assert _qemu_pids() <= before
    machine.stop()  # idempotent


def test_an_exception_in_the_block_kills_qemu(vm_cfg):
    before = _qemu_pids()
    # a run started in the background (`cmd &`) inherits SIGINT ignored: restore Python's own
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), vm.VM(vm_cfg):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, old)
    assert _qemu_pids() <= before


def test_a_vm_that_never_gets_ready_times_out_and_is_killed(vm_cfg):
    before = _qemu_pids()
    machine = vm.VM(vm_cfg, timeout=1, memory_mb=64)
    machine.marker = "A-LINE-THAT-NEVER-COMES"
    with pytest.raises(Exception, match=r"timed out|gave up"):
        machine.start()
    assert _qemu_pids() <= before


def test_container_measurement_and_sizes(vm_cfg, docker_engine):
    df = vm.measure("container", runs=2, cfg=vm_cfg, progress=False)
    assert list(df["run"]) == [1, 2] and (df["seconds"] > 0).all()
    sizes = vm.sizes(vm_cfg).set_index("artefact")["mb"]
    assert sizes["VM: kernel (vmlinuz)"] > 1
    assert any(a.startswith("container image: cloudlab/busybox") for a in sizes.index)
    assert not docker_engine.containers.list(
        all=True, filters={"label": f"org.cloudlab.run-id={vm_cfg.run_id}"})


def test_the_detected_accelerator_really_boots(vm_cfg):
    found = vm.accel(vm_cfg)
    assert found.name in ("kvm", "tcg") and found.reason
    with vm.VM(vm_cfg, accel=found.name) as machine:
        assert machine.command()[1:3] == ["-accel", found.name]
        assert machine.ready_line.startswith(vm.MARKER)
