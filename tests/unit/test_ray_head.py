"""`mlray up`'s port plan and process bookkeeping, and the config comparison, without Ray."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlray._private.ray_head import (
    INTERNAL_PORTS,
    ensure_auth_token,
    load_record,
    plan_ports,
    port_free,
    session_processes,
    stop_session,
)
from mlray.config import adopt_running, config_differences, load_config
from mlray.errors import ConfigError
from tests.conftest import free_port


@pytest.fixture
def held() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _config(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_config(env={"MLRAY_HOME": str(tmp_path), "MLRAY_SERVE_PORT": str(free_port()),
                            "MLRAY_RAY_HEAD_PORT": str(free_port()), **env})


@pytest.mark.parametrize("key", ["MLRAY_SERVE_PORT", "MLRAY_RAY_HEAD_PORT"])
def test_a_taken_port_users_reach_the_platform_by_is_refused(tmp_path: Path, held: int,
                                                             key: str) -> None:
    assert not port_free(held)
    with pytest.raises(ConfigError) as refused:
        plan_ports(_config(tmp_path, **{key: str(held)}))
    assert refused.value.field == key[len("MLRAY_"):].lower()
    assert f"{held} is in use" in refused.value.message


def test_a_taken_dashboard_port_moves_and_internal_ports_are_picked(tmp_path: Path,
                                                                    held: int) -> None:
    config = _config(tmp_path, MLRAY_RAY_DASHBOARD_PORT=str(held))
    plan = plan_ports(config)
    assert plan.dashboard != held and port_free(plan.dashboard)
    assert plan.notes == [f"ray_dashboard_port {held} is taken; the dashboard listens on "
                          f"{plan.dashboard}"]
    assert set(plan.internal) == set(INTERNAL_PORTS)
    ports = [plan.head, plan.dashboard, plan.serve, *plan.internal.values()]
    assert len(set(ports)) == len(ports)
    assert 52365 not in plan.internal.values()


def test_without_serving_the_serve_port_is_not_checked(tmp_path: Path, held: int) -> None:
    assert plan_ports(_config(tmp_path, MLRAY_SERVE_PORT=str(held)), serve=False).serve == held


def test_stop_session_ends_only_that_session(tmp_path: Path) -> None:
    sleeper = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
              "'import time; time.sleep(600)']); time.sleep(600)"
    ours = subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
    try:
        from tests.conftest import wait_for

        wait_for(lambda: len(session_processes(ours.pid)) == 2, timeout=60)
        assert stop_session(ours.pid, timeout_s=5) == 2
        assert session_processes(ours.pid) == []
        assert len(session_processes(other.pid)) >= 1
    finally:
        stop_session(other.pid, timeout_s=5)
        ours.wait(timeout=10)
        other.wait(timeout=10)


def test_a_record_of_a_head_that_is_gone_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "ray-head.json").write_text(
        '{"gcs_address": "127.0.0.1:1", "dashboard_url": "http://127.0.0.1:2", "sid": 999999,'
        ' "ports": {"head": 1, "dashboard": 2, "serve": 3, "internal": {}},'
        ' "started_at": 0}')
    assert load_record(tmp_path) is None
    assert not (tmp_path / "ray-head.json").exists()


def test_a_record_whose_session_id_now_belongs_to_another_session_is_dropped(
        tmp_path: Path) -> None:
    """The pid the record names as session id was reused by a process that is not Ray:
    the record is stale, and `down` must not stop that stranger."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                start_new_session=True)
    try:
        (tmp_path / "ray-head.json").write_text(
            '{"gcs_address": "127.0.0.1:1", "dashboard_url": "http://127.0.0.1:2", '
            f'"sid": {stranger.pid}, "session_name": "session_2026-01-01_00-00-00_1", '
            '"ports": {"head": 1, "dashboard": 2, "serve": 3, "internal": {}}, '
            '"started_at": 0}')
        assert session_processes(stranger.pid) == [stranger.pid]
        assert load_record(tmp_path) is None
        assert not (tmp_path / "ray-head.json").exists()
        assert stranger.poll() is None  # untouched
    finally:
        stranger.kill()
        stranger.wait()


def test_config_differences_name_the_key_and_both_values_masked(tmp_path: Path) -> None:
    running = load_config(env={"MLRAY_HOME": str(tmp_path / "a"),
                               "MLRAY_STATE_URL": "redis://:s3cret@db:6379/0",
                               "MLRAY_PROJECT": "theirs"})
    local = load_config(env={"MLRAY_HOME": str(tmp_path / "b"), "MLRAY_PROJECT": "mine"})
    lines = list(config_differences(local, running).values())
    assert lines[0] == (f"state_url: the running platform uses redis://:***@db:6379/0, this "
                        f"process's config says sqlite:///{tmp_path / 'b' / 'state.db'}")
    assert {line.split(":")[0] for line in lines} == {"state_url", "artifact_uri",
                                                      "online_url", "offline_uri",
                                                      "storage_uri"}
    adopted = adopt_running(local, running)
    assert adopted.resolved_state_url == running.resolved_state_url
    assert adopted.project == "mine"  # the caller's own keys stay
    assert not config_differences(adopted, running)


def test_a_token_is_made_for_a_user_without_one_and_kept_otherwise(tmp_path: Path) -> None:
    home = tmp_path / "user"
    token_file = home / ".ray" / "auth_token"
    ensure_auth_token({"HOME": str(home)})  # no token auth: nothing to do
    assert not token_file.exists()
    ensure_auth_token({"HOME": str(home), "RAY_AUTH_MODE": "token",
                                "RAY_AUTH_TOKEN": "given"})
    assert not token_file.exists()
    env = {"HOME": str(home), "RAY_AUTH_MODE": "token", "PATH": os.environ["PATH"]}
    ensure_auth_token(env)  # what `ray start --head` refuses to start without
    first = token_file.read_text().strip()
    assert len(first) >= 32
    ensure_auth_token(env)
    assert token_file.read_text().strip() == first  # never replaced
