"""The course registry for real: each student pushes only to their own namespace, no deletes."""

from __future__ import annotations

import io
import secrets
import tarfile

import pytest

from cloudlab import config, engine
from cloudlab import registry as reg
from cloudlab.grading import Course, roster
from tests.conftest import free_port


@pytest.fixture(scope="module")
def course_registry(docker_engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("roster-course")
    (root / "roster.txt").write_text("ada\nbob\n")
    course = Course(root)
    roster.generate(course, root / "roster.txt")
    cfg = config.load(env={}, state_dir=root / "state", registry_port=free_port(),
                      run_id="test-roster-" + secrets.token_hex(3))
    registry, auth = roster.course_registry(course, cfg)
    if registry.executable() is None:
        pytest.skip(f"{registry.binary} is not installed: {registry.install_hint()}")
    with auth, registry:
        yield course, cfg
    assert registry.pid() is None and auth.pid() is None


@pytest.fixture(scope="module")
def tiny(docker_engine):
    """A one-file image built from scratch (no base image needed)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in (("Dockerfile", b"FROM scratch\nCOPY hello.txt /\n"),
                           ("hello.txt", secrets.token_hex(8).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    data.seek(0)
    api = engine.client()
    tag = f"cloudlab-test-tiny:{secrets.token_hex(4)}"  # keeps it while other tags go
    image, _ = api.images.build(fileobj=data, custom_context=True, rm=True, tag=tag,
                                labels={config.LABEL: "test-roster"})
    yield image
    api.images.remove(tag, force=True)


def _push(image, cfg, repo: str, who) -> str:
    repository = f"{cfg.registry_host}/{repo}"
    image.tag(repository, "1.0")
    try:
        return reg.push(f"{repository}:1.0", auth=who, progress=False)
    finally:
        engine.client().api.remove_image(f"{repository}:1.0")


def test_a_student_pushes_to_their_namespace_only(course_registry, tiny):
    course, cfg = course_registry
    ada, bob = (roster.credentials(course, s, cfg) for s in ("ada", "bob"))
    digest = _push(tiny, cfg, "ada/hello-cli", ada)
    assert reg.manifest_digest("ada/hello-cli", "1.0", cfg.registry_host, auth=ada) == digest
    with pytest.raises(reg.RegistryError, match="refused the credentials"):
        _push(tiny, cfg, "ada/hello-cli", bob)  # bob cannot overwrite ada's image
    with pytest.raises(reg.RegistryError, match="refused the credentials"):
        _push(tiny, cfg, "hello-cli", bob)  # nor push outside any namespace
    with pytest.raises(reg.RegistryError, match="401"):
        reg.tags("ada/hello-cli", cfg.registry_host, auth=bob)  # nor read ada's
    wrong = reg.Credentials("ada", "not-the-password", cfg.registry_host)
    with pytest.raises(reg.RegistryError):
        _push(tiny, cfg, "ada/hello-cli", wrong)


def test_the_instructor_publishes_for_everyone_and_nobody_deletes(course_registry, tiny):
    course, cfg = course_registry
    prof = roster.credentials(course, "instructor", cfg)
    ada = roster.credentials(course, "ada", cfg)
    digest = _push(tiny, cfg, "classmate/hello-cli", prof)
    assert reg.manifest_digest("classmate/hello-cli", "1.0", cfg.registry_host,
                               auth=ada) == digest, "students pull the course's images"
    assert "classmate/hello-cli" in reg.repositories(cfg.registry_host, auth=prof)
    for who in (prof, ada):
        with pytest.raises(reg.RegistryError):
            reg.delete("classmate/hello-cli", digest, cfg.registry_host, auth=who)
    assert reg.manifest_digest("classmate/hello-cli", "1.0", cfg.registry_host,
                               auth=prof) == digest


@pytest.mark.parametrize("text, message", [
    ("ada\nclassmate\n", r"r\.csv:2: the id 'classmate' is reserved for the course"),
    ("ada\nCloudLab\n", r"r\.csv:2: the id 'CloudLab' is reserved for the course"),
    ("ada\ninstructor\n", r"r\.csv:2: the id 'instructor' is the instructor's account"),
    ("ada\nbob\nAda\n", r"r\.csv:3: ada is on the roster twice \(also line 1; ids are "
                        r"compared in lower case\)"),
    ("id,dockerhub\nada,\nbob,ADA\n", r"r\.csv:3: the Docker Hub handle 'ada' of bob is the "
                                      r"id of another student \(line 2\)"),
    ("id,dockerhub\nada,bob\nbob,\n", r"r\.csv:2: the Docker Hub handle 'bob' of ada is the "
                                      r"id of another student \(line 3\)"),
    ("id,dockerhub\nada,grace\nbob,Grace\n", r"r\.csv:3: the Docker Hub handle 'grace' of "
                                             r"bob is also ada's \(line 2\)"),
    ("id,dockerhub\nada,classmate\n", r"r\.csv:2: the Docker Hub handle 'classmate' of ada "
                                      r"is reserved for the course"),
    ("id,dockerhub\nada,library\n", r"handle 'library' of ada is reserved"),
    ("id,dockerhub\nada,../bob\n", r"r\.csv:2: the Docker Hub handle '\.\./bob' of ada "
                                   r"cannot be a namespace"),
])
def test_reserved_ids_and_collisions_are_refused_when_the_roster_is_made(tmp_path, text,
                                                                          message):
    """An id or Docker Hub handle that is the course's namespace or another student's
    would let one account push over, or be graded on, someone else's images."""
    course = Course(tmp_path)
    (tmp_path / "r.csv").write_text(text)
    with pytest.raises(roster.RosterError, match=message):
        roster.generate(course, tmp_path / "r.csv")
    assert not (roster.folder(course) / "credentials.json").exists(), "no account is made"


def test_a_new_roster_cannot_take_an_earlier_accounts_namespace(tmp_path):
    course = Course(tmp_path)
    (tmp_path / "r.csv").write_text("id,dockerhub\nada,\nbob,bob-on-hub\n")
    roster.generate(course, tmp_path / "r.csv")
    for text, who in (("id,dockerhub\ncarol,bob\n", "'bob' of carol is the id of an account"),
                      ("id,dockerhub\ncarol,bob-on-hub\n", "'bob-on-hub' \\(carol\\) is the "
                                                           "Docker Hub handle of bob"),
                      ("bob-on-hub\n", "'bob-on-hub' \\(bob-on-hub\\) is the Docker Hub "
                                       "handle of bob")):
        (tmp_path / "r.csv").write_text(text)
        with pytest.raises(roster.RosterError, match=who):
            roster.generate(course, tmp_path / "r.csv")
    assert roster.namespaces(course, "carol") == {"carol"}
    assert roster.namespaces(course, "bob") == {"bob", "bob-on-hub"}
