"""The ``experiments`` actor: a thin shell over :class:`mlray.tracking.ExperimentTracker`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

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
