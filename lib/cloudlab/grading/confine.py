"""Confinement for the work the grader does on the host for a submission.

Everything the host does with what a student wrote runs under limits: building their
Dockerfile, and running a tool on their files (``promtool``, ``amtool``, ``kubectl``...).

* **Network.** A :class:`Jail` is an ``--internal`` Docker network: the engine drops what
  its containers send past the network (the LAN, 169.254.169.254), and a firewall rule of
  the jail's own rejects what they send to the host itself (an internal network still has
  the host as its gateway, and every service listening on all addresses answered there,
  measured on Docker 20.10). Its one way out is a small
  forwarding proxy (a container on that network and on the default bridge) that connects
  only to the ``host:port`` pairs of an allow-list, by default the package index pip uses.
  Builds get it as ``HTTP(S)_PROXY`` build args, which Docker passes to ``RUN`` steps
  without any ``ARG`` in the Dockerfile.
* **Limits.** :class:`Limits`: CPU, memory, process count, wall time, disk and output.
  A build's CPU and memory go to the engine's build API; its process count goes to a
  cgroup parent the build's containers are put under; its disk is watched (each step's
  layers and the running step's writes) and the build is stopped when it goes over, and
  a single file is capped by ``ulimit fsize``.
* **What a build can read.** The Dockerfile is checked before anything is built, read
  with Docker's own parser (:func:`cloudlab.grading.dockerfile.policy`): ``FROM`` and
  ``COPY --from`` name allowed images or earlier stages (build arguments expanded as
  Docker does), ``ADD`` takes files of the context only (the classic builder fetches a
  URL in the daemon, on the host's network), no ``ONBUILD``, ``# syntax=`` or label under
  ``org.cloudlab``; each problem with its line.
* **Cleanup.** Every image and build container of a build carries ``org.cloudlab.build``
  (a ``LABEL`` after each ``FROM``, added to a copy of the Dockerfile, and the build API's
  labels, which the engine applies last), so :func:`sweep` removes them all, also those
  of a grader that was killed mid-build; a built image whose labels are not the grader's
  fails the build.

>>> from cloudlab.grading import confine
>>> with confine.Jail() as jail:                                      # doctest: +SKIP
...     built = confine.build("submission/", jail=jail)
...     built.ok, built.message
(True, 'the image builds')
>>> confine.run(["promtool", "check", "rules", "/work/rules.yml"],   # doctest: +SKIP
...             files="submission/").output
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import engine
from ..config import LABEL, settings
from ..errors import CloudlabError, CommandError
from ..lifecycle import Managed
from ..proc import run as run_command
from ..proc import wait_for, which
from . import owners

BUILD_LABEL = "org.cloudlab.build"  # value: the build's id
OWNER_LABEL = "org.cloudlab.build.owner"  # value: "<hostname>:<pid>" of the grader
PROXY_PORT = 3128
PROXY_SOURCE = Path(__file__).with_name("buildproxy.py")  # run as a script in the jail
BRIDGE_PREFIX = "clj"  # the jails' bridge interfaces: clj + 11 hex digits
ALLOW_VAR = "CLOUDLAB_BUILD_ALLOW"  # host:port,host:port the build proxy may connect to
CGROUP_ROOT = Path("/sys/fs/cgroup")


class ConfineError(CloudlabError):
    """The confinement itself could not be set up (never a verdict on a submission)."""


def _bytes(size: str | int) -> int:
    if isinstance(size, int):
        return size
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    text = size.strip().lower().rstrip("b")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


@dataclass(frozen=True)
class Limits:
    """What one build or tool run may use.

    >>> Limits(memory="512m").memory_bytes
    536870912
    """

    cpus: float = 1.0
    memory: str = "1g"
    pids: int = 256
    seconds: float = 300.0
    disk: str = "1g"  # layers plus the running step's writes (a build); the tmpfs (a tool)
    output: int = 65536  # characters of output kept

    @property
    def memory_bytes(self) -> int:
        return _bytes(self.memory)

    @property
    def disk_bytes(self) -> int:
        return _bytes(self.disk)


def owner() -> str:
    return owners.owner()


# ------------------------------------------------------------------------ the allow-list
def default_allow() -> list[str]:
    """``host:port`` of the package index (and its file host) that pip uses on this machine.

    ``CLOUDLAB_BUILD_ALLOW`` replaces it (comma-separated; empty = no network at all).
    """
    if ALLOW_VAR in os.environ:
        return [a.strip() for a in os.environ[ALLOW_VAR].split(",") if a.strip()]
    from urllib.parse import urlsplit

    urls = [os.environ.get("PIP_INDEX_URL", "")]
    urls += os.environ.get("PIP_EXTRA_INDEX_URL", "").split()
    if not urls[0]:
        with contextlib.suppress(Exception):  # pip names its default index only here
            import setuptools  # noqa: F401  first: pip's import would drop its distutils
            from pip._internal.models.index import PyPI  # shim, and nbgrader fail to import

            urls = [PyPI.url, f"https://{PyPI.file_storage_domain}/", *urls[1:]]
    found = []
    for url in filter(None, urls):
        parts = urlsplit(url)
        if parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            found.append(f"{parts.hostname}:{port}")
    return sorted(set(found))


class Jail(Managed):
    """An internal Docker network whose only way out is an allow-listing proxy.

    ``allow`` is a list of ``host:port`` (default :func:`default_allow`); with an empty
    list the network has no way out at all. The proxy refuses names that resolve to
    loopback or link-local addresses (169.254.169.254), unless the allow-list names that
    address itself.
    """

    def __init__(self, allow: Iterable[str] | None = None, *, image: str | None = None,
                 labels: dict[str, str] | None = None) -> None:
        self.allow = sorted({a.lower() for a in (default_allow() if allow is None
                                                 else allow)})
        self.image = image or settings().base_image
        self.id = uuid.uuid4().hex[:12]
        self.network = f"cloudlab-jail-{self.id}"
        self.bridge = f"{BRIDGE_PREFIX}{self.id[:11]}"  # interface names: 15 characters
        self.labels = {**(labels or {}), BUILD_LABEL: f"jail-{self.id}",
                       OWNER_LABEL: owner(), LABEL: settings().run_id}
        self.proxy_ip: str | None = None
        self._proxy: str | None = None
        self._net: str | None = None

    @property
    def proxy_url(self) -> str | None:
        return f"http://{self.proxy_ip}:{PROXY_PORT}" if self.proxy_ip else None

    def buildargs(self) -> dict[str, str]:
        """The proxy settings a build gets (Docker passes these without an ARG)."""
        url = self.proxy_url
        if not url:
            return {}
        return {k: url for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}

    def start(self) -> Jail:
        if self._net:
            return self
        api = engine.client(timeout=60)
        try:
            self._net = api.networks.create(self.network, driver="bridge", internal=True,
                                            labels=self.labels,
                                            options={"com.docker.network.bridge.name":
                                                     self.bridge}).id
            _firewall("-I", self.bridge)
            if self.allow:
                self._start_proxy(api)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_proxy(self, api) -> None:
        from docker.types import LogConfig

        box = api.containers.create(
            self.image, ["python", "-c", PROXY_SOURCE.read_text(),
                         json.dumps(self.allow), str(PROXY_PORT)],
            name=f"cloudlab-jail-proxy-{self.id}", labels=self.labels, network="bridge",
            user="65534:65534", read_only=True, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], mem_limit="128m", pids_limit=64,
            nano_cpus=int(0.5e9), detach=True,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}))
        self._proxy = box.id
        api.networks.get(self._net).connect(box)
        box.start()
        deadline = time.monotonic() + 30
        while b"ready" not in box.logs():
            box.reload()
            if box.status == "exited" or time.monotonic() > deadline:
                raise ConfineError("the build proxy did not start: "
                                   + box.logs().decode(errors="replace")[-500:])
            time.sleep(0.1)
        box.reload()
        self.proxy_ip = box.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def proxy_log(self) -> str:
        """What the proxy allowed and refused (one line per connection)."""
        if not self._proxy:
            return ""
        with contextlib.suppress(Exception):
            return engine.client(timeout=30).api.logs(self._proxy).decode(errors="replace")
        return ""

    def stop(self) -> None:
        """Remove the proxy and the network; idempotent."""
        api = engine.client(timeout=60).api
        if self._proxy:
            with contextlib.suppress(Exception):
                api.remove_container(self._proxy, force=True, v=True)
            self._proxy = None
        if self._net:
            with contextlib.suppress(Exception):
                api.remove_network(self._net)
            self._net = None
        with contextlib.suppress(Exception):
            _firewall("-D", self.bridge)
        self.proxy_ip = None


RULE = ["-j", "REJECT"]  # refused at once: a probe of the host fails fast, sends nothing


def _firewall(action: str, bridge: str) -> None:
    """Insert (``-I``) or delete (``-D``) the rule rejecting ``bridge``'s traffic to the host."""
    if which("iptables") is None:
        raise ConfineError("iptables is missing: without it a build could reach the host's "
                           "services; apt-get install iptables")
    for tool in ("iptables", "ip6tables"):
        if which(tool) is None:
            continue
        try:
            run_command([tool, "-w", "5", action, "INPUT", "-i", bridge, *RULE], timeout=30)
        except CommandError as exc:
            if action == "-I" and tool == "iptables":
                raise ConfineError(f"could not fence the build network off the host "
                                   f"(root is needed): {exc}") from None


