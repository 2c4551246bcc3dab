"""The embedded local stand-ins for cloud services, as plain processes on 127.0.0.1.

Each service writes its own config under the state dir, starts detached with a pid file
and a log, is health-checked with a timeout (the log tail goes into the error), and stops
without leaving a process behind. ``up`` is idempotent; a port taken by something else is
reported by number.

>>> with moto() as aws:                      # doctest: +SKIP
...     aws.url
'http://127.0.0.1:5050'
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import requests
import yaml

from .config import Settings, settings
from .errors import ServiceError
from .proc import GiveUp, alive, end, identity, wait_for, which


@dataclass
class Status:
    name: str
    running: bool
    pid: int | None
    url: str
    healthy: bool
    binary: str | None


class Service:
    """A local server process; use as a context manager or call ``start``/``stop``.

    A context manager only stops what it started: a service that was already up (say,
    from ``cloudlab services up``) is left running for the rest of the course.
    """

    name = "service"
    binary = ""
    health_path = "/"
    start_timeout = 30.0

    def __init__(self, cfg: Settings | None = None) -> None:
        self.cfg = cfg or settings()
        self._owned = False

    # -- what differs per service -------------------------------------------------
    @property
    def port(self) -> int:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        """Write the service's own config files under :attr:`dir` (default: none)."""

    def install_hint(self) -> str:
        return f"install {self.binary}"

    # -- shared behaviour ---------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    @property
    def dir(self) -> Path:
        return self.cfg.state_dir / "services" / self.name

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / f"{self.name}.pid"

    def executable(self) -> str | None:
        return which(self.binary)

    def pid(self) -> int | None:
        """The pid of our running process, or None (stale pid files are removed).

        The pid file holds the pid and the process's identity (boot id and start time):
        once our process has gone, its pid may belong to anything, even another copy of
        the same server, and must never be signalled.
        """
        try:
            pid_text, _, recorded = self.pidfile.read_text().strip().partition(" ")
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        ours = (identity(pid) == recorded if recorded  # an older file: command line and
                else self.binary in _cmdline(pid) and _cwd(pid) == self.dir.resolve())  # cwd
        if alive(pid) and ours:
            return pid
        self.pidfile.unlink(missing_ok=True)
        return None

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + self.health_path, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start(self, timeout: float | None = None) -> Service:
        """Start the service (no-op when ours is already running) and wait until healthy."""
        if self.pid() is not None:
            wait_for(self.healthy, timeout=timeout or self.start_timeout,
                     what=f"{self.name} at {self.url}", log=self.log)
            return self
        exe = self.executable()
        if exe is None:
            raise ServiceError(f"{self.name}: `{self.binary}` not found; {self.install_hint()}")
        if port_in_use(self.cfg.host, self.port):
            raise ServiceError(
                f"{self.name}: port {self.port} on {self.cfg.host} is already in use by "
                f"another process; stop it or choose another port with "
                f"CLOUDLAB_{self.name.upper()}_PORT"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        with open(self.log, "ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} starting {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [exe, *self.command()[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{proc.pid} {identity(proc.pid)}")
        self._owned = True

        def ready() -> bool:
            if proc.poll() is not None:
                taken = (f" (port {self.port} was taken by another process meanwhile)"
                         if port_in_use(self.cfg.host, self.port) else "")
                raise GiveUp(f"{self.name} exited with code {proc.returncode}{taken}")
            return self.healthy()

        try:
            wait_for(ready, timeout=timeout or self.start_timeout,
                     what=f"{self.name} at {self.url}{self.health_path}", log=self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10) -> None:
        """Stop the service; idempotent, escalates to SIGKILL, leaves no process behind."""
        pid = self.pid()
        if pid is not None:
            end(pid, timeout)
            # a restart under heavy load once found its own port still answering right
            # after the pid had gone ("in use by another process"): wait until it is free
            wait_for(lambda: not port_in_use(self.cfg.host, self.port), timeout=timeout,
                     interval=0.05, what=f"{self.name}'s port {self.port} to close",
                     log=self.log)
        self.pidfile.unlink(missing_ok=True)
        self._owned = False

    def restart(self, timeout: float | None = None) -> Service:
        """Stop and start again to pick up new config, when running (no-op when not).

        Whether this object stops the service on leaving its ``with`` block is kept: a
        restart does not make a shared course service ours.
        """
        if self.pid() is None:
            return self
        owned = self._owned
        try:
            self.stop()
            self.start(timeout)
        finally:
            self._owned = owned
        return self

    def status(self) -> Status:
        pid = self.pid()
        return Status(self.name, pid is not None, pid, self.url,
                      pid is not None and self.healthy(), self.executable())

    def __enter__(self) -> Service:
        was_running = self.pid() is not None
        try:
            self.start()
        except BaseException:
            if not was_running:
                self.stop()
            raise
        self._owned = not was_running
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class Moto(Service):
    """moto's server: EC2, EFS, ECR, S3 and CloudWatch APIs on 127.0.0.1."""

    name = "moto"
    binary = "moto_server"
    health_path = "/moto-api/"

    @property
    def port(self) -> int:
        return self.cfg.moto_port

    def command(self) -> list[str]:
        return [self.binary, "-H", self.cfg.host, "-p", str(self.port)]

    def install_hint(self) -> str:
        return "pip install 'moto[server]' (make setup does it)"


class Registry(Service):
    """The CNCF Distribution registry (Debian ``docker-registry``), on 127.0.0.1 only."""

    name = "registry"
    binary = "docker-registry"
    health_path = "/v2/"

    @property
    def port(self) -> int:
        return self.cfg.registry_port

    @property
    def htpasswd(self) -> Path:
        return self.dir / "htpasswd"

    def command(self) -> list[str]:
        return [self.binary, "serve", str(self.dir / "config.yml")]

    def write_config(self) -> None:
        config: dict = {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.dir / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"{self.cfg.host}:{self.port}"},
        }
        if self.htpasswd.exists():  # written by cloudlab.registry when auth is turned on
            config["auth"] = {"htpasswd": {"realm": "cloudlab", "path": str(self.htpasswd)}}
        token = self.dir / "token.yml"
        if token.exists():  # a course registry: per-namespace rights (cloudlab.grading.roster)
            config["auth"] = {"token": yaml.safe_load(token.read_text())}
            config["storage"]["delete"]["enabled"] = False
        (self.dir / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def healthy(self) -> bool:
        try:  # 401 means up, with auth on
            code = requests.get(self.url + self.health_path, timeout=2).status_code
        except requests.RequestException:
            return False
        return code in (200, 401)

    def install_hint(self) -> str:
        return "apt-get install docker-registry (make setup does it as root)"


class Prometheus(Service):
    """Prometheus, scraping itself plus file-discovered targets, rules from rules/."""

    name = "prometheus"
    binary = "prometheus"
    health_path = "/-/ready"
    scrape_interval = "5s"
    evaluation_interval = "5s"

    @property
    def port(self) -> int:
        return self.cfg.prometheus_port

    @property
    def targets_dir(self) -> Path:
        return self.dir / "targets"

    @property
    def rules_dir(self) -> Path:
        return self.dir / "rules"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={self.cfg.host}:{self.port}",
            "--web.enable-lifecycle",
        ]

    def write_config(self) -> None:
        self.targets_dir.mkdir(exist_ok=True)
        self.rules_dir.mkdir(exist_ok=True)
        config = {
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(self.rules_dir / "*.yml")],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"{self.cfg.host}:{self.cfg.alertmanager_port}"]}]}
            ]},
            "scrape_configs": [
                {"job_name": "prometheus",
                 "static_configs": [{"targets": [f"{self.cfg.host}:{self.port}"]}]},
                {"job_name": "cloudlab",
                 "file_sd_configs": [{"files": [str(self.targets_dir / "*.json")],
                                      "refresh_interval": "5s"}]},
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def install_hint(self) -> str:
        return "apt-get install prometheus (make setup does it as root)"


class Alertmanager(Service):
    """Alertmanager (Debian's ``prometheus-alertmanager``), clustering off."""

    name = "alertmanager"
    binary = "prometheus-alertmanager"
    health_path = "/-/ready"

    @property
    def port(self) -> int:
        return self.cfg.alertmanager_port

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.dir / 'alertmanager.yml'}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address={self.cfg.host}:{self.port}",
            "--cluster.listen-address=",
        ]

    def write_config(self) -> None:
        path = self.dir / "alertmanager.yml"
        if not path.exists():  # keep a routing tree a notebook installed
            config = {"route": {"receiver": "default", "group_wait": "1s"},
                      "receivers": [{"name": "default"}]}
            path.write_text(yaml.safe_dump(config, sort_keys=False))

    def install_hint(self) -> str:
        return "apt-get install prometheus-alertmanager (make setup does it as root)"


