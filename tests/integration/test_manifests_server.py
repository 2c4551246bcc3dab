"""The server-side dry run of cloudlab.manifests against a real API server (kwok backend).

Nothing is stored: ``kubectl apply --dry-run=server`` asks the API server to admit and
default the objects, so errors the schemas miss (immutable fields, webhooks, quota) show.
"""

from __future__ import annotations

import pytest

from cloudlab import k8s
from cloudlab import manifests as m


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from cloudlab import config
    avail = k8s.available().get("kwok")
    if not avail:
        pytest.skip(f"kwok backend unavailable: {getattr(avail, 'reason', 'not installed')}")
    cfg = config.load(env={}, state_dir=tmp_path_factory.mktemp("state"),
                      run_id="test-manifests-server")
    with k8s.Cluster("kwok", nodes=1, cfg=cfg) as c:
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