def _stale_rules() -> list[str]:
    """Bridges of jails that are gone but whose firewall rule was left (a killed grader)."""
    if which("iptables") is None:
        return []
    try:
        listing = run_command(["iptables", "-w", "5", "-S", "INPUT"], timeout=30).stdout
    except CommandError:
        return []
    found = []
    for line in listing.splitlines():
        words = line.split()
        if "-i" in words and words[words.index("-i") + 1].startswith(BRIDGE_PREFIX):
            bridge = words[words.index("-i") + 1]
            if not Path(f"/sys/class/net/{bridge}").exists():
                found.append(bridge)
    return found


# ------------------------------------------------------------------------- cgroups
class PidsCgroup:
    """A cgroup parent whose ``pids.max`` caps every container put under it.

    The build API has no pids limit; a cgroup parent does it (cgroupfs driver only).
    ``path`` is None when this engine or machine cannot do it.
    """

    def __init__(self, pids: int, build_id: str | None = None) -> None:
        self.pids = pids
        self.name = f"cloudlab-build-{build_id or uuid.uuid4().hex[:12]}"
        self.path: Path | None = None

    def start(self) -> PidsCgroup:
        try:
            info = engine.client(timeout=30).info()
        except Exception:
            return self
        if info.get("CgroupDriver") != "cgroupfs":
            return self
        v1 = CGROUP_ROOT / "pids"
        path = (v1 if v1.is_dir() else CGROUP_ROOT) / self.name
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(self.pids))
            self.path = path
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
        return self

    @property
    def parent(self) -> str | None:
        return f"/{self.name}" if self.path else None

    def stop(self) -> None:
        """Remove the parent from every hierarchy: the engine makes the containers' cgroups
        under it in each controller (cpu, memory, ...), not only in pids."""
        if self.path is None:
            return
        with contextlib.suppress(Exception):  # the engine may still be tearing a step down
            wait_for(lambda: _remove_cgroup(self.name), timeout=10, interval=0.1,
                     what=f"cgroup {self.name} to empty")
        self.path = None


