"""Each submission's kernel runs in its own locked-down container.

A jupyter_client kernel provisioner starts ``python -I -m cloudlab.grading.kernel`` with
``docker run``-equivalent settings instead of a local process. The connection file uses the
``ipc`` transport and its socket folder is bind-mounted at the same path, so the container
needs no network at all. Limits (measured on the course machines):

``--network none --read-only --user 1000 --memory 512m --memory-swap 512m --pids-limit 128
--cpus 1 --cap-drop ALL --security-opt no-new-privileges --init``, a size-limited tmpfs for
``/tmp`` and for ``/work`` (the student's scratch copy, filled from a read-only mount of the
submission's files - never the autograded notebook, which holds the hidden tests).

nbgrader, the gradebook, checksums and scoring stay on the host. Every container carries
the owner labels below; :func:`sweep` removes those whose grader process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

from .. import engine
from ..config import LABEL, settings
from ..proc import run
from . import owners

GRADER_LABEL = "org.cloudlab.grader"            # value: "kernel" or "artefact"
OWNER_LABEL = "org.cloudlab.grader.owner"       # value: "<hostname>:<pid>" of the grader
OWNER_ID_LABEL = "org.cloudlab.grader.owner.id"  # value: that process's identity
SUBMISSION_LABEL = "org.cloudlab.grader.submission"
WORK = "/work"
TRUSTED_PATH = "/grader/results.json"
PROBE_DIR = "/probe"  # the probe input's folder in the container (read-only)
PROBE_INPUT = "input.json"
MAX_MESSAGE = 8 * 2**20  # bytes: a bigger message from the kernel is dropped by ZMQ itself
SOCKETS_SIZE = "8m"  # the tmpfs holding the kernel's ipc sockets and connection file


def owner() -> str:
    return owners.owner()


@dataclass
class Limits:
    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 128
    tmp_size: str = "64m"
    work_size: str = "256m"
    max_output: int = 1_000_000  # characters per cell, enforced in the kernel


@dataclass
class SandboxSpec:
    """Everything one submission's kernel container needs."""

    image: str
    assignment: str
    submission: str  # "<student>/<assignment>", for labels and messages
    files: Path | None = None  # host folder mounted read-only at /submission
    trusted: Path | None = None  # host JSON file mounted read-only at TRUSTED_PATH
    probe: Path | None = None  # host folder with the probe input, run before the kernel
    limits: Limits = field(default_factory=Limits)
    owner: str = field(default_factory=owner)
    owner_id: str = field(default_factory=owners.identity_of)
    state: dict[str, Any] = field(default_factory=dict)  # filled in when the kernel stops
    sockdir: Path | None = None
    backend: Any = None  # where it runs instead of a local container (kubejobs.Backend)

    def labels(self) -> dict[str, str]:
        return {GRADER_LABEL: "kernel", OWNER_LABEL: self.owner, OWNER_ID_LABEL: self.owner_id,
                SUBMISSION_LABEL: self.submission, LABEL: settings().run_id}

    def user(self) -> tuple[int, int]:
        """Container user: 1000 when the grader is root, else the grader's own (non-root) ids."""
        if os.geteuid() == 0:
            return 1000, 1000
        return os.geteuid(), os.getegid()


_ACTIVE: SandboxSpec | None = None


def activate(spec: SandboxSpec | None) -> None:
    """Set the spec the next sandbox kernels use (one submission per worker process)."""
    global _ACTIVE
    _ACTIVE = spec


def active() -> SandboxSpec:
    if _ACTIVE is None:
        raise RuntimeError("no sandbox is active: call sandbox.activate(spec) first")
    return _ACTIVE


def _short_dir() -> Path:
    """A socket folder with a short path (unix socket paths must stay under ~107 bytes).

    The kernel can write in it (it creates its sockets there), so it is a tmpfs of
    :data:`SOCKETS_SIZE` when the grader may mount one (as root); ``sockets_limited`` says
    whether it is. Released by :func:`release_dir`; :func:`sweep` unmounts those of dead
    graders.
    """
    path = _socket_base() / f"clg-{uuid.uuid4().hex[:10]}"
    path.mkdir(mode=0o700)
    if os.geteuid() == 0:
        with contextlib.suppress(Exception):
            run(["mount", "-t", "tmpfs", "-o", f"size={SOCKETS_SIZE},mode=0700,nosuid,nodev,"
                 "noexec", "tmpfs", str(path)], timeout=20)
            _stamp(path)
    return path


