"""The real node's plan and configs, without starting anything: addresses that overlap
nothing of this machine, the settings the issue's probe found necessary, the pause image
archive, the chains teardown recognises, and the install steps that build the node."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import yaml

from cloudlab import config
from cloudlab.k8s import host, install, kwok, node
from cloudlab.k8s.install import PINNED, SourceBuild


def a_node(tmp_path: Path, **plan) -> node.Node:
    cfg = config.load(env={}, state_dir=tmp_path / "state", run_id="r1")
    plan = node.Plan(plan.get("pod", "10.244.0.0/24"), plan.get("svc", "10.96.0.0/24"))
    n = node.Node(cfg, "cloudlab-r1-ab12", tmp_path / "kc", "kwok-x", tmp_path / "pki", plan)
    n.ports = {k: 40000 + i for i, k in enumerate(("kubelet", "kubelet-healthz", "proxy-healthz",
                                                   "proxy-metrics", "coredns-ready"))}
    return n


def test_subnets_avoid_every_network_of_the_machine():
    taken = ["10.244.0.0/16", "192.0.2.0/24", "10.96.0.0/24"]
    assert host.pick_subnet(taken, host.POD_CANDIDATES) == "10.245.0.0/24"
    assert host.pick_subnet(taken, host.SERVICE_CANDIDATES) == "10.97.0.0/24"
    with pytest.raises(host.HostError, match="overlaps a network"):
        host.pick_subnet(["10.0.0.0/8"], host.POD_CANDIDATES)


def test_a_plan_never_overlaps_this_machine():
    plan = node.Plan.choose()
    taken = host.local_networks()
    assert not host.overlaps(plan.pod_cidr, taken) and not host.overlaps(plan.service_cidr, taken)
    assert not host.overlaps(plan.pod_cidr, [plan.service_cidr])
    assert plan.gateway.endswith(".1") and plan.gateway in plan.pod_cidr.replace(".0/24", ".1")


def test_a_plan_refuses_an_overlapping_range():
    taken = host.local_networks()
    if not taken:
        pytest.skip("this machine routes no network to collide with")
    with pytest.raises(host.HostError, match="overlaps"):
        node.Plan.choose(pod_cidr=taken[0])


def test_bridge_names_fit_an_interface_name():
    name = node.Node.network_name("cloudlab-20261207-031652-abcd-ef01")
    assert name == "clk8s-ef01" and len(name) <= 15


def test_kubelet_config_has_the_settings_this_machine_needs(tmp_path, monkeypatch):
    n = a_node(tmp_path)
    monkeypatch.setattr(host, "cgroup_version", lambda: 1)
    conf = n.kubelet_config()
    assert conf["failCgroupV1"] is False and conf["cgroupDriver"] == "cgroupfs"
    assert conf["containerRuntimeEndpoint"] == f"unix://{n.socket}"
    assert conf["address"] == "10.244.0.1" and conf["readOnlyPort"] == 0
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["clusterDNS"] == ["10.244.0.1"] and conf["resolvConf"] == ""
    assert conf["systemReserved"]["cpu"] and "memory.available" in conf["evictionHard"]
    monkeypatch.setattr(host, "cgroup_version", lambda: 2)
    assert "failCgroupV1" not in n.kubelet_config()


def test_containerd_config_is_its_own_and_restricts_oom_score(tmp_path):
    text = a_node(tmp_path).containerd_config()
    assert "restrict_oom_score_adj = true" in text
    assert f'sandbox_image = "{node.PAUSE_IMAGE}"' in text
    assert str(tmp_path) in text and "/run/containerd/containerd.sock" not in text
    assert "/var/lib/containerd" not in text


def test_cni_has_no_masquerade_and_no_host_ports(tmp_path):
    conf = a_node(tmp_path).cni_config()
    types = [p["type"] for p in conf["plugins"]]
    assert types == ["bridge", "loopback"] and "portmap" not in types
    bridge = conf["plugins"][0]
    assert bridge["ipMasq"] is False and bridge["bridge"] == "clk8s-ab12"
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == "10.244.0.0/24"
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_kube_proxy_and_coredns_stay_on_the_machine(tmp_path):
    n = a_node(tmp_path)
    proxy = n.proxy_config()
    assert proxy["mode"] == "iptables" and proxy["bindAddress"] == "127.0.0.1"
    assert proxy["nodePortAddresses"] == ["10.244.0.1/32"]
    assert proxy["iptables"]["localhostNodePorts"] is False
    corefile = n.corefile()
    assert "bind 10.244.0.1" in corefile and "forward" not in corefile
    assert corefile.startswith("cluster.local:53")


def test_apiserver_reaches_the_kubelet_by_address_and_kwok_keeps_to_its_nodes(tmp_path):
    plan = node.Plan("10.244.0.0/24", "10.96.0.0/24")
    patches = {p["name"]: {a["key"]: a["value"] for a in p["extraArgs"]}
               for p in node.apiserver_patches(tmp_path, plan)}
    assert patches["kube-apiserver"]["kubelet-preferred-address-types"] == "InternalIP"
    assert patches["kube-apiserver"]["service-cluster-ip-range"] == "10.96.0.0/24"
    assert patches["kwok-controller"]["manage-all-nodes"] == "false"
    annotation = kwok.node("n")["metadata"]["annotations"]
    key, value = patches["kwok-controller"]["manage-nodes-with-annotation-selector"].split("=")
    assert annotation[key] == value
    doc = yaml.safe_load_all(kwok.config_yaml(None, node.apiserver_patches(tmp_path, plan)))
    kwokctl = next(d for d in doc if d["kind"] == "KwokctlConfiguration")
    assert [p["name"] for p in kwokctl["componentsPatches"]] == ["kube-apiserver",
                                                                 "kwok-controller"]
    plain = next(d for d in kwok.config_docs() if d["kind"] == "KwokctlConfiguration")
    assert "componentsPatches" not in plain


def test_the_pause_archive_is_a_valid_oci_layout(tmp_path):
    program = tmp_path / "pause"
    program.write_bytes(b"\x7fELF fake")
    program.chmod(0o755)
    data = node.oci_archive("cloudlab.local/pause:1", {"pause": program}, ["/pause"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    index = json.loads(files["index.json"])
    entry = index["manifests"][0]
    assert entry["annotations"]["io.containerd.image.name"] == "cloudlab.local/pause:1"
    manifest = json.loads(files["blobs/sha256/" + entry["digest"][7:]])
    layer = files["blobs/sha256/" + manifest["layers"][0]["digest"][7:]]
    import gzip
    import hashlib

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        member = tar.getmember("pause")
        assert member.mode & 0o111 and tar.extractfile(member).read() == b"\x7fELF fake"
    conf = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert conf["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(
        gzip.decompress(layer)).hexdigest()]
    for d, blob in [(entry["digest"], files["blobs/sha256/" + entry["digest"][7:]])]:
        assert d == "sha256:" + hashlib.sha256(blob).hexdigest()


def test_a_program_image_holds_the_program_its_libraries_and_their_folders():
    """What the notebook's Prometheus sidecar runs from: ``ldd``'s list, links followed."""
    import gzip

    program = Path("/bin/true")  # dynamically linked, like Debian's prometheus
    libs = node.shared_libraries(program)
    assert any("libc.so" in inside for inside in libs) and all(not k.startswith("/")
                                                               for k in libs)
    data = node.program_image("cloudlab.local/true:1", program)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    entry = json.loads(files["index.json"])["manifests"][0]
    manifest = json.loads(files["blobs/sha256/" + entry["digest"][7:]])
    conf = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert conf["config"]["Entrypoint"] == ["/" + str(program).lstrip("/")]
    layer = files["blobs/sha256/" + manifest["layers"][0]["digest"][7:]]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        inside = str(program).lstrip("/")
        assert tar.extractfile(members[inside]).read() == program.read_bytes()
        for lib, path in libs.items():  # regular files (a link would dangle in the image)
            assert members[lib].isfile() and members[lib].size == path.resolve().stat().st_size
            assert members[str(Path(lib).parent)].isdir()
    assert node.shared_libraries(Path("/nonexistent")) == {}


def test_teardown_recognises_the_jumps_into_node_chains():
    assert host._jumps_to_ours(["-A", "FORWARD", "-j", "KUBE-FORWARD"])
    assert host._jumps_to_ours(["-A", "OUTPUT", "-m", "comment", "--comment", "x", "-j",
                                "KUBE-SERVICES"])
    assert host._jumps_to_ours(["-A", "FORWARD", "-j", "CLOUDLAB-NODE"])
    assert not host._jumps_to_ours(["-A", "FORWARD", "-j", "DOCKER-USER"])
    assert not host._jumps_to_ours(["-A", "FORWARD", "-i", "docker0", "-j", "ACCEPT"])


def test_availability_says_root_is_needed(monkeypatch):
    monkeypatch.setattr(node.os, "geteuid", lambda: 1000)
    avail = node.availability()
    assert not avail and "needs root" in avail.reason


def test_real_nodes_are_checked_before_anything_starts():
    from cloudlab.errors import CloudlabError
    from cloudlab.k8s import Cluster

    with pytest.raises(CloudlabError, match="one real node per machine"):
        Cluster("kwok", real_nodes=2)
    with pytest.raises(CloudlabError, match="kwok backend"):
        Cluster("kind", real_nodes=1)
    assert Cluster("kwok", real_nodes=1).nodes == 0 and Cluster("kwok").nodes == 2
    assert Cluster("kwok", real_nodes=1).real_pods and not Cluster("kwok").real_pods


def test_node_build_steps_reuse_the_wrapper_module(tmp_path):
    build = SourceBuild(tmp_path / "w", tmp_path / "bin", progress=lambda _: None)
    steps = {s.name: s for s in build.steps(list(install.NODE_BINARIES))}
    assert list(steps) == ["kube wrapper", "kubelet", "kube-proxy", "coredns", "pause"]
    argv = steps["kubelet"].commands[0]
    assert argv[-1] == "k8s.io/kubernetes/cmd/kubelet"
    assert f"gitVersion=v{PINNED['kubernetes']}" in argv[argv.index("-ldflags") + 1]
    (tmp_path / "c").mkdir()
    build._coredns(tmp_path / "c")
    main = (tmp_path / "c" / "main.go").read_text()
    assert '"github.com/coredns/coredns/plugin/kubernetes"' in main and "forward" not in main
    assert install.NODE_PINNED["coredns"] in (tmp_path / "c" / "go.mod").read_text()


def test_node_install_is_recorded_apart_and_cached(tmp_path, monkeypatch):
    bins = install.bin_dir(tmp_path)
    bins.mkdir(parents=True)
    assert set(install.node_missing(tmp_path)) == set(install.NODE_BINARIES)
    built: list[list[str]] = []

    def fake_run(self, names):
        built.append(names)
        for n in names:
            (self.target / n).write_text("#!/bin/sh\n")
            (self.target / n).chmod(0o755)

    monkeypatch.setattr(SourceBuild, "run", fake_run)
    assert install.install_node(tmp_path, progress=lambda _: None) is not None
    assert built == [list(install.NODE_BINARIES)] and install.node_installed(tmp_path)
    rec = install.record(tmp_path)["node"]
    assert rec["cold_build_seconds"] is not None
    assert install.install_node(tmp_path, progress=lambda _: None) is None  # warm: no build
    assert len(built) == 1


def test_real_pod_verbs_say_what_is_missing_on_a_kwok_only_cluster():
    from cloudlab.errors import UnavailableError
    from cloudlab.k8s import Cluster

    k = Cluster("kwok")
    for call in (lambda: k.load_image("x:1"), lambda: k.service_url("web"),
                 lambda: k.exec("pod/x", "true"), lambda: k.logs("pod/x")):
        with pytest.raises(UnavailableError, match=r"real_nodes=1|real node"):
            call()


def test_cli_and_doctor_know_the_real_node():
    from cloudlab import cli, doctor

    args = cli.parser().parse_args(["k8s", "up", "--real-node"])
    assert args.real_node and args.nodes is None
    assert cli.parser().parse_args(["k8s", "install", "--no-node"]).no_node
    rows = {r.component: r for r in doctor._kubernetes()}
    row = rows["kubernetes: real node"]
    assert row.ok == bool(node.availability()) and row.detail == node.availability().reason


def test_remove_cgroups_empties_every_hierarchy_deepest_first_despite_a_folder_gone(
        tmp_path, monkeypatch):
    for hierarchy in ("cpu", "blkio"):
        (tmp_path / hierarchy / "kubepods" / "burstable" / "pod1" / "ctr").mkdir(parents=True)
    monkeypatch.setattr(host, "CGROUP_ROOT", tmp_path)
    scandir = os.scandir

    def racing_scandir(path):  # the kubelet removes a container's folder as we list its pod
        entries = list(scandir(path))
        gone = Path(path) / "ctr"
        if Path(path).name == "pod1" and gone.exists():
            gone.rmdir()
        return _Listing(entries)

    monkeypatch.setattr(os, "scandir", racing_scandir)
    assert host.cgroup_pids() == set()
    host.remove_cgroups()
    assert not (tmp_path / "cpu" / "kubepods").exists()
    assert not (tmp_path / "blkio" / "kubepods").exists()


class _Listing:
    """What os.scandir returns, enough for os.walk and pathlib: an iterator, a with block."""

    def __init__(self, entries: list) -> None:
        self._it = iter(entries)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass
