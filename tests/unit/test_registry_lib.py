"""cloudlab.registry without services: references, credentials, htpasswd, messages."""

import bcrypt
import pytest

from cloudlab import registry as reg


def test_references_split_into_repository_and_tag_or_digest():
    assert reg.split("127.0.0.1:5000/team/hello:1.0") == ("127.0.0.1:5000/team/hello", "1.0")
    assert reg.split("hello") == ("hello", "latest")
    assert reg.split("ada/hello@sha256:00ff") == ("ada/hello", "sha256:00ff")
    assert reg.host_of("localhost/hello") == "localhost"
    assert reg.host_of("ada/hello:1") == ""


def test_local_ref_uses_the_configured_registry(cfg):
    assert reg.local_ref("hello", "2", cfg) == f"127.0.0.1:{cfg.registry_port}/hello:2"


def test_credentials_never_show_the_secret():
    creds = reg.Credentials("ada", "tok-123", "127.0.0.1:5000")
    assert "tok-123" not in repr(creds) and "tok-123" not in str(creds)
    assert creds.auth_config() == {"username": "ada", "password": "tok-123",
                                   "serveraddress": "127.0.0.1:5000"}
    assert "serveraddress" not in reg.Credentials("ada", "t").auth_config()


def test_htpasswd_lines_are_bcrypt_and_bad_users_are_rejected():
    user, hashed = reg.htpasswd_line("ada", "pw").split(":", 1)
    assert user == "ada" and hashed.startswith("$2") and bcrypt.checkpw(b"pw", hashed.encode())
    with pytest.raises(ValueError, match="contain no ':'"):
        reg.htpasswd_line("a:b", "pw")
    with pytest.raises(ValueError, match="password"):
        reg.htpasswd_line("ada", "")


def test_engine_messages_become_advice():
    down = reg._explain("push", "127.0.0.1:5999/x:1",
                        'Get "http://127.0.0.1:5999/v2/": dial tcp: connection refused')
    assert "does not answer" in str(down) and "cloudlab services up registry" in str(down)
    denied = reg._explain("push", "127.0.0.1:5999/x:1", "no basic auth credentials")
    assert "needs a login" in str(denied)
    missing = reg._explain("pull", "ada/x:1", "manifest unknown")
    assert "Docker Hub has no such image" in str(missing)


def test_dockerhub_login_comes_only_from_the_environment(cfg, monkeypatch):
    monkeypatch.delenv(reg.TOKEN_VAR, raising=False)
    monkeypatch.delenv(reg.USER_VAR, raising=False)
    assert reg.dockerhub_credentials(cfg=cfg) is None
    assert reg.TOKEN_VAR in reg.dockerhub_reason(cfg=cfg)
    monkeypatch.setenv(reg.USER_VAR, "ada")
    monkeypatch.setenv(reg.TOKEN_VAR, "dckr_pat_x")
    creds = reg.dockerhub_credentials(cfg=cfg)
    assert creds.username == "ada" and creds.registry == "" and "dckr" not in repr(creds)


def test_a_missing_token_can_be_asked_for_with_a_password_prompt(cfg, monkeypatch):
    monkeypatch.delenv(reg.TOKEN_VAR, raising=False)
    monkeypatch.setenv(reg.USER_VAR, "ada")
    asked = []
    monkeypatch.setattr(reg.getpass, "getpass", lambda text: asked.append(text) or "tok ")
    creds = reg.dockerhub_credentials(prompt=True, cfg=cfg)
    assert creds.password == "tok" and "access token for ada" in asked[0]


def test_ecr_push_needs_real_aws(cfg):
    assert "CLOUDLAB_AWS_MODE=aws" in reg.ecr_push_reason(cfg)
    with pytest.raises(reg.UnavailableError, match="needs real AWS"):
        reg.ecr_push("hello:1", "hello", cfg=cfg)


def test_auth_toggle_on_a_stopped_registry_only_writes_the_file(cfg):
    from cloudlab import services

    service = services.registry(cfg)
    reg.enable_auth(service, {"ada": "pw"})
    assert service.htpasswd.read_text().startswith("ada:$2")
    service.write_config()
    assert "htpasswd" in (service.dir / "config.yml").read_text()
    reg.disable_auth(service)
    reg.disable_auth(service)  # idempotent
    assert not service.htpasswd.exists()
    with pytest.raises(ValueError, match="at least one user"):
        reg.enable_auth(service, {})


def test_the_registry_subject_does_not_depend_on_the_command_line_face():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(reg))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"doctor", "cli"} & {m.rsplit(".", 1)[-1] for m in imported if m}
    assert "._owned" not in inspect.getsource(reg), "use Service.restart()"
