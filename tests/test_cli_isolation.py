"""Project isolation (#13 part 4) through the CLI, in embedded mode: a key holding roles
only in ``team-b`` runs ``mlray --project team-a ...`` against every resource kind; each
command fails the same way (exit code and message) whether team A's object exists or not,
and the same names in team B show none of team A's data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

import mlray
from mlray.cli.main import main
from mlray.config import load_config
from mlray.identity import Caller, Role
from tests.conftest import free_port
from tests.unit.test_isolation import _repo

A, B = "team-a", "team-b"


class Cli:
    """Run the CLI in this process, as the key in ``MLRAY_API_KEY``."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = self.capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Team A's objects on an embedded platform, and Mallory's key (admin of team B)."""
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLRAY_API_KEY", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))  # embedded mode
    alice = mlray.connect(config=load_config(), project=A, local=True,
                          caller=Caller(user="alice", roles={"*": Role.admin}))
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"weights of team a")
    alice.registry.register("fraud", weights)
    alice.registry.set_alias("fraud", "champion", 1)
    alice.experiments.create_experiment("exp")
    run = alice.experiments.start_run("exp")
    job = alice.jobs.create("train", "nightly")
    alice.features.apply(_repo())
    rows = pd.DataFrame({"user_id": [1], "clicks": [7], "event_timestamp": [
        dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)]})
    alice.features.push("stats", rows)
    rows.to_parquet(tmp_path / "rows.parquet")
    key_a = alice.keys.create("svc", {A: "viewer"}).info.key_id
    mallory = alice.keys.create("mallory", {B: "admin"}).key.get_secret_value()
    monkeypatch.setenv("MLRAY_API_KEY", mallory)
    return {"run": run.run_id, "job": job.job_id, "key": key_a,
            "rows": str(tmp_path / "rows.parquet"), "weights": str(weights)}


def _commands(ids: dict[str, str], existing: bool) -> dict[str, list[str]]:
    """One command per resource kind and verb, naming team A's object or a missing one."""
    model, view = ("fraud", "stats") if existing else ("nosuch", "none")

    def ident(value: str) -> str:
        return value if existing else "0" * len(value)

    return {
        "model show": ["models", "show", model],
        "model register": ["models", "register", model, "-a", ids["weights"]],
        "model delete": ["models", "delete", model],
        "model gates": ["models", "gates", model],
        "version show": ["models", "show", f"models:/{model}/1"],
        "version alias": ["models", "show", f"models:/{model}@champion"],
        "version promote": ["models", "promote", model, "1", "--force"],
        "version set alias": ["models", "alias", model, "mine", "1"],
        "version delete": ["models", "delete", model, "--version", "1"],
        "drift": ["drift", model, "--version", "1"],
        "prediction log performance": ["performance", model, "--version", "1"],
        "run show": ["runs", "show", ident(ids["run"])],
        "run compare": ["runs", "compare", ident(ids["run"]), ident(ids["run"])],
        "job show": ["jobs", "show", ident(ids["job"])],
        "job stop": ["jobs", "stop", ident(ids["job"])],
        "feature view show": ["features", "show", view],
        "feature push": ["features", "push", view, ids["rows"]],
        "key revoke": ["keys", "revoke", ident(ids["key"])],
    }


#: (``mlray audit`` is left out: an operator's check that reads the state store itself,
#: with the store's credentials, not through a key.)
LISTINGS = [["models", "list"], ["runs", "list"], ["jobs", "list"], ["features", "list"],
            ["features", "materialize"], ["keys", "list"]]


def test_cli_refuses_another_projects_objects_alike_whether_they_exist(
        setup: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(capsys)
    present, absent = _commands(setup, True), _commands(setup, False)
    for kind, command in present.items():
        code, out, err = cli("--project", A, *command)
        again = cli("--project", A, *absent[kind])
        assert code == 2 and "PermissionDenied" not in out, (kind, code, out, err)
        assert f"no role in project '{A}'" in err, (kind, err)
        assert (code, err) == again[::2], (kind, err, again)
    for command in LISTINGS:
        code, _, err = cli("--project", A, *command)
        assert code == 2 and f"no role in project '{A}'" in err, (command, err)


def test_cli_in_its_own_project_shows_nothing_of_team_a(
        setup: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(capsys)
    for command in (["models", "list"], ["runs", "list"], ["jobs", "list"]):
        code, out, err = cli("--project", B, *command, "--json")
        listed = json.loads(out)
        assert code == 0 and (listed.get("runs") if isinstance(listed, dict) else listed) == [], (
            command, out, err)
    code, out, _ = cli("--project", B, "keys", "list", "--json")
    assert code == 0 and setup["key"] not in out
    for name in ("fraud", "nosuch"):
        code, _, err = cli("--project", B, "models", "show", name)
        assert code == 2 and "does not exist" in err.replace(name, "M"), err
    code, _, err = cli("--project", B, "runs", "show", setup["run"])
    assert code == 2 and "does not exist" in err
