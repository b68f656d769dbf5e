"""The feature-store steps of the demo: definitions, history, training set, streams."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import mlray
from mlray.features.repo import FeatureRepo, load_repo

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "fraud_model_v1"
ENTITY_COLUMNS = ["transaction_id", "customer_id", "event_timestamp", "amount", "hour",
                  "is_fraud"]


def definitions(data: Path, redis_prefix: str) -> FeatureRepo:
    """``configs/features`` with the Parquet sources pointed at the generated data and the
    streams renamed under ``redis_prefix`` (``<prefix>:transactions``), so that every key
    the demo writes to a shared Redis starts with its own prefix."""
    repo = load_repo(ROOT / "configs" / "features").model_dump(mode="json")
    for view in repo["feature_views"]:
        if view["source"]["type"] == "parquet":
            view["source"]["path"] = str(data)
        if view["source"]["type"] == "stream":
            name = view["source"]["stream"].rsplit(":", 1)[-1]
            view["source"]["stream"] = f"{redis_prefix}:{name}"
    return FeatureRepo.model_validate(repo)


def remove_redis_keys(url: str, prefix: str) -> int:
    """Delete the keys under ``<prefix>:`` (the demo's own, nothing else); how many."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return len(keys)
    finally:
        client.close()


def prepare_features(client: mlray.Client, data: Path) -> tuple[Path, list[str]]:
    """Apply the definitions, record the velocity history offline (as the stream processor
    would have), and write the entity rows training joins features onto.

    Returns:
        The entity rows' path and the lines of the apply diff.
    """
    # The example data sits outside the project's storage root: an admin allows it first.
    client.features.allow_sources([str(data.parent.absolute())])
    result = client.features.apply(definitions(data, client.config.redis_prefix))
    frame = pq.read_table(data).to_pandas()
    history = frame[["customer_id", "event_timestamp", "txn_count_1h", "txn_count_24h"]]
    client.features.push("customer_velocity",
                         history.assign(created_at=history["event_timestamp"]), to="offline")
    entities = data.with_name("transactions.parquet")
    pq.write_table(pa.Table.from_pandas(frame[ENTITY_COLUMNS], preserve_index=False), entities)
    return entities, [*result.added, *result.changed, *result.removed]


def stream_new_transactions(client: mlray.Client, customers: list[int], per_customer: int
                            ) -> dict[int, int] | None:
    """Publish fresh transactions to the velocity stream and wait for the windowed counts.

    Returns the customers' ``txn_count_1h`` once the processor caught up, or None when
    the platform has no stream Redis (``stream_url``).
    """
    if not client.config.stream_url:
        return None
    client.features.start_streams(["customer_velocity"])
    now = dt.datetime.now(dt.UTC)
    rng = np.random.default_rng(3)
    minutes = np.sort(rng.uniform(0, 50, size=(len(customers), per_customer)))[:, ::-1]
    events = [{"customer_id": c, "event_id": f"demo-{now.timestamp():.0f}-{c}-{i}",
               "event_timestamp": now - dt.timedelta(minutes=float(minutes[j, i])),
               "created_at": now}
              for j, c in enumerate(customers) for i in range(per_customer)]
    client.features.publish("customer_velocity", events)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = client.features.get_online_features({"customer_id": customers},
                                                    ["customer_velocity:txn_count_1h"])
        counts = found.column("txn_count_1h").to_pylist()
        if all(c is not None and c >= per_customer for c in counts):
            return dict(zip(customers, counts, strict=True))
        time.sleep(0.5)
    return dict(zip(customers, counts, strict=True))


def latest_transactions(data: Path, customers: list[int]) -> pd.DataFrame:
    """Each customer's latest transaction in the data (the request-time values)."""
    frame = pq.read_table(data).to_pandas()
    picked = frame[frame["customer_id"].isin(customers)]
    return picked.sort_values("event_timestamp").groupby("customer_id").tail(1)


def request_body(model: str, row: Any) -> dict[str, Any]:
    """``/v1/predict`` by entity key, with the transaction's request-time values."""
    return {"modelName": model, "entityKey": {"customer_id": int(row.customer_id)},
            "features": {"amount": float(row.amount), "hour": int(row.hour)}}
