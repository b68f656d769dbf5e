"""At start, the Redis state store warns once when the server's persistence could lose
acknowledged writes; each case runs against a redis-server of its own."""

from __future__ import annotations

import logging
import uuid

import pytest

from mlray.storage.redis import RedisStateStore
from mlray.storage.redis_durability import durability_risk
from tests.conftest import redis_server

LOGGER = "mlray.storage.redis_durability"


def _open(url: str) -> None:
    RedisStateStore(url, prefix=f"t-{uuid.uuid4().hex[:8]}").close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_no_persistence_warns_once_naming_the_settings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    with redis_server("--save", "", "--appendonly", "no") as url:
        _open(url)
        _open(url)
    [line] = _warnings(caplog)
    assert line.startswith(f"state_url {url}: appendonly no, appendfsync everysec, save ''")
    assert "a Redis crash loses every write" in line


def test_append_only_log_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    with redis_server("--appendonly", "yes", "--appendfsync", "everysec") as url:
        _open(url)
    assert _warnings(caplog) == []


def test_refused_config_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    with redis_server("--rename-command", "CONFIG", "") as url:
        _open(url)
        _open(url)
    [line] = _warnings(caplog)
    assert "cannot read the server's persistence settings (CONFIG GET refused" in line


def test_which_settings_risk_acknowledged_writes() -> None:
    assert durability_risk({"appendonly": "yes", "appendfsync": "always", "save": ""}) is None
    snapshots = durability_risk({"appendonly": "no", "appendfsync": "everysec",
                                 "save": "3600 1 300 100"})
    assert snapshots is not None and "since the last snapshot" in snapshots
    lazy = durability_risk({"appendonly": "yes", "appendfsync": "no", "save": ""})
    assert lazy is not None and "machine crash" in lazy
