"""What a real node changes on this machine, and how each change is undone.

The kubelet, its containerd and kube-proxy touch the host in known places: iptables
chains (``KUBE-*`` from kubelet and kube-proxy, ``CLOUDLAB-NODE`` from us) in IPv4 and
IPv6, a Linux bridge with a route for the Service range, network namespaces, the
``kubepods`` cgroup tree (cgroup v1: one per controller), mounts under the node's folders,
``/var/log/containers`` links and CNI's cache in ``/var/lib/cni``. Every function here is
idempotent and safe to call on a half-made node, so teardown runs on any exception and
``cloudlab cleanup`` can finish the job of a killed run.

>>> overlaps("10.96.0.0/24", ["10.96.0.128/25"]), overlaps("10.96.0.0/24", ["10.1.0.0/16"])
(True, False)
>>> pick_subnet(["10.244.0.0/16"], candidates=("10.244.0.0/24", "10.245.0.0/24"))
'10.245.0.0/24'
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import CloudlabError
from ..proc import alive, which

# Chains the kubelet and kube-proxy create (every KUBE-* chain), and ours.
CHAIN_PREFIXES = ("KUBE-", "CLOUDLAB-NODE")
TABLES = ("filter", "nat", "mangle")
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
CONTAINER_LOGS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni")
POD_CANDIDATES = tuple(f"10.{n}.0.0/24" for n in range(244, 254))
SERVICE_CANDIDATES = tuple(f"10.{n}.0.0/24" for n in range(96, 106))


class HostError(CloudlabError):
    """The host refuses something the node needs; the message says what and why."""


def overlaps(cidr: str, others: Iterable[str]) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    return any(net.overlaps(ipaddress.ip_network(o, strict=False)) for o in others
               if ipaddress.ip_network(o, strict=False).version == net.version)


def local_networks() -> list[str]:
    """Every IPv4 network this machine routes or holds an address in (not the default)."""
    out = []
    with contextlib.suppress(CloudlabError, ValueError):
        for r in json.loads(_ip("-4", "-j", "route", "show", "table", "all")):
            dst = r.get("dst", "")
            if dst and dst != "default" and r.get("type", "unicast") != "broadcast":
                out.append(dst if "/" in dst else f"{dst}/32")
        for link in json.loads(_ip("-4", "-j", "addr")):
            for a in link.get("addr_info", []):
                out.append(f"{a['local']}/{a['prefixlen']}")
    return out


def pick_subnet(taken: Sequence[str], candidates: Sequence[str] = POD_CANDIDATES) -> str:
    """The first candidate /24 that overlaps nothing this machine already routes."""
    for cidr in candidates:
        if not overlaps(cidr, taken):
            return cidr
    raise HostError(f"every candidate subnet ({candidates[0]} ... {candidates[-1]}) overlaps a "
                    "network of this machine; free one, or pass pod_cidr=/service_cidr=")


def route_is_local(address: str, bridge: str) -> bool:
    """Whether the kernel would send ``address`` out of our ``bridge`` (or keep it on the
    machine), never to a gateway: checked before the first request to a pod or Service."""
    try:
        routes = json.loads(_ip("-j", "route", "get", address))
    except (CloudlabError, ValueError):
        return False
    return bool(routes) and all(
        not r.get("gateway") and (r.get("dev") in (bridge, "lo") or r.get("type") == "local")
        for r in routes)


def check_local(address: str, bridge: str) -> str:
    """Raise unless ``address`` stays on this machine (our bridge or loopback)."""
    if not route_is_local(address, bridge):
        with contextlib.suppress(CloudlabError):
            detail = _ip("route", "get", address).strip()
            raise HostError(f"refusing to send anything to {address}: its route leaves this "
                            f"machine or the node's bridge {bridge} ({detail})")
        raise HostError(f"refusing to send anything to {address}: no route on {bridge}")
    return address


def make_bridge(name: str, gateway_cidr: str, service_cidr: str) -> None:
    """Create the CNI bridge with the pods' gateway address (the CNI bridge plugin adopts
    it) and route the Service range onto it: a Service address whose rules are missing
    then goes nowhere, never to the default gateway."""
    if not Path(f"/sys/class/net/{name}").exists():
        _ip("link", "add", name, "type", "bridge")
    _ip("addr", "replace", gateway_cidr, "dev", name)
    _ip("link", "set", name, "up")
    _ip("route", "replace", service_cidr, "dev", name)
    # A pod's packet to a Service comes in on the bridge and, rewritten by kube-proxy, goes
    # out on it again: forwarding, enabled for this interface only (it goes with it; the
    # host's own setting is left alone, and fence() drops whatever would leave the bridge).
    Path(f"/proc/sys/net/ipv4/conf/{name}/forwarding").write_text("1\n")


def remove_bridge(name: str) -> bool:
    if not Path(f"/sys/class/net/{name}").exists():
        return False
    with contextlib.suppress(CloudlabError):
        _ip("link", "del", name)
    return True


def bridges(prefix: str) -> list[str]:
    """Network interfaces whose name starts with ``prefix`` (our bridges)."""
    root = Path("/sys/class/net")
    return sorted(p.name for p in root.iterdir() if p.name.startswith(prefix)) \
        if root.is_dir() else []


def fence(bridge: str, closed_ports: Sequence[int] = (), dns: str | None = None) -> None:
    """``CLOUDLAB-NODE``, first in FORWARD: pods talk to pods on the bridge, and nothing a
    pod sends is forwarded anywhere else (no way off the machine through this host).
    ``CLOUDLAB-NODE-IN``, first in INPUT: a pod opens nothing on this machine but the
    cluster DNS (``dns``, port 53): not the kubelet's API on the bridge's address
    (``closed_ports``), and not any service of the machine that listens on all addresses
    (pods run code the grader did not write). Answers to what this machine opened (probes,
    a request to a Service) come back as established connections."""
    ins = [["-i", bridge, "-p", "tcp", "--dport", str(port), "-j", "DROP"]
           for port in closed_ports]
    ins.append(["-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                "-j", "ACCEPT"])
    for tool in _iptables():
        opened = [["-i", bridge, "-d", dns, "-p", proto, "--dport", "53", "-j", "ACCEPT"]
                  for proto in ("udp", "tcp")] if dns and tool == "iptables" else []
        for chain, hook, rules in (
                ("CLOUDLAB-NODE", "FORWARD", [["-i", bridge, "-o", bridge, "-j", "ACCEPT"],
                                              ["-i", bridge, "-j", "DROP"]]),
                ("CLOUDLAB-NODE-IN", "INPUT", [*ins, *opened,
                                               ["-i", bridge, "-j", "DROP"]])):
            _ipt(tool, "-t", "filter", "-N", chain, check=False)
            _ipt(tool, "-t", "filter", "-F", chain)
            for rule in rules:
                _ipt(tool, "-t", "filter", "-A", chain, *rule)
            if _ipt(tool, "-t", "filter", "-C", hook, "-j", chain, check=False).returncode:
                _ipt(tool, "-t", "filter", "-I", hook, "1", "-j", chain)


def chains() -> dict[str, list[str]]:
    """``iptables``/``ip6tables`` -> ``table/chain`` of every node chain present."""
    out: dict[str, list[str]] = {}
    for tool in _iptables():
        found = []
        for table in TABLES:
            text = _ipt(f"{tool}-save", "-t", table, check=False).stdout
            found += [f"{table}/{line[1:].split()[0]}" for line in text.splitlines()
                      if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)]
        out[tool] = found
    return out


def remove_chains() -> int:
    """Delete every KUBE-* and CLOUDLAB-NODE chain, in v4 and v6, after the rules of other
    chains that jump to them. Returns how many chains went."""
    count = 0
    for tool in _iptables():
        for table in TABLES:
            text = _ipt(f"{tool}-save", "-t", table, check=False).stdout
            ours = [line[1:].split()[0] for line in text.splitlines()
                    if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)]
            if not ours:
                continue
            for line in text.splitlines():  # jumps from other chains into ours
                parts = line.split()
                if (len(parts) > 2 and parts[0] == "-A" and not parts[1].startswith(
                        CHAIN_PREFIXES) and _jumps_to_ours(parts)):
                    _ipt(tool, "-t", table, "-D", *shlex.split(line)[1:], check=False)
            for chain in ours:
                _ipt(tool, "-t", table, "-F", chain, check=False)
            for chain in ours:
                if _ipt(tool, "-t", table, "-X", chain, check=False).returncode == 0:
                    count += 1
    return count


def _jumps_to_ours(parts: list[str]) -> bool:
    for flag in ("-j", "-g"):
        if flag in parts:
            i = parts.index(flag)
            if i + 1 < len(parts) and parts[i + 1].startswith(CHAIN_PREFIXES):
                return True
    return False


def cgroup_dirs() -> list[Path]:
    """The ``kubepods`` folders of every cgroup v1 hierarchy (or the v2 one)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [d for d in [CGROUP_ROOT / KUBEPODS, CGROUP_ROOT / "kubepods.slice"]
                if d.is_dir()]
    return sorted(d / KUBEPODS for d in CGROUP_ROOT.iterdir()
                  if (d / KUBEPODS).is_dir() and not d.is_symlink())


