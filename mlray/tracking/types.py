"""Tracker objects: experiments, runs, metric points, run artifacts and comparisons."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from mlray._private.types import FiniteFloat, Name, ParamValue, Tags

__all__ = [
    "Experiment",
    "MetricPoint",
    "MetricValue",
    "Run",
    "RunArtifact",
    "RunComparison",
    "RunPage",
    "RunStatus",
]


class RunStatus(enum.StrEnum):
    """A run's lifecycle; every status but RUNNING is final."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Experiment(BaseModel):
    """A named group of runs in a project."""

    name: Name
    project: str
    description: str = Field("", max_length=5000)
    tags: Tags = Field(default_factory=dict)
    created_at: float
    created_by: str


class MetricPoint(BaseModel):
    """One logged value of a metric at a step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=250, pattern=r"^[\w./ -]+$")
    value: FiniteFloat
    step: int = Field(0, ge=0)
    timestamp: float | None = Field(None, description="Seconds since the epoch; None = now.")


class MetricValue(BaseModel):
    """The latest value of a metric on a run (highest step, then latest timestamp)."""

    value: float
    step: int
    timestamp: float


class RunArtifact(BaseModel):
    """A file or directory attached to a run."""

    path: str = Field(min_length=1, max_length=1024, description="Name within the run.")
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Run(BaseModel):
    """One execution: its params, latest metrics, tags, artifacts and status."""

    run_id: str
    project: str
    experiment: str
    name: str
    status: RunStatus = RunStatus.RUNNING
    user: str
    start_time: float
    end_time: float | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    tags: Tags = Field(default_factory=dict)
    artifacts: list[RunArtifact] = Field(default_factory=list)
    error: str | None = None
    metric_batches: int = Field(0, description="How many metric batches are stored.")


class RunPage(BaseModel):
    """One page of search results."""

    runs: list[Run]
    total: int
    next_offset: int | None


class RunComparison(BaseModel):
    """Runs side by side: each param and metric as one value per run (None = absent)."""

    run_ids: list[str]
    params: dict[str, list[ParamValue | None]]
    metrics: dict[str, list[float | None]]
    differing_params: list[str]
