"""Dockerfiles that hide a fetch, another image or the grader's labels from the build policy.

Issue 18: each of these got through on 3669b86, graded as a hostile student would. Every one
goes here through the grader's own path (``hooks.build_image``: the policy, then a jailed
build), with a listener on 127.0.0.1 and one on the Docker bridge's gateway (both are this
machine's addresses; Docker's classic builder fetches a remote ``ADD`` in the daemon, on the
host's network). None may reach either listener, build from an image that is not allowed,
or leave an image, container or cgroup behind.
"""

from __future__ import annotations

import http.server
import ipaddress
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from cloudlab import engine, images
from cloudlab.config import settings
from cloudlab.grading import confine, hooks

MARK = "CLASSMATE-IMAGE-WAS-READ"


class _Counting(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"stolen")

    def log_message(self, *args):
        pass


def _gateway(network: str) -> str:
    ipam = engine.client().networks.get(network).attrs["IPAM"]["Config"][0]
    return ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def base(docker_engine) -> str:
    tag = settings().base_image
    images.bootstrap(tag)  # built locally when it is missing, as the integration tier does
    return tag


@pytest.fixture(scope="module")
def listeners(docker_engine):
    """Two HTTP servers of this machine that count what reaches them: {name: server}."""
    found = {}
    for name, address in (("local", "127.0.0.1"), ("bridge", _gateway("bridge"))):
        server = http.server.ThreadingHTTPServer((address, 0), _Counting)
        server.hits = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        found[name] = server
    yield found
    for server in found.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def classmate(base, tmp_path_factory):
    """Another image on the engine (a classmate's build), with a marker file in it."""
    import io
    import tarfile

    tag = f"cloudlab-test-classmate-{uuid.uuid4().hex[:8]}:1.0"
    data = f"FROM {base}\nRUN echo {MARK} > /marker\n".encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    api = engine.client(timeout=300)
    api.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, network_mode="none",
                     labels={"org.cloudlab.test": "classmate"})
    yield tag
    api.api.remove_image(tag, force=True)


def _url(listeners, name: str, path: str) -> str:
    host, port = listeners[name].server_address[:2]
    return f"http://{host}:{port}/{path}"


def _hostile(listeners, base: str, classmate: str) -> dict[str, str]:
    """Every class of issue 18, as Dockerfile text (NBSP: a non-breaking space)."""
    def local(path: str) -> str:
        return _url(listeners, "local", path)

    def bridge(path: str) -> str:
        return _url(listeners, "bridge", path)

    return {
        "add-json-local": f'FROM {base}\nADD ["{local("json")}", "/x"]\n',
        "add-json-bridge": f'FROM {base}\nADD ["{bridge("json")}", "/x"]\n',
        "add-env": f"FROM {base}\nENV U={local('env')}\nADD $U /x\n",
        "add-onbuild": f"FROM {base} AS a\nONBUILD ADD {bridge('onbuild')} /x\nFROM a\n",
        "add-nbsp": f"FROM {base}\nRUN echo \\\u00a0\nADD {local('nbsp')} /x\n",
        "add-late-directive": f"# note=x\n# escape=`\nFROM {base}\nRUN echo ok # `\n"
                              f"ADD {bridge('directive')} /x\n",
        "from-colon-plus": f"ARG B={base}\nFROM ${{B:+{classmate}}}\nRUN cat /marker\n",
        "copy-from-nbsp": f"FROM {base}\nRUN echo \\\u00a0\nCOPY --from={classmate} /marker /m\n"
                          "RUN cat /m\n",
        "copy-from-late-directive": f"# note=x\n# escape=`\nFROM {base}\nRUN echo ok # `\n"
                                    f"COPY --from={classmate} /marker /m\nRUN cat /m\n",
    }


@pytest.mark.parametrize("case", ["add-json-local", "add-json-bridge", "add-env", "add-onbuild",
                                  "add-nbsp", "add-late-directive", "from-colon-plus",
                                  "copy-from-nbsp", "copy-from-late-directive"])
