"""Node-local stores are refused on a Ray cluster of several nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlray.config import load_config
from mlray.errors import ConfigError
from mlray.storage.locality import check_shared_storage, node_local_stores

SHARED = {"MLRAY_STATE_URL": "redis://:secret@redis.mlray.svc:6379/0",
          "MLRAY_ONLINE_URL": "redis://redis.mlray.svc:6379/1",
          "MLRAY_ARTIFACT_URI": "s3://models/artifacts",
          "MLRAY_OFFLINE_URI": "s3://models/offline?endpoint_override=minio.svc:9000",
          "MLRAY_STORAGE_URI": "gs://models/ray-train"}
TWO_HOSTS = ["10.0.0.1", "10.0.0.2"]


def test_defaults_are_refused_on_two_nodes_naming_the_key(tmp_path: Path) -> None:
    config = load_config(env={"MLRAY_HOME": str(tmp_path)})
    check_shared_storage(config, ["10.0.0.1"])  # one node: the laptop default is fine
    with pytest.raises(ConfigError, match=r"^state_url: sqlite:///.* 2 alive nodes") as info:
        check_shared_storage(config, TWO_HOSTS)
    assert info.value.field == "state_url"
    assert "also: online_url, artifact_uri, offline_uri, storage_uri" in str(info.value)


def test_each_local_key_is_named(tmp_path: Path) -> None:
    for key, value in (("ARTIFACT_URI", str(tmp_path / "a")), ("STORAGE_URI", "file:///srv/rt"),
                       ("ONLINE_URL", f"sqlite:///{tmp_path / 'o.db'}")):
        config = load_config(env={**SHARED, f"MLRAY_{key}": value})
        with pytest.raises(ConfigError) as info:
            check_shared_storage(config, TWO_HOSTS)
        assert info.value.field == key.lower()
        assert str(info.value).startswith(f"{key.lower()}: ")


def test_shared_stores_pass_and_credentials_stay_hidden() -> None:
    config = load_config(env=SHARED)
    assert node_local_stores(config, hosts=2) == {}
    check_shared_storage(config, TWO_HOSTS)
    loopback = load_config(env={**SHARED, "MLRAY_STATE_URL": "redis://:secret@127.0.0.1:6379"})
    check_shared_storage(loopback, ["127.0.0.1", "127.0.0.1"])  # nodes on one host share it
    with pytest.raises(ConfigError, match="loopback") as info:
        check_shared_storage(loopback, TWO_HOSTS)
    assert "secret" not in str(info.value)


def test_allow_local_storage_accepts_them(tmp_path: Path) -> None:
    config = load_config(env={"MLRAY_HOME": str(tmp_path), "MLRAY_ALLOW_LOCAL_STORAGE": "true"})
    check_shared_storage(config, TWO_HOSTS)