def _remove_cgroup(name: str) -> bool:
    """Remove ``name`` (and its empty children) from every hierarchy; whether it is gone."""
    tops = [d for d in CGROUP_ROOT.iterdir() if d.is_dir() and not d.is_symlink()] \
        if CGROUP_ROOT.is_dir() else []
    for top in [*tops, CGROUP_ROOT]:
        path = top / name
        if not path.is_dir():
            continue
        for child in sorted(path.glob("*/"), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()
    return not any((top / name).is_dir() for top in [*tops, CGROUP_ROOT])


def _sweep_cgroups(older_than: float = 600) -> int:
    """Build cgroup parents left by graders that were killed (an empty cgroup whose build
    is long over; one still in use cannot be removed)."""
    names: set[str] = set()
    with contextlib.suppress(OSError):
        for top in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]:
            for path in top.glob("cloudlab-build-*"):
                with contextlib.suppress(OSError):
                    if time.time() - path.stat().st_mtime > older_than:
                        names.add(path.name)
    for name in names:
        _remove_cgroup(name)
    return len(names)


# --------------------------------------------------------------------------- building
@dataclass
class Built:
    ok: bool
    tag: str
    message: str
    log: str = ""
    seconds: float = 0.0
    build_id: str = ""
    limits: dict[str, Any] = field(default_factory=dict)


