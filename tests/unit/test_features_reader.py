"""get_online_features across views and on-demand views, on SQLite and a real Redis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlray._private.validation import build
from mlray.errors import InvalidInput, NotFound
from mlray.features import FeatureRepo, FeatureStatus, OnlineStore, open_online_store
from mlray.features.online_redis import RedisOnlineStore
from mlray.features.serving import FeatureReader

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PRESENT, NOT_FOUND, OLD = (FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND,
                           FeatureStatus.OUTSIDE_MAX_AGE)


@pytest.fixture
def online(state_url: str, redis_prefix: str) -> Iterator[OnlineStore]:
    store = open_online_store(state_url.replace("state.db", "online.db"), project="default",
                              redis_prefix=redis_prefix)
    yield store
    if isinstance(store, RedisOnlineStore):
        store.drop_all()
    store.close()


@pytest.fixture
def repo() -> FeatureRepo:
    return build(
        FeatureRepo,
        entities=[{"name": "customer", "join_keys": [{"name": "customer_id"}]},
                  {"name": "shop", "join_keys": [{"name": "shop", "dtype": "string"}]}],
        feature_views=[
            {"name": "customer_profile", "entities": ["customer"], "source": {"type": "push"},
             "fields": [{"name": "account_age_days", "dtype": "int64"},
                        {"name": "amount_avg_7d", "dtype": "float64"}]},
            {"name": "velocity", "entities": ["customer"], "source": {"type": "push"},
             "ttl": "1h", "fields": [{"name": "n_1h", "dtype": "int64"},
                                     {"name": "tags", "dtype": "array", "items": "string"}]},
            {"name": "shop_stats", "entities": ["shop"], "source": {"type": "push"},
             "fields": [{"name": "n_1h", "dtype": "int64"}]}],
        on_demand_feature_views=[{
            "name": "risk", "function": "mlray.features.examples:transaction_risk",
            "request": [{"name": "amount", "dtype": "float64"}, {"name": "hour", "dtype": "int64"}],
            "sources": ["customer_profile:amount_avg_7d"],
            "fields": [{"name": "amount_ratio", "dtype": "float64"},
                       {"name": "is_night", "dtype": "bool"},
                       {"name": "log_amount", "dtype": "float64"}]}],
        feature_services=[{"name": "svc", "features": [
            "velocity:n_1h", "risk:amount_ratio", "customer_profile:*"]}])


def _write(online: OnlineStore, repo: FeatureRepo, view: str, **cols: Any) -> None:
    n = len(next(iter(cols.values())))
    ts = cols.pop("ts", [T0] * n)
    online.write(repo.bind(view), pa.table({
        **cols, "event_timestamp": pa.array(ts, pa.timestamp("us", "UTC"))}))


def test_features_across_views_in_the_order_asked(online: OnlineStore,
                                                  repo: FeatureRepo) -> None:
    _write(online, repo, "customer_profile", customer_id=[1, 2], account_age_days=[30, 400],
           amount_avg_7d=[50.0, 0.0])
    _write(online, repo, "velocity", customer_id=[1, 2], n_1h=[3, 9], tags=[["a"], []],
           ts=[T0, T0 - dt.timedelta(hours=2)])
    reader = FeatureReader(repo, online)
    rows = {"customer_id": [2, 1, 3], "amount": [10.0, 100.0, 5.0], "hour": [3, 12, 23]}
    got = reader.get_online_features(
        rows, ["velocity:n_1h", "risk:amount_ratio", "customer_profile:account_age_days",
               "risk:is_night", "velocity:tags"], now=T0)
    assert got.names == ["n_1h", "amount_ratio", "account_age_days", "is_night", "tags"]
    assert got.refs[1] == "risk:amount_ratio" and len(got) == 3
    assert got.column("n_1h").to_pylist() == [None, 3, None]
    assert got.statuses("n_1h") == [OLD, PRESENT, NOT_FOUND]
    assert got.column("account_age_days").to_pylist() == [400, 30, None]
    assert got.column("amount_ratio").to_pylist() == [None, 2.0, None]  # avg 0 -> null
    assert got.statuses("amount_ratio") == [PRESENT, PRESENT, NOT_FOUND]
    assert got.column("is_night").to_pylist() == [True, False, True]
    assert got.column("tags").type == pa.list_(pa.string())
    assert got.column("tags").to_pylist() == [None, ["a"], None]
    assert got.event_ts[0, 0] == np.datetime64("2026-03-01T10:00:00", "us")
    assert got.event_ts[1, 1] == np.datetime64("2026-03-01T12:00:00", "us")
    assert np.isnat(got.event_ts[2]).all()
    assert got.to_table().column_names == got.names
    body = got.to_dict()
    assert body["statuses"][0] == ["OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"]
    assert body["event_timestamps"][2][1] == "2026-03-01T12:00:00.000000Z"
    assert body["values"][2] == [400, 30, None]


def test_services_full_names_and_multi_entity_rows(online: OnlineStore,
                                                   repo: FeatureRepo) -> None:
    _write(online, repo, "velocity", customer_id=[1], n_1h=[3], tags=[None])
    _write(online, repo, "shop_stats", shop=["s1"], n_1h=[7])
    _write(online, repo, "customer_profile", customer_id=[1], account_age_days=[5],
           amount_avg_7d=[20.0])
    reader = FeatureReader(repo, online)
    rows = [{"customer_id": 1, "shop": "s1", "amount": 40.0, "hour": 1}]
    got = reader.get_online_features(rows, "svc", full_feature_names=True, now=T0)
    assert got.names == ["velocity__n_1h", "risk__amount_ratio",
                         "customer_profile__account_age_days", "customer_profile__amount_avg_7d"]
    assert got.to_table().to_pylist() == [{"velocity__n_1h": 3, "risk__amount_ratio": 2.0,
                                           "customer_profile__account_age_days": 5,
                                           "customer_profile__amount_avg_7d": 20.0}]
    with pytest.raises(InvalidInput, match="duplicated"):
        reader.get_online_features(rows, ["velocity:n_1h", "shop_stats:n_1h"])
    both = reader.get_online_features(rows, ["velocity:n_1h", "shop_stats:n_1h"],
                                      full_feature_names=True, now=T0)
    assert both.status.tolist() == [[PRESENT, PRESENT]]


def test_errors_and_one_round_trip(online: OnlineStore, repo: FeatureRepo,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reader = FeatureReader(repo, online)
    with pytest.raises(NotFound, match="no feature view 'nope'"):
        reader.get_online_features({"customer_id": [1]}, ["nope:x"])
    with pytest.raises(NotFound, match="has no feature"):
        reader.get_online_features({"customer_id": [1]}, ["velocity:x"])
    with pytest.raises(InvalidInput, match="missing join key column 'customer_id'"):
        reader.get_online_features({"id": [1]}, ["velocity:n_1h"])
    with pytest.raises(InvalidInput, match="customer_id"):
        reader.get_online_features({"customer_id": ["a"]}, ["velocity:n_1h"])
    with pytest.raises(InvalidInput, match="request column 'amount'"):
        reader.get_online_features({"customer_id": [1], "hour": [1]}, ["risk:is_night"])
    calls: list[int] = []
    original = type(online)._get_many

    def counting(self: OnlineStore, requests: Any) -> Any:
        calls.append(len(requests))
        return original(self, requests)

    monkeypatch.setattr(type(online), "_get_many", counting)
    got = reader.get_online_features({"customer_id": list(range(300)), "shop": ["s"] * 300},
                                     ["velocity:*", "shop_stats:n_1h", "customer_profile:*"],
                                     full_feature_names=True)
    assert calls == [3] and got.status.shape == (300, 5) and not got.status.any()
