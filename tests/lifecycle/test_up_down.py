"""`mlray up` starts a Ray head and the actors; commands go through them; `down` stops it.

Runs in its own pytest process (marker ``lifecycle``): `ray stop` ends every Ray
process on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.lifecycle


def test_up_status_commands_down(tmp_path: Path) -> None:
    env = {**os.environ, "MLRAY_HOME": str(tmp_path / "home"),
           "MLRAY_RAY_HEAD_PORT": str(free_port()),
           "MLRAY_RAY_DASHBOARD_PORT": str(free_port()),
           "MLRAY_SERVE_PORT": str(free_port())}
    env.pop("RAY_ADDRESS", None)
    mlray = [sys.executable, "-m", "mlray.cli"]

    def run(*args: str) -> str:
        out = subprocess.run([*mlray, *args], env=env, capture_output=True, text=True,
                             timeout=300, check=False)
        assert out.returncode == 0, f"mlray {' '.join(args)}: {out.stderr[-2000:]}"
        return out.stdout

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    try:
        up = json.loads(run("up", "--num-cpus", "2", "--json"))
        assert up["mode"] == "cluster"
        assert up["actors"] == {name: "ALIVE" for name in (
            "registry", "experiments", "jobs", "breakers", "features", "monitor",
            "deployments", "alerts")}
        assert str(up["dashboard_url"]).startswith("http://")
        serve_url = f"http://127.0.0.1:{env['MLRAY_SERVE_PORT']}"
        assert up["serving"]["url"] == serve_url and up["serving"]["apps"] == []
        assert httpx.get(f"{serve_url}/v2/health/live", timeout=30).json() == {"live": True}
        assert httpx.get(f"{serve_url}/v1/models", timeout=30).json() == {"models": []}
        run("models", "register", "fraud", "-a", str(weights), "-m", "auc=0.9")
        status = json.loads(run("status", "--json"))
        assert status["ray_address"].endswith(env["MLRAY_RAY_HEAD_PORT"])
        assert [m["name"] for m in json.loads(run("models", "list", "--json"))] == ["fraud"]
    finally:
        run("down")
    after = json.loads(run("status", "--json"))
    assert after["mode"].startswith("embedded")
    assert [m["name"] for m in json.loads(run("models", "list", "--json"))] == ["fraud"]
