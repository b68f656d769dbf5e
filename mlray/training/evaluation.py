"""Evaluation metrics on a held-out split, in plain numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["classification_metrics", "regression_metrics", "roc_auc"]

_EPS = 1e-12


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get average ranks).

    Returns NaN when only one class is present.
    """
    y = np.asarray(y_true).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(score, dtype=float)).rank(method="average").to_numpy()
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(y_true: np.ndarray, prob: np.ndarray,
                           threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1, ROC AUC and log loss of probabilities ``prob``."""
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(prob, dtype=float), _EPS, 1 - _EPS)
    pred = (p >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float((pred == y).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y, p),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
    }


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R²."""
    y = np.asarray(y_true, dtype=float)
    err = np.asarray(pred, dtype=float) - y
    total = float(((y - y.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float((err ** 2).sum()) / total if total > 0 else 0.0,
    }
