"""Docker Swarm on the local engine: a stack of replicas behind a load balancer.

:class:`Swarm` makes the engine a single-node swarm and, on ``stop()``, leaves it only if
it joined it itself (the engine is left as it was found, ``docker_gwbridge`` included).
:class:`Stack` writes a compose file and ``docker stack deploy``\\s it: the prediction
service (``endpoint_mode: dnsrr``, health check, ``update_config`` with automatic
rollback, a CPU reservation and limit); beside it, on the stack's network, HAProxy from
Debian (it re-resolves ``tasks.predict`` through Docker's DNS every two seconds) and
Prometheus from Debian's package (it finds every replica the same way). Then it scales,
rolls updates and rolls back. Every service, container and network carries the run-id
label.

Why this shape, measured on this machine: the kernel has no IPVS, so Swarm's virtual IPs
and routing mesh do not work; ``dnsrr`` services and a load balancer inside the overlay
network do. The host has no route to the overlay's task addresses, so whatever talks to
single replicas (the balancer, Prometheus) sits on the stack's network. A stack file
cannot publish a port on 127.0.0.1 only (the schema rejects ``host_ip``; a Swarm port
opens on every interface), so those two are plain containers attached to the stack's
attachable network, publishing on 127.0.0.1.

>>> with Stack(replicas=2) as stack:                              # doctest: +SKIP
...     stack.scale(4)
...     stack.update(version="v2")
...     stack.rollback()
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import re
from pathlib import Path
from typing import Any

import requests
import yaml

from . import engine, images, predict
from .config import LABEL, Settings, settings
from .errors import CloudlabError, CommandError, ServiceError, UnavailableError
from .lifecycle import Managed
from .ports import free_port
from .proc import run, wait_for

GWBRIDGE = "docker_gwbridge"
PROMETHEUS_BINARY = Path("/usr/bin/prometheus")  # Debian's package, bind-mounted
LB_PORT = 8080  # inside the balancer's container
LB_STATS_PORT = 8404
PROM_PORT = 9090
MAX_REPLICAS = 10  # the balancer's server slots (HAProxy server-template)
STACK_LABEL = "com.docker.stack.namespace"


class SwarmError(CloudlabError):
    """A swarm or stack operation failed; the message says which and why."""


# ----------------------------------------------------------------------------- swarm
def state() -> str:
    """This engine's swarm state: ``inactive``, ``active``, ``pending``, ``error``..."""
    return engine.client(timeout=10).info().get("Swarm", {}).get("LocalNodeState", "inactive")


def cluster_id() -> str:
    """The ID of the swarm this engine is in ("" when in none). A swarm left and made
    again by someone else has another ID: leaving is only for the swarm one made."""
    return (engine.client(timeout=10).info().get("Swarm", {}).get("Cluster") or {}).get(
        "ID", "")


def _network_exists(name: str) -> bool:
    import docker.errors

    try:
        engine.client(timeout=10).networks.get(name)
        return True
    except docker.errors.NotFound:
        return False


class Swarm(Managed):
    """A single-node swarm on the local engine; leaves on ``stop()`` only if it joined.

    >>> with Swarm() as swarm:                                     # doctest: +SKIP
    ...     swarm.joined
    True
    """

    def __init__(self, cfg: Settings | None = None, advertise_addr: str = "127.0.0.1") -> None:
        self.cfg = cfg or settings()
        self.advertise_addr = advertise_addr
        self.joined = False
        self.cluster = ""  # the ID of the swarm this object made
        self._had_gwbridge = True

    def start(self) -> Swarm:
        engine.require(self.cfg)
        now = state()
        if now == "active":
            return self
        if now != "inactive":
            raise SwarmError(f"this engine's swarm state is {now!r}; fix it by hand "
                             "(docker swarm leave --force) before using cloudlab.swarm")
        self._had_gwbridge = _network_exists(GWBRIDGE)
        run(["docker", "swarm", "init", "--advertise-addr", self.advertise_addr],
            timeout=60, hint="a single-node swarm on this engine")
        self.joined = True
        self.cluster = cluster_id()
        # remembered on disk, so `cloudlab cleanup --run-id` can leave after a crash
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(json.dumps({"run_id": self.cfg.run_id, "cluster": self.cluster,
                                           "had_gwbridge": self._had_gwbridge}))
        return self

    @property
    def marker(self) -> Path:
        return self.cfg.state_dir / "swarm" / "joined.json"

    def stop(self) -> None:
        """Leave the swarm if this object made it and it is still the engine's, and remove
        the networks that made. (One a sweep already left, and someone else made anew
        since, is not this object's to leave: a crashed run's stack stopped late, at its
        process's exit, once left another test's swarm that way.)"""
        if not self.joined:
            return
        self.joined = False
        if cluster_id() == self.cluster:
            _leave(self._had_gwbridge)
        self.marker.unlink(missing_ok=True)