SERVICES: dict[str, type[Service]] = {
    cls.name: cls for cls in (Moto, Registry, Prometheus, Alertmanager)
}


def get(name: str, cfg: Settings | None = None) -> Service:
    """The service called ``name``; unknown names are rejected with the known ones."""
    try:
        return SERVICES[name](cfg)
    except KeyError:
        raise ServiceError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None


def moto(cfg: Settings | None = None) -> Moto:
    return Moto(cfg)


def registry(cfg: Settings | None = None) -> Registry:
    return Registry(cfg)


def prometheus(cfg: Settings | None = None) -> Prometheus:
    return Prometheus(cfg)


def alertmanager(cfg: Settings | None = None) -> Alertmanager:
    return Alertmanager(cfg)


def up(names: Iterable[str] = (), cfg: Settings | None = None) -> list[Service]:
    """Start the named services (all when none are named); idempotent."""
    return [get(n, cfg).start() for n in (list(names) or SERVICES)]


def down(names: Iterable[str] = (), cfg: Settings | None = None) -> None:
    """Stop the named services (all when none are named), side by side."""
    chosen = [get(n, cfg) for n in (list(names) or SERVICES)]
    with ThreadPoolExecutor(max_workers=len(chosen) or 1) as pool:
        list(pool.map(Service.stop, chosen))


def status(names: Iterable[str] = (), cfg: Settings | None = None) -> list[Status]:
    return [get(n, cfg).status() for n in (list(names) or SERVICES)]


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def private(cfg: Settings | None = None) -> Settings:
    """Settings for a Prometheus and an Alertmanager of this run alone.

    Free ports and a state folder of the run's own, so a notebook can start them with the
    intervals it states, whatever the machine-wide ones were started with, and stop them
    at its end. Everything else (run id, AWS, registry) is unchanged.

    >>> mine = private(settings())
    >>> mine.prometheus_port != settings().prometheus_port and "private" in mine.state_dir.parts
    True
    """
    cfg = cfg or settings()
    return replace(cfg, prometheus_port=free_port(cfg.host), alertmanager_port=free_port(cfg.host),
                   state_dir=cfg.state_dir / "private" / cfg.run_id)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None