def _context(folder: Path, text: str, name: str):
    from docker.utils import tar

    exclude = None
    ignore = folder / ".dockerignore"
    if ignore.is_file() and not ignore.is_symlink():
        lines = [x.strip() for x in ignore.read_text(errors="replace").splitlines()]
        exclude = [x for x in lines if x and not x.startswith("#")]
    return tar(str(folder), exclude=exclude, dockerfile=(name, text))


def build(folder: str | Path, dockerfile: str = "Dockerfile", *, jail: Jail | None = None,
          limits: Limits | None = None, allowed_images: Iterable[str] | None = None,
          labels: dict[str, str] | None = None, tag: str | None = None,
          on_step: Callable[[str], None] | None = None, builder=None) -> Built:
    """Build ``folder/dockerfile`` confined; never raises for what the Dockerfile does.

    Without a ``jail`` the build has no network at all. ``builder`` (a started
    :class:`~.jailengine.JailEngine`, or a function returning one, called once the policy
    has passed) builds in an engine of its own whose fetches leave from the jail's network
    namespace, then copies the image to the host's engine; without it the host's engine
    builds. The image is tagged ``tag`` (a fresh ``cloudlab-graded-*``
    name by default) and labelled; remove it with :func:`sweep` (``build_id``) when done.
    """
    folder = Path(folder)
    build_id = uuid.uuid4().hex[:12]
    path = folder / dockerfile
    if not path.is_file() or path.is_symlink():
        return Built(False, "", f"there is no {dockerfile} in the submission",
                     build_id=build_id)
    text = path.read_text(errors="replace")
    allowed = set(allowed_images or [settings().base_image])
    from . import dockerfile as dockerfile_rules  # host side only (kernels import hooks)

    problems = dockerfile_rules.policy(text, allowed)
    if problems:
        return Built(False, "", "the Dockerfile was not built: " + "; ".join(problems)[:600],
                     build_id=build_id)
    if callable(builder):  # started only for a Dockerfile the policy lets through
        try:
            builder = builder()
        except Exception as exc:  # fail closed: no confinement, no build
            return Built(False, "", f"the grader could not confine the build: {exc}"[:500],
                         build_id=build_id)
    return _build(folder, text, build_id, jail=jail, limits=limits or Limits(),
                  labels=labels, tag=tag, on_step=on_step, builder=builder)


