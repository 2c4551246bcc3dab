"""cloudlab.docker without an engine: Dockerfile parsing, error messages, option checks."""

import sys
from pathlib import Path

import pytest

from cloudlab import docker as cd
from cloudlab.docker import building, running
from cloudlab.errors import UnavailableError


def test_the_module_name_does_not_shadow_the_sdk():
    import docker

    assert cd.docker is docker
    assert "site-packages" in docker.__file__ or "dist-packages" in docker.__file__
    assert sys.modules["cloudlab.docker"] is cd


def test_instructions_join_continuations_and_skip_comments():
    text = "# syntax comment\nFROM python:3.11-slim\n\n# a comment\nRUN pip install \\\n" \
           "    click \\\n    requests\nCMD [\"python\"]\n"
    found = cd.instructions(text)
    assert [(i.line, i.keyword) for i in found] == [(2, "FROM"), (5, "RUN"), (8, "CMD")]
    assert found[1].text == "RUN pip install click requests"


def test_escape_directive_changes_the_continuation_character():
    found = cd.instructions("# escape=`\nFROM x\nRUN a `\n  b\n")
    assert [(i.line, i.text) for i in found] == [(2, "FROM x"), (3, "RUN a b")]


def test_base_images_skip_stage_names_and_scratch():
    text = "FROM --platform=linux/amd64 python:3.11-slim AS build\nFROM build\n" \
           "FROM scratch\nFROM alpine:3 as other\nFROM other\n"
    assert cd.base_images(text) == ["python:3.11-slim", "alpine:3"]


def _steps(*texts):
    parsed = cd.instructions("\n".join(texts) + "\n")
    return [cd.Step(i + 1, p.text, p.line) for i, p in enumerate(parsed)], parsed


def test_parse_error_names_the_line_and_suggests_the_instruction():
    _, parsed = _steps("FROM x", "RUN a", "FORM y")
    err = building._build_error("dockerfile parse error line 3: unknown instruction: FORM", [],
                          parsed, "")
    assert err.line == 3 and err.instruction == "FORM y"
    assert "Dockerfile line 3: `FORM y`" in str(err) and "did you mean FROM?" in str(err)


def test_missing_base_image_says_offline_and_how_to_bootstrap():
    steps, parsed = _steps("FROM nosuch/base:1", "RUN a")
    err = building._build_error('Get "https://x/v2/": dial tcp: lookup x: no such host',
                          steps[:1], parsed, "")
    text = str(err)
    assert err.line == 1 and "nosuch/base:1 is not present locally" in text
    assert "offline" in text and "cloudlab images bootstrap" in text


def test_failing_run_names_its_line_exit_code_and_output():
    steps, parsed = _steps("FROM x", "RUN echo one", "RUN false")
    log = ("Step 1/3 : FROM x\n ---> abc\nStep 2/3 : RUN echo one\n ---> Running in 1\none\n"
           "Step 3/3 : RUN false\n ---> Running in 2\nboom happened\n"
           "Removing intermediate container 2\n")
    err = building._build_error("The command '/bin/sh -c false' returned a non-zero code: 1",
                          steps, parsed, log)
    assert err.line == 3 and "`RUN false` failed with exit code 1" in str(err)
    assert "boom happened" in str(err) and "one" not in str(err).split("---")[-1]


def test_gpu_requests_are_explained_when_there_is_no_gpu_runtime(monkeypatch):
    monkeypatch.setattr(cd.engine, "gpu_runtime", lambda: False)
    assert cd.gpu_request(0) == []
    with pytest.raises(UnavailableError, match="NVIDIA Container Toolkit"):
        cd.gpu_request("all")
    with pytest.raises(ValueError, match="'all' or a positive number"):
        cd.gpu_request("many")


def test_gpu_requests_become_device_requests_with_a_runtime(monkeypatch):
    monkeypatch.setattr(cd.engine, "gpu_runtime", lambda: True)
    (req,) = cd.gpu_request("all")
    assert req["Count"] == -1 and req["Capabilities"] == [["gpu"]]
    assert cd.gpu_request(2)[0]["Count"] == 2


