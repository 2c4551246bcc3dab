from pathlib import Path

import pytest

from cloudlab import config
from cloudlab.errors import ConfigError


def test_defaults_when_nothing_is_set():
    s = config.load(env={})
    assert (s.aws_mode, s.registry_port, s.docker) == ("local", 5000, "auto")
    assert s.moto_url == "http://127.0.0.1:5050"


def test_env_beats_default_and_argument_beats_env():
    env = {"CLOUDLAB_AWS_MODE": "aws", "CLOUDLAB_MOTO_PORT": "6000"}
    assert config.load(env=env).aws_mode == "aws"
    assert config.load(env=env).moto_port == 6000
    assert config.load(env=env, aws_mode="local").aws_mode == "local"
    assert config.load(env=env, moto_port=7000).moto_port == 7000


def test_empty_env_value_means_unset():
    assert config.load(env={"CLOUDLAB_AWS_MODE": ""}).aws_mode == "local"


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("CLOUDLAB_AWS_MODE", "gcp", "CLOUDLAB_AWS_MODE='gcp' is not one of: local, aws"),
        ("CLOUDLAB_REGISTRY_PORT", "http", "CLOUDLAB_REGISTRY_PORT='http' is not a port"),
        ("CLOUDLAB_REGISTRY_PORT", "70000", "CLOUDLAB_REGISTRY_PORT='70000' is not a port"),
        ("CLOUDLAB_AWS_ALLOW_LAUNCH", "perhaps", "CLOUDLAB_AWS_ALLOW_LAUNCH='perhaps' is not true"),
        ("CLOUDLAB_DOCKER", "maybe", "CLOUDLAB_DOCKER='maybe' is not one of: auto, on, off"),
    ],
)
def test_bad_env_values_name_the_variable(var, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        config.load(env={var: value})


def test_bad_argument_names_the_argument():
    with pytest.raises(ConfigError, match="aws_mode='gcp'"):
        config.load(env={}, aws_mode="gcp")
    with pytest.raises(ConfigError, match="unknown setting"):
        config.load(env={}, colour="blue")


def test_booleans_and_paths(tmp_path):
    s = config.load(env={"CLOUDLAB_AWS_ALLOW_LAUNCH": "yes",
                         "CLOUDLAB_STATE_DIR": str(tmp_path)})
    assert s.aws_allow_launch is True
    assert s.state_dir == Path(tmp_path)


def test_labels_carry_the_run_id():
    s = config.load(env={"CLOUDLAB_RUN_ID": "abc"})
    assert s.labels() == {config.LABEL: "abc"}


def test_configure_keeps_run_id(monkeypatch):
    monkeypatch.setattr(config, "_current", None)
    first = config.settings().run_id
    assert config.configure(aws_mode="aws").run_id == first
    assert config.settings().aws_mode == "aws"
    monkeypatch.setattr(config, "_current", None)
