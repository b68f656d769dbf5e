"""On-demand feature functions used by ``configs/features/fraud.yaml``."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["transaction_risk"]


def transaction_risk(frame: pd.DataFrame) -> pd.DataFrame:
    """How unusual a transaction is for its customer: amount against the 7-day average,
    and whether it happens at night (23:00-04:59)."""
    avg = frame["customer_profile__amount_avg_7d"].astype("float64")
    amount = frame["amount"].astype("float64")
    ratio = amount / avg.where(avg > 0)
    hour = frame["hour"]
    night = (hour <= 4) | (hour >= 23)
    return pd.DataFrame({"amount_ratio": ratio.astype("float64"),
                         "is_night": night.astype("bool"),
                         "log_amount": np.log1p(amount.clip(lower=0))})
