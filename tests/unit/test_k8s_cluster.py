"""cloudlab.k8s without a cluster: names, manifests, availability reasons, GKE commands."""

from __future__ import annotations

import doctest

import pytest

from cloudlab import CloudlabError, UnavailableError, config
from cloudlab.k8s import cluster, gke, install, kwok
from cloudlab.k8s.cluster import Cluster, availability, cluster_name, ours, to_yaml


@pytest.mark.parametrize("module", [cluster, gke, install, kwok], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_names_carry_the_run_id_and_cleanup_matches_only_that_run():
    name = cluster_name("20261128-183000-ab12", "x1")
    assert name == "cloudlab-20261128-183000-ab12-x1" and ours(name, "20261128-183000-ab12")
    assert not ours(name, "20261128-183000-ab1") and ours(name) and not ours("kwok")
    assert len(cluster_name("r" * 80)) <= 50


def test_manifests_become_one_yaml_stream(tmp_path):
    docs = [{"kind": "Namespace", "metadata": {"name": "a"}},
            {"kind": "Namespace", "metadata": {"name": "b"}}]
    assert to_yaml(docs).count("---") == 1 and "name: a" in to_yaml(docs[0])
    (tmp_path / "a.yaml").write_text("kind: A\n")
    (tmp_path / "b.yml").write_text("kind: B\n")
    assert to_yaml(tmp_path) == "kind: A\n\n---\nkind: B\n"
    assert to_yaml(str(tmp_path / "a.yaml")) == "kind: A\n"


def test_bad_arguments_are_named():
    with pytest.raises(CloudlabError, match="unknown backend 'minikube'"):
        Cluster("minikube")
    with pytest.raises(CloudlabError, match="at least one node"):
        Cluster(nodes=0)


def test_kwok_pods_have_no_logs_or_ports(tmp_path):
    k = Cluster(cfg=config.load(env={}, state_dir=tmp_path))
    with pytest.raises(UnavailableError, match="no container or process runs"):
        k.logs("pod/x")
    with pytest.raises(UnavailableError, match="forward"), k.port_forward("pod/x", 80):
        pass


def test_unavailable_backends_say_exactly_why(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "which", lambda name: None)
    assert "`kind` not found on PATH" in availability("kind").reason
    assert "kubectl not found" in availability("kwok").reason
    missing = availability("kubeconfig", tmp_path / "nope")
    assert not missing and f"no kubeconfig at {tmp_path / 'nope'}" in missing.reason
    with pytest.raises(UnavailableError, match="kind backend unavailable"):
        Cluster("kind", cfg=config.load(env={}, state_dir=tmp_path)).start()


def test_kwok_config_emulates_usage_from_annotations():
    docs = {d["kind"]: d for d in kwok.config_docs()}
    cpu = docs["ClusterResourceUsage"]["spec"]["usages"][0]["usage"]["cpu"]["expression"]
    assert kwok.CPU_ANNOTATION in cpu
    assert docs["Metric"]["spec"]["path"] == "/metrics/nodes/{nodeName}/metrics/resource"
    node = kwok.node("n1", cpu="2")
    assert node["status"]["capacity"]["cpu"] == "2"
    assert node["metadata"]["annotations"]["metrics.k8s.io/resource-metrics-path"].endswith(
        "/n1/metrics/resource")


def test_gke_commands_are_labelled_not_executed():
    cmds = gke.walkthrough("demo", run_id="r1")
    assert next(c.argv[:4] for c in cmds) == ["gcloud", "container", "clusters", "create"]
    assert all("NOT EXECUTED" in str(c) for c in cmds)


def test_quantities_in_millicores():
    assert cluster._millicores("250m") == 250 and cluster._millicores("1") == 1000
    assert cluster._millicores("5000000n") == 5
