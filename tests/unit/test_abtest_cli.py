"""`mlray abtest start|status|stop|list` in-process on the embedded SQLite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlray.cli.main import main
from tests.conftest import free_port
from tests.unit.test_abtest_service import feed, rate


def test_abtest_cli_start_status_and_conclusion(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLRAY_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MLRAY_OFFLINE_URI", str(tmp_path / "offline"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))

    def run(*args: str) -> tuple[int, str, str]:
        """Exit code, what was printed (tables and lines go to stderr, JSON to stdout),
        and stderr."""
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err, out.err

    for content in (b"w1", b"w2"):
        weights = tmp_path / f"{content.decode()}.pt"
        weights.write_bytes(content)
        assert run("models", "register", "fraud", "-a", str(weights))[0] == 0
    assert run("models", "promote", "fraud", "1")[0] == 0
    code, _, err = run("abtest", "start", "fraud", "--arms", "v1=50,v9=50",
                       "--min-effect", "0.1")
    assert code != 0 and "version 9" in err
    code, out, _ = run("abtest", "start", "fraud", "--arms", "v1=50,v2=50", "--min-effect",
                       "0.1", "--baseline", "0.1", "--guardrail", "error_ratio<=0.05")
    assert code == 0 and "required sample size: 195 per arm" in out
    code, _, err = run("abtest", "start", "fraud", "--arms", "v1=50,v2=50", "--min-effect",
                       "0.1")
    assert code != 0 and "already runs experiment" in err

    code, out, _ = run("abtest", "status", "fraud")
    assert code == 0 and "running" in out and "decision: keep_running" in out

    at = time.time() + 1
    feed(tmp_path / "offline", 1, rate(200, 20), at=at)
    feed(tmp_path / "offline", 2, rate(200, 60), at=at)
    code, out, _ = run("abtest", "status", "fraud")
    assert code == 0 and "promoted" in out and "v2 won and takes all traffic" in out
    assert "p-value" in out and "SRM: p 1 - ok" in out
    code, out, _ = run("abtest", "list", "--json")
    [exp] = json.loads(out)
    assert exp["status"] == "promoted" and exp["last"]["totals"]["v2"]["total"] == 60
    code, out, _ = run("models", "show", "fraud", "--json")
    assert code == 0
    code, _, err = run("abtest", "stop", "fraud")
    assert code != 0 and "runs no A/B experiment" in err
