"""The feature store on the running platform: definitions through the ``features`` actor,
online features and pushes over HTTP, predictions by entity key, and a stream processor
actor killed in the middle of a burst that still counts every event exactly once."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlray.datasets import write_fraud
from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from mlray.features.repo import FeatureRepo, load_repo
from tests.conftest import wait_for
from tests.integration.platform import Platform
from tests.integration.serving_models import register_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def features(platform: Platform) -> FeatureRepo:
    """The fraud definitions, with the stream renamed to one only this run uses."""
    data = load_repo(ROOT / "configs" / "features").model_dump(mode="json")
    history = platform.tmp / "history"
    for view in data["feature_views"]:
        if view["source"]["type"] == "stream":
            view["source"]["stream"] = f"{platform.config.redis_prefix}:transactions"
        if view["source"]["type"] == "parquet":  # a directory to push into: must exist
            view["source"]["path"] = str(history / view["name"])
            (history / view["name"]).mkdir(parents=True, exist_ok=True)
    repo = FeatureRepo.model_validate(data)
    platform.client.features.allow_sources([str(history)])  # outside the project's root
    result = platform.client.features.apply(repo)
    assert result.applied and any("customer_velocity" in a for a in result.added)
    return repo


def _customer_rows(customers: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    frame = generate_fraud(len(customers), seed=11)
    last, profile = [], []
    for i, customer in enumerate(customers):
        row = frame.iloc[i]
        last.append({"customer_id": customer, "event_timestamp": NOW,
                     "merchant_category": row["merchant_category"], "device": row["device"],
                     "country": row["country"],
                     "distance_from_home_km": float(row["distance_from_home_km"])})
        profile.append({"customer_id": customer, "event_timestamp": NOW,
                        "account_age_days": int(row["account_age_days"]),
                        "amount_avg_7d": float(row["amount_avg_7d"])})
    return last, profile


def test_online_features_pushes_and_predictions_by_entity_key(platform: Platform,
                                                              features: FeatureRepo) -> None:
    last, profile = _customer_rows([101, 102])
    assert platform.client.features.push("customer_last_transaction", last, to="online") == 2
    pushed = platform.http.post("/v1/features/push", json={
        "view": "customer_profile", "to": "online",
        "rows": [{**r, "event_timestamp": r["event_timestamp"].isoformat()} for r in profile]})
    assert pushed.status_code == 200, pushed.text
    bad = platform.http.post("/v1/features/push", json={
        "view": "customer_profile", "rows": [{"customer_id": 1, "account_age_days": -5,
                                              "event_timestamp": NOW.isoformat()}]})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input", bad.text

    service = platform.http.post("/v1/features", json={
        "entities": {"customer_id": [101], "amount": [10.0], "hour": [2]},
        "featureService": "fraud_model_v1"})
    assert service.status_code == 200, service.text
    assert dict(zip(service.json()["features"], service.json()["statuses"], strict=True))[
        "account_age_days"] == ["PRESENT"]
    no_request = platform.http.post("/v1/features", json={
        "entities": {"customer_id": [101]}, "featureService": "fraud_model_v1"})
    assert no_request.status_code == 400 and "amount" in no_request.text
    reply = platform.http.post("/v1/features", json={
        "entities": {"customer_id": [101, 999], "amount": [50.0, 50.0], "hour": [3, 3]},
        "features": ["customer_profile:account_age_days", "customer_velocity:txn_count_1h",
                     "transaction_risk:is_night"]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["features"] == ["account_age_days", "txn_count_1h", "is_night"]
    assert body["values"][0] == [profile[0]["account_age_days"], None]
    assert body["statuses"][0] == ["PRESENT", "NOT_FOUND"]
    assert body["statuses"][1] == ["NOT_FOUND", "NOT_FOUND"]
    unknown = platform.http.post("/v1/features", json={"entities": {"customer_id": [1]},
                                                       "features": ["nope:x"]})
    assert unknown.status_code == 404, unknown.text
    wrong_key = platform.http.post("/v1/features", json={"entities": {"customer_id": ["a"]},
                                                         "features": ["customer_profile:*"]})
    assert wrong_key.status_code == 400 and "customer_id" in wrong_key.text

    model = f"fe{int(time.time() * 1000) % 10**8}"
    register_model(platform.client, model, platform.tmp, seed=3)
    platform.client.registry.update_model(model, feature_service="fraud_model_v1")
    platform.deploy(model, 1)
    wait_for(lambda: platform.http.post("/v1/predict", json={
        "modelName": model, "entityKey": {"customer_id": 101},
        "features": {"amount": 120.0, "hour": 3}}).status_code == 200, timeout=10,
        interval=0.3)
    by_key = platform.http.post("/v1/predict", json={
        "modelName": model, "entityKey": {"customer_id": 101},
        "features": {"amount": 120.0, "hour": 3}}).json()
    full = {**{k: v for k, v in last[0].items() if k not in ("customer_id", "event_timestamp")},
            **{k: v for k, v in profile[0].items()
               if k not in ("customer_id", "event_timestamp")},
            "amount": 120.0, "hour": 3, "txn_count_1h": None, "txn_count_24h": None}
    explicit = platform.http.post("/v1/predict", json={"modelName": model,
                                                       "features": full}).json()
    assert set(full) == {*FRAUD_NUMERIC, *FRAUD_CATEGORICAL}
    assert np.isclose(by_key["probabilities"][0], explicit["probabilities"][0], rtol=1e-6)
    missing_key = platform.http.post("/v1/predict", json={
        "modelName": model, "features": {"amount": 1.0, "hour": 1}})
    assert missing_key.status_code == 400 and "customer_id" in missing_key.text


def test_stream_processor_killed_mid_burst_counts_every_event_once(
        platform: Platform, features: FeatureRepo) -> None:
    import ray

    from actors.stream import processor_name

    client = platform.client.features
    client.start_streams(["customer_velocity"])
    customers = list(range(5000, 5100))
    rng = np.random.default_rng(5)
    picks = rng.choice(customers, size=100_000)
    start = NOW - dt.timedelta(minutes=30)
    offsets = np.sort(rng.uniform(0, 25 * 60, size=picks.size))
    events = [{"customer_id": int(c), "event_timestamp": start + dt.timedelta(seconds=float(s)),
               "created_at": start + dt.timedelta(seconds=float(s)), "event_id": f"e{i}"}
              for i, (c, s) in enumerate(zip(picks, offsets, strict=True))]
    for lo in range(0, len(events), 10_000):
        client.publish("customer_velocity", events[lo:lo + 10_000])
    client.publish("customer_velocity", events[:2000])  # redelivered duplicates
    platform_redis = __import__("redis").Redis.from_url(platform.config.stream_url)
    stream = f"{platform.config.redis_prefix}:transactions"
    platform_redis.xadd(stream, {"event": b"{not json"})  # a poison message

    def handled() -> int:
        try:
            return int(client.stream_stats("customer_velocity")["acked"])
        except Exception:
            return 0

    wait_for(lambda: handled() > 20_000, timeout=120, interval=0.2)
    actor = ray.get_actor(processor_name(platform.project, "customer_velocity"),
                          namespace=platform.config.namespace)
    ray.kill(actor, no_restart=False)  # dies mid-burst; Ray restarts it

    def drained() -> bool:
        try:
            stats = client.stream_stats("customer_velocity")
        except Exception:
            return False
        lag = platform_redis.xinfo_groups(stream)[0].get("lag")
        return stats["pending"] == 0 and lag == 0

    wait_for(drained, timeout=300, interval=1.0)
    expected = Counter(int(c) for c in picks)
    got = client.get_online_features({"customer_id": customers},
                                     ["customer_velocity:txn_count_24h"])
    counts = dict(zip(customers, got.column("txn_count_24h").to_pylist(), strict=True))
    assert counts == {c: expected[c] for c in customers}
    dead = platform_redis.xrange(f"{stream}:dead")
    assert len(dead) == 1 and b"dead_error" in dead[0][1]


def test_cli_apply_list_show_materialize(platform: Platform, features: FeatureRepo,
                                         tmp_path: Path) -> None:
    import json

    # The shipped definitions, with their data beside them (sources resolve against the
    # YAML file: configs/features/../../data), applied from another directory.
    copy = tmp_path / "checkout" / "configs" / "features"
    shutil.copytree(ROOT / "configs" / "features", copy)
    write_fraud(tmp_path / "checkout" / "data" / "fraud.parquet", 200, seed=1)
    platform.client.features.allow_sources([str(tmp_path / "checkout" / "data")])
    out = platform.cli("features", "apply", str(copy), "--dry-run", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout[out.stdout.index("{"):])["applied"] is False
    listed = platform.cli("features", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert {v["name"] for v in json.loads(listed.stdout[listed.stdout.index("{"):])[
        "feature_views"]} >= {"customer_profile", "customer_velocity"}
    shown = platform.cli("features", "show", "customer", "--json")
    assert json.loads(shown.stdout[shown.stdout.index("{"):])["kind"] == "entities"
    missing = platform.cli("features", "show", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr

    _, profile = _customer_rows([201, 202, 203])
    platform.client.features.push("customer_profile", profile, to="offline")
    end = (NOW + dt.timedelta(seconds=1)).isoformat()
    run = platform.cli("features", "materialize", "--view", "customer_profile", "--end", end,
                       "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout[run.stdout.index("["):])[0]["rows"] >= 3
    again = platform.cli("features", "materialize", "--view", "customer_profile",
                         "--incremental", "--end", end, "--json")
    assert json.loads(again.stdout[again.stdout.index("["):])[0]["rows"] == 0
    naive = platform.cli("features", "materialize", "--end", "2026-01-01T00:00:00")
    assert naive.returncode == 2 and "time zone" in naive.stderr
    got = platform.client.features.get_online_features({"customer_id": [201, 202, 203]},
                                                       ["customer_profile:account_age_days"])
    assert got.column("account_age_days").to_pylist() == [r["account_age_days"]
                                                          for r in profile]


def test_historical_job_joins_a_ray_dataset_of_entity_rows(platform: Platform,
                                                           features: FeatureRepo,
                                                           tmp_path: Path) -> None:
    """`python -m jobs.historical` on the platform's cluster: entity rows read with Ray Data,
    joined as of their times, written as Parquet; the client gives the same rows."""
    import os
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    _, profile = _customer_rows([301, 302])
    platform.client.features.push("customer_profile", profile, to="offline")
    later = NOW + dt.timedelta(minutes=1)
    entities = pa.table({"customer_id": [301, 302, 303], "row": [0, 1, 2],
                         "event_timestamp": pa.array([later, later, later],
                                                     pa.timestamp("us", "UTC"))})
    pq.write_table(entities, tmp_path / "entities.parquet")
    env = {**os.environ, **platform.env,
           "MLRAY_RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    done = subprocess.run(
        [sys.executable, "-m", "jobs.historical", "--entities", str(tmp_path / "entities.parquet"),
         "--features", "customer_profile:account_age_days", "--output", str(tmp_path / "out"),
         "--partitions", "2"], env=env, capture_output=True, text=True, timeout=300,
        check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 3 rows" in done.stdout
    got = pq.read_table(tmp_path / "out").sort_by("row")
    assert got["account_age_days"].to_pylist() == [profile[0]["account_age_days"],
                                                   profile[1]["account_age_days"], None]
    in_memory = platform.client.features.get_historical_features(
        entities, ["customer_profile:account_age_days"])
    assert in_memory["account_age_days"].to_pylist() == got["account_age_days"].to_pylist()
    bad = subprocess.run([sys.executable, "-m", "jobs.historical", "--entities",
                          str(tmp_path / "entities.parquet"), "--features", "nope:x",
                          "--output", str(tmp_path / "bad")], env=env, capture_output=True,
                         text=True, timeout=300, check=False, cwd=ROOT)
    assert bad.returncode == 2 and "nope" in bad.stderr
