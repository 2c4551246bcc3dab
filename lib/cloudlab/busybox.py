"""A tiny container image made from the host's static busybox, no registry needed.

The same ~2 MB binary boots the tiny VM (as its initramfs) and fills this image, so the
VM-vs-container comparison runs the same userland on both sides. The image is imported
once (``docker import``), labelled as a local build, and reused.

>>> image()                                  # doctest: +SKIP
'cloudlab/busybox:1.35'
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from pathlib import Path

from . import engine
from .config import Settings, settings
from .errors import UnavailableError
from .proc import run, which

CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
LOCAL_BUILD_LABEL = "org.cloudlab.local-build"
INSTALL_HINT = "apt-get install busybox-static (make setup does it as root)"


def binary() -> Path:
    """The host's *static* busybox (a dynamic one cannot run alone in a VM or image)."""
    found = [Path(p) for p in (*CANDIDATES, which("busybox") or "") if p and Path(p).exists()]
    for path in found:
        if is_static(path):
            return path
    detail = f"only a dynamically linked one at {found[0]}" if found else "none found"
    raise UnavailableError(f"needs a statically linked busybox ({detail}); {INSTALL_HINT}")


def is_static(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (no dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        order = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[32:40], order)
        phentsize = int.from_bytes(head[54:56], order)
        phnum = int.from_bytes(head[56:58], order)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    types = [int.from_bytes(table[i * phentsize:i * phentsize + 4], order) for i in range(phnum)]
    return 3 not in types  # PT_INTERP


def version(path: Path | None = None) -> str:
    """busybox's version, e.g. ``1.35.0``."""
    out = run([str(path or binary())], check=False).stdout
    found = re.search(r"BusyBox v(\d+\.\d+(?:\.\d+)?)", out)
    return found.group(1) if found else "unknown"


def applets(path: Path | None = None) -> list[str]:
    return run([str(path or binary()), "--list"]).stdout.split()


def tag() -> str:
    major_minor = ".".join(version().split(".")[:2])
    return f"cloudlab/busybox:{major_minor}"


def rootfs(dest: Path) -> Path:
    """Write a root file system tarball: busybox, a link per applet, /tmp, /srv."""
    bb = binary()
    with tarfile.open(dest, "w") as tar:
        for d in ("bin", "tmp", "srv", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(bb), arcname="bin/busybox")
        for name in applets(bb):
            if name == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return dest


def image(cfg: Settings | None = None) -> str:
    """The busybox image's tag, importing it into the engine the first time."""
    cfg = cfg or settings()
    engine.require(cfg)
    wanted = tag()
    from . import images

    if images.present(wanted):
        return wanted
    with tempfile.TemporaryDirectory(prefix="cloudlab-busybox-") as tmp:
        tarball = rootfs(Path(tmp) / "rootfs.tar")
        run(["docker", "import", "--change", f"LABEL {LOCAL_BUILD_LABEL}=true",
             "--change", 'CMD ["sh"]', "--message", "busybox from the host, by cloudlab",
             str(tarball), wanted], timeout=120)
    return wanted
