"""Base images, available offline.

``bootstrap()`` makes the workbook's Python base image (``python:3.11-slim``) present in
the local engine: pulled from Docker Hub when a registry answers, otherwise built from the
host's own Debian package sources with ``mmdebstrap`` and ``docker import``ed. The build
bakes in the host's extra CA certificates so that ``pip install`` inside ``docker build``
works behind a TLS-intercepting proxy, and is labelled as a local build.

>>> bootstrap()                              # doctest: +SKIP
Image('python:3.11-slim', source='cached')
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine
from .config import Settings, settings
from .errors import CommandError, UnavailableError
from .proc import run

LOCAL_BUILD_LABEL = "org.cloudlab.local-build"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates")
# the official non-slim images add compilers, headers and VCS tools (buildpack-deps)
FULL_EXTRAS = ("build-essential", "python3-dev", "git", "curl", "wget", "openssh-client",
               "procps", "libssl-dev", "libffi-dev", "zlib1g-dev", "libsqlite3-dev")


@dataclass(frozen=True)
class Image:
    tag: str
    source: str  # cached | pulled | built

    def __repr__(self) -> str:
        return f"Image({self.tag!r}, source={self.source!r})"


def present(tag: str) -> bool:
    """Whether the local engine has ``tag``."""
    import docker

    try:
        engine.client(timeout=10).images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def is_local_build(tag: str) -> bool:
    """True when ``tag`` is the offline stand-in rather than the official image."""
    labels = engine.client(timeout=10).images.get(tag).labels or {}
    return labels.get(LOCAL_BUILD_LABEL) == "true"


def bootstrap(tag: str | None = None, cfg: Settings | None = None, pull_timeout: float = 20,
              ) -> Image:
    """Make ``tag`` (default: the configured base image) available; cached after once."""
    cfg = cfg or settings()
    tag = tag or cfg.base_image
    engine.require(cfg)
    if present(tag):
        return Image(tag, "cached")
    try:
        run(["docker", "pull", tag], timeout=pull_timeout)
        return Image(tag, "pulled")
    except CommandError:
        pass  # no registry reachable: build the equivalent from Debian packages
    build_offline(tag, cfg)
    return Image(tag, "built")


def build_offline(tag: str, cfg: Settings | None = None) -> None:
    """Build a Debian-based Python image with mmdebstrap and import it as ``tag``."""
    cfg = cfg or settings()
    if shutil.which("mmdebstrap") is None:
        raise UnavailableError(
            f"cannot pull {tag} and mmdebstrap is missing to build it offline; "
            "apt-get install mmdebstrap (make setup does it as root)"
        )
    sources = next((p for p in APT_SOURCES if p.exists() and p.read_text().strip()), None)
    if sources is None:
        raise UnavailableError("no apt sources file found to build the base image from")
    suite = _suite()
    with tempfile.TemporaryDirectory(prefix="cloudlab-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        hooks = [
            "--customize-hook=rm -f \"$1\"/usr/lib/python3*/EXTERNALLY-MANAGED",
            "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*",
        ]
        if EXTRA_CA_DIR.is_dir() and any(EXTRA_CA_DIR.glob("*.crt")):
            hooks += [
                f"--customize-hook=cp {EXTRA_CA_DIR}/*.crt \"$1\"/usr/local/share/ca-certificates/",
                "--customize-hook=chroot \"$1\" update-ca-certificates",
            ]
        run([
            "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
            f"--include={','.join(packages(tag))}",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            "--aptopt=Acquire::Languages \"none\"",
            *hooks,
            suite, str(tarball), str(sources),
        ], timeout=900, hint="the base image is built from the host's Debian package sources")
        run([
            "docker", "import",
            "--change", f"LABEL {LOCAL_BUILD_LABEL}=true",
            "--change", "ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1",
            "--change", 'CMD ["python3"]',
            "--message", "offline stand-in for the official image, built by cloudlab",
            str(tarball), tag,
        ], timeout=300)


def packages(tag: str) -> tuple[str, ...]:
    """Debian packages of the offline stand-in: ``-slim`` tags get the minimal set.

    >>> "build-essential" in packages("python:3.11"), "git" in packages("python:3.11-slim")
    (True, False)
    """
    return PACKAGES if "slim" in tag.rpartition(":")[2] else PACKAGES + FULL_EXTRAS


def size(tag: str) -> int:
    """The size of a local image in bytes (what ``docker images`` shows).

    >>> size("python:3.11-slim") > 50_000_000              # doctest: +SKIP
    True
    """
    import docker

    try:
        return int(engine.client(timeout=30).images.get(tag).attrs["Size"])
    except docker.errors.ImageNotFound:
        raise UnavailableError(f"image {tag!r} is not present locally") from None


def layers(tag: str) -> list[dict]:
    """The layers of a local image, newest first: the instruction that made each, and its size.

    >>> layers("python:3.11-slim")[0]["size"] >= 0      # doctest: +SKIP
    True
    """
    rows = engine.client(timeout=30).api.history(tag)
    return [{"created_by": r.get("CreatedBy", ""), "size": int(r.get("Size", 0)),
             "id": r.get("Id", "")} for r in rows]


def leaks(tag: str, secret: str | bytes) -> list[str]:
    """Where ``secret`` shows in a local image: history, config, or a file of any layer.

    Reads what ``docker save`` exports (what anyone who pulls the image gets): the
    image config with its history, and every file of every layer (names, link targets and
    contents). Each hit names its place; an empty list means the bytes are nowhere.

    >>> leaks("cloudlab-secret-bk:1", "s3cr3t-token")       # doctest: +SKIP
    []
    >>> leaks("cloudlab-leak:1", "s3cr3t-token")[0]          # doctest: +SKIP
    'history: RUN |1 TOKEN=s3cr3t-token /bin/sh -c echo "$TOKEN" | sha256sum > /token.sha256'
    """
    needle = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not needle:
        raise ValueError("an empty secret is in every image")
    found: list[str] = []
    with tempfile.TemporaryFile(prefix="cloudlab-save-") as saved:
        for chunk in engine.client(timeout=300).images.get(tag).save(named=False):
            saved.write(chunk)
        saved.seek(0)
        with tarfile.open(fileobj=saved) as outer:
            manifest = json.load(_member(outer, "manifest.json"))[0]
            config = json.load(_member(outer, manifest["Config"]))
            history = config.pop("history", [])
            found += [f"history: {row.get('created_by', '')}" for row in history
                      if any(needle in text.encode() for text in _strings(row))]
            found += [f"config: {where}" for where, text in _strings_at(config)
                      if needle in text.encode()]
            made_by = [row.get("created_by", "") for row in history if not row.get("empty_layer")]
            paths = manifest["Layers"]
            for number, path in enumerate(paths, 1):
                what = made_by[number - 1] if len(made_by) == len(paths) else ""
                name = f"layer {number}/{len(paths)}" + (f" ({what[:60]})" if what else "")
                with tarfile.open(fileobj=_member(outer, path), mode="r|*") as layer:
                    for item in layer:
                        if needle in _raw(item.name) or needle in _raw(item.linkname) \
                                or (item.isfile() and _holds(layer.extractfile(item), needle)):
                            found.append(f"{name}: /{item.name.removeprefix('./')}")
    return found


def _member(archive: tarfile.TarFile, name: str) -> Any:
    handle = archive.extractfile(name)
    if handle is None:
        raise UnavailableError(f"docker save wrote no file {name!r}")
    return handle


def _raw(text: str) -> bytes:
    """A tar member's name as the bytes it had (tarfile decodes with surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


