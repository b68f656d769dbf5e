"""Run and stage states, the transitions allowed between them, and the run record.

A run is one stored document holding its stages' states; every change is written before
anyone is told of it (see :class:`mlray.pipelines.runs.RunBook`).
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, Field

from mlray.errors import InvalidTransition
from mlray.pipelines.definitions import PipelineSpec
from mlray.storage.artifacts import ArtifactRef

__all__ = ["ACTIVE", "DONE_OK", "PipelineRun", "RunState", "StageRun", "StageState",
           "check_transition"]


class StageState(enum.StrEnum):
    """Where one stage of a run is."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CACHED = "CACHED"
    CANCELLED = "CANCELLED"
    WAITING_APPROVAL = "WAITING_APPROVAL"


class RunState(enum.StrEnum):
    """Where a run is: it is RUNNING while any stage can still move."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


#: Stage states whose output (if any) downstream stages may use.
DONE_OK = frozenset({StageState.SUCCEEDED, StageState.CACHED})
#: Run states in which a run still moves (a trigger for its pipeline is coalesced).
ACTIVE = frozenset({RunState.PENDING, RunState.RUNNING, RunState.WAITING_APPROVAL})

_S = StageState
_STAGE_MOVES: dict[StageState, frozenset[StageState]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.CACHED, _S.SKIPPED, _S.CANCELLED,
                           _S.WAITING_APPROVAL}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.PENDING}),
    _S.WAITING_APPROVAL: frozenset({_S.SUCCEEDED, _S.FAILED, _S.SKIPPED, _S.CANCELLED}),
    _S.FAILED: frozenset({_S.PENDING}),  # resume
    _S.CANCELLED: frozenset({_S.PENDING}),  # resume
    _S.SUCCEEDED: frozenset(),
    _S.CACHED: frozenset(),
    _S.SKIPPED: frozenset({_S.PENDING}),  # resume after a failure upstream skipped it
}


def check_transition(stage: str, old: StageState, new: StageState) -> None:
    """Raise :class:`InvalidTransition` unless a stage may move from ``old`` to ``new``."""
    if new not in _STAGE_MOVES[old]:
        raise InvalidTransition(f"stage {stage!r} cannot go from {old} to {new}",
                                field="state")


class StageRun(BaseModel):
    """One stage of one run."""

    name: str
    state: StageState = StageState.PENDING
    attempt: int = Field(0, description="Tries started so far.")
    started_at: float | None = None
    first_started_at: float | None = Field(
        None, description="When this run first started the stage (kept by resume): what "
                          "the stage started in the world since then is this run's.")
    finished_at: float | None = None
    not_before: float | None = Field(None, description="Retry backoff: not before this.")
    deadline: float | None = Field(None, description="Approval timeout.")
    cache_key: str | None = None
    output: ArtifactRef | None = None
    message: str = ""
    approved_by: str | None = None

    def move(self, new: StageState, message: str | None = None) -> None:
        """Change state (checked); ``message`` replaces the last one when given."""
        check_transition(self.name, self.state, new)
        self.state = new
        if message is not None:
            self.message = message


class PipelineRun(BaseModel):
    """One run of a pipeline: a snapshot of its definition, parameters and stages."""

    run_id: str
    project: str
    pipeline: str
    spec: PipelineSpec
    params: dict[str, Any]
    state: RunState = RunState.PENDING
    trigger: str = "manual"
    created_by: str
    roles: dict[str, int] = Field(default_factory=dict,
                                  description="The requester's roles, for stage tokens.")
    created_at: float
    finished_at: float | None = None
    coalesced: int = Field(0, description="Triggers folded into this run while it ran.")
    cancel_requested: bool = False
    message: str = ""
    stages: dict[str, StageRun]
    code_versions: dict[str, str] = Field(default_factory=dict,
                                          description="Stage -> code version (cache key).")

    @property
    def active(self) -> bool:
        """True while the run can still move."""
        return self.state in ACTIVE

    def summary(self) -> dict[str, str]:
        """Stage name -> state, in definition order."""
        return {name: str(stage.state) for name, stage in self.stages.items()}
