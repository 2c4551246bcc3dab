"""A tiny virtual machine with qemu, and the same launch-to-ready measurement for a container.

The VM boots a real Debian kernel (downloaded once as its ``.deb`` with ``apt-get
download`` and cached under the state dir) with an initramfs built on the fly from the
host's static busybox. "Ready" is the moment the guest prints a marker line on its
serial console. :func:`accel` really tries KVM (``/dev/kvm`` opened read-write, then a
qemu started with ``-accel kvm``) and the VM uses it when it works; elsewhere qemu
emulates the CPU in software (``tcg``), which is many times slower.

>>> with VM() as vm:                         # doctest: +SKIP
...     print(f"{vm.ready_seconds:.1f} s to ready")
2.3 s to ready
>>> measure("container", runs=3)             # doctest: +SKIP
>>> accel(open_device=lambda: "no /dev/kvm", try_qemu=lambda: "")
Accel(name='tcg', kvm=False, reason='KVM not usable: no /dev/kvm')
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import busybox
from .config import Settings, settings
from .errors import CloudlabError, CommandError, UnavailableError
from .lifecycle import Managed
from .proc import GiveUp, end, run, wait_for, which

KERNEL_PACKAGE = "linux-image-cloud-amd64"  # Debian's metapackage for the small cloud kernel
MARKER = "CLOUDLAB-READY"
QEMU = "qemu-system-x86_64"
INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "{MARKER} guest-uptime=$(cut -d' ' -f1 /proc/uptime)"
while :; do sleep 3600; done
"""


@dataclass(frozen=True)
class Accel:
    """The accelerator qemu will use, and why."""

    name: str  # "kvm" or "tcg"
    kvm: bool
    reason: str


def _open_kvm(device: str = "/dev/kvm") -> str:
    """'' when ``device`` opens read-write (what qemu needs), else the reason it does not."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"{device}: {exc.strerror}"
    os.close(fd)
    return ""


def _qemu_kvm(cfg: Settings | None = None, timeout: float = 15.0) -> str:
    """'' when the tiny guest boots to ready under ``-accel kvm``, else why not.

    Opening ``/dev/kvm`` and starting qemu is not enough: on some hosts (nested
    virtualisation without the CPU features the guest wants) qemu starts and the guest
    kernel hangs. So the probe boots the real guest, with a short timeout.
    """
    if which(QEMU) is None:
        return f"{QEMU} not found"
    try:
        with VM(cfg, accel="kvm", timeout=timeout):
            return ""
    except UnavailableError as exc:
        return str(exc)
    except CloudlabError as exc:
        last = str(exc).strip().splitlines()[-1]
        return (f"qemu starts with -accel kvm but the guest did not reach ready within "
                f"{timeout:g} s (last console line: {last})")


def accel(cfg: Settings | None = None, open_device: Callable[[], str] = _open_kvm,
          try_qemu: Callable[[], str] | None = None, fresh: bool = False) -> Accel:
    """KVM when ``/dev/kvm`` opens and a guest really boots with it, else software (tcg).

    Each probe returns '' on success or the reason it failed (injectable for tests). The
    real probe boots a guest, so its answer is kept for the process and, in the state
    folder's ``cache/vm/accel.json``, for this boot of the machine (``fresh`` re-probes).
    """
    real = open_device is _open_kvm and try_qemu is None
    if real and not fresh:
        if _ACCEL:
            return _ACCEL[0]
        if known := _remembered(cfg):
            _ACCEL[:] = [known]
            return known
    found = Accel("kvm", True, "KVM works: /dev/kvm opens and the guest boots with -accel kvm")
    for probe in (open_device, try_qemu or (lambda: _qemu_kvm(cfg))):
        why = probe()
        if why:
            found = Accel("tcg", False, f"KVM not usable: {why}")
            break
    if real:
        _ACCEL[:] = [found]
        _remember(found, cfg)
    return found


_ACCEL: list[Accel] = []  # the real probe's answer, once per process


def _machine() -> str:
    """This boot of this machine with this qemu: a probe's answer holds while it holds."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
    return f"{boot} {which(QEMU) or '-'}"


def _remembered(cfg: Settings | None) -> Accel | None:
    """The real probe's answer from an earlier process of this boot (it takes seconds)."""
    path, machine = cache_dir(cfg) / "accel.json", _machine()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not machine or data.get("machine") != machine:
        return None
    return Accel(data["name"], data["name"] == "kvm", data["reason"])


def _remember(found: Accel, cfg: Settings | None) -> None:
    if machine := _machine():
        (cache_dir(cfg) / "accel.json").write_text(json.dumps(
            {"machine": machine, "name": found.name, "reason": found.reason}))