def _socket_base() -> Path:
    """Where socket folders go: the machine's temporary folder (``$TMPDIR``, else /tmp;
    /tmp when that path is too long for sockets), never a grading run's scratch folder.

    The folder is bind-mounted into the kernel container at the same path: inside a run's
    scratch (``clg-run-*``, which autograde's workers use as their temporary folder) it
    would leave a folder in the container's /tmp that the probe stage cannot wipe.

    >>> import tempfile; tempfile.tempdir = "/tmp/clg-run-1-x"
    >>> str(_socket_base()).startswith("/tmp/clg-run")
    False
    >>> tempfile.tempdir = None
    """
    base = os.environ.get("TMPDIR") or "/tmp"
    return Path(base) if len(base) <= 40 else Path("/tmp")


OWNER_FILE = ".grader"  # "<hostname>:<pid>" of the grader, as older graders read it
OWNER_ID_FILE = ".grader-id"  # that process's identity


def _stamp(folder: Path) -> None:
    (folder / OWNER_ID_FILE).write_text(owners.identity_of())
    (folder / OWNER_FILE).write_text(owner())


def sockets_limited(path: Path) -> bool:
    return os.path.ismount(path)


def release_dir(path: Path) -> None:
    """Unmount (if it is a tmpfs) and remove a socket folder; never raises."""
    if os.path.ismount(path):
        with contextlib.suppress(Exception):
            run(["umount", "-l", str(path)], timeout=20)
    shutil.rmtree(path, ignore_errors=True)


def _sweep_socket_dirs() -> int:
    """Socket tmpfs mounts left by graders that were killed."""
    removed = 0
    for path in _socket_base().glob("clg-*"):
        who = ident = ""
        with contextlib.suppress(OSError):
            who = (path / OWNER_FILE).read_text().strip()
            ident = (path / OWNER_ID_FILE).read_text().strip()
        if not who:  # being set up right now, or very old
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < 600:
                    continue
        if os.path.ismount(path) and owners.gone(who, ident):
            release_dir(path)
            removed += 1
    return removed


