"""Host-side work for a submission is confined: network allow-list, limits, FROM, cleanup.

Every probe here targets an address of this machine (the Docker bridge's own address and
the jail's gateway, both the host's), or 169.254.169.254, which the jail has no way to
reach; each is one connection with a timeout of a few seconds.
"""

from __future__ import annotations

import http.server
import ipaddress
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cloudlab import engine, images
from cloudlab.config import settings
from cloudlab.grading import confine, owners

FORKS = """\
import subprocess
started = 0
for _ in range(200):
    try:
        subprocess.Popen(["sleep", "3"])
        started += 1
    except OSError:
        break
print("STARTED", started)
"""
PROBE = textwrap.dedent('''\
    import os, socket, sys, urllib.request
    def tcp(name, host, port):
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
            print("PROBE", name, "open", flush=True)
        except OSError as exc:
            print("PROBE", name, "closed", type(exc).__name__, flush=True)
    def http(name, url):
        try:
            code = urllib.request.urlopen(url, timeout=5).status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except OSError as exc:
            code = type(exc).__name__
        print("PROBE", name, code, flush=True)
    allowed, other, gateway = sys.argv[1:4]
    host, port = allowed.split(":")
    tcp("host-direct", host, port)
    tcp("gateway-direct", gateway, other.split(":")[1])
    tcp("metadata-direct", "169.254.169.254", 80)
    http("allowed-via-proxy", f"http://{allowed}/")
    http("other-via-proxy", f"http://{other}/")
    http("metadata-via-proxy", "http://169.254.169.254/latest/meta-data/")
    ''')


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _swept():
    """Whatever a failing test's builds left (this process owns them) goes too."""
    yield
    api = engine.client().api
    flt = {"label": f"{confine.OWNER_LABEL}={confine.owner()}"}
    for image in sorted(api.images(all=True, filters=flt), key=lambda i: -i["Created"]):
        api.remove_image(image["Id"], force=True)


@pytest.fixture(scope="module")
def base(docker_engine) -> str:
    """The base image, built here when missing (as integration/conftest.py does): the
    sandbox-security tests never skip for want of it."""
    cfg = settings()
    images.bootstrap(cfg.base_image, cfg)
    return cfg.base_image


def gateway(network: str) -> str:
    """The host's own address on a Docker network."""
    ipam = engine.client().networks.get(network).attrs["IPAM"]["Config"][0]
    return ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def bridge_ip(docker_engine) -> str:
    return gateway("bridge")


