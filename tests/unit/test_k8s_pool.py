"""The namespace pool's parts that need no cluster (tests/integration has the rest)."""

from __future__ import annotations

import time

import pytest

from cloudlab.errors import CloudlabError
from cloudlab.k8s import pool


def test_a_pool_refuses_kinds_it_cannot_empty(tmp_path):
    with pytest.raises(CloudlabError, match="cannot empty ConfigMap; it knows"):
        pool.NamespacePool(None, tmp_path / "p", prepare=lambda a, ns: {},
                           kinds=("Pod", "ConfigMap"))


def test_the_slots_folder_is_private_and_empties_in_dependency_order(tmp_path):
    p = pool.NamespacePool(None, tmp_path / "p", prepare=lambda a, ns: {},
                           kinds=("Pod", "Deployment", "HorizontalPodAutoscaler"))
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o700
    assert p.kinds == ("HorizontalPodAutoscaler", "Deployment", "Pod")


def test_prepared_data_goes_stale_at_its_own_expiry_when_sooner(tmp_path):
    p = pool.NamespacePool(None, tmp_path / "p", prepare=lambda a, ns: {}, kinds=("Pod",),
                           ttl=3600)
    now = time.time()
    assert p._expires({"expires": now + 60}) == pytest.approx(now + 60)
    assert p._expires({}) == pytest.approx(now + 3600, abs=5)
    assert p._expires({"expires": "never"}) == pytest.approx(now + 3600, abs=5)


def test_the_folder_depends_on_the_kubeconfig_and_context(tmp_path):
    a = pool.folder_for(tmp_path / "kc", "one")
    assert a == pool.folder_for(tmp_path / "kc", "one")
    assert a != pool.folder_for(tmp_path / "kc", "two")
    assert a != pool.folder_for(tmp_path / "other", "one")
