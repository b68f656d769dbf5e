"""The experiment tracker: plain rules over a state store (the actor is a shell around it)."""

from mlray.tracking.service import ExperimentTracker
from mlray.tracking.types import Experiment, MetricPoint, Run, RunPage, RunStatus

__all__ = ["Experiment", "ExperimentTracker", "MetricPoint", "Run", "RunPage", "RunStatus"]
