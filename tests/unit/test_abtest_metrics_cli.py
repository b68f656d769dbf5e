"""`mlray abtest start --secondary --correction --cuped` and the status it shows,
in-process on the embedded SQLite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlray.cli.main import main
from tests.conftest import free_port
from tests.unit.test_abtest_service import feed, rate


def test_abtest_cli_secondary_metrics_and_cuped(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLRAY_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("MLRAY_OFFLINE_URI", str(tmp_path / "offline"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err, out.err

    for content in (b"w1", b"w2"):
        weights = tmp_path / f"{content.decode()}.pt"
        weights.write_bytes(content)
        assert run("models", "register", "fraud", "-a", str(weights))[0] == 0
    assert run("models", "promote", "fraud", "1")[0] == 0
    base = ("abtest", "start", "fraud", "--arms", "v1=50,v2=50", "--min-effect", "0.1",
            "--baseline", "0.1")
    code, _, err = run(*base, "--cuped", "--sequential")
    assert code != 0 and "fixed horizon only" in err
    code, _, err = run(*base, "--secondary", "correct,correct")
    assert code != 0 and "named twice" in err
    code, out, _ = run(*base, "--secondary", "correct,conversion_value:lower",
                       "--correction", "bh", "--cuped", "--json")
    spec = json.loads(out)["spec"]
    assert code == 0 and spec["cuped"] and spec["correction"] == "bh"
    assert spec["secondary"] == [{"name": "correct", "higher_is_better": True},
                                 {"name": "conversion_value", "higher_is_better": False}]

    at = time.time() + 1
    feed(tmp_path / "offline", 1, rate(200, 20), at=at)
    feed(tmp_path / "offline", 2, rate(200, 60), at=at)
    code, out, _ = run("abtest", "status", "fraud")
    assert code == 0 and "metrics (bh-corrected over 3)" in out and "bh p" in out
    assert "CUPED (fixed horizon, 400 units, 0 with a pre-period)" in out
    assert "conversion (primary)" in out and "v2 won" in out