def test_a_hidden_fetch_or_image_reaches_nothing_and_leaves_nothing(
        case, base, classmate, listeners, tmp_path):
    text = _hostile(listeners, base, classmate)[case]
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "Dockerfile").write_text(text)
    before = {name: list(s.hits) for name, s in listeners.items()}
    labels = {"org.cloudlab.test": f"hostile-{uuid.uuid4().hex[:8]}"}
    ctx = hooks.HookContext("docker-hub", "mallory", files=folder, labels=labels, timeout=120)
    try:
        built = hooks.build_image(ctx, "Dockerfile")
    finally:
        ctx.cleanup()
    reached = {name: s.hits[len(before[name]):] for name, s in listeners.items()}
    assert reached == {"local": [], "bridge": []}, f"the build fetched {reached}"
    assert MARK not in built.log, "the build read the classmate's image"
    assert not built.ok and "the Dockerfile was not built: line " in built.message, built.message
    _assert_nothing_left(built.build_id, labels)


def _assert_nothing_left(build_id: str, labels: dict[str, str]) -> None:
    api = engine.client().api
    for flt in ({"label": f"{confine.BUILD_LABEL}={build_id}"},
                {"label": "=".join(next(iter(labels.items())))}):
        assert api.containers(all=True, filters=flt) == [], flt
        assert api.images(all=True, filters=flt) == [], flt
    cgroups = list(confine.CGROUP_ROOT.glob(f"*/cloudlab-build-{build_id}"))
    assert cgroups == [], "the build's cgroup parent is gone"


def test_a_label_under_the_graders_prefix_is_refused_and_the_build_is_swept(base, tmp_path):
    """``LABEL org.cloudlab.build=x`` used to hide a build from the disk watch and the sweep:
    its images carried the student's value, not the build's id, and stayed behind."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base}
        LABEL org.cloudlab.build=student-wins
        RUN dd if=/dev/zero of=/a bs=1M count=4 2>/dev/null
        RUN dd if=/dev/zero of=/b bs=1M count=4 2>/dev/null
        """))
    labels = {"org.cloudlab.test": f"label-{uuid.uuid4().hex[:8]}"}
    ctx = hooks.HookContext("docker-hub", "mallory", files=folder, labels=labels, timeout=120)
    api = engine.client().api
    try:
        built = hooks.build_image(ctx, "Dockerfile")
    finally:
        ctx.cleanup()
        left = api.images(all=True, filters={"label": "org.cloudlab.build=student-wins"})
        _remove_chain([i["Id"] for i in left])  # what the old grader left (the test's own)
    assert left == [], "an image the sweep cannot find was left behind"
    assert not built.ok and "line 2: LABEL org.cloudlab.build" in built.message, built.message
    _assert_nothing_left(built.build_id, labels)


def _remove_chain(ids: list[str]) -> None:
    """Remove images whatever their order: a parent goes once its children (all in
    ``ids``) are gone, so a few passes take them all."""
    import contextlib

    api = engine.client().api
    for _ in range(len(ids) + 1):
        for image in list(ids):
            with contextlib.suppress(Exception):
                api.remove_image(image, force=True)
                ids.remove(image)


def test_the_graders_labels_win_over_the_dockerfiles(base, tmp_path):
    """Beneath the policy: the build API's labels are applied after the Dockerfile's, so the
    final image carries the grader's values even if a student's LABEL slipped through."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base}\nLABEL org.cloudlab.test=student\n")
    context = confine._context(Path(folder), (folder / "Dockerfile").read_text(), "Dockerfile")
    tag = f"cloudlab-test-labels-{uuid.uuid4().hex[:8]}:1"
    reply = confine._post_build(context, {"t": tag, "networkmode": "none", "rm": True,
                                          "forcerm": True, "pull": False,
                                          "labels": '{"org.cloudlab.test": "grader"}'}, 120)
    for _ in reply.iter_lines():
        pass
    api = engine.client().api
    try:
        assert api.inspect_image(tag)["Config"]["Labels"]["org.cloudlab.test"] == "grader"
        assert confine._relabelled(tag, {"org.cloudlab.test": "grader"}) is None
        assert "org.cloudlab.test" in confine._relabelled(tag, {"org.cloudlab.test": "x"})
    finally:
        api.remove_image(tag, force=True)


# ------------------------------------------------------------------ the second wall
PROBE_HOST = """\
import socket, sys
for host, port in (a.rsplit(":", 1) for a in sys.argv[1:]):
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print("PROBE", host, "open")
    except OSError as exc:
        print("PROBE", host, "closed", type(exc).__name__)
