"""Manifests: generated objects pass all checks; each broken rule is found, with its path."""

import copy
import doctest

import pytest

from cloudlab import manifests as m
from cloudlab.manifests import ManifestError


@pytest.fixture
def objs():
    return m.app("hello", "hello:0.1", port=8080)


def container(objs):
    return objs[0]["spec"]["template"]["spec"]["containers"][0]


def paths(report, check=None):
    return [(p.obj, p.path) for p in report.problems if check in (None, p.check)]


# -- generate ----------------------------------------------------------------------------

def test_generated_app_is_valid_and_has_sensible_defaults(objs):
    _dep, svc, hpa = objs
    assert m.validate(objs).ok, str(m.validate(objs))
    c = container(objs)
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"]["requests"]["cpu"] == "100m"
    assert c["readinessProbe"]["httpGet"]["port"] == "http"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "hello"}


def test_registry_images_keep_the_default_policy():
    assert m.deployment("a", "localhost:5000/a:latest")["spec"]["template"]["spec"][
        "containers"][0]["imagePullPolicy"] == "Always"
    assert m.deployment("a", "localhost:5000/a:1")["spec"]["template"]["spec"][
        "containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_write_one_file_per_object_and_read_back(objs, tmp_path):
    files = m.write(objs, tmp_path)
    assert [f.name for f in files] == ["deployment.yaml", "service.yaml", "hpa.yaml"]
    text = files[0].read_text()
    assert "&id" not in text and "*id" not in text       # no aliases: our loader refuses them
    assert [m.load(f, single=True)[0] for f in files] == objs
    assert m.validate(files).ok


# -- 1. schemas --------------------------------------------------------------------------

def test_unknown_field_is_named_with_a_suggestion(objs):
    objs[0]["spec"]["replica"] = 2
    (p,) = m.schema_problems(objs[0])
    assert (p.path, p.check) == ("spec", "schema")
    assert "unknown field 'replica'" in p.message and "did you mean 'replicas'" in p.message


def test_wrong_types_and_missing_fields_have_paths(objs):
    container(objs)["ports"][0]["containerPort"] = "8080"
    container(objs)["resources"]["requests"]["cpu"] = [1]
    del objs[0]["spec"]["selector"]
    found = {p.path: p.message for p in m.schema_problems(objs[0])}
    assert found["spec.template.spec.containers[0].ports[0].containerPort"] == \
        '"8080" is not of type integer'
    assert "expected number or string" in found[
        "spec.template.spec.containers[0].resources.requests.cpu"]
    assert found["spec"] == "'selector' is required"


def test_unknown_kind_or_api_version(objs):
    (p,) = m.schema_problems({"apiVersion": "apps/v1", "kind": "Deploymnet",
                              "metadata": {"name": "x"}})
    assert "no Deploymnet in apps/v1 for Kubernetes 1.36" in p.message
    objs[2]["apiVersion"] = "autoscaling/v1"        # v1 has no metrics list
    assert "unknown field 'metrics'" in m.schema_problems(objs[2])[0].message
    assert [p.path for p in m.schema_problems({"kind": "Service"})] == ["apiVersion"]
    assert m.schema_problems({"apiVersion": "../../etc", "kind": "passwd"})[0].path == "kind"


# -- 3. semantic checks --------------------------------------------------------------------

def test_selector_must_match_template_labels(objs):
    objs[0]["spec"]["selector"]["matchLabels"] = {"app": "other"}
    assert ("deployment/hello", "spec.selector.matchLabels") in paths(m.validate(objs))


def test_service_target_port_must_match_a_container_port(objs):
    objs[1]["spec"]["ports"][0]["targetPort"] = "web"
    (p,) = m.validate(objs).problems
    assert (p.obj, p.path) == ("service/hello", "spec.ports[0].targetPort")
    assert "8080 'http'" in p.message
    objs[1]["spec"]["ports"][0]["targetPort"] = 8080          # by number works too
    assert m.validate(objs).ok
    del objs[1]["spec"]["ports"][0]["targetPort"]             # defaults to port (80)
    assert paths(m.validate(objs)) == [("service/hello", "spec.ports[0].port")]


def test_service_selector_must_select_a_workload(objs):
    objs[1]["spec"]["selector"] = {"app": "nobody"}
    (p,) = m.validate(objs).problems
    assert p.path == "spec.selector" and "no endpoints" in p.message


def test_cpu_request_needed_when_an_hpa_scales_on_cpu(objs):
    del container(objs)["resources"]["requests"]["cpu"]
    (p,) = m.validate(objs).problems
    assert p.path == "spec.template.spec.containers[0].resources.requests.cpu"
    assert m.validate(objs[:2]).ok                       # no HPA: no need


def test_probes_must_be_set(objs):
    del container(objs)["readinessProbe"]
    del container(objs)["livenessProbe"]
    assert [p.path for p in m.validate(objs).problems] == [
        "spec.template.spec.containers[0].readinessProbe",
        "spec.template.spec.containers[0].livenessProbe"]


@pytest.mark.parametrize(("image", "policy", "bad"), [
    ("hello:0.1", "Always", True), ("hello", None, True), ("hello:latest", None, True),
    ("hello:0.1", None, False), ("hello:latest", "Never", False),
    ("localhost:5000/hello:latest", "Always", False)])
def test_pull_policy_suits_local_images(objs, image, policy, bad):
    container(objs)["image"] = image
    container(objs).pop("imagePullPolicy")
    if policy:
        container(objs)["imagePullPolicy"] = policy
    found = paths(m.validate(objs))
    assert (("deployment/hello", "spec.template.spec.containers[0].imagePullPolicy")
            in found) is bad


def test_hpa_target_must_exist(objs):
    objs[2]["spec"]["scaleTargetRef"]["name"] = "helo"
    (p,) = m.validate(objs).problems
    assert p.path == "spec.scaleTargetRef.name" and "deployment/hello" in p.message
    objs[2]["spec"]["scaleTargetRef"]["name"] = "hello"
    objs[2]["spec"]["scaleTargetRef"]["apiVersion"] = "v1"
    assert paths(m.validate(objs)) == [("horizontalpodautoscaler/hello",
                                        "spec.scaleTargetRef.apiVersion")]


def test_problems_from_files_name_the_file(objs, tmp_path):
    objs[1]["spec"]["ports"][0]["targetPort"] = 1234
    files = m.write(objs, tmp_path)
    (p,) = m.validate(files).problems
    assert p.file == "service.yaml"
    assert str(p).startswith("service.yaml: spec.ports[0].targetPort: ")


# -- scope (what a grader may apply) -------------------------------------------------------

def test_scope_refuses_cluster_scoped_other_kinds_and_namespaces(objs):
    assert m.scope_problems(objs) == []
    hostile = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "x"}},
               {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}},
               {**copy.deepcopy(objs[0]), "metadata": {"name": "h", "namespace": "kube-system"}}]
    found = [(p.obj, p.path) for p in m.scope_problems(hostile)]
    assert found == [("clusterrolebinding/x", "kind"), ("secret/x", "kind"),
                     ("deployment/h", "metadata.namespace")]
    assert m.scope_problems(hostile[2:], namespace="kube-system") == []