def test_bad_limits_and_volumes_are_rejected_by_name(tmp_path, cfg):
    with pytest.raises(ValueError, match="cpus=0"):
        cd.Container("x", cpus=0)
    with pytest.raises(ValueError, match="pids_limit"):
        cd.Container("x", pids_limit=0)
    with pytest.raises(ValueError, match="must be an absolute path"):
        running._mounts({"data": "relative"}, cfg)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        running._mounts({str(tmp_path / "nope"): "/data"}, cfg)
    (bind,) = running._mounts({str(tmp_path): "/src:ro"}, cfg)
    assert bind["Type"] == "bind" and bind["ReadOnly"] is True


def test_log_options_default_to_capped_non_blocking_json_file():
    box = cd.Container("x")
    assert box.log_config.type == "json-file"
    assert box.log_config.config["mode"] == "non-blocking"
    assert box.log_config.config["max-size"] == "10m"
    assert cd.Container("x", log_driver="none").log_config.config == {}


def test_stats_rows_turn_cgroup_counters_into_cores():
    raw = {"cpu_stats": {"cpu_usage": {"total_usage": 3_500_000_000}, "online_cpus": 2,
                         "system_cpu_usage": 104_000_000_000},
           "precpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000},
                            "system_cpu_usage": 100_000_000_000},
           "memory_stats": {"usage": 2 * 2**20, "limit": 64 * 2**20},
           "pids_stats": {"current": 3}}
    row = running._stats_row(raw)
    assert row == {"cpu": 0.25, "memory_mib": 2.0, "memory_limit_mib": 64.0, "pids": 3}
    assert running._stats_row({"cpu_stats": {}, "precpu_stats": {}}) is None


def test_an_unstarted_container_says_so():
    box = cd.Container("x")
    box.stop()  # idempotent before start
    with pytest.raises(cd.CloudlabError, match="not running"):
        box.logs()
    assert running._port_key(8000) == "8000/tcp" and running._port_key("53/udp") == "53/udp"


def test_the_split_keeps_the_notebook_verbs():
    homes = {"build": building, "buildkit": building, "instructions": building,
             "BuildError": building, "run": running, "run_once": running,
             "Container": running, "volume": running, "gpu_available": running}
    for name, home in homes.items():
        assert getattr(cd, name) is getattr(home, name), name
    assert cd.GPU_HINT is running.GPU_HINT


def test_classic_builder_refuses_secrets_instead_of_leaking_them(tmp_path):
    with pytest.raises(ValueError, match="classic builder has no build secrets"):
        cd.build(tmp_path, "x:1", secrets={"token": tmp_path / "t"})
    with pytest.raises(ValueError, match="builder must be"):
        cd.build(tmp_path, "x:1", builder="kaniko")


def test_buildkit_absence_is_explained(monkeypatch):
    from cloudlab.errors import CommandError

    def missing(cmd, **kw):
        raise CommandError(cmd, 1, "", "docker: unknown command: docker buildx")

    monkeypatch.setattr(building, "run", missing)
    ok, why = cd.buildkit()
    assert not ok and "unknown command: docker buildx" in why and "buildx plugin" in why
    # the hint's way in is real: `make setup` runs setup.sh, which runs the build script
    assert "`make setup` builds it" in why and "scripts/setup_buildkit.sh" in why
    root = Path(__file__).resolve().parents[2]
    assert "\nbash scripts/setup_buildkit.sh " in (root / "scripts/setup.sh").read_text()
    assert (root / "scripts/setup_buildkit.sh").is_file()


def test_dangling_sweep_removes_only_old_unused_untagged_local_builds():
    """The engine API stand-in records the calls; the selection logic is what is tested."""
    import time
    from datetime import datetime, timezone
    from types import SimpleNamespace as NS

    from cloudlab import images

    def image(id, age, tags=()):
        created = datetime.fromtimestamp(time.time() - age, timezone.utc)
        return NS(id=id, tags=list(tags),
                  attrs={"Created": created.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")})

    calls = {"removed": [], "filters": None}

    def listing(filters):
        calls["filters"] = filters
        return [image("sha256:old", 3600), image("sha256:new", 10),
                image("sha256:in-use", 3600), image("sha256:tagged", 3600, ["x:1"])]

    def remove(id, force, noprune):
        assert not force, "removal is never forced"
        calls["removed"].append(id)

    api = NS(containers=NS(list=lambda all, **_: [NS(attrs={"Image": "sha256:in-use"})]),
             images=NS(list=listing, remove=remove))
    assert images.sweep_dangling(api=api) == 1
    assert calls["removed"] == ["sha256:old"]
    assert calls["filters"] == {"dangling": True, "label": images.LOCAL_BUILD_LABEL}
