"""The direct API client's pure parts: paths, refused names and kinds, kubeconfig reading."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from cloudlab.errors import CloudlabError
from cloudlab.k8s import api


def test_paths_of_namespaced_and_cluster_scoped_kinds():
    assert api.kind_path("Pod", namespace="a") == "/api/v1/namespaces/a/pods"
    assert api.kind_path("HorizontalPodAutoscaler", "web", namespace="a") == \
        "/apis/autoscaling/v2/namespaces/a/horizontalpodautoscalers/web"
    assert api.kind_path("Namespace", "a") == "/api/v1/namespaces/a"


@pytest.mark.parametrize(("kind", "name", "namespace", "words"), [
    ("Pod", "../../secrets", "a", "not a valid Kubernetes name"),
    ("Pod", "web", "a/b", "not a valid Kubernetes name"),
    ("Pod", "Web", "a", "not a valid Kubernetes name"),
    ("Pod", "web", None, "namespaced: pass namespace="),
    ("CronJob", "web", "a", "unknown kind 'CronJob'"),
])
def test_bad_names_and_unknown_kinds_never_reach_a_url(kind, name, namespace, words):
    with pytest.raises(CloudlabError, match=words):
        api.kind_path(kind, name, namespace=namespace)


def test_the_objects_own_api_version_picks_the_path():
    assert api.kind_path("Service", "web", namespace="a", api_version="v1") == \
        "/api/v1/namespaces/a/services/web"
    assert api.kind_path("HorizontalPodAutoscaler", namespace="a",
                         api_version="autoscaling/v1").startswith("/apis/autoscaling/v1/")
    for bad in ("../v1", "apps/v1/../../x", "apps", ""):
        with pytest.raises(CloudlabError, match="not a group/version"):
            api.kind_path("Deployment", "web", namespace="a", api_version=bad)


def test_a_kubeconfig_with_inline_credentials(tmp_path):
    ca, cert, key = b"CA PEM", b"CERT PEM", b"KEY PEM"
    enc = lambda b: base64.b64encode(b).decode()  # noqa: E731
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "two",
              "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:1"}},
                           {"name": "c2", "cluster": {"server": "https://127.0.0.1:2/",
                                                      "certificate-authority-data": enc(ca)}}],
              "users": [{"name": "u2", "user": {"client-certificate-data": enc(cert),
                                                "client-key-data": enc(key)}}],
              "contexts": [{"name": "two", "context": {"cluster": "c2", "user": "u2"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    with api.Api.from_kubeconfig(path) as client:
        assert client.server == "https://127.0.0.1:2"
        assert Path(client.session.verify).read_bytes() == ca
        assert [Path(f).read_bytes() for f in client.session.cert] == [cert, key]
        assert client.session.trust_env is False   # no proxy or CA bundle from the environment
        with client.with_token("t0ken") as other:
            assert other.session.headers["Authorization"] == "Bearer t0ken"
            assert other.session.cert is None
        folder = client._tmp
    assert not folder.exists()
    with pytest.raises(CloudlabError, match="no context nowhere"):
        api.Api.from_kubeconfig(path, "nowhere")


def test_key_files_go_with_an_api_nobody_closed(tmp_path):
    import gc

    folder = api.Api({"server": "https://127.0.0.1:1"}, {"token": "t"})._tmp
    gc.collect()
    assert not folder.exists()
