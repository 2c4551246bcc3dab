"""Integration fixtures shared by the Docker-side test modules."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest

from cloudlab import cleanup, config, images, k8s
from tests.conftest import free_port


@pytest.fixture(scope="module")
def mcfg(request, tmp_path_factory, docker_engine):
    """Module-wide settings: private state and ports, a run id named after the module.

    Afterwards everything labelled with that run id goes (containers, volumes, images,
    the module's own services).
    """
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("state"),
                      registry_port=free_port(), moto_port=free_port(),
                      run_id=f"test-{module}-{secrets.token_hex(3)}")
    images.bootstrap(cfg.base_image, cfg)
    yield cfg
    cleanup.sweep(cfg.run_id, cfg=cfg, stop_services=True)
    images.remove_labelled(cfg.run_id)


@contextlib.contextmanager
def kwok_cluster(tmp_path_factory, run_id: str, **kwargs) -> Iterator[k8s.Cluster]:
    """A kwok cluster with private state for one test module (skips, saying why, where
    kwok is not installed); ``kwargs`` go to :class:`cloudlab.k8s.Cluster`."""
    avail = k8s.available().get("kwok")
    if not avail:
        pytest.skip(f"kwok backend unavailable: {getattr(avail, 'reason', 'not installed')}")
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("state"), run_id=run_id)
    with k8s.Cluster("kwok", cfg=cfg, **kwargs) as cluster:
        yield cluster