"""


def test_a_policy_miss_still_finds_no_route_to_the_host(base, listeners, tmp_path):
    """Behind the policy: the jailed engine fetches a remote ``ADD`` itself, as the host's
    engine would, but from a network namespace whose only link is the jail's bridge. The
    policy is skipped here (``confine._build``), as if it had missed the line."""
    import subprocess

    from cloudlab.grading import jailengine

    why = jailengine.available()
    if why:
        pytest.skip(why)
    targets = [f"{s.server_address[0]}:{s.server_address[1]}" for s in listeners.values()]
    before = {name: list(s.hits) for name, s in listeners.items()}
    (tmp_path / "probe.py").write_text(PROBE_HOST)
    texts = [f"FROM {base}\nADD {_url(listeners, name, 'missed')} /x\n" for name in listeners]
    texts.append(f"FROM {base}\nCOPY probe.py /p.py\nRUN python /p.py {' '.join(targets)}\n")
    results = []
    with confine.Jail() as jail, jailengine.JailEngine(jail, [base]) as box:
        for number, text in enumerate(texts):
            build_id = f"missed{number}{uuid.uuid4().hex[:6]}"
            results.append(confine._build(tmp_path, text, build_id, jail=jail,
                                          limits=confine.Limits(seconds=120), labels={},
                                          tag=None, on_step=None, builder=box))
        netns, root, pid, engine_id = box.netns, box.root, box._proc.pid, box.id
    reached = {name: s.hits[len(before[name]):] for name, s in listeners.items()}
    assert reached == {"local": [], "bridge": []}, f"the jailed engine fetched {reached}"
    for built in results[:2]:
        assert not built.ok and "ADD failed" in built.message, built.message
    probe = results[2]
    assert probe.ok, probe.message + probe.log[-1500:]
    assert probe.log.count("PROBE") == 2 and " open" not in probe.log, probe.log[-800:]
    # nothing of the engine is left: process, namespace, folders, mounts
    from cloudlab.proc import alive

    assert not alive(pid), "the engine's dockerd is gone"
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                       text=True).stdout
    assert not root.exists() and str(root) not in Path("/proc/mounts").read_text()
    assert list(confine.CGROUP_ROOT.glob(f"*/cloudlab-builder-{engine_id}")) == []
    confine.sweep(probe.build_id)  # the one image kept: the copy on the host's engine
    for built in results:
        _assert_nothing_left(built.build_id, {confine.BUILD_LABEL: built.build_id})


KILLED = """
import sys, time
from cloudlab.grading import jailengine
box = jailengine.JailEngine(None, [sys.argv[1]]).start()
print(box.id, box._proc.pid, flush=True)
time.sleep(300)
"""


def test_a_killed_graders_engine_is_swept(base):
    """The engine's dockerd outlives a grader killed with SIGKILL; the next sweep (the
    start of every grading run) removes it: process, namespace, folders, mounts."""
    import signal
    import subprocess
    import sys

    from cloudlab.grading import jailengine
    from cloudlab.proc import alive

    why = jailengine.available()
    if why:
        pytest.skip(why)
    child = subprocess.Popen([sys.executable, "-c", KILLED, base], stdout=subprocess.PIPE,
                             text=True)
    try:
        engine_id, pid = child.stdout.readline().split()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert alive(int(pid)), "the engine outlived its grader"
    assert confine.sweep() >= 1
    assert not alive(int(pid))
    assert f"{jailengine.PREFIX}{engine_id}" not in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not (jailengine.RUN / engine_id).exists()
    assert not (jailengine.STATE / engine_id).exists()
    assert str(jailengine.RUN / engine_id) not in Path("/proc/mounts").read_text()


def test_an_engine_that_cannot_be_jailed_builds_nothing(base, tmp_path, monkeypatch):
    """Fail closed: when the jailed engine cannot start, the grader builds nothing (and
    starts nothing for a Dockerfile the policy refuses); ``host`` is an explicit opt-out."""
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base}\nRUN echo ok\n")
    labels = {"org.cloudlab.test": f"closed-{uuid.uuid4().hex[:8]}"}
    results = {}
    for mode in ("bogus", "host"):
        monkeypatch.setenv("CLOUDLAB_BUILD_ENGINE", mode)
        ctx = hooks.HookContext("docker-hub", "ada", files=folder, labels=labels, timeout=120)
        try:
            results[mode] = hooks.build_image(ctx, "Dockerfile", network="none")
        finally:
            ctx.cleanup()
    assert not results["bogus"].ok
    assert "could not confine the build" in results["bogus"].message, results["bogus"].message
    assert results["host"].ok and results["host"].limits["engine"] == "host"
    _assert_nothing_left(results["host"].build_id, labels)
