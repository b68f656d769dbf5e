"""One source of truth: the running actors' config decides where the platform's state
lives; a client whose config differs is told (one line per key), and either adopts the
actors' config (config from the environment, the CLI, jobs) or is refused (an explicit
config= that contradicts them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlray
from mlray.cli.main import main
from mlray.config import PlatformConfig, load_config
from mlray.errors import ConfigError
from tests.conftest import free_port
from tests.integration.platform import Platform


def _elsewhere(config: PlatformConfig, tmp_path: Path) -> dict[str, str]:
    """The same platform (namespace), but a home, and so stores, somewhere else."""
    return {"MLRAY_HOME": str(tmp_path / "other-home"), "MLRAY_NAMESPACE": config.namespace,
            "MLRAY_REDIS_PREFIX": config.redis_prefix}


def test_an_explicit_config_that_contradicts_the_actors_is_refused(
        mlray_env: PlatformConfig, tmp_path: Path) -> None:
    mlray.connect(config=mlray_env)
    other = load_config(env=_elsewhere(mlray_env, tmp_path))
    with pytest.raises(ConfigError) as refused:
        mlray.connect(config=other)
    message = refused.value.message
    assert refused.value.field == "state_url" and message.startswith("state_url:")
    assert f"the running platform uses {mlray_env.resolved_state_url}," in message
    assert str(tmp_path / "other-home") in message  # both values named


def test_a_config_from_the_environment_adopts_the_running_actors(
        mlray_env: PlatformConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    first = mlray.connect(config=mlray_env)
    first.registry.create_model("kept-in-one-store")
    for key, value in _elsewhere(mlray_env, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLRAY_STATE_URL", raising=False)
    client = mlray.connect()  # what a job submitted without MLRAY_HOME does
    told = [line for line in capfd.readouterr().err.splitlines()
            if line.startswith("mlray: state_url:")]
    assert len(told) == 1 and mlray_env.resolved_state_url in told[0]
    assert str(tmp_path / "other-home") in told[0]
    assert client.config.resolved_state_url == mlray_env.resolved_state_url
    assert client.config.resolved_artifact_uri == mlray_env.resolved_artifact_uri
    assert [m.name for m in client.registry.list_models()] == ["kept-in-one-store"]
    assert not (tmp_path / "other-home").exists()


def test_status_reports_what_the_actors_use(
        mlray_env: PlatformConfig, ray_shared: object, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    import ray

    mlray.connect(config=mlray_env)
    for key, value in _elsewhere(mlray_env, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLRAY_STATE_URL", raising=False)
    monkeypatch.setenv("MLRAY_RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    capfd.readouterr()
    assert main(["status", "--json"]) == 0
    info = json.loads(capfd.readouterr().out)
    assert info["config_from"] == "actors"
    assert info["state_url"] == mlray_env.resolved_state_url
    assert info["artifact_uri"] == mlray_env.resolved_artifact_uri
    assert any(line.startswith("state_url:") for line in info["config_mismatch"])


def test_serve_running_on_another_port_is_named_in_one_line(platform: Platform) -> None:
    from mlray.serving.launch import start_serving

    elsewhere = platform.config.model_copy(update={"serve_port": free_port()})
    with pytest.raises(ConfigError) as refused:
        start_serving(elsewhere)
    assert refused.value.field == "serve_port"
    assert f"Serve already listens on port {platform.config.serve_port}" in refused.value.message
