"""The binary install: pinned versions, the cache (hit, layout), official fallback, failures."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest

from cloudlab.k8s import install
from cloudlab.k8s.install import PINNED, InstallError, SourceBuild, Step


def fake_cache(root: Path, versions: dict | None = None) -> Path:
    """A cache dir holding executable stand-ins for every binary, plus an install record."""
    bins = install.bin_dir(root)
    bins.mkdir(parents=True)
    for name in install.BINARIES:
        (bins / name).write_text("#!/bin/sh\necho v0\n")
        (bins / name).chmod(0o755)
    install.metrics_manifests(root).mkdir()
    (install.metrics_manifests(root) / "kustomization.yaml").write_text("resources: []\n")
    record = {"versions": versions or PINNED, "sources": {}, "seconds": 1.0}
    (install.version_dir(root) / install.RECORD).write_text(json.dumps(record))
    return root


def test_versions_are_pinned_and_consistent():
    assert PINNED["kubernetes"].startswith("1.") and PINNED["staging"].startswith("0.")
    assert PINNED["kubernetes"].split(".")[1:] == PINNED["staging"].split(".")[1:]
    for name in install.BINARIES:
        url, _ = install.official_urls(name, "amd64")
        assert url.startswith("https://") and "amd64" in url
    assert f"v{PINNED['kubernetes']}" in install.official_urls("kube-apiserver")[0]
    assert PINNED["etcd"] in install.official_urls("etcd")[0]


def test_cache_layout_follows_xdg(tmp_path):
    assert install.cache_home({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path
    assert install.cache_home({"XDG_CACHE_HOME": "relative/dir"}) == Path.home() / ".cache"
    assert install.bin_dir(tmp_path) == (tmp_path / "cloudlab" / "k8s" /
                                         f"v{PINNED['kubernetes']}" / "bin")


def test_warm_cache_is_instant_and_never_downloads(tmp_path, monkeypatch):
    cache = fake_cache(tmp_path)
    monkeypatch.setattr(install, "download_official", lambda *a, **k: pytest.fail("downloaded"))
    said: list[str] = []
    result = install.install(cache, progress=said.append)  # its time: bench/timings.py
    assert result.cached and result.bin == install.bin_dir(cache)
    assert said == []
    assert "already" in str(result)


def test_other_recorded_versions_are_not_a_cache_hit(tmp_path):
    cache = fake_cache(tmp_path, versions={**PINNED, "kubernetes": "1.30.0"})
    assert not install.installed(cache)
    (install.bin_dir(cache) / "etcd").unlink()
    assert install.missing(cache) == ["etcd"]


def test_metrics_server_manifests_are_part_of_the_cache(tmp_path):
    cache = fake_cache(tmp_path)
    assert install.installed(cache)
    (install.metrics_manifests(cache) / "kustomization.yaml").unlink()
    assert not install.installed(cache)


def test_wrapper_replaces_every_staging_module():
    gomod = ("module k8s.io/kubernetes\n\nreplace (\n"
             "\tk8s.io/api => ./staging/src/k8s.io/api\n"
             "\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n)\n")
    text = install.wrapper_gomod(gomod, "1.36.3", "0.36.3")
    assert "require k8s.io/kubernetes v1.36.3" in text
    assert "replace k8s.io/api => k8s.io/api v0.36.3" in text
    assert "replace k8s.io/client-go => k8s.io/client-go v0.36.3" in text
    with pytest.raises(InstallError, match="no staging modules"):
        install.wrapper_gomod("module x\n", "1.36.3", "0.36.3")


def test_kube_steps_set_the_version_ldflags(tmp_path):
    build = SourceBuild(tmp_path / "w", tmp_path / "bin", progress=lambda _: None)
    steps = {s.name: s for s in build.steps(list(install.BINARIES))}
    assert next(iter(steps)) == "kube wrapper"
    argv = steps["kube-apiserver"].commands[0]
    ld = argv[argv.index("-ldflags") + 1]
    assert f"gitVersion=v{PINNED['kubernetes']}" in ld and "gitMinor=36" in ld
    assert any(f"@{PINNED['kwok']}" in a for a in steps["kwok"].commands[0])


def test_a_failing_step_is_named_with_its_log_tail(tmp_path, monkeypatch):
    build = SourceBuild(tmp_path / "work", tmp_path / "bin", progress=lambda _: None)
    failing = Step("kube-apiserver", [["sh", "-c", "echo compiling pkg/a; echo 'undefined: Foo' "
                                              ">&2; exit 3"]], tmp_path / "work")
    monkeypatch.setattr(build, "steps", lambda names: [failing])
    with pytest.raises(InstallError) as err:
        build.run(["kube-apiserver"])
    text = str(err.value)
    assert "step 'kube-apiserver' failed" in text and "exit code 3" in text
    assert "undefined: Foo" in text and str(build.log) in text


def test_a_step_that_produces_nothing_fails(tmp_path, monkeypatch):
    build = SourceBuild(tmp_path / "work", tmp_path / "bin", progress=lambda _: None)
    quiet = Step("etcd", [["true"]], tmp_path / "work", ("etcd",))
    monkeypatch.setattr(build, "steps", lambda names: [quiet])
    with pytest.raises(InstallError, match="etcd is missing"):
        build.run(["etcd"])


def test_offline_download_fails_fast_and_falls_back(tmp_path, monkeypatch):
    calls: list[str] = []

    def unreachable(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(install, "_fetch", unreachable)
    said: list[str] = []
    got = install.download_official(["kube-apiserver", "etcd"], tmp_path, said.append)
    assert got == [] and len(calls) == 1  # stops at the first unreachable host
    assert "building the rest from source" in said[-1]


def test_a_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(install, "_fetch", lambda url, timeout: b"0" * 64 if url.endswith(
        ".sha256") else b"binary")
    with pytest.raises(InstallError, match="checksum mismatch"):
        install.download_official(["kube-apiserver"], tmp_path, lambda _: None)
    assert not (tmp_path / "kube-apiserver").exists()


def test_build_time_is_read_from_the_log(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("Sat Nov 28 18:20:44 UTC 2026\n== kube wrapper\ngo: downloading x\n"
                   "Sat Nov 28 18:21:34 UTC 2026\n== kube-apiserver\n"
                   "Sat Nov 28 18:50:00 UTC 2026\n== done\n")
    assert install.build_seconds(log) == 29 * 60 + 16
    assert install.step_times(log) == {"kube wrapper": 50.0, "kube-apiserver": 1706.0}
    log.write_text("Sat Nov 28 18:20:44 UTC 2026\n== kube wrapper\n")
    assert install.build_seconds(log) is None  # unfinished