def cgroup_pids() -> set[int]:
    """Every process inside the ``kubepods`` trees (the pods' processes)."""
    pids: set[int] = set()
    for top in cgroup_dirs():
        for root, _, files in os.walk(top):  # a folder removed meanwhile is skipped
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in (Path(root) / "cgroup.procs").read_text().split()}
    return pids


def remove_cgroups() -> int:
    """Kill what is left in the ``kubepods`` trees and remove them, deepest first."""
    for pid in cgroup_pids():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    count = 0
    deadline = time.monotonic() + 10
    for top in cgroup_dirs():
        # os.walk, not rglob: the kubelet may still be removing folders as we walk
        # (rglob raises on one that went away), and bottom-up is deepest first anyway
        dirs = [Path(root) / name for root, names, _ in os.walk(top, topdown=False)
                for name in names]
        for d in [*dirs, top]:
            while True:
                try:
                    d.rmdir()
                    count += 1
                    break
                except FileNotFoundError:
                    break
                except OSError:  # a process still exiting
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
    return count


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of ``roots`` (from /proc/self/mountinfo), deepest first."""
    prefixes = [str(r.resolve()) for r in roots if str(r)]
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p + "/") for p in prefixes):
                found.append(point)
    return sorted(set(found), key=lambda p: -len(p))


def unmount(*roots: Path) -> int:
    """Lazily unmount everything under ``roots`` (netns files, shm, overlay rootfs...)."""
    count = 0
    for _ in range(5):  # a mount can be stacked several times (shared propagation)
        points = mounts_under(*roots)
        if not points:
            break
        for point in points:
            if subprocess.run(["umount", "-l", point], capture_output=True).returncode == 0:
                count += 1
    return count


def remove_log_links(pod_logs: Path) -> int:
    """The kubelet's ``/var/log/containers/*.log`` links that point into our pod logs."""
    count = 0
    if CONTAINER_LOGS.is_dir():
        for link in CONTAINER_LOGS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(pod_logs)):
                    link.unlink()
                    count += 1
    return count


