"""A fraud-detection-like transactions dataset with a real, learnable signal.

Each row is a card transaction of a customer (the entity) at an event time, with
amount, merchant category, device, country, hour of day and velocity-style
features. The label ``is_fraud`` is drawn from a logistic model of those features,
so about 3% of rows are fraud and a model can learn it. ``drift`` shifts the
distributions (larger amounts, more foreign and mobile-web traffic, a changed
merchant mix) to exercise drift detection. Same arguments, same rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlray.errors import InvalidInput

__all__ = ["FRAUD_CATEGORICAL", "FRAUD_NUMERIC", "example_transactions", "generate_fraud",
           "write_fraud"]

FRAUD_NUMERIC = ["amount", "hour", "txn_count_1h", "txn_count_24h", "amount_avg_7d",
                 "distance_from_home_km", "account_age_days"]
FRAUD_CATEGORICAL = ["merchant_category", "device", "country"]

_MERCHANTS = ["grocery", "fuel", "restaurant", "electronics", "travel", "gaming", "fashion",
              "pharmacy"]
_MERCHANT_RISK = np.array([-0.6, -0.3, -0.4, 0.9, 0.7, 1.1, 0.2, -0.5])
_DEVICES = ["mobile_app", "web_desktop", "mobile_web", "pos_terminal"]
_DEVICE_RISK = np.array([-0.2, 0.1, 0.8, -0.9])
_COUNTRIES = ["US", "GB", "DE", "FR", "BR", "NG", "IN"]
_COUNTRY_RISK = np.array([-0.3, -0.2, -0.2, -0.1, 0.5, 1.0, 0.4])


def generate_fraud(rows: int = 20_000, *, seed: int = 0, customers: int | None = None,
                   drift: float = 0.0, start: dt.datetime | None = None,
                   days: float = 30.0) -> pd.DataFrame:
    """Generate ``rows`` transactions.

    Args:
        rows: number of transactions.
        seed: the random seed; equal seeds give equal frames.
        customers: distinct customer ids (default rows // 20).
        drift: 0 for the training distribution; up to 1 for strongly shifted data.
        start: time of the first possible event (default 2026-01-01 UTC).
        days: the span events are spread over.
    """
    if rows < 1:
        raise InvalidInput("rows must be at least 1", field="rows")
    if not 0.0 <= drift <= 1.0:
        raise InvalidInput("drift must be between 0 and 1", field="drift")
    rng = np.random.default_rng(seed)
    customers = customers or max(rows // 20, 1)
    start = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    customer = rng.integers(0, customers, rows)
    offsets = np.sort(rng.uniform(0, days * 86_400, rows))
    ts = pd.to_datetime(start) + pd.to_timedelta(offsets, unit="s")

    merchant_p = np.full(len(_MERCHANTS), 1 / len(_MERCHANTS))
    merchant_p = (1 - drift) * merchant_p + drift * np.array([.05, .05, .1, .3, .2, .2, .05, .05])
    merchant = rng.choice(len(_MERCHANTS), rows, p=merchant_p)
    device_p = (1 - drift) * np.array([.45, .25, .1, .2]) + drift * np.array([.3, .2, .4, .1])
    device = rng.choice(len(_DEVICES), rows, p=device_p)
    country_p = (1 - drift) * np.array([.5, .12, .1, .1, .08, .04, .06]) + drift * np.array(
        [.3, .1, .1, .1, .15, .1, .15])
    country = rng.choice(len(_COUNTRIES), rows, p=country_p)

    amount = np.round(rng.lognormal(3.4 + 0.6 * drift, 1.0, rows), 2)
    hour = ((ts.hour.to_numpy() + rng.integers(-1, 2, rows)) % 24).astype(np.int64)
    txn_1h = rng.poisson(0.6 + 1.5 * drift, rows).astype(np.int64)
    txn_24h = txn_1h + rng.poisson(4.0, rows).astype(np.int64)
    avg_7d = np.round(np.exp(rng.normal(3.4, 0.5, rows)), 2)
    distance = np.round(rng.exponential(15.0 * (1 + 2 * drift), rows), 1)
    age = rng.integers(1, 3_650, rows).astype(np.int64)

    night = ((hour <= 4) | (hour >= 23)).astype(float)
    logit = (-4.8 + 0.9 * np.log1p(amount / np.maximum(avg_7d, 1.0)) + 0.55 * txn_1h
             + 0.012 * distance + 0.8 * night - 0.0004 * age + _MERCHANT_RISK[merchant]
             + _DEVICE_RISK[device] + _COUNTRY_RISK[country])
    label = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    return pd.DataFrame({
        "transaction_id": np.arange(rows, dtype=np.int64) + seed * 10_000_000,
        "customer_id": customer.astype(np.int64),
        "event_timestamp": ts,
        "amount": amount,
        "merchant_category": np.array(_MERCHANTS)[merchant],
        "device": np.array(_DEVICES)[device],
        "country": np.array(_COUNTRIES)[country],
        "hour": hour,
        "txn_count_1h": txn_1h,
        "txn_count_24h": txn_24h,
        "amount_avg_7d": avg_7d,
        "distance_from_home_km": distance,
        "account_age_days": age,
        "is_fraud": label,
    })


def write_fraud(path: str | Path, rows: int = 20_000, **kwargs: object) -> Path:
    """Generate the dataset and write it as one Parquet file; returns the path."""
    frame = generate_fraud(rows, **kwargs)  # type: ignore[arg-type]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)
    return out


def example_transactions() -> list[dict[str, object]]:
    """Two raw rows for trying a fraud model: a risky transaction, then an ordinary one."""
    return [
        {"amount": 980.0, "hour": 3, "txn_count_1h": 6, "txn_count_24h": 9,
         "amount_avg_7d": 25.0, "distance_from_home_km": 420.0, "account_age_days": 15,
         "merchant_category": "gaming", "device": "mobile_web", "country": "NG"},
        {"amount": 18.5, "hour": 12, "txn_count_1h": 0, "txn_count_24h": 3,
         "amount_avg_7d": 31.0, "distance_from_home_km": 2.0, "account_age_days": 2900,
         "merchant_category": "grocery", "device": "pos_terminal", "country": "US"},
    ]