def _holds(stream: Any, needle: bytes, size: int = 1 << 20) -> bool:
    """Whether a stream's bytes contain ``needle``, read a chunk at a time.

    >>> import io; _holds(io.BytesIO(b"ab" * 5), b"ba", size=3)
    True
    """
    keep = len(needle) - 1
    tail = b""
    while chunk := stream.read(size):
        window = tail + chunk
        if needle in window:
            return True
        tail = window[len(window) - keep:] if keep else b""
    return False


def _strings(value: Any) -> list[str]:
    return [text for _, text in _strings_at(value)]


def _strings_at(value: Any, where: str = "") -> list[tuple[str, str]]:
    """Every string in a JSON value with its path (keys too: a label's name can leak).

    >>> _strings_at({"Env": ["A=1"], "Labels": {"k": "v"}})
    [('Env', 'Env'), ('Env[0]', 'A=1'), ('Labels', 'Labels'), ('Labels.k', 'k'), ('Labels.k', 'v')]
    """
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for key, inner in value.items():
            at = f"{where}.{key}" if where else str(key)
            out += [(at, str(key)), *_strings_at(inner, at)]
        return out
    if isinstance(value, list):
        return [hit for i, inner in enumerate(value) for hit in _strings_at(inner, f"{where}[{i}]")]
    return []


def remove(tags: list[str] | tuple[str, ...], force: bool = True) -> int:
    """Remove local images by tag or id (missing ones are skipped); how many went."""
    import docker

    api = engine.client(timeout=60)
    gone = 0
    for tag in tags:
        try:
            api.images.remove(tag, force=force, noprune=False)
            gone += 1
        except docker.errors.ImageNotFound:
            pass
    return gone


def remove_labelled(run_id: str) -> int:
    """Remove the images a run built (they carry its run-id label); how many went."""
    from .config import LABEL

    api = engine.client(timeout=60)
    found = api.images.list(filters={"label": f"{LABEL}={run_id}"})
    gone = 0
    for image in found:
        with contextlib.suppress(Exception):  # by id with force: every tag and digest goes
            api.images.remove(image.id, force=True)
            gone += 1
    return gone


def sweep_dangling(min_age: float = 600, api: Any = None) -> int:
    """Remove untagged (dangling) images that carry the local-build label; how many went.

    Images built on the offline base inherit its ``org.cloudlab.local-build`` label, and a
    rebuild under the same tag leaves the previous image untagged. Only those go, and only
    when older than ``min_age`` seconds and used by no container (removal is never
    forced), so a build running elsewhere on the same engine keeps its layers.
    """
    import time

    import docker

    api = api or engine.client(timeout=60)
    used = {c.attrs.get("Image") for c in api.containers.list(all=True, ignore_removed=True)}
    gone = 0
    for image in api.images.list(filters={"dangling": True, "label": LOCAL_BUILD_LABEL}):
        created = image.attrs.get("Created", "")
        age = time.time() - _epoch(created)
        if image.tags or image.id in used or age < min_age:
            continue
        with contextlib.suppress(docker.errors.APIError):
            api.images.remove(image.id, force=False, noprune=False)
            gone += 1
    return gone


def _epoch(created: str) -> float:
    """Seconds since the epoch of a Docker ``Created`` timestamp (nanoseconds allowed)."""
    from datetime import datetime

    stamp = created.rstrip("Z").split(".")[0]
    try:
        return datetime.fromisoformat(stamp + "+00:00").timestamp()
    except ValueError:
        return float("inf")  # unreadable: treat as brand new, never remove


def _suite() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip('"') or "bookworm"
    except OSError:
        pass
    return "bookworm"
