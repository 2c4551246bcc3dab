"""Integration fixtures shared by the Docker-side test modules."""

from __future__ import annotations

import secrets

import pytest

from cloudlab import cleanup, config, images
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
