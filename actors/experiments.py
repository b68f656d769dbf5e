"""The ``experiments`` actor: a thin shell over :class:`mlray.tracking.ExperimentTracker`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor, open_stores
from mlray.config import PlatformConfig
from mlray.tracking.service import ExperimentTracker

__all__ = ["ExperimentsActor"]


@ray.remote
class ExperimentsActor(ServiceActor):
    """Owns experiments, runs, params, metrics and run artifacts."""

    NAME = "experiments"
    API = frozenset({
        "create_experiment", "get_experiment", "list_experiments", "start_run", "get_run",
        "log_params", "set_tags", "log_metrics", "log_metric", "metric_history",
        "log_artifact", "end_run", "search_runs", "compare_runs",
    })

    def build(self, config: PlatformConfig) -> ExperimentTracker:
        store, artifacts = open_stores(config)
        return ExperimentTracker(store, artifacts)
