"""Each local service really starts, answers its health endpoint and stops cleanly."""

import socket
import subprocess
import sys

import pytest
import requests

from cloudlab import services
from cloudlab.errors import ServiceError
from cloudlab.proc import alive
from cloudlab.services import port_in_use

NAMES = list(services.SERVICES)


def _gone(svc: services.Service, pid: int) -> bool:
    return svc.pid() is None and not alive(pid) and not port_in_use("127.0.0.1",
                                                                                 svc.port)


@pytest.mark.parametrize("name", NAMES)
def test_service_starts_answers_and_stops(cfg, name):
    svc = services.get(name, cfg)
    if svc.executable() is None:
        pytest.skip(f"{svc.binary} is not installed: {svc.install_hint()}")
    with svc:
        pid = svc.pid()
        assert pid and svc.healthy()
        assert requests.get(svc.url + svc.health_path, timeout=5).status_code in (200, 401)
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{svc.port}" in listening, "must bind to 127.0.0.1 only"
        assert f"0.0.0.0:{svc.port}" not in listening and f"*:{svc.port}" not in listening
    assert _gone(svc, pid)


def test_up_twice_is_idempotent_and_down_leaves_nothing(cfg):
    first = {s.name: s.pid() for s in services.up(cfg=cfg)}
    try:
        second = {s.name: s.pid() for s in services.up(cfg=cfg)}
        assert first == second, "a second `up` must reuse the running processes"
        assert all(st.healthy for st in services.status(cfg=cfg))
    finally:
        services.down(cfg=cfg)
    for name, pid in first.items():
        assert _gone(services.get(name, cfg), pid), f"{name} left something behind"
    assert not any(st.running for st in services.status(cfg=cfg))


def test_cli_up_up_down(cfg, monkeypatch):
    env = {"CLOUDLAB_STATE_DIR": str(cfg.state_dir),
           "CLOUDLAB_MOTO_PORT": str(cfg.moto_port),
           "CLOUDLAB_PROMETHEUS_PORT": str(cfg.prometheus_port)}
    cmd = [sys.executable, "-m", "cloudlab.cli", "services"]
    import os

    full_env = {**os.environ, **env}
    for action in ("up", "up", "status", "down"):
        done = subprocess.run([*cmd, action, "moto", "prometheus"], env=full_env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "healthy" not in done.stdout
    assert not port_in_use("127.0.0.1", cfg.moto_port)
    assert not port_in_use("127.0.0.1", cfg.prometheus_port)


def test_port_taken_by_someone_else_is_named(cfg):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cfg.registry_port))
        squatter.listen()
        with pytest.raises(ServiceError, match=f"port {cfg.registry_port} .* already in use"):
            services.registry(cfg).start()
    assert services.registry(cfg).pid() is None


def test_context_manager_leaves_a_running_service_alone(cfg):
    outer = services.moto(cfg).start()
    try:
        with services.moto(cfg) as inner:
            assert inner.pid() == outer.pid()
        assert services.moto(cfg).healthy(), "the with-block must not stop what it did not start"
    finally:
        outer.stop()


def test_context_manager_stops_on_exception(cfg):
    with pytest.raises(KeyboardInterrupt), services.moto(cfg) as svc:
        pid = svc.pid()
        raise KeyboardInterrupt
    assert _gone(svc, pid)


def test_a_service_that_dies_at_start_reports_its_log(cfg):
    prom = services.prometheus(cfg)
    prom.dir.mkdir(parents=True)
    prom.write_config = lambda: (prom.dir / "prometheus.yml").write_text("scrape_configs: [oops\n")
    with pytest.raises(ServiceError, match=r"^gave up waiting for prometheus at .*: "
                                           r"prometheus exited with code") as info:
        prom.start(timeout=20)
    assert "prometheus.log" in str(info.value), "the log tail must be in the error"
    assert prom.pid() is None


def test_unknown_service_is_named(cfg):
    with pytest.raises(ServiceError, match="unknown service 'mongo'; known: moto"):
        services.get("mongo", cfg)


def test_restart_picks_up_new_config_and_keeps_who_owns_it(cfg):
    with services.registry(cfg) as svc:
        first = svc.pid()
        svc.restart()
        assert svc.pid() not in (None, first) and svc.healthy()
        assert svc._owned, "the with-block started it, so it still stops it"
        pid = svc.pid()
    assert _gone(svc, pid)
    stopped = services.registry(cfg)
    assert stopped.restart() is stopped and stopped.pid() is None, "a stopped one stays stopped"


@pytest.mark.parametrize("format", ["identity", "pid only"])
def test_a_stale_pidfile_never_stops_an_unrelated_process(cfg, tmp_path, format):
    """Our server died, its pid now belongs to something else - here a process whose
    command line even names the same binary (another copy of the server, say)."""
    svc = services.moto(cfg)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                              svc.binary], cwd=tmp_path, start_new_session=True)
    try:
        svc.dir.mkdir(parents=True, exist_ok=True)
        stale = "0a1b2c3d-1" if format == "identity" else ""
        svc.pidfile.write_text(f"{other.pid} {stale}".strip())
        assert svc.pid() is None
        assert not svc.pidfile.exists(), "a stale pid file is removed"
        svc.pidfile.write_text(f"{other.pid} {stale}".strip())
        svc.stop(timeout=2)
        assert other.poll() is None and alive(other.pid), "stop() killed an unrelated process"
    finally:
        other.kill()
        other.wait()


def test_the_pidfile_holds_the_processes_identity(cfg):
    from cloudlab.proc import identity

    with services.moto(cfg) as svc:
        pid = svc.pid()
        assert svc.pidfile.read_text() == f"{pid} {identity(pid)}"
