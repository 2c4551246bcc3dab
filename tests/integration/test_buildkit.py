"""BuildKit (``docker buildx``, the engine's own builder) against the real engine: a build
secret is used by its step and reaches no layer, no history and no config; the same value
as a build argument does show, and a step that copies the secret into a file leaks it."""

import hashlib
import secrets

import pytest

from cloudlab import busybox, images
from cloudlab import docker as cd


@pytest.fixture(scope="module")
def kit(mcfg):
    """The base the builds start from: the tiny busybox image (``docker save`` stays small)."""
    ok, why = cd.buildkit()
    if not ok:
        pytest.skip(why)  # setup builds buildx here: strict mode fails this skip
    return busybox.image(mcfg)


@pytest.fixture
def token(tmp_path) -> bytes:
    """A fresh secret in a file outside the build context."""
    value = ("cloudlab-secret-" + secrets.token_hex(12)).encode()
    (tmp_path / "token").write_bytes(value)
    return value


def _build(tmp_path, mcfg, dockerfile: str, name: str, **options) -> str:
    context = tmp_path / name
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    tag = f"cloudlab-test-bk-{name}:{mcfg.run_id}"
    # no cache: BuildKit's cache key ignores a secret's content, so a rerun with a fresh
    # token would reuse the step (and the digest) of the last run's token
    cd.build(context, tag, builder="buildkit", nocache=True, progress=False, cfg=mcfg,
             **options)
    return tag


def _digest_and_length(tag: str, mcfg) -> list[str]:
    return cd.run_once(tag, ["cat", "/token.sha256", "/token.len"], cfg=mcfg).split()


def test_a_secret_mount_is_used_and_reaches_no_layer_history_or_config(kit, token, tmp_path,
                                                                        mcfg):
    tag = _build(tmp_path, mcfg, f"FROM {kit}\n"
                 "RUN --mount=type=secret,id=token,required=true "
                 "sha256sum /run/secrets/token | cut -d' ' -f1 > /token.sha256 && "
                 "wc -c < /run/secrets/token > /token.len\n",
                 "secret", secrets={"token": tmp_path / "token"})
    # the step read the secret: its digest and length are in the image
    assert _digest_and_length(tag, mcfg) == [hashlib.sha256(token).hexdigest(),
                                             str(len(token))]
    # ... and its bytes are nowhere: no file of any layer, no history line, no config field
    assert images.leaks(tag, token) == []
    history = [layer["created_by"] for layer in images.layers(tag)]
    assert any("sha256sum /run/secrets/token" in line for line in history)
    assert cd.run_once(tag, ["ls", "-A", "/run/secrets"], cfg=mcfg).strip() == ""


def test_the_same_secret_as_a_build_arg_shows_in_the_history(kit, token, tmp_path, mcfg):
    tag = _build(tmp_path, mcfg, f"FROM {kit}\nARG TOKEN\n"
                 "RUN printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1 > /token.sha256 && "
                 "printf %s \"$TOKEN\" | wc -c > /token.len\n",
                 "arg", buildargs={"TOKEN": token.decode()})
    assert _digest_and_length(tag, mcfg) == [hashlib.sha256(token).hexdigest(),
                                             str(len(token))]
    found = images.leaks(tag, token)
    assert found and all(place.startswith("history: ") for place in found), found
    assert f"TOKEN={token.decode()}" in found[0]


def test_a_step_that_copies_the_secret_leaks_it_into_its_layer(kit, token, tmp_path, mcfg):
    """The mount keeps the file out of the layer, not what the step does with it."""
    tag = _build(tmp_path, mcfg, f"FROM {kit}\n"
                 "RUN --mount=type=secret,id=token cp /run/secrets/token /kept\n",
                 "copied", secrets={"token": tmp_path / "token"})
    found = images.leaks(tag, token)
    assert len(found) == 1 and found[0].startswith("layer 2/2 (RUN ") \
        and found[0].endswith(": /kept"), found
