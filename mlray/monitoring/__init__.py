"""Monitoring: training baselines (drift detection and alerts build on them)."""

from mlray.monitoring.baseline import Baseline, CategoricalProfile, NumericProfile, profile_frame

__all__ = ["Baseline", "CategoricalProfile", "NumericProfile", "profile_frame"]