class SandboxProvisioner(LocalProvisioner):
    """Launches the kernel in a container; signals and kills go through the engine."""

    container_id: str | None = None
    _polled: tuple[float, int | None] = (0.0, None)

    @property
    def spec(self) -> SandboxSpec:
        return self.parent.sandbox_spec

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop("env", None)  # the host's environment never reaches the container
        kwargs.pop("cwd", None)
        kw = await super().pre_launch(**kwargs)
        uid, gid = self.spec.user()
        conn = Path(self.parent.connection_file)
        if os.geteuid() == 0:
            os.chown(conn.parent, uid, gid)
            os.chown(conn, uid, gid)
        return kw

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        spec = self.spec
        probe, spec.probe = spec.probe, None  # the first kernel only (not a restart)
        if probe is not None:
            connection = Path(self.parent.connection_file).read_bytes()
            self._start(cmd, probe)
            try:
                spec.state["probe"] = self._await_probe(probe)
            except Exception as exc:  # fall back: the graders' probes get their own container
                spec.state["probe_error"] = str(exc)[:300]
                self._finish()
                self._reset_sockdir(connection)
                self._start(cmd, None)
            else:
                self._reset_sockdir(connection)
                (probe / "go").write_text("")
        else:
            self._start(cmd, None)
        self.pid = None
        return self.connection_info

    def _start(self, cmd: list[str], probe: Path | None) -> None:
        """Create and start the container: the kernel, or the probe stage then the kernel
        (:mod:`.probe`: it must be pid 1, so no ``--init`` - it reaps and forwards itself)."""
        spec = self.spec
        uid, gid = spec.user()
        sockdir = str(Path(self.parent.connection_file).parent)
        volumes = {sockdir: {"bind": sockdir, "mode": "rw"}}
        if spec.files is not None:
            volumes[str(spec.files)] = {"bind": "/submission", "mode": "ro"}
        if spec.trusted is not None:
            volumes[str(spec.trusted)] = {"bind": TRUSTED_PATH, "mode": "ro"}
        if probe is not None:
            from .trusted import PROBE_SCRIPT

            volumes[str(probe)] = {"bind": PROBE_DIR, "mode": "ro"}
            cmd = ["python3", "-I", PROBE_SCRIPT, f"{PROBE_DIR}/{PROBE_INPUT}", "--then", *cmd]
        lim = spec.limits
        from docker.types import LogConfig

        api = engine.client(timeout=60)
        container = api.containers.create(
            spec.image, command=cmd, user=f"{uid}:{gid}", working_dir=WORK,
            environment={
                "HOME": "/tmp", "PYTHONUNBUFFERED": "1", "MPLCONFIGDIR": "/tmp/matplotlib",
                "CLOUDLAB_DOCKER": "off", "CLOUDLAB_GRADING_ASSIGNMENT": spec.assignment,
                "CLOUDLAB_TRUSTED_RESULTS": TRUSTED_PATH,
                "CLOUDLAB_MAX_OUTPUT": str(lim.max_output),
            },
            labels=spec.labels(), **engine.network("none"), read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={lim.tmp_size}",
                   WORK: f"rw,nosuid,nodev,size={lim.work_size},uid={uid},gid={gid},mode=0700"},
            volumes=volumes, mem_limit=lim.memory, memswap_limit=lim.memory,
            pids_limit=lim.pids, nano_cpus=int(lim.cpus * 1e9), cap_drop=["ALL"],
            security_opt=["no-new-privileges"], init=probe is None, ipc_mode="private",
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            detach=True,
        )
        self.container_id = container.id
        spec.state["container"] = container.id
        container.start()

    def _await_probe(self, probe: Path) -> list:
        """The probe stage's answers: its one result line, read from the container's stdout
        before the kernel starts (a followed log stream, with a deadline); then the input
        is deleted."""
        from .probe import MARK
        from .probe import budget as probe_budget

        groups = json.loads((probe / PROBE_INPUT).read_text())["groups"]
        budget = probe_budget(groups)
        api = engine.client(timeout=int(budget), fresh=True).api  # closed: ends the stream
        out = b""
        try:
            for chunk in api.logs(self.container_id, stdout=True, stderr=False, stream=True,
                                  follow=True):
                out += chunk
                if (MARK.encode() in out and out.endswith(b"\n")) or len(out) > 4 * 2**20:
                    break
        except Exception as exc:
            raise RuntimeError(f"the probe stage gave no result within {budget:g} s "
                               f"({type(exc).__name__})") from None
        finally:
            api.close()
            (probe / PROBE_INPUT).unlink(missing_ok=True)  # the kernel never sees it
        text = out.decode(errors="replace")
        marks = [ln for ln in text.splitlines() if ln.startswith(MARK)]
        if not marks:
            state = self._inspect() or {}
            raise RuntimeError(f"the probe stage ended (exit code {state.get('ExitCode')}) "
                               f"without a result: {text[-300:] or _log_tail(self.container_id)}")
        if len(marks) != 1 or not text.rstrip("\n").endswith(marks[0]):
            raise RuntimeError("the probe stage's output was not a single result line")
        answers = json.loads(marks[0][len(MARK):])
        if not isinstance(answers, list) or len(answers) != len(groups):
            raise RuntimeError("the probe stage gave no usable answer")
        return answers

    def _reset_sockdir(self, connection: bytes) -> None:
        """Remove whatever the probe stage left in the (writable) socket folder and write
        the connection file afresh (never through a path it may have replaced)."""
        conn = Path(self.parent.connection_file)
        folder = conn.parent
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        fresh = folder / f".{conn.name}.new"
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(connection)
        if os.geteuid() == 0:
            uid, gid = self.spec.user()
            os.chown(fresh, uid, gid)
        os.replace(fresh, conn)
        if sockets_limited(folder):
            _stamp(folder)

    def _inspect(self) -> dict[str, Any] | None:
        try:
            return engine.client(timeout=30).api.inspect_container(self.container_id)["State"]
        except Exception:
            return None

    async def poll(self) -> int | None:
        if self.container_id is None:
            return 0
        now = time.monotonic()
        if now - self._polled[0] < 0.25:
            return self._polled[1]
        state = self._inspect()
        code = None if state and state.get("Running") else (state or {}).get("ExitCode", -1)
        self._polled = (now, code)
        return code

    async def wait(self) -> int | None:
        import asyncio

        while self.container_id is not None and (code := await self.poll()) is None:
            await asyncio.sleep(0.1)
        return 0 if self.container_id is None else code

    async def send_signal(self, signum: int) -> None:
        if self.container_id is None:
            return
        with contextlib.suppress(Exception):  # already stopped: nothing to signal
            engine.client(timeout=30).api.kill(self.container_id, signal=int(signum))
        self._polled = (0.0, None)

    async def kill(self, restart: bool = False) -> None:
        self._finish()  # one call kills and removes the container

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        self._finish()
        spec = self.spec
        if not restart and spec.sockdir is not None:
            release_dir(spec.sockdir)

    def _finish(self) -> None:
        """Record how the container ended (exit code, OOM kill), then remove it."""
        if self.container_id is None:
            return
        state = self._inspect() or {}
        ended_by_itself = not state.get("Running", False)
        self.spec.state.update(exit_code=state.get("ExitCode") if ended_by_itself else None,
                               oom_killed=state.get("OOMKilled"),
                               log_tail=_log_tail(self.container_id) if ended_by_itself else "")
        remove(self.container_id)
        self.container_id = None


