"""The server-side dry run of cloudlab.manifests against a real API server (kwok backend).

Nothing is stored: ``kubectl apply --dry-run=server`` asks the API server to admit and
default the objects, so errors the schemas miss (immutable fields, webhooks, quota) show.
"""

from __future__ import annotations

import pytest

from cloudlab import manifests as m
from tests.integration.conftest import kwok_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with kwok_cluster(tmp_path_factory, "test-manifests-server", nodes=1) as c:
        yield c


def test_valid_app_passes_the_server_dry_run(cluster):
    with cluster.namespace() as ns:
        assert m.server_problems(m.app("hello", "hello:0.1"), cluster.kubeconfig,
                                 context=cluster.context, namespace=ns) == []
        assert cluster.get("deployments", namespace=ns)["items"] == []   # nothing stored


def test_server_reports_what_it_refuses(cluster):
    dep = m.deployment("hello", "hello:0.1")
    dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    with cluster.namespace() as ns:
        problems = m.server_problems([dep], cluster.kubeconfig, context=cluster.context,
                                     namespace=ns)
    assert problems and all(p.check == "server" and p.obj == "deployment/hello"
                            for p in problems)
    assert any("quantities must match the regular expression" in p.message
               for p in problems), problems