def _build(folder: Path, text: str, build_id: str, *, jail: Jail | None, limits: Limits,
           labels: dict[str, str] | None, tag: str | None,
           on_step: Callable[[str], None] | None, builder=None) -> Built:
    """Build ``text`` (already checked by the policy: never call it otherwise)."""
    from . import dockerfile as dockerfile_rules

    start = time.monotonic()
    tag = tag or f"cloudlab-graded-{build_id}:latest"
    stamp = {BUILD_LABEL: build_id, OWNER_LABEL: owner(), LABEL: settings().run_id}
    stamped = dockerfile_rules.stamp(text, stamp)
    pids = PidsCgroup(limits.pids, build_id).start()
    applied = {"network": f"jail {jail.network} allow {jail.allow}" if jail else "none",
               "engine": f"jailed {builder.id}" if builder else "host",
               "memory": limits.memory, "cpus": limits.cpus, "seconds": limits.seconds,
               "disk": limits.disk, "pids": limits.pids if pids.parent else None}
    api = builder.api if builder else _host_api
    network = "host" if builder else (jail.network if jail else "none")  # host: its netns
    lines: list[str] = []
    error: str | None = None
    watch = _Watch(build_id, limits, api)
    try:
        reply = _post_build(_context(folder, stamped, f".cloudlab-{build_id}.Dockerfile"),
                            {"t": tag, "dockerfile": f".cloudlab-{build_id}.Dockerfile",
                             "rm": True, "forcerm": True, "pull": False, "nocache": False,
                             "networkmode": network,
                             "buildargs": json.dumps(jail.buildargs() if jail else {}),
                             "labels": json.dumps({**(labels or {}), **stamp}),
                             "memory": limits.memory_bytes, "memswap": limits.memory_bytes,
                             "cpuperiod": 100_000, "cpuquota": int(limits.cpus * 100_000),
                             "shmsize": 64 * 2**20,
                             "ulimits": json.dumps([{"Name": "fsize",
                                                     "Soft": limits.disk_bytes,
                                                     "Hard": limits.disk_bytes}]),
                             **({"cgroupparent": pids.parent} if pids.parent else {})},
                            limits.seconds + 30, api)
        watch.start(reply)
        for raw in reply.iter_lines():
            if not raw:
                continue
            chunk = json.loads(raw)
            if "stream" in chunk:
                said = chunk["stream"]
                lines.append(said)  # chunks are not whole lines: join them as they come
                if on_step and said.startswith("Step "):
                    on_step(said.rstrip())
            if "error" in chunk:
                error = chunk["error"].strip()
    except Exception as exc:
        reason = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
        error = error or f"the build stopped: {reason}"
    finally:
        watch.stop()
        _kill_build_containers(build_id, api)
        pids.stop()
    log = "".join(lines)[-8000:]
    if watch.why:
        error = watch.why
    if not error:
        error = _relabelled(tag, {**(labels or {}), **stamp}, api)
    if not error and builder:
        try:
            builder.export(tag)
        except Exception as exc:
            error = f"the image could not be copied out of the build engine: {exc}"
    if error:
        if builder:
            sweep(build_id, api=api(60))
        sweep(build_id)
        return Built(False, tag, f"docker build failed: {error[:500]}", log,
                     time.monotonic() - start, build_id, applied)
    if builder:
        sweep(build_id, api=api(60))  # the copy on the host's engine is the one kept
    return Built(True, tag, "the image builds", log, time.monotonic() - start, build_id,
                 applied)


def _host_api(timeout: float):
    return engine.client(timeout=int(timeout)).api


def _relabelled(tag: str, labels: Mapping[str, str], api=_host_api) -> str | None:
    """Why the built image does not carry the grader's ``labels`` (None when it does)."""
    try:
        found = api(30).inspect_image(tag)["Config"].get("Labels") or {}
    except Exception as exc:
        return f"the built image cannot be inspected: {exc}"
    wrong = sorted(k for k, v in labels.items() if found.get(k) != v)
    return f"the image's label {wrong[0]} is not the grader's" if wrong else None


def _post_build(context, params: dict[str, Any], timeout: float, api=_host_api):
    """POST /build with every limit the engine's API has (the SDK leaves some out)."""
    api = api(timeout)
    url = f"{api.base_url}/v{api.api_version}/build"
    reply = api.post(url, params={k: (str(v).lower() if isinstance(v, bool) else v)
                                  for k, v in params.items()},
                     data=context, headers={"Content-Type": "application/x-tar"},
                     stream=True, timeout=(30, timeout))
    if reply.status_code != 200:
        try:
            message = reply.json().get("message", reply.text)
        except ValueError:
            message = reply.text
        raise ConfineError(message.strip()[:500])
    return reply