def _log_tail(container_id: str, lines: int = 20) -> str:
    try:
        raw = engine.client(timeout=30).api.logs(container_id, tail=lines)
        return raw.decode(errors="replace")[-4000:]
    except Exception:
        return ""


def remove(container_id: str) -> None:
    with contextlib.suppress(Exception):
        engine.client(timeout=60).api.remove_container(container_id, force=True, v=True)


class SandboxKernelClient(AsyncKernelClient):
    """A client whose sockets refuse any message over :data:`MAX_MESSAGE` bytes.

    The cap applies in ZMQ, before a message is assembled in the grader's memory: an
    oversized output, display update, comm (widget) state or error never reaches Python.
    """

    def _create_connected_socket(self, channel: str, identity: bytes | None = None
                                 ) -> zmq.Socket:
        from jupyter_client.connect import channel_socket_types

        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        if identity:
            sock.identity = identity
        sock.connect(self._make_url(channel))
        return sock


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in the active :class:`SandboxSpec`'s container."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        spec = active()
        self.sandbox_spec = spec
        spec.sockdir = _short_dir()
        self.transport = "ipc"
        self.ip = str(spec.sockdir / "k")
        self.connection_file = str(spec.sockdir / "kernel.json")
        self._kernel_spec = KernelSpec(
            argv=["/usr/bin/python3", "-I", "-m", "cloudlab.grading.kernel",
                  "-f", "{connection_file}"],
            display_name="Python 3 (grading sandbox)", language="python",
            interrupt_mode="signal", metadata={},
        )
        self.kernel_id = str(uuid.uuid4())
        self.client_factory = SandboxKernelClient
        self.provisioner = SandboxProvisioner(kernel_id=self.kernel_id,
                                              kernel_spec=self._kernel_spec, parent=self)

    @property
    def ipykernel(self) -> bool:
        return True


def _owner_gone(labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return owners.gone(labels.get(OWNER_LABEL, ""), labels.get(OWNER_ID_LABEL, ""))


def sweep(*, everything: bool = False) -> int:
    """Remove grading containers and images whose grader process has gone (or all, if
    ``everything``): kernels, probes, and the images a killed grader built from a
    submission (tagged or left untagged). Returns how many containers went."""
    try:
        api = engine.client(timeout=60)
        found = api.containers.list(all=True, filters={"label": GRADER_LABEL},
                                    ignore_removed=True)
    except Exception:
        return 0
    removed = 0
    with contextlib.suppress(Exception):
        _sweep_socket_dirs()
    for c in found:
        if everything or _owner_gone(c.labels):
            remove(c.id)
            removed += 1
    with contextlib.suppress(Exception):
        for image in api.images.list(filters={"label": OWNER_LABEL}):  # never the grading
            if everything or _owner_gone(image.labels):  # image itself: it has no owner
                with contextlib.suppress(Exception):
                    api.images.remove(image.id, force=True)
    return removed
