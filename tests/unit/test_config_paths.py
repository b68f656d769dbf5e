"""Relative paths in config files resolve against the file, not the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlray.config import load_config
from mlray.training.config import load_train_config

ROOT = Path(__file__).resolve().parents[2]


def test_platform_config_paths_resolve_against_the_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "platform.yaml").write_text(
        "home: state\nserving_config: serving.yaml\nalerts_config: ../alerts.yaml\n"
        "offline_uri: offline\nartifact_uri: s3://bucket/a\nstate_url: sqlite:///st.db\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(folder / "platform.yaml", env={})
    assert config.home == folder / "state"
    assert config.serving_config == folder / "serving.yaml"
    assert config.alerts_config == tmp_path / "alerts.yaml"  # ".." resolved
    assert config.offline_uri == str(folder / "offline")
    assert config.artifact_uri == "s3://bucket/a"
    assert config.state_url == f"sqlite:///{folder / 'st.db'}"
    monkeypatch.chdir(folder)
    assert load_config("platform.yaml", env={}).home == folder / "state"
    # From the environment: the working directory, made absolute at once.
    env = load_config(env={"MLRAY_SERVING_CONFIG": "mine.yaml", "MLRAY_ARTIFACT_URI": "arts",
                           "MLRAY_OFFLINE_URI": "off", "MLRAY_STATE_URL": "sqlite:///st.db",
                           "MLRAY_ONLINE_URL": "sqlite:///on.db"})
    assert env.serving_config == folder / "mine.yaml"
    # The actors open these in their own processes: absolute too, never left relative.
    assert env.artifact_uri == str(folder / "arts")
    assert env.offline_uri == str(folder / "off")
    assert env.state_url == f"sqlite:///{folder / 'st.db'}"
    assert env.online_url == f"sqlite:///{folder / 'on.db'}"


def test_train_config_data_path_resolves_against_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = load_train_config(ROOT / "configs" / "train" / "fraud.yaml")
    assert shipped.data.path == str(ROOT / "data" / "fraud.parquet")
    train = tmp_path / "proj" / "configs" / "train"
    train.mkdir(parents=True)
    text = (ROOT / "configs" / "train" / "fraud.yaml").read_text()
    (train / "a.yaml").write_text(text)
    (train / "b.yaml").write_text(text.replace("../../data/fraud.parquet", "s3://b/f.parquet"))
    assert load_train_config(train / "a.yaml").data.path == str(
        tmp_path / "proj" / "data" / "fraud.parquet")
    assert load_train_config(train / "b.yaml").data.path == "s3://b/f.parquet"