def _leave(had_gwbridge: bool) -> None:
    run(["docker", "swarm", "leave", "--force"], timeout=60, check=False)
    if not had_gwbridge:
        with contextlib.suppress(Exception):
            wait_for(lambda: _remove_network(GWBRIDGE), timeout=20,
                     what=f"{GWBRIDGE} to be removable")


def sweep(run_id: str | None = None, cfg: Settings | None = None) -> int:
    """Leave the swarm a crashed run joined (per its marker) once no service is left; 1
    when it left. Called by ``cloudlab cleanup`` after services are removed."""
    cfg = cfg or settings()
    marker = cfg.state_dir / "swarm" / "joined.json"
    try:
        joined = json.loads(marker.read_text())
    except (OSError, ValueError):
        return 0
    if run_id and joined.get("run_id") != run_id:
        return 0
    ours = state() == "active" and cluster_id() == joined.get("cluster")
    if ours and engine.client(timeout=30).services.list():
        return 0  # someone else's services still run in it: keep the swarm
    if ours:
        _leave(bool(joined.get("had_gwbridge", True)))
    marker.unlink(missing_ok=True)
    return int(ours)


def _remove_network(name: str) -> bool:
    import docker.errors

    try:
        engine.client(timeout=10).networks.get(name).remove()
    except docker.errors.NotFound:
        return True
    return not _network_exists(name)


# --------------------------------------------------------------------------- configs
def haproxy_config(service: str = "predict", port: int = predict.PORT,
                   slots: int = MAX_REPLICAS, resolve_every: str = "2s",
                   per_server: int = 4) -> str:
    """HAProxy in front of a ``dnsrr`` service: ``slots`` servers filled from DNS.

    ``server-template`` keeps that many server slots and fills them with the addresses
    ``tasks.<service>`` resolves to through Docker's DNS (127.0.0.11), re-resolving every
    ``resolve_every``: new replicas get traffic, removed ones stop getting it.

    >>> "server-template app 10 tasks.predict:8000" in haproxy_config()
    True
    """
    return f"""\
global
    log stdout format raw local0 warning
    maxconn 2000

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 30s
    timeout check 5s
    retries 2
    option redispatch

resolvers docker
    nameserver dns 127.0.0.11:53
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid {resolve_every}
    hold other {resolve_every}
    hold refused {resolve_every}
    hold nx {resolve_every}
    hold timeout {resolve_every}
    hold obsolete {resolve_every}
    accepted_payload_size 8192

frontend web
    bind :{LB_PORT}
    default_backend {service}

frontend stats
    bind :{LB_STATS_PORT}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /stats
    stats refresh 5s

backend {service}
    balance leastconn
    option httpchk GET /healthz
    # at most {per_server} requests in flight per replica, the rest wait here: a busy
    # replica still answers its health check and Prometheus's scrape in time
    default-server inter 2s fall 3 rise 1 maxconn {per_server}
    server-template app {slots} tasks.{service}:{port} check resolvers docker init-addr none
"""


