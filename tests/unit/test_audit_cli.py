"""`mlray audit verify` and `mlray audit export` on the embedded SQLite store."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import pytest

from mlray.cli.main import main
from tests.conftest import free_port


def test_audit_verify_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLRAY_STATE_URL", f"sqlite:///{db}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"w")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("models", "register", "fraud", "-a", str(weights))[0] == 0
    assert run("models", "alias", "fraud", "champion", "1")[0] == 0
    code, out, _ = run("audit", "export")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) >= 3 and lines[0]["seq"] == 1
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))
    assert run("audit", "export", "--since", str(lines[-1]["ts"] + 1))[1] == ""
    assert run("audit", "export", "--project", "default")[1] == out
    assert run("audit", "export", "--project", "other")[1] == ""
    code, out, _ = run("audit", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit SET target = 'x' WHERE seq = 2")
    code, _, err = run("audit", "verify")
    assert code == 2 and "entry 2" in err and "altered" in err
    assert run("audit", "export", "--since", "yesterday")[0] == 2


def test_architectures_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))
    assert main(["models", "architectures", "--allow", "pkg.mod:make", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["pkg.mod:make"]
    assert main(["models", "architectures", "--allow", "not a callable"]) == 2
    assert main(["audit", "export"]) == 0
    actions = [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()]
    assert actions == ["platform.architectures"]