# -- reading YAML defensively ----------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi",
                                                                   strict=True)])


@pytest.mark.parametrize(("text", "words"), [
    (BILLION_LAUGHS, "YAML aliases (*a) are not accepted"),
    ("a: [1, 2\n", "line 2, column 1"),
    ("kind: Service\n  bad indent: [\n", "line 2"),
    ("[" * 20000, "nested too deeply"),
    ("- 1\n- 2\n", "document 1 is a list"),
    ("just text\n", "document 1 is a string"),
    ("kind: A\n---\nkind: B\n", "2 objects in one file"),
    ("", "the file is empty"),
    ("x: " + "y" * 300_000, "over the 262144-byte limit"),
    ("a: !!python/object/apply:os.system [ls]\n", "could not determine a constructor"),
    ("---\n" * 30 + "kind: A\n", "more than 20 YAML documents"),
])
def test_hostile_or_broken_yaml_gets_a_clear_message(text, words):
    with pytest.raises(ManifestError) as info:
        m.load(text, single=True)
    assert words in str(info.value)


def test_size_is_checked_before_reading_a_file(tmp_path):
    big = tmp_path / "deployment.yaml"
    big.write_text("x: " + "y" * 2_000_000)
    with pytest.raises(ManifestError, match="2000003 bytes is over"):
        m.load(big)
    pairs, problems = m.load_files([big, tmp_path / "missing.yaml"])
    assert pairs == [] and [p.file for p in problems] == ["deployment.yaml", "missing.yaml"]
    assert all(p.check == "yaml" for p in problems)


def test_docstring_examples_run():
    result = doctest.testmod(m, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 3


def test_cli_verb_reports_and_exits_nonzero_on_problems(objs, tmp_path, capsys):
    from cloudlab.cli import main
    files = [str(f) for f in m.write(objs, tmp_path)]
    assert main(["manifests", *files]) == 0
    assert "no problems" in capsys.readouterr().out
    objs[2]["spec"]["scaleTargetRef"]["name"] = "nope"
    files = [str(f) for f in m.write(objs, tmp_path)]
    assert main(["manifests", *files]) == 1
    assert "hpa.yaml: spec.scaleTargetRef.name" in capsys.readouterr().out