def cache_dir(cfg: Settings | None = None) -> Path:
    cfg = cfg or settings()
    path = cfg.state_dir / "cache" / "vm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def kernel(cfg: Settings | None = None, package: str | None = None) -> Path:
    """A Debian kernel image (vmlinuz), fetched with ``apt-get download`` on first use."""
    cache = cache_dir(cfg)
    if found := sorted(cache.glob("vmlinuz-*")):
        return found[-1]
    missing = [t for t in ("apt-get", "apt-cache", "dpkg-deb") if which(t) is None]
    if missing:
        raise UnavailableError(
            f"the tiny VM needs a Debian kernel, fetched with apt; missing: {', '.join(missing)}."
            f" On another system put a bzImage/vmlinuz file into {cache} as vmlinuz-custom")
    try:
        package = package or _kernel_package()
        run(["apt-get", "download", package], cwd=cache, timeout=300)
    except CommandError as exc:
        raise UnavailableError(
            f"could not download the kernel package {package or KERNEL_PACKAGE} with "
            f"apt-get (exit {exc.returncode}): {exc.stderr.strip()[-300:]}. Try "
            f"`apt-get update`, or put a vmlinuz file into {cache}") from None
    deb = max(cache.glob("*.deb"), key=lambda p: p.stat().st_mtime)
    with tempfile.TemporaryDirectory(prefix="cloudlab-kernel-") as tmp:
        run(["dpkg-deb", "-x", str(deb), tmp], timeout=300)
        images = sorted(Path(tmp, "boot").glob("vmlinuz-*"))
        if not images:
            raise UnavailableError(f"{deb.name} holds no /boot/vmlinuz-*")
        shutil.copy2(images[-1], cache / images[-1].name)
    return cache / images[-1].name


def _kernel_package() -> str:
    """The versioned kernel package the metapackage currently points at."""
    out = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", KERNEL_PACKAGE],
              hint="apt-get update may be needed").stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise UnavailableError(f"apt-cache knows no kernel behind {KERNEL_PACKAGE}: {out.strip()}")


def kernel_deb(cfg: Settings | None = None) -> Path | None:
    """The downloaded kernel package, if it is in the cache."""
    debs = sorted(cache_dir(cfg).glob("*.deb"))
    return debs[-1] if debs else None


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple = (0, 0),
                ) -> bytes:
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = ("070701" + "".join(f"{v:08x}" for v in fields)).encode() + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def initramfs(cfg: Settings | None = None, init: str = INIT) -> Path:
    """Build (once per content) a gzipped newc cpio: busybox, /init, /dev/console."""
    bb = busybox.binary().read_bytes()
    digest = hashlib.sha256(bb + init.encode()).hexdigest()[:12]
    path = cache_dir(cfg) / f"initramfs-{digest}.cpio.gz"
    if path.exists():
        return path
    entries = [("bin", stat.S_IFDIR | 0o755, b""), ("proc", stat.S_IFDIR | 0o755, b""),
               ("sys", stat.S_IFDIR | 0o755, b""), ("dev", stat.S_IFDIR | 0o755, b""),
               ("tmp", stat.S_IFDIR | 0o1777, b""),
               ("bin/busybox", stat.S_IFREG | 0o755, bb),
               ("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
               ("init", stat.S_IFREG | 0o755, init.encode())]
    blob = b"".join(_cpio_entry(n, m, d, i) for i, (n, m, d) in enumerate(entries, 1))
    blob += _cpio_entry("dev/console", stat.S_IFCHR | 0o600, ino=len(entries) + 1, rdev=(5, 1))
    blob += _cpio_entry("TRAILER!!!", 0)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(blob, 6))
    tmp.replace(path)
    return path


class Launch(Managed):
    """A process whose readiness is a marker line on its output; a context manager.

    A reader thread stamps the moment the marker arrives, so the measurement does not
    depend on how often the waiting side polls. ``stop`` kills the process group and is
    idempotent; ``__enter__`` stops it on any exception, Ctrl-C included.
    """

    kind = "process"

    def __init__(self, cfg: Settings | None = None, timeout: float = 120,
                 marker: str = MARKER) -> None:
        self.cfg = cfg or settings()
        self.timeout = timeout
        self.marker = marker
        self.proc: subprocess.Popen | None = None
        self.ready_seconds: float | None = None
        self.ready_line = ""
        self._started = 0.0
        self._ready_at: float | None = None
        self._reader: threading.Thread | None = None
        self.log = self.cfg.state_dir / "vm" / f"{self.kind}.log"  # the latest launch's output

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Fetch or build what the launch needs (not part of the measured time)."""

    def start(self) -> Launch:
        try:
            self.prepare()
            cmd = self.command()
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._started = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
            wait_for(self._ready, timeout=self.timeout,
                     what=f"{self.kind} to print {self.marker!r}", log=self.log)
            self.ready_seconds = self._ready_at - self._started
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log, "wb") as log:
            for raw in self.proc.stdout:
                if self._ready_at is None and self.marker.encode() in raw:
                    self._ready_at = time.monotonic()
                    self.ready_line = raw.decode(errors="replace").strip()
                log.write(raw)
                log.flush()

    def _ready(self) -> bool:
        if self._ready_at is not None:
            return True
        if self.proc is not None and self.proc.poll() is not None:
            raise GiveUp(f"{self.kind} exited with code {self.proc.returncode} before ready")
        return False

    def stop(self) -> None:
        """Kill the process (group); safe to call any number of times."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                end(proc.pid)
            proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None


