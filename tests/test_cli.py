"""The CLI in embedded mode (no Ray cluster running): commands, --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def _local_client():  # type: ignore[no-untyped-def]
    import mlray
    from mlray.config import load_config

    return mlray.connect(config=load_config(), local=True)


def test_models_show_version_is_a_readable_summary(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from mlray.datasets import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
    from mlray.monitoring import profile_frame
    from mlray.registry.gates import GateSpec
    from mlray.registry.types import TensorSpec
    from tests.unit.helpers import tiny_model

    client = _local_client()
    with client.experiments.run("fraud") as run:
        pass
    frame = generate_fraud(500)
    baseline = profile_frame(frame, FRAUD_NUMERIC, FRAUD_CATEGORICAL, np.linspace(0, 1, 500))
    model_dir, data = tiny_model(tmp_path)
    client.registry.register(
        "fraud", model_dir, metrics={"roc_auc": 0.91, "f1": 0.4}, run_id=run.run_id,
        data_fingerprint="sha256:abc", input_schema=[TensorSpec(name="amount", dtype="float64")],
        output_schema=[TensorSpec(name="probability", dtype="float32")],
        baseline=baseline.model_dump(mode="json"))
    client.registry.validate("fraud", 1, data, label="y",
                             gates=[GateSpec(kind="threshold", metric="roc_auc", min=0)])
    client.registry.set_alias("fraud", "champion", 1)
    code, out, _ = cli("models", "show", "fraud", "--version", "1")
    assert code == 0
    assert len(out.splitlines()) < 60, "a summary, not the baseline's bins"
    text = " ".join(out.split())
    for expected in ("metric roc_auc │ 0.91", "aliases │ champion", "stage │ None",
                     "input schema │ amount: float64", "output schema │ probability: float32",
                     f"lineage run │ {run.run_id}", "lineage data │ sha256:abc",
                     "500 training rows;", "7 numeric feature(s) binned;",
                     "gates │ passed", "gate │ roc_auc >= 0: passed (critical);"):
        assert expected in text, out
    code, out, _ = cli("models", "show", "models:/fraud@champion", "--json")
    full = json.loads(out)
    assert full["baseline"]["numeric"]["amount"]["counts"] == \
        baseline.model_dump(mode="json")["numeric"]["amount"]["counts"]


def test_validate_and_required_gates_from_the_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mlray.auth.tokens import PLATFORM_USER
    from tests.unit.helpers import tiny_model

    model_dir, data = tiny_model(tmp_path)
    _local_client().registry.register("fraud", model_dir, metrics={"roc_auc": 0.99})
    gates = tmp_path / "validation.yaml"
    gates.write_text("models:\n  fraud:\n    - {kind: threshold, metric: roc_auc, min: 0.9}\n")
    code, out, _ = cli("models", "gates", "fraud", "--set", str(gates), "--json")
    assert code == 0 and json.loads(out)[0]["metric"] == "roc_auc"
    code, _, err = cli("models", "promote", "fraud", "1")
    assert code != 0 and "no validation report computed by the platform" in err
    code, out, _ = cli("validate", "fraud", "1", "--data", str(data), "--label", "y", "--json")
    report = json.loads(out)
    assert code == 0 and report["computed_by"] == PLATFORM_USER and not report["passed"]
    assert report["metrics"]["roc_auc"] < 0.9  # measured, not the 0.99 the version claims
    code, _, err = cli("models", "promote", "fraud", "1")
    assert code != 0 and "roc_auc >= 0.9" in err
    code, out, _ = cli("models", "show", "fraud", "--version", "1")
    assert "by the platform for local" in " ".join(out.split())


def test_runs_and_versions_show_whole_run_ids(cli, weights: Path) -> None:  # type: ignore[no-untyped-def]
    client = _local_client()
    with client.experiments.run("a-long-experiment-name", params={"lr": 0.1, "opt": "adam",
                                                                  "batch": 256}) as run:
        client.experiments.log_metrics(run.run_id, {"loss": 0.2, "roc_auc": 0.9})
    client.registry.register("fraud", weights, metrics={"roc_auc": 0.9}, run_id=run.run_id)
    assert len(run.run_id) == 32
    for args in (("runs", "list"), ("models", "show", "fraud"),
                 ("models", "list", "--stage", "None")):
        code, out, _ = cli(*args)
        assert code == 0 and run.run_id in out, args


def test_traffic_without_shares_shows_the_policy(cli, weights: Path) -> None:  # type: ignore[no-untyped-def]
    cli("models", "register", "fraud", "-a", str(weights))
    cli("models", "register", "fraud", "-a", str(weights))
    code, _, err = cli("traffic", "fraud")
    assert code == 2 and "no traffic policy and no Production version" in err
    cli("models", "promote", "fraud", "2")
    code, out, _ = cli("traffic", "fraud", "--json")
    assert code == 0 and json.loads(out)["weights"] == {"2": 1.0}
    assert cli("traffic", "fraud", "v1=90", "v2=10", "--random")[0] == 0
    code, out, _ = cli("traffic", "fraud")
    text = " ".join(out.split())
    assert code == 0 and "v1 │ 90 │ 90%" in text and "v2 │ 10 │ 10%" in text
    assert "placement │ random" in text
    code, _, err = cli("traffic", "fraud", "--shadow", "1")
    assert code == 2 and "--shadow needs the shares too" in err


def _mlray(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLRAY_HOME": str(home), "MLRAY_RAY_HEAD_PORT": str(free_port())}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "mlray.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_json_commands_print_nothing_else_on_stdout(tmp_path: Path, weights: Path) -> None:
    home = tmp_path / "h"
    assert _mlray(home, "models", "register", "fraud", "-a", str(weights)).returncode == 0
    for args in (("models", "list", "--json"), ("models", "show", "fraud", "--json"),
                 ("status", "--json"), ("jobs", "list", "--json")):
        done = _mlray(home, *args)
        assert done.returncode == 0, done.stderr
        json.loads(done.stdout)


def test_the_stdout_guard_moves_python_c_and_child_process_output(tmp_path: Path) -> None:
    script = tmp_path / "noisy.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "from mlray._private.quiet import result_stream, stdout_to_stderr\n"
        "with stdout_to_stderr(keep=True):\n"
        "    print('python print')\n"
        "    os.write(1, b'fd write\\n')\n"
        "    subprocess.run(['echo', 'child process'], check=True)\n"
        "    result_stream().write('{\"answer\": 42}\\n')\n"
        "print('after, still stderr')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout) == {"answer": 42}
    for noise in ("python print", "fd write", "child process", "after, still stderr"):
        assert noise in done.stderr


def test_keys_commands(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("keys", "create", "--user", "svc", "--role", "default=viewer",
                         "--expires", "30d", "--json")
    assert code == 0 and "MLRAY_API_KEY" in err
    issued = json.loads(out)
    key, key_id = issued["key"], issued["key_id"]
    assert key.startswith(f"mlr_{key_id}_") and issued["roles"] == {"default": "viewer"}
    code, out, _ = cli("keys", "list", "--json")
    assert code == 0 and [k["key_id"] for k in json.loads(out)] == [key_id]
    assert key not in out and "hash" not in out
    assert cli("keys", "create", "--user", "x", "--role", "default=owner")[0] == 2
    monkeypatch.setenv("MLRAY_API_KEY", key)  # now the CLI acts as the key's viewer
    code, _, err = cli("keys", "list")
    assert code == 2 and "viewer" in err and "admin is required" in err
    assert cli("models", "list", "--json")[0] == 0
    monkeypatch.delenv("MLRAY_API_KEY")
    code, out, _ = cli("keys", "revoke", key_id, "--json")
    assert code == 0 and json.loads(out)["revoked_at"] is not None
    monkeypatch.setenv("MLRAY_API_KEY", key)
    code, _, err = cli("models", "list")
    assert code == 2 and "invalid, expired or revoked API key" in err and key not in err