def prometheus_config(service: str = "predict", port: int = predict.PORT,
                      scrape_interval: str = "2s", lb: str = "lb") -> str:
    """Prometheus on the stack's network: every replica found through DNS, plus the LB.

    >>> "tasks.predict" in prometheus_config()
    True
    """
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {"job_name": service,
             "dns_sd_configs": [{"names": [f"tasks.{service}"], "type": "A", "port": port,
                                 "refresh_interval": "2s"}]},
            {"job_name": "lb", "static_configs": [{"targets": [f"{lb}:{LB_STATS_PORT}"]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{PROM_PORT}"]}]},
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


LB_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends haproxy \\
 && rm -rf /var/lib/apt/lists/*
USER haproxy
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
"""


def lb_image(cfg: Settings | None = None, progress: bool = False) -> str:
    """HAProxy from Debian on the workbook's base image, built once and cached."""
    import hashlib
    import tempfile

    from . import docker

    cfg = cfg or settings()
    text = LB_DOCKERFILE.format(base=cfg.base_image)
    wanted = f"cloudlab-haproxy:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    if images.present(wanted):
        return wanted
    images.bootstrap(cfg.base_image, cfg)
    with tempfile.TemporaryDirectory(prefix="cloudlab-lb-") as tmp:
        Path(tmp, "Dockerfile").write_text(text)
        docker.build(tmp, wanted, progress=progress, cfg=cfg,
                     labels={LABEL: predict.CACHE_LABEL})
    return wanted


def compose(*, image: str, replicas: int = 2, version: str = "v1", work: int = 4,
            cpu_limit: float = 0.25, cpu_reservation: float = 0.15,
            labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The stack as a compose document (what ``docker stack deploy -c`` reads).

    ``cpu_reservation`` is the service's CPU *request*: the autoscaler measures CPU
    utilisation against it. The network is attachable, so the balancer and Prometheus
    (plain containers, see :class:`Stack`) can join it.

    >>> doc = compose(image="cloudlab-predict:x")
    >>> doc["services"]["predict"]["deploy"]["endpoint_mode"]
    'dnsrr'
    """
    labels = dict(labels or {})
    health = {"test": ["CMD", *predict.HEALTH_CMD], "interval": "2s", "timeout": "5s",
              "retries": 3, "start_period": "30s"}
    return {
        "version": "3.9",
        "services": {
            "predict": {
                "image": image,
                "environment": {"APP_VERSION": version, "PREDICT_WORK": str(work)},
                "healthcheck": health,
                "labels": labels,
                "stop_grace_period": "5s",
                "networks": ["net"],
                "deploy": {
                    "replicas": replicas,
                    "endpoint_mode": "dnsrr",
                    "labels": labels,
                    "resources": {"limits": {"cpus": str(cpu_limit), "memory": "256M"},
                                  "reservations": {"cpus": str(cpu_reservation)}},
                    "update_config": {"parallelism": 1, "delay": "1s", "order": "start-first",
                                      "failure_action": "rollback", "monitor": "4s"},
                    "rollback_config": {"parallelism": 2, "delay": "0s",
                                        "order": "stop-first"},
                    "restart_policy": {"condition": "any", "delay": "2s"},
                },
            },
        },
        "networks": {"net": {"driver": "overlay", "attachable": True, "labels": labels}},
    }


# ----------------------------------------------------------------------------- stack
class Stack(Managed):
    """The prediction service as a swarm stack, with a balancer and Prometheus beside it.

    ``start()`` joins a swarm if needed, builds the images once, deploys the stack (the
    ``predict`` service on an attachable overlay network), then starts HAProxy and
    Prometheus as plain containers on that network with their ports on 127.0.0.1, and
    waits until every replica is healthy and the balancer answers. ``stop()`` removes them,
    then the stack, waits until its containers and network are gone, and leaves the swarm
    if it joined it.

    Why the balancer and Prometheus are not services of the stack: a stack file cannot
    say ``host_ip`` (Docker's schema rejects it), so a swarm service's host-mode port
    binds every interface of the machine; a plain container on the same overlay network
    can publish on 127.0.0.1 alone.
    """

    def __init__(self, name: str | None = None, *, replicas: int = 2, version: str = "v1",
                 work: int = 4, cpu_limit: float = 0.25, cpu_reservation: float = 0.15,
                 lb_port: int | None = None, prometheus_port: int | None = None,
                 prometheus: bool = True, cfg: Settings | None = None) -> None:
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas={replicas}: choose 1-{MAX_REPLICAS} "
                             f"(the balancer has {MAX_REPLICAS} server slots)")
        self.cfg = cfg or settings()
        self.name = name or f"cl{re.sub(r'[^a-z0-9]', '', self.cfg.run_id.lower())[-10:]}"
        self.replicas = replicas
        self.version = version
        self.work = work
        self.cpu_limit = cpu_limit
        self.cpu_reservation = cpu_reservation
        self.lb_port = lb_port
        self.prometheus_port = prometheus_port
        self.stats_port: int | None = None  # the balancer's stats page, on 127.0.0.1
        self.with_prometheus = prometheus
        self.swarm = Swarm(self.cfg)
        self.folder = self.cfg.state_dir / "swarm" / self.name
        self.deployed = False
        self.lb: Any = None
        self.prometheus: Any = None

    # -- lifecycle --------------------------------------------------------------------
    @property
    def compose_file(self) -> Path:
        return self.folder / "docker-compose.yml"

    @property
    def network(self) -> str:
        return f"{self.name}_net"

    @property
    def url(self) -> str:
        """The balancer, on 127.0.0.1: where clients (and Locust) send requests."""
        return f"http://{self.cfg.host}:{self.lb_port}"

    @property
    def stats_url(self) -> str:
        """The balancer's own page: each replica's state, sessions and health checks."""
        return f"http://{self.cfg.host}:{self.stats_port}/stats"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.cfg.host}:{self.prometheus_port}"

    def service_name(self, service: str = "predict") -> str:
        return f"{self.name}_{service}"

    def write(self, image: str) -> Path:
        """Write the compose file and the configs the side containers mount; its path."""
        from .services import port_in_use

        for attr in ("lb_port", "prometheus_port"):
            if getattr(self, attr) is None:
                setattr(self, attr, free_port(self.cfg.host))
            elif port_in_use(self.cfg.host, getattr(self, attr)):
                raise SwarmError(f"{attr}={getattr(self, attr)} is already in use on "
                                 f"{self.cfg.host}; choose another port")
        self.stats_port = self.stats_port or free_port(self.cfg.host)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "haproxy.cfg").write_text(haproxy_config())
        (self.folder / "prometheus.yml").write_text(prometheus_config(lb=f"{self.name}_lb"))
        doc = compose(image=image, replicas=self.replicas, version=self.version,
                      work=self.work, cpu_limit=self.cpu_limit,
                      cpu_reservation=self.cpu_reservation, labels=self.cfg.labels())
        self.compose_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.compose_file

    def start(self, timeout: float = 120, progress: bool = False) -> Stack:
        if self.deployed:
            return self
        engine.require(self.cfg)
        if self.with_prometheus and not PROMETHEUS_BINARY.exists():
            raise UnavailableError(f"{PROMETHEUS_BINARY} is missing: apt-get install prometheus "
                                   "(make setup does it as root), or Stack(prometheus=False)")
        image = predict.image(self.cfg, progress=progress)
        lb = lb_image(self.cfg, progress=progress)
        self.write(image)
        atexit.register(self.stop)  # a notebook kernel that exits mid-way still cleans up
        self.swarm.start()
        try:
            deploy(self.compose_file, self.name, cfg=self.cfg)
            self.deployed = True
            self._side_containers(lb)
            self.wait(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _side_containers(self, lb: str) -> None:
        from . import docker

        self.lb = docker.Container(
            lb, name=f"{self.name}_lb", network=self.network,
            ports={LB_PORT: self.lb_port, LB_STATS_PORT: self.stats_port},
            volumes={str(self.folder / "haproxy.cfg"): "/usr/local/etc/haproxy/haproxy.cfg:ro"},
            cpus=0.5, memory="128m", init=True, cfg=self.cfg).start()
        if self.with_prometheus:
            self.prometheus = docker.Container(
                self.cfg.base_image,
                [str(PROMETHEUS_BINARY), "--config.file=/etc/prometheus/prometheus.yml",
                 "--storage.tsdb.path=/tmp/prometheus", f"--web.listen-address=:{PROM_PORT}"],
                name=f"{self.name}_prometheus", network=self.network,
                ports={PROM_PORT: self.prometheus_port},
                volumes={str(PROMETHEUS_BINARY): f"{PROMETHEUS_BINARY}:ro",
                         str(self.folder / "prometheus.yml"): "/etc/prometheus/prometheus.yml:ro"},
                cpus=0.5, memory="256m", init=True, cfg=self.cfg).start()

    def stop(self, timeout: float = 60) -> None:
        """Remove the side containers and the stack, wait until nothing of them remains,
        then leave the swarm if this stack joined it; idempotent."""
        atexit.unregister(self.stop)
        try:
            for box in (self.lb, self.prometheus):
                if box is not None:
                    box.stop()
            self.lb = self.prometheus = None
            if self.deployed or self._services():
                remove(self.name, timeout=timeout)
        finally:
            self.deployed = False
            self.swarm.stop()

    # -- looking at it -----------------------------------------------------------------
    def _services(self) -> list[Any]:
        if state() != "active":
            return []
        return engine.client(timeout=30).services.list(
            filters={"label": f"{STACK_LABEL}={self.name}"})

    def service(self, service: str = "predict"):
        """The Docker SDK object of one of the stack's services."""
        import docker.errors

        try:
            return engine.client(timeout=30).services.get(self.service_name(service))
        except docker.errors.NotFound:
            raise SwarmError(f"service {self.service_name(service)} does not exist "
                             f"(is the stack deployed?)") from None

    def tasks(self, service: str = "predict", running: bool = False):
        """The service's tasks as a DataFrame: slot, state, desired state, version, error."""
        import pandas as pd

        rows = []
        filters = {"desired-state": "running"} if running else None
        for t in self.service(service).tasks(filters=filters):
            status = t.get("Status", {})
            env = t["Spec"]["ContainerSpec"].get("Env", [])
            version = next((e.split("=", 1)[1] for e in env if e.startswith("APP_VERSION=")),
                           "")
            cid = (status.get("ContainerStatus") or {}).get("ContainerID") or ""
            rows.append({"slot": t.get("Slot"), "state": status.get("State"),
                         "desired": t.get("DesiredState"), "version": version,
                         "updated": t.get("UpdatedAt", "")[:19], "container": cid[:12],
                         "error": status.get("Err", "")})
        frame = pd.DataFrame(rows, columns=["slot", "state", "desired", "version", "updated",
                                            "container", "error"])
        return frame.sort_values(["slot", "updated"]).reset_index(drop=True)

    def containers(self, service: str = "predict") -> list[Any]:
        """The running containers of the service (Docker SDK objects)."""
        return engine.client(timeout=30).containers.list(filters={
            "label": f"com.docker.swarm.service.name={self.service_name(service)}",
            "status": "running"}, ignore_removed=True)

    def running(self, service: str = "predict") -> int:
        """How many of the service's containers are running and healthy."""
        return sum(1 for b in self.containers(service)
                   if (b.attrs["State"].get("Health") or {}).get("Status", "healthy")
                   == "healthy")

    def addresses(self, service: str = "predict") -> dict[str, bool]:
        """The service's tasks that should run: ``ip:port`` on the overlay -> ready.

        Ready means the task runs and its container's health check passes; that address is
        the ``instance`` label Prometheus gives the replica.
        """
        healthy = {b.labels.get("com.docker.swarm.task.id"):
                   (b.attrs["State"].get("Health") or {}).get("Status", "healthy") == "healthy"
                   for b in self.containers(service)}
        found = {}
        for t in self.service(service).tasks(filters={"desired-state": "running"}):
            for net in t.get("NetworksAttachments") or []:
                if net["Network"]["Spec"]["Name"] != self.network:
                    continue
                for cidr in net.get("Addresses") or []:
                    ip = cidr.split("/")[0]
                    found[f"{ip}:{predict.PORT}"] = (t["Status"]["State"] == "running"
                                                     and healthy.get(t["ID"], False))
        return found

    def desired(self, service: str = "predict") -> int:
        """The replica count the service is asked to run."""
        return int(self.service(service).attrs["Spec"]["Mode"]["Replicated"]["Replicas"])

    def wait(self, timeout: float = 120) -> None:
        """Wait until the service runs its desired replicas, healthy, and the LB answers."""
        try:
            wait_for(lambda: self.running() >= self.desired() and self._lb_ready(),
                     timeout=timeout, interval=0.5, what=f"stack {self.name} to converge")
        except ServiceError as exc:
            raise SwarmError(f"{exc}\n{self.diagnose()}") from None
        if self.with_prometheus:
            wait_for(lambda: requests.get(self.prometheus_url + "/-/ready", timeout=2).ok,
                     timeout=30, what=f"Prometheus of stack {self.name}")

    def _lb_ready(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def diagnose(self) -> str:
        """Why tasks are not running: the task errors Swarm recorded."""
        lines = []
        with contextlib.suppress(Exception):
            frame = self.tasks()
            for _, row in frame[frame["error"] != ""].tail(3).iterrows():
                lines.append(f"{self.service_name()} slot {row['slot']}: {row['state']}: "
                             f"{row['error']}")
        if self.lb is not None:
            with contextlib.suppress(Exception):
                lines.append("balancer log: " + self.lb.logs(tail=5).strip())
        return "\n".join(lines) or "(no task errors recorded)"

    def resolve(self, name: str = "tasks.predict") -> list[str]:
        """What ``name`` resolves to inside the stack's network (asked from the balancer)."""
        if self.lb is None:
            raise SwarmError("the stack is not running")
        code, out = self.lb.exec(["getent", "ahostsv4", name])
        if code != 0:
            return []
        return sorted({line.split()[0] for line in out.splitlines() if line.strip()})

    # -- changing it -------------------------------------------------------------------
    def scale(self, replicas: int, service: str = "predict", wait: bool = True,
              timeout: float = 90) -> int:
        """Set the replica count through the Docker API; waits until they run healthy."""
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas={replicas}: choose 1-{MAX_REPLICAS}")
        set_replicas(self.service(service), replicas)
        if wait:
            wait_for(lambda: self.running(service) == replicas, timeout=timeout, interval=0.5,
                     what=f"{self.service_name(service)} to run {replicas} replicas")
            if self.lb is not None and service == "predict":  # the one the balancer serves
                try:
                    wait_for(lambda: self.balanced() == replicas, timeout=timeout,
                             interval=0.5, what=f"the balancer to send to {replicas} replicas")
                except ServiceError as exc:
                    raise SwarmError(f"{exc}\n{self.diagnose()}") from None
        return replicas

    def balanced(self, service: str = "predict") -> int:
        """How many replicas the balancer sends requests to: its servers that are UP (it
        finds a new replica at its next DNS answer, then at its first passed health check,
        a few seconds after the replica runs)."""
        if self.lb is None:
            raise SwarmError("the stack is not running")
        try:
            out = requests.get(self.stats_url + ";csv", timeout=5).text
        except requests.RequestException:
            return 0  # the balancer is still starting
        rows = csv.DictReader(out.lstrip("# ").splitlines())
        return sum(1 for row in rows if row.get("pxname") == service
                   and row.get("svname", "").startswith("app") and row.get("status") == "UP")

    def update(self, *, version: str | None = None, env: dict[str, str] | None = None,
               wait: bool = True, timeout: float = 180) -> str:
        """A rolling update (``update_config``: one task at a time, start-first, health
        monitored, rolled back automatically when the new tasks fail); the final state."""
        args = ["docker", "service", "update", "--detach"]
        changes = {**({"APP_VERSION": version} if version else {}), **(env or {})}
        if not changes:
            raise ValueError("nothing to update: give version= or env=")
        for key, value in changes.items():
            args += ["--env-add", f"{key}={value}"]
        run([*args, self.service_name()], timeout=60)
        return self.wait_update(timeout) if wait else "updating"

    def rollback(self, wait: bool = True, timeout: float = 180) -> str:
        """Return the service to its previous spec (``docker service rollback``)."""
        run(["docker", "service", "rollback", "--detach", self.service_name()], timeout=60)
        return self.wait_update(timeout) if wait else "rolling back"

    def update_state(self) -> str:
        """``updating``, ``completed``, ``rollback_started``, ``rollback_completed``..."""
        status = self.service().attrs.get("UpdateStatus") or {}
        return status.get("State", "completed")

    def wait_update(self, timeout: float = 180) -> str:
        done = ("completed", "rollback_completed", "paused", "rollback_paused")
        final = wait_for(lambda: (s := self.update_state()) in done and s, timeout=timeout,
                         interval=0.5, what=f"the update of {self.service_name()} to finish")
        wait_for(lambda: self.running() >= self.desired(), timeout=60, interval=0.5,
                 what=f"{self.service_name()} to be healthy again")
        return final

    def versions(self, samples: int = 20) -> dict[str, int]:
        """Ask the balancer ``samples`` times: how many answers came from each version."""
        seen: dict[str, int] = {}
        for _ in range(samples):
            answer = requests.get(self.url + "/predict", timeout=5).json()
            seen[answer["version"]] = seen.get(answer["version"], 0) + 1
        return seen

    def __repr__(self) -> str:
        return f"<Stack {self.name} {'deployed' if self.deployed else 'not deployed'}>"


# ------------------------------------------------------------------- deploy and remove
def check_compose(path: str | Path) -> dict[str, Any]:
    """Validate a compose file as ``docker stack deploy`` would, before deploying it.

    Unknown keys are reported by Docker's own schema check (``docker stack config``), and
    every image must exist locally (a swarm on this engine cannot pull).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no compose file at {path}")
    try:
        rendered = run(["docker", "stack", "config", "-c", str(path)], timeout=60).stdout
    except CommandError as exc:
        raise SwarmError(f"{path.name} is not a valid stack file: "
                         f"{(exc.stderr or exc.stdout).strip()}") from None
    doc = yaml.safe_load(rendered) or {}
    missing = [f"{name}: {svc.get('image')}" for name, svc in (doc.get("services") or {}).items()
               if svc.get("image") and not images.present(svc["image"])]
    if missing:
        raise SwarmError(f"{path.name}: image(s) not present on this engine (a swarm here "
                         f"cannot pull them; build or load them first): {'; '.join(missing)}")
    return doc


def deploy(path: str | Path, name: str, cfg: Settings | None = None) -> None:
    """``docker stack deploy`` after :func:`check_compose`; needs an active swarm."""
    check_compose(path)
    if state() != "active":
        raise SwarmError("this engine is not in a swarm: use Swarm().start() (or a Stack)")
    run(["docker", "stack", "deploy", "--detach=true", "--resolve-image", "never",
         "-c", str(path), name], timeout=120)


def remove(name: str, timeout: float = 60) -> None:
    """``docker stack rm`` and wait until its services, containers and network are gone."""
    run(["docker", "stack", "rm", name], timeout=60, check=False)
    api = engine.client(timeout=30)
    flt = {"label": f"{STACK_LABEL}={name}"}

    def gone() -> bool:
        left = (api.containers.list(all=True, filters=flt, ignore_removed=True)
                + api.networks.list(filters=flt))
        if state() == "active":
            left += api.services.list(filters=flt)
        return not left

    wait_for(gone, timeout=timeout, interval=0.5, what=f"stack {name} to be removed")


def set_replicas(service: Any, replicas: int) -> None:
    """``POST /services/{id}/update`` with the service's own spec, only the count changed.

    (The Docker SDK's ``Service.scale`` re-creates the spec from its arguments; on a
    service deployed by ``docker stack deploy`` that differs enough to restart every
    task. Sending the spec back unchanged but for the count only adds or removes tasks.)
    """
    import docker.errors

    api = engine.client(timeout=30).api
    for attempt in range(3):
        service.reload()
        spec = service.attrs["Spec"]
        spec["Mode"]["Replicated"]["Replicas"] = int(replicas)
        answer = api._post_json(api._url("/services/{0}/update", service.id), data=spec,
                                params={"version": service.attrs["Version"]["Index"]})
        try:
            api._raise_for_status(answer)
            return
        except docker.errors.APIError as exc:
            if "update out of sequence" not in str(exc) or attempt == 2:
                raise SwarmError(f"scaling {service.name} to {replicas}: "
                                 f"{exc.explanation or exc}") from None


def stacks() -> list[str]:
    """The stacks deployed on this engine (their namespaces)."""
    if state() != "active":
        return []
    found = {s.attrs["Spec"]["Labels"].get(STACK_LABEL) for s in
             engine.client(timeout=30).services.list()}
    return sorted(n for n in found if n)


def describe(doc: dict[str, Any]) -> str:
    """A compose document as YAML text (for showing in a notebook)."""
    return yaml.safe_dump(json.loads(json.dumps(doc)), sort_keys=False)


__all__ = ["Stack", "Swarm", "SwarmError", "check_compose", "compose", "deploy",
           "haproxy_config", "lb_image", "prometheus_config", "remove", "set_replicas",
           "stacks", "state", "sweep"]

