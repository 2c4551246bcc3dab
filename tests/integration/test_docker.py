"""cloudlab.docker against the real engine: build, cache, errors, run options and limits."""

import contextlib
import secrets
import signal
import subprocess
import sys
import threading

import pytest
import requests

from cloudlab import docker as cd
from cloudlab import images, project
from cloudlab.config import LABEL
from cloudlab.errors import CommandError, UnavailableError
from cloudlab.proc import wait_for
from tests.conftest import outside


@pytest.fixture(scope="module")
def hello(mcfg, tmp_path_factory):
    """The project's final (multi-stage, non-root) image, built once for the module."""
    folder = project.create(tmp_path_factory.mktemp("hello"), step="multi-stage", cfg=mcfg)
    tag = f"cloudlab-test-hello:{mcfg.run_id}"
    built = cd.build(folder, tag, progress=False, cfg=mcfg)
    return folder, tag, built


def _leftovers(api, marker: str) -> list:
    return [c for c in api.api.containers(all=True) if marker in c.get("Command", "")]


def test_built_image_says_hello_as_a_non_root_user(hello, mcfg):
    _, tag, built = hello
    assert built.tag == tag and built.id.startswith("sha256:")
    assert cd.run_once(tag, cfg=mcfg) == "Hello World!\n"
    assert cd.run_once(tag, ["--version"], cfg=mcfg).strip().endswith("1.0.0")
    assert cd.run_once(tag, ["-c", "import os; print(os.getuid())"], entrypoint=["python"],
                       cfg=mcfg).strip() == "10001"
    assert cd.engine.client().images.get(tag).labels[LABEL] == mcfg.run_id


def test_a_second_build_reuses_every_cached_layer(hello, mcfg):
    folder, tag, built = hello
    again = cd.build(folder, tag, progress=False, cfg=mcfg)
    assert again.id == built.id
    assert again.cached_steps == len(again.steps) - 2  # both FROMs are not "cache" lines
    frame = again.frame()
    assert list(frame.columns) == ["number", "line", "instruction", "cached", "seconds"]


def test_a_dockerfile_syntax_error_names_the_line(tmp_path, mcfg, docker_engine):
    (tmp_path / "Dockerfile").write_text(f"FROM {mcfg.base_image}\nRUN true\nCOPPY . /app\n")
    with pytest.raises(cd.BuildError) as info:
        cd.build(tmp_path, f"cloudlab-test-bad:{mcfg.run_id}", progress=False, cfg=mcfg)
    assert info.value.line == 3
    assert "Dockerfile line 3: `COPPY . /app`" in str(info.value)
    assert "did you mean COPY?" in str(info.value)
    assert cd.containers(mcfg) == []


def test_a_failing_run_step_names_its_line_and_leaves_no_container(tmp_path, mcfg,
                                                                   docker_engine):
    marker = "cloudlab-marker-" + secrets.token_hex(4)
    (tmp_path / "Dockerfile").write_text(
        f"FROM {mcfg.base_image}\n# a comment\nRUN echo {marker} && \\\n    exit 7\n")
    with pytest.raises(cd.BuildError) as info:
        cd.build(tmp_path, f"cloudlab-test-bad:{mcfg.run_id}", progress=False, cfg=mcfg)
    assert info.value.line == 3 and "failed with exit code 7" in str(info.value)
    assert marker in str(info.value)  # the step's own output
    assert _leftovers(docker_engine, marker) == []  # forcerm removed the failed container


def test_rm_false_keeps_intermediate_containers(tmp_path, mcfg, docker_engine):
    marker = "cloudlab-marker-" + secrets.token_hex(4)
    (tmp_path / "Dockerfile").write_text(f"FROM {mcfg.base_image}\nRUN echo {marker}\n")
    try:
        cd.build(tmp_path, f"cloudlab-test-rm:{mcfg.run_id}", rm=False, forcerm=False,
                 nocache=True, progress=False, cfg=mcfg)
        assert len(_leftovers(docker_engine, marker)) == 1  # what `docker build --rm` avoids
    finally:  # the RUN step's container, and the one the builder's final LABEL step left
        for box in _leftovers(docker_engine, marker):
            docker_engine.api.remove_container(box["Id"], force=True)
        for box in cd.containers(mcfg):
            box.remove(force=True)