class _Watch:
    """Stops a build that runs out of time or disk (polls the engine twice a second)."""

    def __init__(self, build_id: str, limits: Limits, api=_host_api) -> None:
        self.build_id, self.limits, self._api = build_id, limits, api
        self.why: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, reply) -> None:
        self._reply = reply
        self._deadline = time.monotonic() + self.limits.seconds
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"watch-{self.build_id}")
        self._thread.start()

    def _run(self) -> None:
        api = self._api(30)
        while not self._stop.wait(0.5):
            used = None
            if time.monotonic() > self._deadline:
                self.why = f"the build took longer than {self.limits.seconds:g} s"
            else:
                with contextlib.suppress(Exception):
                    used = _disk_used(api, self.build_id)
                if used is not None and used > self.limits.disk_bytes:
                    self.why = (f"the build wrote more than {self.limits.disk} "
                                f"({used / 2**20:.0f} MiB)")
            if self.why:
                _kill_build_containers(self.build_id, self._api)
                with contextlib.suppress(Exception):
                    self._reply.close()
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _disk_used(api, build_id: str) -> int:
    """Bytes the build added: its newest step image over its base, plus the running step."""
    flt = {"label": f"{BUILD_LABEL}={build_id}"}
    images = api.images(all=True, filters=flt)
    layers = 0
    if images:
        newest = max(images, key=lambda i: i.get("Created", 0))
        first = min(images, key=lambda i: i.get("Created", 0))
        layers = int(newest.get("Size", 0)) - int(first.get("Size", 0))
    running = sum(int(box.get("SizeRw") or 0)
                  for box in api.containers(all=True, filters=flt, size=True))
    return layers + running


def _kill_build_containers(build_id: str, api=_host_api) -> None:
    with contextlib.suppress(Exception):
        api = api(30)
        for box in api.containers(all=True, filters={"label": f"{BUILD_LABEL}={build_id}"}):
            with contextlib.suppress(Exception):
                api.remove_container(box["Id"], force=True, v=True)


# ------------------------------------------------------------------------------ tools
@dataclass
class Ran:
    ok: bool
    exit_code: int | None
    output: str
    timed_out: bool = False
    seconds: float = 0.0