def remove_cni_cache(network: str) -> int:
    """libcni's cached results for our network (``/var/lib/cni/results/<net>-*``)."""
    count = 0
    results = CNI_CACHE / "results"
    if results.is_dir():
        for f in results.glob(f"{network}-*"):
            f.unlink(missing_ok=True)
            count += 1
    return count


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (a node's socket or folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


def terminate(pids: Iterable[int], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``timeout``."""
    pids = [p for p in pids if p and alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def cgroup_version() -> int:
    """2 on the unified hierarchy, else 1 (this machine: 1)."""
    return 2 if (CGROUP_ROOT / "cgroup.controllers").exists() else 1


def _iptables() -> list[str]:
    return [t for t in ("iptables", "ip6tables") if which(t)]


def _ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise HostError(f"`{' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise HostError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def leftovers(base: Path, bridge: str, run: Path | None = None) -> dict[str, list]:
    """What a node in ``base`` would leave behind if teardown missed it (empty lists when
    clean): processes naming its folders, node chains, its bridge, kubepods cgroups,
    mounts. Leak tests and ``cloudlab k8s status`` read it."""
    roots = [base, *([run] if run else [])]
    procs = sorted({p for r in roots for p in processes_mentioning(str(r))})
    found_chains = [f"{tool}:{c}" for tool, cs in chains().items() for c in cs]
    return {"processes": procs, "chains": found_chains,
            "bridges": [b for b in bridges(bridge) if b == bridge],
            "cgroups": [str(d) for d in cgroup_dirs()], "mounts": mounts_under(*roots)}