def _drain(stream) -> list[str]:
    """Lines read from ``stream`` by a daemon thread, as they come."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")),
                     daemon=True).start()
    return lines


def test_an_interrupted_build_leaves_no_container(tmp_path, mcfg, docker_engine):
    marker = "cloudlab-marker-" + secrets.token_hex(4)
    (tmp_path / "Dockerfile").write_text(f"FROM {mcfg.base_image}\n"
                                         f"RUN echo {marker} && sleep 120\n")
    # the child stays alive after the interrupt (as a notebook kernel would), so only the
    # library's own cleanup can make the engine cancel the build
    # a run started in the background (`cmd &`) hands the child SIGINT ignored: restore it
    script = ("import signal, time\nimport cloudlab as cl\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\ntry:\n"
              f"    cl.docker.build({str(tmp_path)!r}, 'cloudlab-test-int:{mcfg.run_id}', "
              "progress=False, verbose=True)\n"
              "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n"
              "    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-u", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    said = _drain(proc.stdout)  # a reader thread: a probe must never block on readline
    try:
        wait_for(lambda: marker in "".join(said), timeout=60, what="the build step to start")
        assert _leftovers(docker_engine, marker)  # the step's container is running
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted" in "".join(said), timeout=30,
                 what="the interrupt to reach the build")
        wait_for(lambda: not _leftovers(docker_engine, marker), timeout=30,
                 what="the engine to cancel the build and remove its container")
    finally:
        proc.kill()
        proc.wait()


def test_a_missing_base_image_is_explained(tmp_path, mcfg, docker_engine):
    (tmp_path / "Dockerfile").write_text("FROM cloudlab-no-such-base:0.0\nRUN true\n")
    with pytest.raises(cd.BuildError, match="not present locally") as info:
        cd.build(tmp_path, f"cloudlab-test-bad:{mcfg.run_id}", progress=False, cfg=mcfg)
    assert info.value.line == 1 and "cloudlab images bootstrap" in str(info.value)
    assert cd.containers(mcfg) == []


def test_a_failing_command_raises_with_its_exit_code_and_output(mcfg):
    with pytest.raises(CommandError) as info:
        cd.run_once(mcfg.base_image, ["sh", "-c", "echo oops; exit 3"], cfg=mcfg)
    assert info.value.returncode == 3 and "oops" in str(info.value)
    assert cd.containers(mcfg) == []


def test_running_a_missing_image_is_explained(mcfg):
    with pytest.raises(UnavailableError, match="not present locally"):
        cd.run("cloudlab-no-such-image:0.0", cfg=mcfg)
    assert cd.containers(mcfg) == []


def test_ports_are_published_on_loopback_and_found_like_docker_port(mcfg):
    with cd.Container(mcfg.base_image, ["python", "-m", "http.server", "8000"],
                      ports={8000: None}, cfg=mcfg) as box:
        mapping = box.port()
        host_port = box.port(8000)
        assert mapping == {"8000/tcp": [f"127.0.0.1:{host_port}"]}
        reply = wait_for(lambda: requests.get(f"http://127.0.0.1:{host_port}/", timeout=2),
                            timeout=20, what="http.server in the container")
        assert reply.status_code == 200
        with pytest.raises(cd.CloudlabError, match="not published"):
            box.port(9000)


def test_a_named_volume_is_shared_and_a_bind_mount_is_seen(mcfg, tmp_path, docker_engine):
    name = f"cloudlab-test-{mcfg.run_id}"
    (tmp_path / "greeting.txt").write_text("from the host\n")
    write = ["sh", "-c", "echo shared > /data/note.txt"]
    with cd.Container(mcfg.base_image, write, volumes={name: "/data"}, cfg=mcfg) as w:
        assert w.wait(30) == 0
    out = cd.run_once(mcfg.base_image, ["cat", "/data/note.txt", "/host/greeting.txt"],
                      volumes={name: "/data:ro", str(tmp_path): "/host:ro"}, cfg=mcfg)
    assert out == "shared\nfrom the host\n"
    assert docker_engine.volumes.get(name).attrs["Labels"][LABEL] == mcfg.run_id


def test_limits_log_options_env_and_labels_reach_the_engine(mcfg):
    with cd.Container(mcfg.base_image, ["sleep", "30"], cpus=0.5, memory="64m", pids_limit=32,
                      env={"GREETING": "hi"}, log_opts={"mode": "non-blocking",
                                                        "max-size": "1m"}, cfg=mcfg) as box:
        host = box.raw.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 32
        assert host["Memory"] == host["MemorySwap"] == 64 * 2**20
        assert host["LogConfig"] == {"Type": "json-file",
                                     "Config": {"mode": "non-blocking", "max-size": "1m"}}
        assert "GREETING=hi" in box.raw.attrs["Config"]["Env"]
        assert box.raw.labels[LABEL] == mcfg.run_id
        assert box.exec(["sh", "-c", "echo $GREETING"]) == (0, "hi\n")


def test_a_cpu_limit_is_a_cfs_quota_in_the_containers_cgroup(mcfg):
    # the share a busy loop gets under it is a measured figure: bench/timings.py
    quota = ("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
             "2>/dev/null || cat /sys/fs/cgroup/cpu.max")
    with cd.Container(mcfg.base_image, ["sleep", "30"], cpus=0.25, cfg=mcfg) as box:
        code, out = box.exec(["sh", "-c", quota])
    assert code == 0 and out.split()[:2] == ["25000", "100000"], out


def test_a_process_over_the_memory_limit_is_oom_killed(mcfg):
    hog = ["python", "-c", "b = bytearray(256 * 2**20); print('survived')"]
    with cd.Container(mcfg.base_image, hog, memory="64m", cfg=mcfg) as box:
        assert box.wait(60) == 137
        assert box.oom_killed and "survived" not in box.logs()


def test_a_with_block_removes_its_container_even_on_errors(mcfg, docker_engine):
    with contextlib.suppress(KeyError), cd.Container(mcfg.base_image, ["sleep", "30"],
                                                     cfg=mcfg) as box:
        cid = box.id
        raise KeyError("boom")
    assert not docker_engine.containers.list(all=True, filters={"id": cid})
    box.stop()  # idempotent


def test_gpus_are_used_when_a_runtime_exists(mcfg):
    if not cd.gpu_available():
        with pytest.raises(UnavailableError, match="no GPU runtime"):
            cd.run(mcfg.base_image, ["true"], gpus="all", cfg=mcfg)
        pytest.skip(outside("no NVIDIA container runtime on this engine (the explanation "
                            "was checked)"))
    out = cd.run_once(mcfg.base_image, ["sh", "-c", "ls /dev | grep -c nvidia"], gpus="all",
                      cfg=mcfg)
    assert int(out.strip()) > 0


def test_image_size_and_layers_are_reported(hello, mcfg):
    _, tag, built = hello
    assert images.size(tag) == built.size > images.size(mcfg.base_image) * 0.9
    rows = images.layers(tag)
    assert "LABEL" in rows[0]["created_by"]  # newest first: the run-id label comes last
    assert any("COPY" in row["created_by"] and row["size"] > 0 for row in rows)
    with pytest.raises(UnavailableError, match="not present locally"):
        images.size("cloudlab-no-such-image:0.0")
    assert images.remove(["cloudlab-no-such-image:0.0"]) == 0
