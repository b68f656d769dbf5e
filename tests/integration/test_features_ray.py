"""Point-in-time retrieval with Ray Data gives the in-memory join's rows, partition by
partition, across views keyed differently and with on-demand features."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlray._private.validation import build
from mlray.errors import InvalidInput
from mlray.features import FeatureRepo, OfflineStore
from mlray.features.offline_ray import get_historical_features_ray

pytestmark = pytest.mark.slow
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")


def _repo() -> FeatureRepo:
    return build(FeatureRepo, entities=[
        {"name": "user", "join_keys": [{"name": "user_id"}]},
        {"name": "shop", "join_keys": [{"name": "shop", "dtype": "string"}]}],
        feature_views=[
            {"name": "clicks", "entities": ["user"], "ttl": "1d",
             "source": {"type": "push", "created_timestamp_field": "created"},
             "fields": [{"name": "n", "dtype": "int64"}, {"name": "rate", "dtype": "float64"}]},
            {"name": "profile", "entities": ["user"], "source": {"type": "push"},
             "fields": [{"name": "tier", "dtype": "string"}]},
            {"name": "shops", "entities": ["shop"], "source": {"type": "push"},
             "fields": [{"name": "risk", "dtype": "float64"}]}],
        on_demand_feature_views=[{
            "name": "mixed", "function": "tests.integration.test_features_ray:double_n",
            "request": [{"name": "bonus", "dtype": "int64"}], "sources": ["clicks:n"],
            "fields": [{"name": "doubled", "dtype": "int64"}]}])


def double_n(frame: pd.DataFrame) -> pd.DataFrame:
    """On-demand function of the test: 2 * clicks.n + bonus (null stays null)."""
    return pd.DataFrame({"doubled": frame["clicks__n"] * 2 + frame["bonus"]})


def _times(rng: np.random.Generator, n: int, days: int) -> pa.Array:
    seconds = rng.integers(0, days * 86_400 // 60, n) * 60  # whole minutes: ties happen
    return pa.array([T0 + dt.timedelta(seconds=int(s)) for s in seconds], TS)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> OfflineStore:
    rng = np.random.default_rng(4)
    store = OfflineStore(str(tmp_path_factory.mktemp("offline")), _repo(), project="default")
    m = 20_000
    store.write("clicks", pa.table({
        "user_id": rng.integers(0, 500, m), "event_timestamp": _times(rng, m, 4),
        "created": _times(rng, m, 3), "n": rng.integers(0, 100, m), "rate": rng.random(m)}))
    store.write("profile", pa.table({
        "user_id": rng.integers(0, 500, 2_000), "event_timestamp": _times(rng, 2_000, 4),
        "tier": rng.choice(["gold", "basic"], 2_000)}))
    store.write("shops", pa.table({
        "shop": rng.choice([f"s{i}" for i in range(40)], 3_000),
        "event_timestamp": _times(rng, 3_000, 4), "risk": rng.random(3_000)}))
    return store


def _entities(n: int) -> pa.Table:
    rng = np.random.default_rng(9)
    return pa.table({
        "row": np.arange(n), "user_id": rng.integers(0, 550, n).astype(np.int32),
        "shop": rng.choice([f"s{i}" for i in range(45)], n),
        "event_timestamp": _times(rng, n, 5), "bonus": np.ones(n, np.int64)})


FEATURES = ["clicks:*", "profile:tier", "shops:risk", "mixed:doubled"]


def test_ray_join_matches_the_in_memory_join(ray_shared: None, store: OfflineStore,
                                             tmp_path: Path) -> None:
    import ray

    entities = _entities(6_000)
    want = store.get_historical_features(entities, FEATURES, full_feature_names=True)
    blocks = ray.data.from_arrow([entities.slice(i, 1_000) for i in range(0, 6_000, 1_000)])
    got = get_historical_features_ray(store, blocks, FEATURES, full_feature_names=True,
                                      partitions=3, output=str(tmp_path / "out"))
    assert any((tmp_path / "out").iterdir())
    table = pa.concat_tables(ray.get(got.to_arrow_refs())).sort_by("row")
    assert table.column_names == want.column_names
    assert table.equals(want.cast(table.schema))
    assert 0 < table["clicks__n"].null_count < len(table)  # some rows match, some do not


def test_ray_join_refuses_bad_entity_rows(ray_shared: None, store: OfflineStore,
                                          tmp_path: Path) -> None:
    import ray

    entities = _entities(10)
    with pytest.raises(InvalidInput, match="missing join key 'shop'"):
        get_historical_features_ray(store, ray.data.from_arrow(entities.drop_columns(["shop"])),
                                    FEATURES)
    naive = entities.set_column(3, "event_timestamp",
                                pa.array([dt.datetime(2026, 3, 1)] * 10, pa.timestamp("us")))
    with pytest.raises(InvalidInput, match="time zone"):  # raised in a task, unwrapped
        get_historical_features_ray(store, ray.data.from_arrow(naive), FEATURES)
    clash = entities.append_column("n", pa.array([1] * 10))
    with pytest.raises(InvalidInput, match=r"output columns \['n'\] would be duplicated"):
        get_historical_features_ray(store, ray.data.from_arrow(clash), FEATURES)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"x")
    with pytest.raises(InvalidInput, match="exists and is not empty"):
        get_historical_features_ray(store, ray.data.from_arrow(entities), FEATURES,
                                    output=str(tmp_path / "full"))
