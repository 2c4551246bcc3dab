"""Running containers: ports, volumes, log options, CPU/memory/pids limits, env and GPUs.

``run`` starts a :class:`Container`. Containers are context managers and carry the
run-id label, so ``cloudlab cleanup`` finds any that a crash left behind.

>>> with run("python:3.11-slim", ["python", "-c", "print('hi')"]) as box:  # doctest: +SKIP
...     box.wait()
...     box.logs()
0
'hi\\n'
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from .. import engine
from ..config import LABEL, Settings, settings
from ..errors import CloudlabError, CommandError, UnavailableError
from ..lifecycle import Managed
from ..proc import wait_for
from .building import BOOTSTRAP_HINT

# json-file with a size cap (rotated, at most 3 x 10 MB) that never blocks the app on logging
DEFAULT_LOG_OPTS = {"mode": "non-blocking", "max-buffer-size": "4m",
                    "max-size": "10m", "max-file": "3"}
GPU_HINT = ("this Docker engine has no GPU runtime: a container can only be given a GPU "
            "when the host has an NVIDIA GPU and driver and the NVIDIA Container Toolkit "
            "registers the `nvidia` runtime with dockerd (then `--gpus all` works)")


# ----------------------------------------------------------------------------------- run
def gpu_available() -> bool:
    """Whether containers can be given GPUs here (the engine has the NVIDIA runtime)."""
    return engine.gpu_runtime()


def gpu_request(gpus: int | str) -> list[docker.types.DeviceRequest]:
    """The ``--gpus`` equivalent: ``"all"`` or a count; explains why not when impossible.

    >>> gpu_request(0)
    []
    """
    if gpus in (0, None, ""):
        return []
    if gpus != "all" and not (isinstance(gpus, int) and gpus > 0):
        raise ValueError(f"gpus={gpus!r}: use 'all' or a positive number of GPUs")
    if not engine.gpu_runtime():
        raise UnavailableError(GPU_HINT)
    return [docker.types.DeviceRequest(count=-1 if gpus == "all" else int(gpus),
                                       capabilities=[["gpu"]])]


def volume(name: str | None = None, cfg: Settings | None = None):
    """A named volume carrying the run-id label (reused when it exists already)."""
    cfg = cfg or settings()
    api = engine.client(timeout=30)
    if name:
        with contextlib.suppress(docker.errors.NotFound):
            return api.volumes.get(name)
    return api.volumes.create(name=name, labels=cfg.labels())


def _mounts(volumes: Mapping[str, str] | None, cfg: Settings) -> list[docker.types.Mount]:
    mounts = []
    for source, spec in (volumes or {}).items():
        target, _, mode = str(spec).partition(":")
        if not target.startswith("/"):
            raise ValueError(f"volume {source!r}: target {target!r} must be an absolute path")
        if mode not in ("", "ro", "rw"):
            raise ValueError(f"volume {source!r}: mode {mode!r} is not 'ro' or 'rw'")
        if source.startswith(("/", ".")):
            host = Path(source).resolve()
            if not host.exists():
                raise FileNotFoundError(f"bind mount source {host} does not exist")
            mounts.append(docker.types.Mount(target, str(host), type="bind",
                                             read_only=mode == "ro"))
        else:
            volume(source, cfg)  # create it labelled, so cleanup finds it
            mounts.append(docker.types.Mount(target, source, type="volume",
                                             read_only=mode == "ro"))
    return mounts


class Container(Managed):
    """A container: ``start()``/``stop()`` or a ``with`` block (stopped and removed after).

    >>> with Container("python:3.11-slim", ["sleep", "30"], cpus=0.5) as box:  # doctest: +SKIP
    ...     box.status
    'running'
    """

    def __init__(
        self,
        image: str,
        command: Sequence[str] | str | None = None,
        *,
        name: str | None = None,
        ports: Mapping[int | str, int | None] | None = None,
        volumes: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        cpus: float | None = None,
        memory: str | int | None = None,
        pids_limit: int | None = None,
        log_driver: str = "json-file",
        log_opts: Mapping[str, str] | None = None,
        gpus: int | str | None = None,
        user: str | None = None,
        workdir: str | None = None,
        entrypoint: Sequence[str] | str | None = None,
        network: str | None = None,
        init: bool = True,
        labels: Mapping[str, str] | None = None,
        cfg: Settings | None = None,
    ) -> None:
        if cpus is not None and cpus <= 0:
            raise ValueError(f"cpus={cpus!r} must be positive, e.g. 0.25 for a quarter core")
        if pids_limit is not None and pids_limit < 1:
            raise ValueError(f"pids_limit={pids_limit!r} must be at least 1")
        self.cfg = cfg or settings()
        self.image = image
        self.command = command
        self.name = name
        self.ports = dict(ports or {})
        self.volumes = dict(volumes or {})
        self.env = dict(env or {})
        self.cpus = cpus
        self.memory = memory
        self.pids_limit = pids_limit
        if log_opts is None:
            log_opts = DEFAULT_LOG_OPTS if log_driver == "json-file" else {}
        self.log_config = docker.types.LogConfig(type=log_driver, config=dict(log_opts))
        self.gpus = gpus
        self.user = user
        self.workdir = workdir
        self.entrypoint = entrypoint
        self.network = network
        self.init = init
        self.labels = {**self.cfg.labels(), **(labels or {})}
        self._box = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> Container:
        """Create and start the container (no-op when already started)."""
        if self._box is not None:
            return self
        engine.require(self.cfg)
        api = engine.client(timeout=60)
        device_requests = gpu_request(self.gpus) if self.gpus else None
        mounts = _mounts(self.volumes, self.cfg)
        ports = {_port_key(p): (self.cfg.host, h or None) for p, h in self.ports.items()}
        memory = self.memory
        try:
            self._box = api.containers.create(
                self.image, self.command, name=self.name, detach=True, labels=self.labels,
                ports=ports or None, mounts=mounts or None, environment=self.env or None,
                nano_cpus=int(self.cpus * 1e9) if self.cpus else None,
                mem_limit=memory, memswap_limit=memory,  # no swap: over the limit = OOM
                pids_limit=self.pids_limit, log_config=self.log_config,
                device_requests=device_requests, user=self.user, working_dir=self.workdir,
                entrypoint=self.entrypoint, network=self.network, init=self.init or None,
            )
        except docker.errors.ImageNotFound:
            raise UnavailableError(
                f"image {self.image!r} is not present locally (and is not pulled "
                f"automatically): build it with cl.docker.build, pull it with "
                f"cl.registry.pull, or for the base image {BOOTSTRAP_HINT}") from None
        except docker.errors.APIError as exc:
            raise CommandError(f"docker create {self.image}", exc.status_code, "",
                               exc.explanation or str(exc)) from None
        try:
            self._box.start()
        except BaseException as exc:
            self.stop()
            if isinstance(exc, docker.errors.APIError):
                raise CommandError(f"docker start {self.image}", exc.status_code, "",
                                   exc.explanation or str(exc)) from None
            raise
        self._box.reload()
        self.name = self._box.name
        return self

    def stop(self) -> None:
        """Kill and remove the container and its anonymous volumes; idempotent."""
        box, self._box = self._box, None
        if box is None:
            return
        with contextlib.suppress(docker.errors.NotFound):
            box.remove(force=True, v=True)

    # -- looking at it ------------------------------------------------------------------
    @property
    def raw(self):
        """The Docker SDK container object (started containers only)."""
        if self._box is None:
            raise CloudlabError(f"container for {self.image} is not running (start it first)")
        return self._box

    @property
    def id(self) -> str:
        return self.raw.id

    @property
    def status(self) -> str:
        self.raw.reload()
        return self.raw.status

    def state(self) -> dict[str, Any]:
        """The engine's state record: Status, ExitCode, OOMKilled, StartedAt, ..."""
        self.raw.reload()
        return dict(self.raw.attrs["State"])

    @property
    def oom_killed(self) -> bool:
        return bool(self.state().get("OOMKilled"))

    def wait(self, timeout: float = 60) -> int:
        """Wait until the container exits; its exit code."""
        box = self.raw

        def exited() -> bool:
            box.reload()
            return box.status in ("exited", "dead")

        wait_for(exited, timeout=timeout, what=f"container {box.name} to exit")
        return int(box.attrs["State"]["ExitCode"])

    def logs(self, tail: int | None = None) -> str:
        """What the container printed (stdout and stderr)."""
        out = self.raw.logs(stdout=True, stderr=True, tail=tail if tail else "all")
        return out.decode(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        """Wait until ``text`` appears in the logs; the logs so far."""
        return wait_for(lambda: text in (out := self.logs()) and out, timeout=timeout,
                        what=f"{text!r} in the logs of {self.name}")

    def port(self, container_port: int | str | None = None) -> Any:
        """The ``docker port`` equivalent: all mappings, or the host port of one.

        >>> box.port()          # doctest: +SKIP
        {'8000/tcp': ['127.0.0.1:49153']}
        >>> box.port(8000)      # doctest: +SKIP
        49153
        """
        self.raw.reload()
        mapped = self.raw.attrs["NetworkSettings"]["Ports"] or {}
        table = {k: [f"{b['HostIp']}:{b['HostPort']}" for b in (v or [])]
                 for k, v in mapped.items() if v}
        if container_port is None:
            return table
        key = _port_key(container_port)
        if key not in table:
            raise CloudlabError(f"port {key} is not published; published: {list(table)}")
        return int(table[key][0].rsplit(":", 1)[1])

    def exec(self, command: Sequence[str] | str, user: str | None = None) -> tuple[int, str]:
        """Run a command inside the running container; (exit code, output)."""
        code, out = self.raw.exec_run(command, user=user or "")
        return int(code), out.decode(errors="replace")

    def stats(self, samples: int = 3):
        """``samples`` one-second readings: CPU (in cores), memory (MiB) and pids.

        CPU comes from the engine's cgroup counters: ``cpu`` = CPU time used / wall time,
        so 0.25 means a quarter of one core.
        """
        import pandas as pd

        rows = []
        t0 = time.monotonic()
        stream = self.raw.client.api.stats(self.raw.id, stream=True, decode=True)
        try:
            for raw in stream:
                row = _stats_row(raw)
                if row is not None:
                    rows.append({"t": round(time.monotonic() - t0, 2), **row})
                if len(rows) >= samples:
                    break
        finally:
            with contextlib.suppress(Exception):
                stream.close()
        return pd.DataFrame(rows, columns=["t", "cpu", "memory_mib", "memory_limit_mib",
                                           "pids"])

    def cpu_share(self, samples: int = 3) -> float:
        """Mean CPU used over ``samples`` seconds, in cores (0.25 = a quarter core)."""
        return float(self.stats(samples)["cpu"].mean())

    def __repr__(self) -> str:
        state = self._box.short_id if self._box is not None else "not started"
        return f"<Container {self.image} {state}>"


def _port_key(port: int | str) -> str:
    text = str(port)
    return text if "/" in text else f"{text}/tcp"


def _stats_row(raw: Mapping[str, Any]) -> dict[str, float] | None:
    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if not pre.get("system_cpu_usage") or system <= 0:
        return None  # the first reading has nothing to compare with
    used = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [1])
    mem = raw.get("memory_stats") or {}
    return {"cpu": round(used / system * online, 4),
            "memory_mib": round(mem.get("usage", 0) / 2**20, 2),
            "memory_limit_mib": round(mem.get("limit", 0) / 2**20, 2),
            "pids": (raw.get("pids_stats") or {}).get("current", 0)}


def run(image: str, command: Sequence[str] | str | None = None, **options: Any) -> Container:
    """Start a container (see :class:`Container` for the options) and return it."""
    return Container(image, command, **options).start()


def run_once(image: str, command: Sequence[str] | str | None = None, *, timeout: float = 120,
             **options: Any) -> str:
    """``docker run --rm``: run to completion and return the output; raise when it fails."""
    with Container(image, command, **options) as box:
        code = box.wait(timeout)
        out = box.logs()
    if code != 0:
        cmd = command if isinstance(command, str) else " ".join(command or [])
        raise CommandError(f"docker run {image} {cmd}".strip(), code, out, "")
    return out


def containers(cfg: Settings | None = None) -> list[Any]:
    """The containers of this run (all states), found by the run-id label."""
    cfg = cfg or settings()
    return engine.client(timeout=30).containers.list(
        all=True, filters={"label": f"{LABEL}={cfg.run_id}"}, ignore_removed=True)