class VM(Launch):
    """qemu booting the Debian kernel and the busybox initramfs (serial console only).

    ``accel="auto"`` (the default) uses KVM when :func:`accel` finds it working and
    software emulation (``tcg``) otherwise; ``"kvm"`` or ``"tcg"`` force one.
    :attr:`accel_used` says which was used and :attr:`accel_reason` why.
    """

    kind = "vm"

    def __init__(self, cfg: Settings | None = None, memory_mb: int = 256, accel: str = "auto",
                 timeout: float = 120) -> None:
        super().__init__(cfg, timeout)
        if accel not in ("auto", "tcg", "kvm"):
            raise ValueError(f"accel must be 'auto', 'tcg' (software) or 'kvm' (hardware); "
                             f"got {accel!r}")
        if memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 for the kernel; got {memory_mb}")
        self.memory_mb, self.accel = memory_mb, accel
        self.accel_used = "" if accel == "auto" else accel
        self.accel_reason = "" if accel == "auto" else f"accel={accel!r} was asked for"
        self.kernel: Path | None = None
        self.initramfs: Path | None = None

    def prepare(self) -> None:
        if which(QEMU) is None:
            raise UnavailableError(f"{QEMU} not found; apt-get install qemu-system-x86 "
                                   "(make setup does it as root)")
        self.kernel = kernel(self.cfg)
        self.initramfs = initramfs(self.cfg)
        if not self.accel_used:
            found = accel(self.cfg)
            self.accel_used, self.accel_reason = found.name, found.reason

    def command(self) -> list[str]:
        return [which(QEMU) or QEMU, "-accel", self.accel_used or "tcg", "-m", str(self.memory_mb),
                "-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
                "-no-reboot", "-kernel", str(self.kernel), "-initrd", str(self.initramfs),
                "-append", "console=ttyS0 quiet panic=-1"]


class Container(Launch):
    """``docker run`` of the busybox image printing the same marker (same userland as the VM)."""

    kind = "container"

    def __init__(self, cfg: Settings | None = None, image: str | None = None,
                 timeout: float = 60) -> None:
        super().__init__(cfg, timeout)
        self.image = image
        self.name = f"cloudlab-{self.cfg.run_id}-boot-{id(self):x}"

    def prepare(self) -> None:
        self.image = self.image or busybox.image(self.cfg)

    def command(self) -> list[str]:
        labels = [a for k, v in self.cfg.labels().items() for a in ("--label", f"{k}={v}")]
        script = f'echo "{MARKER} guest-uptime=n/a"; while :; do sleep 3600; done'
        return ["docker", "run", "--rm", "--init", "--name", self.name, *labels, self.image,
                "sh", "-c", script]

    def stop(self) -> None:
        if self.proc is not None:
            run(["docker", "rm", "-f", self.name], check=False, timeout=60)
        super().stop()


KINDS: dict[str, type[Launch]] = {"vm": VM, "container": Container}


def measure(kind: str, runs: int = 3, cfg: Settings | None = None,
            progress: bool = True) -> pd.DataFrame:
    """Launch-to-ready seconds for ``runs`` fresh launches of ``kind`` ('vm'/'container')."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if runs < 1:
        raise ValueError(f"runs must be at least 1; got {runs}")
    from tqdm.auto import tqdm

    rows = []
    for i in tqdm(range(runs), desc=f"{kind} launches", disable=not progress):
        with KINDS[kind](cfg) as launched:
            rows.append({"kind": kind, "run": i + 1, "seconds": launched.ready_seconds,
                         "ready_line": launched.ready_line})
    return pd.DataFrame(rows)


def _newest(pattern: str, cfg: Settings | None = None) -> Path | None:
    found = sorted(cache_dir(cfg).glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def sizes(cfg: Settings | None = None) -> pd.DataFrame:
    """What each side needs on disk, in MB: kernel, initramfs, package, container images.

    Only what is already there is measured: nothing is downloaded or built, so this works
    (with fewer rows) without qemu, without apt and without Docker.
    """
    cfg = cfg or settings()
    rows = []
    for label, path in (("VM: kernel (vmlinuz)", _newest("vmlinuz-*", cfg)),
                        ("VM: initramfs (busybox)", _newest("initramfs-*.cpio.gz", cfg)),
                        ("VM: kernel package (.deb download)", kernel_deb(cfg))):
        if path is not None:
            rows.append({"artefact": label, "mb": path.stat().st_size / 1e6})
    from . import engine

    if engine.available(cfg):
        api = engine.client(timeout=30)
        for tag in (busybox.image(cfg), cfg.base_image):
            with contextlib.suppress(Exception):
                rows.append({"artefact": f"container image: {tag}",
                             "mb": api.images.get(tag).attrs["Size"] / 1e6})
    return pd.DataFrame(rows, columns=["artefact", "mb"])
