from pathlib import Path

import pytest
import yaml

from mlray.config import PlatformConfig, load_config
from mlray.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_platform_yaml_holds_exactly_the_defaults() -> None:
    data = yaml.safe_load((ROOT / "configs" / "platform.yaml").read_text())
    assert PlatformConfig.model_validate(data) == PlatformConfig()
    assert set(data) == set(PlatformConfig.model_fields)


def test_embedded_default_keeps_everything_under_home(tmp_path: Path) -> None:
    config = load_config(env={"MLRAY_HOME": str(tmp_path)})
    assert config.resolved_state_url == f"sqlite:///{tmp_path}/state.db"
    assert config.resolved_artifact_uri == str(tmp_path / "artifacts")


def test_file_then_environment_override_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("namespace: fromfile\nproject: team-a\nray_head_port: 7000\n")
    config = load_config(path, env={"MLRAY_NAMESPACE": "fromenv"})
    assert config.namespace == "fromenv"
    assert config.project == "team-a"
    assert config.ray_head_port == 7000
    via_env = load_config(env={"MLRAY_CONFIG": str(path)})
    assert via_env.namespace == "fromfile"


@pytest.mark.parametrize(
    ("env", "file_text", "expected"),
    [
        ({"MLRAY_RAY_HEAD_PORT": "abc"}, None, "MLRAY_RAY_HEAD_PORT"),
        ({"MLRAY_STATE_URL": "postgres://x"}, None, "unknown state store scheme 'postgres'"),
        ({}, "bogus_key: 1\n", "bogus_key"),
        ({}, "ray_head_port: 80\n", "ray_head_port"),
        ({}, "- a list\n", "mapping"),
        ({"MLRAY_PROJECT": "Bad Project"}, None, "invalid project name"),
    ],
)
def test_bad_values_fail_naming_the_key(tmp_path: Path, env: dict[str, str],
                                        file_text: str | None, expected: str) -> None:
    path = None
    if file_text is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(file_text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path, env=env)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})