def serve(address: str):
    """An HTTP server on one of this machine's addresses (a free port), in a thread."""
    server = http.server.ThreadingHTTPServer((address, 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    folder = tmp_path / "ctx"
    folder.mkdir(exist_ok=True)
    (folder / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def leftovers(build_id: str) -> list:
    api = engine.client().api
    flt = {"label": f"{confine.BUILD_LABEL}={build_id}"}
    return api.containers(all=True, filters=flt) + api.images(all=True, filters=flt)


def probes(log: str) -> dict[str, str]:
    return {line.split()[1]: " ".join(line.split()[2:]) for line in log.splitlines()
            if line.startswith("PROBE ")}


def test_a_build_reaches_the_allow_list_and_nothing_else(base, bridge_ip, tmp_path):
    allowed = serve(bridge_ip)
    allowed_at = f"{bridge_ip}:{allowed.server_address[1]}"
    try:
        with confine.Jail([allowed_at]) as jail:
            jail_gateway = gateway(jail.network)
            on_gateway = serve(jail_gateway)  # a host service listening on the jail's gateway
            try:
                folder = context(tmp_path, f"""\
                    FROM {base}
                    COPY probe.py /probe.py
                    RUN python /probe.py {allowed_at} \
                        {jail_gateway}:{on_gateway.server_address[1]} {jail_gateway}
                    """, **{"probe.py": PROBE})
                built = confine.build(folder, jail=jail, limits=confine.Limits(seconds=120))
            finally:
                on_gateway.shutdown()
            refused = jail.proxy_log()
    finally:
        allowed.shutdown()
    seen = probes(built.log)
    assert built.ok, built.message + built.log[-2000:]
    confine.sweep(built.build_id)
    assert seen["allowed-via-proxy"] == "200", built.log
    assert seen["host-direct"].startswith("closed"), seen
    assert seen["gateway-direct"].startswith("closed"), "nor through the jail's gateway"
    assert seen["metadata-direct"].startswith("closed"), seen
    assert seen["other-via-proxy"] == "403", "the proxy only forwards to the allow-list"
    assert seen["metadata-via-proxy"] == "403", seen
    assert "is not on the allow-list" in refused  # a probe that hung fails the 120 s build


def test_a_build_without_a_jail_has_no_network(base, bridge_ip, tmp_path):
    server = serve(bridge_ip)
    try:
        folder = context(tmp_path, f"""\
            FROM {base}
            COPY probe.py /probe.py
            RUN python /probe.py {bridge_ip}:{server.server_address[1]} {bridge_ip}:1 {bridge_ip}
            """, **{"probe.py": PROBE})
        built = confine.build(folder, limits=confine.Limits(seconds=120))
    finally:
        server.shutdown()
    confine.sweep(built.build_id)
    seen = probes(built.log)
    assert built.ok and seen["host-direct"].startswith("closed"), seen


def test_cpu_pids_and_memory_limits_hold_in_build_steps(base, tmp_path):
    folder = context(tmp_path, f"""\
        FROM {base}
        RUN echo "QUOTA $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max \
            2>/dev/null | head -1)"
        COPY forks.py /forks.py
        RUN python /forks.py
        """, **{"forks.py": FORKS})
    built = confine.build(folder, limits=confine.Limits(cpus=0.5, pids=48, seconds=120))
    confine.sweep(built.build_id)
    assert built.ok, built.message + built.log[-1500:]
    assert "QUOTA 50000" in built.log
    started = int(built.log.split("STARTED ")[1].split()[0])
    assert built.limits["pids"] == 48 and started < 48, "the cgroup parent caps processes"
    # this build's own: other lanes' graders build meanwhile, under names of their own
    left = [str(d) for d in confine.CGROUP_ROOT.glob(f"*/cloudlab-build-{built.build_id}")]
    assert left == [], "the build's cgroup parent is removed from every hierarchy"

    hog = context(tmp_path, f"""\
        FROM {base}
        RUN python -c "x = bytearray(700 * 2**20); print('survived')"
        """)
    built = confine.build(hog, limits=confine.Limits(memory="256m", seconds=120))
    assert not built.ok and "Killed" in built.log and "\nsurvived" not in built.log
    assert leftovers(built.build_id) == []


def test_time_and_disk_limits_stop_the_build_and_leave_nothing(base, tmp_path):
    slow = context(tmp_path, f"""\
        FROM {base}
        RUN echo first > /first
        RUN sleep 120
        """)
    built = confine.build(slow, limits=confine.Limits(seconds=8))  # how soon: bench/timings.py
    assert not built.ok and "longer than 8 s" in built.message
    assert leftovers(built.build_id) == [], "the first step's image and the container go"

    one_big = context(tmp_path, f"""\
        FROM {base}
        RUN dd if=/dev/zero of=/big bs=1M count=200
        """)
    built = confine.build(one_big, limits=confine.Limits(disk="64m", seconds=120))
    assert not built.ok and "File size limit exceeded" in built.log
    assert leftovers(built.build_id) == []

    many = context(tmp_path, f"""\
        FROM {base}
        RUN for i in $(seq 1 60); do dd if=/dev/zero of=/f$i bs=1M count=8 2>/dev/null; \
            sleep 0.2; done
        """)
    built = confine.build(many, limits=confine.Limits(disk="64m", seconds=120))
    assert not built.ok and "wrote more than 64m" in built.message, built.message
    assert leftovers(built.build_id) == []


def test_other_images_cannot_be_read(base, tmp_path):
    folder = context(tmp_path, f"""\
        FROM {base}
        COPY --from=cloudlab-graded-somebody-else:latest /app /stolen
        """)
    built = confine.build(folder)
    assert not built.ok and not built.log
    assert "line 2: COPY --from=cloudlab-graded-somebody-else:latest" in built.message


KILLED = """
import sys
from cloudlab.grading import confine
confine.build(sys.argv[1], limits=confine.Limits(seconds=300))
"""


def test_a_killed_grader_leaves_nothing_after_the_sweep(base, tmp_path):
    folder = context(tmp_path, f"""\
        FROM {base}
        RUN echo step > /step
        RUN sleep 100
        """)
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(folder)])
    api = engine.client().api
    owner = owners.owner(child.pid)
    flt = {"label": f"{confine.OWNER_LABEL}={owner}"}
    try:
        deadline = time.monotonic() + 90
        while not (api.images(all=True, filters=flt) and api.containers(all=True, filters=flt)):
            assert time.monotonic() < deadline, "the sleeping step never started"
            assert child.poll() is None
            time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert api.images(all=True, filters=flt), "the first step's image was left behind"
    confine.sweep()
    deadline = time.monotonic() + 30
    while api.containers(all=True, filters=flt) or api.images(all=True, filters=flt):
        assert time.monotonic() < deadline, "the sweep left something"
        confine.sweep()
        time.sleep(0.5)


def test_a_tool_runs_without_network_within_limits(base, tmp_path):
    (tmp_path / "rules.yml").write_text("groups: []\n")
    ran = confine.run(["sh", "-c", "cat rules.yml; touch /work/x 2>&1; "
                       "python -c \"import socket; socket.create_connection(('169.254.169.254',"
                       " 80), timeout=2)\" 2>&1 | tail -1"], files=tmp_path)
    assert "groups: []" in ran.output
    assert "Read-only file system" in ran.output
    assert "unreachable" in ran.output.lower()
    slow = confine.run(["sleep", "60"], confine.Limits(seconds=3))
    assert slow.timed_out and not slow.ok  # how soon it was stopped: bench/timings.py
    disk = confine.run(["sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1M count=50 2>&1"],
                       confine.Limits(disk="16m"))
    assert "No space left" in disk.output
    (tmp_path / "forks.py").write_text(FORKS)
    forks = confine.run(["python", "forks.py"], confine.Limits(pids=32), files=tmp_path)
    assert int(forks.output.split()[-1]) < 32, forks.output
    label = {"label": f"{confine.BUILD_LABEL}"}
    mine = [c for c in engine.client().api.containers(all=True, filters=label)
            if c["Labels"].get(confine.OWNER_LABEL) == confine.owner()]
    assert mine == [], "every tool container is removed"


def test_a_host_tool_and_extra_files_are_mounted_read_only(base, tmp_path):
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\n")
    ran = confine.run(["sh", "-c", "busybox --help >/dev/null 2>&1 && echo tool-ok; "
                       "cat /etc/kube/config; echo x > /etc/kube/config"],
                      tools=["busybox"], extra={tmp_path / "kubeconfig": "/etc/kube/config"})
    assert "tool-ok" in ran.output and "apiVersion: v1" in ran.output
    assert "Read-only file system" in ran.output
    assert (tmp_path / "kubeconfig").read_text() == "apiVersion: v1\n"


def test_a_missing_tool_is_named(base):
    ran = confine.run(["no-such-tool-here"], tools=["no-such-tool-here"])
    assert not ran.ok and "no-such-tool-here is not installed" in ran.output


def test_the_graders_hook_builds_through_the_jail_and_cleans_up(base, bridge_ip, tmp_path):
    """What ``docker_hub``'s hook calls: the host is out of reach, other images unreadable."""
    from cloudlab.grading import hooks

    server = serve(bridge_ip)
    folder = context(tmp_path, f"""\
        FROM {base}
        COPY probe.py /probe.py
        RUN python /probe.py {bridge_ip}:{server.server_address[1]} {bridge_ip}:1 {bridge_ip}
        """, **{"probe.py": PROBE})
    labels = {"org.cloudlab.test": "hook"}
    ctx = hooks.HookContext("docker-hub", "ada", files=folder, labels=labels, timeout=120)
    try:
        built = hooks.build_image(ctx, "Dockerfile")
        (folder / "Other").write_text(f"FROM {base}\nCOPY --from={built.tag} /probe.py /x\n")
        other = hooks.build_image(ctx, "Other")
        jail = ctx._jail
    finally:
        server.shutdown()
        ctx.cleanup()
    seen = probes(built.log)
    assert built.ok and seen["host-direct"].startswith("closed"), seen
    assert seen["metadata-direct"].startswith("closed"), seen
    assert not other.ok and "line 2: COPY --from=cloudlab-graded-" in other.message
    api = engine.client().api
    assert api.images(filters={"label": "org.cloudlab.test=hook"}) == []
    assert api.networks(names=[jail.network]) == []
