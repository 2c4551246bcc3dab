"""cloudlab.vm without booting anything: KVM detection (both branches), sizes without qemu."""

import pytest

from cloudlab import config, engine, vm


def _fail(*a, **k):
    raise AssertionError("must not be called")


def test_kvm_is_used_when_both_probes_pass():
    found = vm.accel(open_device=lambda: "", try_qemu=lambda: "")
    assert (found.name, found.kvm) == ("kvm", True)
    assert "KVM works" in found.reason


def test_no_device_means_tcg_and_qemu_is_not_tried():
    found = vm.accel(open_device=lambda: "/dev/kvm: No such file or directory", try_qemu=_fail)
    assert (found.name, found.kvm) == ("tcg", False)
    assert found.reason == "KVM not usable: /dev/kvm: No such file or directory"


def test_a_device_that_opens_but_a_guest_that_hangs_means_tcg():
    found = vm.accel(open_device=lambda: "", try_qemu=lambda: "the guest did not reach ready")
    assert found.name == "tcg" and "did not reach ready" in found.reason


def test_open_kvm_reports_the_os_reason(tmp_path):
    assert "No such file or directory" in vm._open_kvm(str(tmp_path / "kvm"))
    dev = tmp_path / "rw"
    dev.write_text("")
    assert vm._open_kvm(str(dev)) == ""


def test_qemu_probe_without_qemu_says_so(monkeypatch):
    monkeypatch.setattr(vm, "which", lambda name: None)
    assert vm._qemu_kvm() == f"{vm.QEMU} not found"


def test_vm_uses_the_detected_accelerator(monkeypatch, tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path)
    monkeypatch.setattr(vm, "_ACCEL", [vm.Accel("kvm", True, "probed")])  # the cached answer
    machine = vm.VM(cfg)
    monkeypatch.setattr(vm, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(vm, "kernel", lambda cfg: tmp_path / "vmlinuz-x")
    monkeypatch.setattr(vm, "initramfs", lambda cfg: tmp_path / "initramfs-x.cpio.gz")
    machine.prepare()
    assert machine.accel_used == "kvm" and machine.accel_reason == "probed"
    assert machine.command()[1:3] == ["-accel", "kvm"]
    forced = vm.VM(cfg, accel="tcg")
    forced.prepare()
    assert forced.command()[1:3] == ["-accel", "tcg"]


def test_bad_accel_is_named():
    with pytest.raises(ValueError, match="accel must be 'auto', 'tcg'"):
        vm.VM(accel="hvf")


def test_sizes_without_qemu_fetches_nothing_and_does_not_fail(monkeypatch, tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path)
    monkeypatch.setattr(vm, "which", lambda name: None)
    monkeypatch.setattr(vm, "kernel", _fail)
    monkeypatch.setattr(vm, "initramfs", _fail)
    monkeypatch.setattr(engine, "available", lambda cfg=None: False)
    table = vm.sizes(cfg)
    assert list(table.columns) == ["artefact", "mb"] and table.empty


def test_sizes_lists_what_is_cached(monkeypatch, tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path)
    monkeypatch.setattr(vm, "kernel", _fail)
    monkeypatch.setattr(engine, "available", lambda cfg=None: False)
    (vm.cache_dir(cfg) / "vmlinuz-6.1").write_bytes(b"k" * 2_000_000)
    table = vm.sizes(cfg)
    assert table.to_dict("records") == [{"artefact": "VM: kernel (vmlinuz)", "mb": 2.0}]


def test_the_real_probes_answer_is_remembered_for_this_boot_only(monkeypatch, tmp_path):
    cfg = config.load(env={}, state_dir=tmp_path)
    monkeypatch.setattr(vm, "_machine", lambda: "boot-1 /usr/bin/qemu")
    assert vm._remembered(cfg) is None
    vm._remember(vm.Accel("tcg", False, "KVM not usable: the guest hung"), cfg)
    assert vm._remembered(cfg) == vm.Accel("tcg", False, "KVM not usable: the guest hung")
    monkeypatch.setattr(vm, "_machine", lambda: "boot-2 /usr/bin/qemu")  # a reboot
    assert vm._remembered(cfg) is None
