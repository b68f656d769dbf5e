"""The CLI in embedded mode (no Ray cluster running): commands, --json, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlray.cli.main import main
from tests.conftest import free_port


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # a head port nothing listens on: embedded mode
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    return path


def test_models_commands(cli, weights: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("models", "register", "fraud", "-a", str(weights), "-m", "auc=0.9",
                       "-p", "lr=0.1", "--json")
    assert code == 0 and json.loads(out)["version"] == 1
    cli("models", "register", "fraud", "-a", str(weights), "-m", "auc=0.95")
    code, out, _ = cli("models", "promote", "fraud", "2", "--json")
    assert json.loads(out)["stage"] == "Production"
    assert cli("models", "alias", "fraud", "champion", "2")[0] == 0
    code, out, _ = cli("models", "show", "models:/fraud@champion", "--json")
    assert json.loads(out)["version"] == 2 and json.loads(out)["aliases"] == ["champion"]
    code, out, _ = cli("models", "show", "fraud", "--json")
    assert [v["stage"] for v in json.loads(out)["versions"]] == ["None", "Production"]
    code, out, _ = cli("models", "list", "--json")
    assert [m["name"] for m in json.loads(out)] == ["fraud"]
    code, out, _ = cli("models", "list", "--filter", "metrics.auc > 0.92", "--json")
    assert [v["version"] for v in json.loads(out)] == [2]
    code, out, _ = cli("models", "list")
    assert "fraud" in out and "champion" in out
    assert cli("models", "alias", "fraud", "champion", "--delete")[0] == 0
    assert cli("models", "delete", "fraud", "--version", "1")[0] == 0
    code, out, _ = cli("models", "show", "fraud", "--json")
    assert [v["version"] for v in json.loads(out)["versions"]] == [2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "show", "nope"), "error [model]: model 'nope' does not exist"),
        (("models", "promote", "fraud", "1", "None"), "cannot move from None to None"),
        (("models", "register", "a--b", "-a", "{weights}"), "invalid name 'a--b'"),
        (("models", "register", "m", "-a", "/no/such/file"), "does not exist"),
        (("models", "register", "m", "-a", "{weights}", "-m", "auc=high"), "not a number"),
        (("models", "list", "--filter", "metrics.auc >> 1"), "cannot parse filter"),
        (("models", "alias", "fraud", "champion", "7"), "no version 7"),
        (("runs", "show", "nope"), "run 'nope' does not exist"),
        (("runs", "compare", "only-one"), "at least two"),
    ],
)
def test_user_errors_exit_2_with_one_line(cli, weights: Path, args: tuple[str, ...],  # type: ignore[no-untyped-def]
                                          message: str) -> None:
    cli("models", "register", "fraud", "-a", str(weights))
    code, _, err = cli(*(a.format(weights=weights) for a in args))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_usage_errors_exit_2(cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("models", "promote", "fraud", "one")
    assert code == 2 and "Traceback" not in err


def test_bad_config_is_a_one_line_error(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLRAY_STATE_URL", "ftp://nowhere")
    code, _, err = cli("models", "list")
    assert code == 2 and "unknown state store scheme 'ftp'" in err


def test_runs_commands(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import mlray
    from mlray.config import load_config

    client = mlray.connect(config=load_config(), local=True)
    ids = []
    for lr in (0.1, 0.01):
        with client.experiments.run("sweep", params={"lr": lr, "opt": "adam"}) as run:
            client.experiments.log_metrics(run.run_id, {"loss": lr * 2}, step=1)
        ids.append(run.run_id)
    code, out, _ = cli("runs", "list", "-e", "sweep", "-o", "metrics.loss ASC", "--json")
    page = json.loads(out)
    assert [r["run_id"] for r in page["runs"]] == ids[::-1] and page["total"] == 2
    code, out, _ = cli("runs", "list", "-f", "params.lr > 0.05", "--json")
    assert [r["run_id"] for r in json.loads(out)["runs"]] == ids[:1]
    code, out, _ = cli("runs", "list", "-n", "1")
    assert "next --offset 1" in out
    code, out, _ = cli("runs", "show", ids[0], "--json")
    assert json.loads(out)["params"] == {"lr": 0.1, "opt": "adam"}
    code, out, _ = cli("runs", "compare", *ids, "--json")
    assert json.loads(out)["differing_params"] == ["lr"]
    code, out, _ = cli("runs", "compare", *ids)
    assert code == 0 and "params.lr *" in out


def test_status_in_embedded_mode(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("status", "--json")
    info = json.loads(out)
    assert code == 0 and info["ray_address"] is None and info["mode"].startswith("embedded")