def run(command: Sequence[str], limits: Limits | None = None, *,
        files: str | Path | None = None, image: str | None = None,
        tools: Iterable[str] = (), network: str = "none",
        labels: dict[str, str] | None = None,
        extra: Mapping[str | Path, str] | None = None) -> Ran:
    """Run ``command`` on a submission's ``files`` in a locked-down container; never raises.

    The files are mounted read-only at ``/work`` (the working directory), and the tool runs
    as the grader's own user (so it can read them) without any capability; ``/tmp`` is a
    tmpfs of ``limits.disk``; the container has no network (``network="none"``), or only a
    :class:`Jail`'s (``network=jail.network``); ``"host"`` is there for a tool that must
    reach a local API server and is the one weaker setting. ``tools`` are host binaries
    (``promtool``, ``amtool``, ``kubectl``: statically linked) mounted read-only into
    ``/opt/tools``, which is on the ``PATH``. ``extra`` mounts more host files read-only
    (host path -> path inside), say a kubeconfig for ``kubectl --kubeconfig``.

    >>> run(["sh", "-c", "echo hi"]).output                       # doctest: +SKIP
    'hi\\n'
    """
    import shutil

    from docker.types import LogConfig, Mount

    limits = limits or Limits()
    start = time.monotonic()
    run_id = uuid.uuid4().hex[:12]
    mounts = []
    if files is not None:
        mounts.append(Mount("/work", str(Path(files).resolve()), type="bind", read_only=True))
    for host_path, inside in (extra or {}).items():
        mounts.append(Mount(inside, str(Path(host_path).resolve()), type="bind",
                            read_only=True))
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            return Ran(False, None, f"{tool} is not installed on the grading machine")
        mounts.append(Mount(f"/opt/tools/{Path(found).name}", os.path.realpath(found),
                            type="bind", read_only=True))
    api = engine.client(timeout=int(limits.seconds) + 30)
    try:
        box = api.containers.create(
            image or settings().base_image, list(command), working_dir="/work",
            environment={"PATH": "/opt/tools:/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"},
            labels={**(labels or {}), BUILD_LABEL: f"run-{run_id}", OWNER_LABEL: owner(),
                    LABEL: settings().run_id},
            **engine.network(network), mounts=mounts, user=f"{os.getuid()}:{os.getgid()}",
            read_only=True,
            tmpfs={"/tmp": f"size={limits.disk_bytes},mode=1777"},
            mem_limit=limits.memory_bytes, memswap_limit=limits.memory_bytes,
            pids_limit=limits.pids, nano_cpus=int(limits.cpus * 1e9), cap_drop=["ALL"],
            security_opt=["no-new-privileges"], init=True, detach=True,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}))
    except Exception as exc:
        return Ran(False, None, f"the tool could not be started: {exc}"[:500])
    timed_out = False
    try:
        box.start()
        try:
            code = box.wait(timeout=limits.seconds).get("StatusCode")
        except Exception:
            timed_out, code = True, None
            with contextlib.suppress(Exception):
                box.kill()
        output = box.logs(stdout=True, stderr=True, tail=2000).decode(errors="replace")
    except Exception as exc:
        return Ran(False, None, f"the tool did not run: {exc}"[:500],
                   seconds=time.monotonic() - start)
    finally:
        with contextlib.suppress(Exception):
            box.remove(force=True, v=True)
    return Ran(code == 0 and not timed_out, code, output[-limits.output:], timed_out,
               time.monotonic() - start)


# ---------------------------------------------------------------------------- cleanup
def sweep(build_id: str | None = None, *, everything: bool = False, api=None) -> int:
    """Remove what confined work left: of one build, else of graders that are gone.

    Containers first, then images newest first (a step image is the parent of the next);
    jail networks last; then the jailed build engines of graders that are gone. ``api``:
    another engine than the host's (a :class:`~.jailengine.JailEngine`'s). Returns how
    many things were removed.
    """
    try:
        api = api or engine.client(timeout=60).api
    except Exception:
        return 0
    flt = {"label": f"{BUILD_LABEL}={build_id}" if build_id else BUILD_LABEL}

    def mine(labels: dict | None) -> bool:
        if build_id or everything:
            return True
        return owners.gone((labels or {}).get(OWNER_LABEL, ""))

    removed = 0
    with contextlib.suppress(Exception):
        for box in api.containers(all=True, filters=flt):
            if mine(box.get("Labels")):
                with contextlib.suppress(Exception):
                    api.remove_container(box["Id"], force=True, v=True)
                    removed += 1
    with contextlib.suppress(Exception):
        images = api.images(all=True, filters=flt)
        for img in sorted(images, key=lambda i: i.get("Created", 0), reverse=True):
            if mine(img.get("Labels")):
                with contextlib.suppress(Exception):
                    api.remove_image(img["Id"], force=True, noprune=False)
                    removed += 1
    with contextlib.suppress(Exception):
        for net in api.networks(filters=flt):
            if mine(net.get("Labels")):
                with contextlib.suppress(Exception):
                    api.remove_network(net["Id"])
                    removed += 1
    if build_id is None:
        from . import jailengine

        with contextlib.suppress(Exception):
            removed += jailengine.sweep()
        with contextlib.suppress(Exception):
            _sweep_cgroups(0 if everything else 600)
        for bridge in _stale_rules():
            with contextlib.suppress(Exception):
                _firewall("-D", bridge)
                removed += 1
    return removed

