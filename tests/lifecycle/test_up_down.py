"""`mlray up` starts a Ray head and the actors; commands go through them; `down` stops it.

`up` settles its ports before it starts anything, refuses in one line when a port it is
reached by is taken or a store does not answer (nothing left running), and `down` stops
only the processes of the head `up` started: another Ray head on the host keeps running.
Runs in its own pytest process (marker ``lifecycle``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlray._private.ray_head import RECORD_NAME, port_free, session_processes, stop_session
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.lifecycle
MLRAY = [sys.executable, "-m", "mlray.cli"]
RAY = str(Path(sys.executable).with_name("ray"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # a user's own home, without a Ray token yet: `mlray up` makes one (ray.init would)
    env = {**os.environ, "MLRAY_HOME": str(tmp_path / "home"), "HOME": str(tmp_path / "user"),
           "MLRAY_RAY_HEAD_PORT": str(free_port()), "MLRAY_RAY_DASHBOARD_PORT": str(free_port()),
           "MLRAY_SERVE_PORT": str(free_port()), "RAY_AUTH_MODE": "token", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _mlray(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MLRAY, *args], env=env, capture_output=True, text=True,
                          timeout=400, check=False)


def _error_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.strip()]


@pytest.fixture
def other_head(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A Ray head mlray did not start (as another user's on the same host): (sid, port)."""
    port = free_port()
    proc = subprocess.Popen(
        [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={free_port()}",
         "--num-cpus=1", "--disable-usage-stats", "--include-dashboard=false"],
        env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    _, err = proc.communicate(timeout=300)
    try:
        assert proc.returncode == 0, err[-2000:]
        yield proc.pid, port
    finally:
        stop_session(proc.pid)


def test_up_status_commands_down_leaves_another_head_running(
        tmp_path: Path, other_head: tuple[int, int]) -> None:
    env = _env(tmp_path)
    home = Path(env["MLRAY_HOME"])

    def run(*args: str) -> str:
        out = _mlray(env, *args)
        assert out.returncode == 0, f"mlray {' '.join(args)}: {out.stderr[-2000:]}"
        return out.stdout

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    try:
        first = _mlray(env, "up", "--num-cpus", "2", "--json")
        assert first.returncode == 0, first.stderr[-2000:]
        up = json.loads(first.stdout)
        assert up["mode"] == "cluster" and up["config_from"] == "actors"
        assert up["actors"] == {name: "ALIVE" for name in (
            "registry", "experiments", "jobs", "breakers", "features", "monitor", "keys",
            "quotas", "pipelines", "abtests", "deployments", "alerts")}
        # the first `up` prints a bootstrap admin key once, on stderr, and it works
        bootstrap = re.search(r"bootstrap admin key .*: (mlr_\S+)", first.stderr)
        assert bootstrap is not None and "MLRAY_API_KEY" in first.stderr, first.stderr
        as_key = _mlray({**env, "MLRAY_API_KEY": bootstrap.group(1)}, "keys", "list", "--json")
        assert as_key.returncode == 0, as_key.stderr
        assert [k["roles"] for k in json.loads(as_key.stdout)] == [{"*": "admin"}]
        again = _mlray(env, "keys", "bootstrap")  # the first key exists: none is issued
        assert again.returncode != 0 and "keys exist already" in again.stderr, again.stderr
        assert "mlr_" not in again.stdout + again.stderr
        assert up["dashboard_url"] == f"http://127.0.0.1:{env['MLRAY_RAY_DASHBOARD_PORT']}"
        serve_url = f"http://127.0.0.1:{env['MLRAY_SERVE_PORT']}"
        assert up["serving"]["url"] == serve_url and up["serving"]["apps"] == []
        assert httpx.get(f"{serve_url}/v2/health/live", timeout=30).json() == {"live": True}
        assert httpx.get(f"{serve_url}/v1/models", timeout=30).json() == {"models": []}
        record = json.loads((home / RECORD_NAME).read_text())
        # Ray's internal ports were picked free, not its defaults (52365 & co.)
        assert 52365 not in record["ports"]["internal"].values()
        from ray.job_submission import JobStatus, JobSubmissionClient

        token = (Path(env["HOME"]) / ".ray" / "auth_token").read_text().strip()
        jobs = JobSubmissionClient(up["dashboard_url"],  # runs on the head's dashboard agent
                                   headers={"Authorization": f"Bearer {token}"})
        job = jobs.submit_job(entrypoint="python -c \"print('agent ok')\"")
        wait_for(lambda: jobs.get_job_status(job) in (JobStatus.SUCCEEDED, JobStatus.FAILED),
                 timeout=180, interval=0.5)
        assert jobs.get_job_status(job) == JobStatus.SUCCEEDED, jobs.get_job_logs(job)

        # The platform runs with one config: `up` asking for another serve port is refused
        # in one line, and the head (which this second `up` did not start) keeps running.
        moved = _mlray({**env, "MLRAY_SERVE_PORT": str(free_port())}, "up")
        assert moved.returncode == 2 and len(_error_lines(moved)) == 1, moved.stderr
        assert f"serve_port: the running platform uses {env['MLRAY_SERVE_PORT']}," in moved.stderr
        assert session_processes(record["sid"])

        run("models", "register", "fraud", "-a", str(weights), "-m", "auc=0.9")
        status = json.loads(run("status", "--json"))
        assert status["ray_address"].endswith(env["MLRAY_RAY_HEAD_PORT"])
        assert [m["name"] for m in json.loads(run("models", "list", "--json"))] == ["fraud"]
    finally:
        down = json.loads(run("down", "--json"))
    assert down["stopped"] == "actors and head" and down["processes"] > 0
    assert not session_processes(record["sid"])
    assert port_free(int(env["MLRAY_RAY_HEAD_PORT"])) and port_free(int(env["MLRAY_SERVE_PORT"]))
    other_sid, other_port = other_head
    assert session_processes(other_sid), "`mlray down` stopped a head it did not start"
    assert not port_free(other_port)
    after = json.loads(run("status", "--json"))
    assert after["mode"].startswith("embedded")
    assert [m["name"] for m in json.loads(run("models", "list", "--json"))] == ["fraud"]


@pytest.mark.parametrize("key", ["MLRAY_SERVE_PORT", "MLRAY_RAY_HEAD_PORT"])
def test_up_refuses_a_taken_port_in_one_line_and_starts_nothing(tmp_path: Path,
                                                                key: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = _env(tmp_path, **{key: str(taken)})
        out = _mlray(env, "up")
    assert out.returncode == 2, out.stderr
    [line] = _error_lines(out)
    assert f"{key[len('MLRAY_'):].lower()} {taken} is in use" in line
    assert "nothing was started" in line
    assert not (Path(env["MLRAY_HOME"]) / RECORD_NAME).exists()
    assert port_free(int(env["MLRAY_RAY_HEAD_PORT"]))


def test_up_with_an_unreachable_state_store_fails_in_one_line(tmp_path: Path) -> None:
    dead = free_port()
    env = _env(tmp_path, MLRAY_STATE_URL=f"redis://:hunter2@127.0.0.1:{dead}/0")
    out = _mlray(env, "up")
    assert out.returncode == 1, out.stderr
    [line] = _error_lines(out)
    assert line.startswith("error: state_url:") and f"127.0.0.1:{dead}" in line
    assert "hunter2" not in out.stderr + out.stdout
    assert not (Path(env["MLRAY_HOME"]) / RECORD_NAME).exists()
    assert port_free(int(env["MLRAY_RAY_HEAD_PORT"]))


def test_down_without_a_head_of_ours_stops_nothing(tmp_path: Path,
                                                   other_head: tuple[int, int]) -> None:
    env = _env(tmp_path, MLRAY_RAY_HEAD_PORT=str(other_head[1]))
    out = _mlray(env, "down", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"stopped": False}
    assert session_processes(other_head[0])
