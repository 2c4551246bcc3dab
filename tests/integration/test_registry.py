"""cloudlab.registry against a real private registry, moto's ECR and (when set) Docker Hub."""

import contextlib
import secrets

import pytest
import requests

from cloudlab import config, engine, images, project, registry, services
from cloudlab import docker as cd
from tests.conftest import free_port, outside


@pytest.fixture(scope="module")
def hello(mcfg, tmp_path_factory):
    folder = project.create(tmp_path_factory.mktemp("hello"), step="multi-stage", cfg=mcfg)
    tag = f"cloudlab-test-hello:{mcfg.run_id}"
    cd.build(folder, tag, progress=False, cfg=mcfg)
    return tag


@pytest.fixture(scope="module")
def private(mcfg):
    with services.registry(mcfg) as reg:
        yield reg
    assert reg.pid() is None


def test_push_list_and_pull_by_digest(hello, private, mcfg):
    ref = registry.local_ref("course/hello", "1.0", mcfg)
    digest = registry.push(registry.tag(hello, ref), progress=False)
    assert digest.startswith("sha256:")
    assert "course/hello" in registry.repositories(cfg=mcfg)
    assert registry.tags("course/hello", cfg=mcfg) == ["1.0"]
    assert registry.manifest_digest("course/hello", "1.0", cfg=mcfg) == digest
    assert registry.local_digests(ref)[registry.split(ref)[0]] == digest
    assert registry.remote_digest(ref) == digest and registry.digest_matches(ref)
    by_digest = f"{registry.split(ref)[0]}@{digest}"
    registry.pull(by_digest, progress=False)
    assert cd.run_once(by_digest, cfg=mcfg) == "Hello World!\n"
    assert registry.delete("course/hello", "1.0", cfg=mcfg) == digest
    with pytest.raises(registry.RegistryError, match="404"):
        registry.manifest_digest("course/hello", "1.0", cfg=mcfg)


def test_tag_accepts_what_build_returned(hello, mcfg):
    built = cd.Build(tag=hello, id="", seconds=0.0)  # what cl.docker.build(...) returns
    ref = registry.local_ref("course/built", "1.0", mcfg)
    try:
        assert registry.tag(built, ref) == ref
        assert images.present(ref)
    finally:
        with contextlib.suppress(Exception):
            engine.client().images.remove(ref)
    with pytest.raises(registry.RegistryError, match="expected an image name"):
        registry.tag(cd.Build(tag="", id="", seconds=0.0), ref)


def test_auth_on_refuses_anonymous_and_accepts_the_login(hello, private, mcfg):
    ref = registry.local_ref("private/hello", "1", mcfg)
    registry.tag(hello, ref)
    with registry.auth(private, "student", secrets.token_urlsafe(12)) as creds:
        assert requests.get(private.url + "/v2/", timeout=5).status_code == 401
        with pytest.raises(registry.RegistryError, match="401 unauthorized"):
            registry.repositories(cfg=mcfg)
        with pytest.raises(registry.RegistryError, match="needs a login"):
            registry.push(ref, progress=False)
        wrong = registry.Credentials("student", "wrong", creds.registry)
        with pytest.raises(registry.RegistryError, match="refused the credentials"):
            registry.push(ref, auth=wrong, progress=False)
        digest = registry.push(ref, auth=creds, progress=False)
        assert registry.manifest_digest("private/hello", "1", auth=creds, cfg=mcfg) == digest
    assert requests.get(private.url + "/v2/", timeout=5).status_code == 200
    assert not private.htpasswd.exists()


def test_a_push_to_a_registry_that_is_down_is_explained(hello, tmp_path, docker_engine):
    down = config.load(env={}, state_dir=tmp_path / "state", registry_port=free_port())
    ref = registry.tag(hello, registry.local_ref("hello", "down", down))
    try:
        with pytest.raises(registry.RegistryError, match="does not answer") as info:
            registry.push(ref, progress=False)
        assert "cloudlab services up registry" in str(info.value)
        with pytest.raises(registry.RegistryError, match="does not answer"):
            registry.tags("hello", cfg=down)
        assert services.registry(down).pid() is None
    finally:
        images.remove([ref])


def test_pushing_a_name_that_is_not_local_is_explained(private, mcfg):
    with pytest.raises(registry.RegistryError, match="no local image has that name"):
        registry.push(registry.local_ref("nothing-here", "0", mcfg), progress=False)
    with pytest.raises(registry.RegistryError, match="no such image locally"):
        registry.tag("cloudlab-no-such-image:0", registry.local_ref("x", "0", mcfg))


def test_ecr_repository_and_login_on_moto(mcfg):
    with services.moto(mcfg):
        repo = registry.ecr_repository("cloudlab-hello", mcfg)
        assert repo["repositoryName"] == "cloudlab-hello"
        assert registry.ecr_repository("cloudlab-hello", mcfg)["repositoryArn"] == \
            repo["repositoryArn"]  # idempotent
        creds = registry.ecr_login(mcfg)
        assert creds.username == "AWS" and creds.password and creds.registry
        assert "password" not in repr(creds)
        registry.ecr_delete("cloudlab-hello", mcfg)
        registry.ecr_delete("cloudlab-hello", mcfg)  # idempotent


def test_push_to_real_ecr(hello):
    cfg = config.settings()
    if reason := registry.ecr_push_reason(cfg):
        pytest.skip(outside(reason))
    name = "cloudlab-test-" + secrets.token_hex(3)
    try:
        digest = registry.ecr_push(hello, name, "1", cfg=cfg, progress=False)
        assert digest.startswith("sha256:")
    finally:
        registry.ecr_delete(name, cfg)


def test_push_to_docker_hub(hello):
    if reason := registry.dockerhub_reason():
        pytest.skip(outside(reason))
    creds = registry.dockerhub_credentials()
    ref = f"{creds.username}/cloudlab-hello:test-{secrets.token_hex(3)}"
    try:
        registry.login(creds)
        digest = registry.push(registry.tag(hello, ref), auth=creds, progress=False)
        assert registry.remote_digest(ref, auth=creds) == digest
    finally:
        registry.logout()
        images.remove([ref])


def test_a_pull_after_removing_the_local_copy_fetches_only_the_own_layers(private, mcfg,
                                                                          tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {mcfg.base_image}\n"
                                         "RUN head -c 300000 /dev/urandom > /blob\n")
    built = cd.build(tmp_path, f"cloudlab-test-layers:{mcfg.run_id}", progress=False, cfg=mcfg)
    ref = registry.tag(built.tag, registry.local_ref("course/layers", "1", mcfg))
    digest = registry.push(ref, progress=False)
    images.remove([built.id])  # by id: every name goes, the base image's layers stay
    assert not images.present(built.tag)
    fetched = registry.fetch(f"{registry.split(ref)[0]}@{digest}", progress=False)
    pulled = fetched.layers.query("status == 'Pull complete'")["bytes_fetched"]
    assert len(pulled) >= 1 and (pulled > 0).all()
    assert "Already exists" in set(fetched.layers["status"]), "base layers are not fetched"
