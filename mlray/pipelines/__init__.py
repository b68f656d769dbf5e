"""Pipelines: stage DAGs run as Ray tasks, with durable state, caching, triggers and
approvals (the ``pipelines`` actor's logic; see :mod:`mlray.pipelines.service`)."""

from mlray.pipelines.definitions import (
    Approval,
    Parameter,
    PipelineSpec,
    Retry,
    StageSpec,
    load_pipelines,
)
from mlray.pipelines.stage import StageContext
from mlray.pipelines.state import PipelineRun, RunState, StageRun, StageState

__all__ = ["Approval", "Parameter", "PipelineRun", "PipelineSpec", "Retry", "RunState",
           "StageContext", "StageRun", "StageSpec", "StageState", "load_pipelines"]
