"""Relative source paths resolve against the YAML file that declares them, never against
the working directory, and a source that is not there is an error, never no rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mlray
from mlray._private.validation import build
from mlray.cli.main import main
from mlray.errors import InvalidInput, NotFound
from mlray.features import FeatureRepo, OfflineStore, load_repo
from mlray.features.service import FeatureRegistry
from mlray.identity import Caller
from mlray.storage import open_state_store
from tests.conftest import free_port

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
YAML = """
entities:
  - {name: customer, join_keys: [{name: customer_id}]}
feature_views:
  - name: spend
    entities: [customer]
    source: {type: parquet, path: SOURCE}
    fields: [{name: amount, dtype: float64}]
"""


def _project(root: Path, source: str = "../../data/tx.parquet") -> Path:
    """``root/configs/features/spend.yaml`` reading ``source``; ``root/data/tx.parquet``."""
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.table({
        "customer_id": [1, 2], "amount": [5.0, 7.5],
        "event_timestamp": pa.array([T0, T0], pa.timestamp("us", "UTC"))}),
        root / "data" / "tx.parquet")
    features = root / "configs" / "features"
    features.mkdir(parents=True)
    (features / "spend.yaml").write_text(YAML.replace("SOURCE", source))
    return features


def _entities() -> dict[str, object]:
    return {"customer_id": [1, 2], "event_timestamp": pa.array(
        [T0 + dt.timedelta(hours=1)] * 2, pa.timestamp("us", "UTC"))}


def test_load_repo_resolves_against_the_yaml_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    features = _project(tmp_path / "proj")
    values = []
    for cwd in (tmp_path / "proj", tmp_path, features):
        monkeypatch.chdir(cwd)
        repo = load_repo(features)
        assert repo.feature_view("spend").source.path == str(tmp_path / "proj/data/tx.parquet")
        store = OfflineStore(str(tmp_path / "offline"), repo, project="default")
        values.append(store.get_historical_features(_entities(), ["spend:amount"])[
            "amount"].to_pylist())
    assert values == [[5.0, 7.5]] * 3


def test_absolute_and_remote_paths_are_kept(tmp_path: Path) -> None:
    features = _project(tmp_path, str(tmp_path / "data" / "tx.parquet"))
    assert load_repo(features).feature_view("spend").source.path == str(
        tmp_path / "data" / "tx.parquet")
    (features / "spend.yaml").write_text(YAML.replace("SOURCE", "s3://bucket/tx"))
    assert load_repo(features).feature_view("spend").source.path == "s3://bucket/tx"


def test_missing_or_relative_source_is_an_error_not_nulls(tmp_path: Path) -> None:
    repo = load_repo(_project(tmp_path, "../../data/gone.parquet"))
    store = OfflineStore(str(tmp_path / "offline"), repo, project="default")
    with pytest.raises(NotFound, match=r"view 'spend': its source .*gone\.parquet") as info:
        store.get_historical_features(_entities(), ["spend:amount"])
    assert info.value.field == "feature_views.spend.source.path"
    relative = build(FeatureRepo, **{**repo.model_dump(), "feature_views": [
        {**repo.feature_view("spend").model_dump(), "source": {"type": "parquet",
                                                               "path": "data/tx.parquet"}}]})
    with pytest.raises(InvalidInput, match=r"'data/tx\.parquet' is relative"):
        OfflineStore(str(tmp_path / "offline"), relative, project="default").read("spend")
    registry = FeatureRegistry(open_state_store(f"sqlite:///{tmp_path / 'state.db'}"))
    with pytest.raises(InvalidInput, match="relative"):
        registry.apply(Caller.local_admin("me"), "default", relative)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLRAY_CONFIG", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))  # embedded mode

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_cli_apply_and_materialize_from_another_directory(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once: 0 rows with exit 0 outside the repo root."""
    _project(tmp_path / "proj")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "proj")
    mlray.connect(local=True).features.allow_sources([str(tmp_path)])
    code, _, err = cli("features", "apply", "configs/features")
    assert code == 0, err
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, err = cli("features", "materialize", "--end", "2026-03-02T00:00:00Z", "--json")
    assert code == 0, err
    assert [r["rows"] for r in json.loads(out)] == [2]
    client = mlray.connect(local=True)
    got = client.features.get_historical_features(_entities(), ["spend:amount"])
    assert got["amount"].to_pylist() == [5.0, 7.5]
    code, _, err = cli("features", "apply", str(_project(tmp_path / "bad",
                                                         "../../data/none.parquet")))
    assert code == 2 and "view 'spend'" in err and "none.parquet does not exist" in err


def test_python_repo_resolves_against_the_directory_at_apply(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features = _project(tmp_path / "proj")
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    repo = build(FeatureRepo, **{**load_repo(features).model_dump(), "feature_views": [
        {**load_repo(features).feature_view("spend").model_dump(),
         "source": {"type": "parquet", "path": "data/tx.parquet"}}]})
    client = mlray.connect(local=True)
    client.features.allow_sources([str(tmp_path)])
    monkeypatch.chdir(tmp_path / "proj")
    client.features.apply(repo)
    assert client.features.repo(fresh=True).feature_view("spend").source.path == str(
        tmp_path / "proj" / "data" / "tx.parquet")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFound, match=r"data/tx\.parquet does not exist"):
        client.features.apply(repo)
