"""What a rollout is, as stored, and the ports its controller talks to the world through
(so tests drive it without Ray): see :mod:`mlray.serving.rollout` for the state machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from mlray.identity import Caller
from mlray.registry.types import ModelVersion, TrafficPolicy
from mlray.serving.breaker_board import VersionStats
from mlray.serving.settings import ModelServing

__all__ = [
    "Deployer",
    "Event",
    "Hold",
    "RegistryPort",
    "Rollout",
    "RolloutStatus",
    "StatsPort",
    "Strategy",
]


class Strategy(enum.StrEnum):
    """How a new version takes traffic."""

    DIRECT = "direct"
    BLUE_GREEN = "blue-green"
    CANARY = "canary"
    SHADOW = "shadow"


class RolloutStatus(enum.StrEnum):
    """Where a rollout is."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class Event(BaseModel):
    """One line of a rollout's history."""

    ts: float
    message: str


class Rollout(BaseModel):
    """One rollout, as stored (collection ``rollouts``, key ``project/model/id``)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    project: str
    model: str
    version: int
    strategy: Strategy
    status: RolloutStatus = RolloutStatus.RUNNING
    phase: str = "deploy"
    step: int = -1
    step_started_at: float | None = None
    deploy_started_at: float | None = None
    previous: TrafficPolicy | None = Field(None, description="The policy before the rollout.")
    overrides: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    rollback_until: float | None = None
    old_apps_removed: bool = False
    created_by: str
    created_at: float
    updated_at: float
    history: list[Event] = Field(default_factory=list)

    @property
    def stable(self) -> list[int]:
        """Versions that answered before the rollout."""
        return self.previous.serving if self.previous else []

    @property
    def active(self) -> bool:
        """Still moving, or still within its rollback window with old apps kept."""
        return self.status is RolloutStatus.RUNNING or (
            self.status is RolloutStatus.SUCCEEDED and not self.old_apps_removed)


@dataclass(frozen=True)
class Hold:
    """Why a rollout keeps a version's app, and whether it must be running."""

    why: str
    run: bool


class Deployer(Protocol):
    """Starts and stops model apps."""

    def deploy(self, version: ModelVersion, serving: ModelServing, wait: bool) -> None: ...
    def status(self, project: str, model: str, version: int) -> tuple[str, str]: ...
    def smoke(self, project: str, model: str, version: int) -> None: ...
    def delete(self, project: str, model: str, version: int) -> None: ...
    def running(self, all_states: bool = False) -> frozenset[str]: ...


class RegistryPort(Protocol):
    """The registry calls a rollout makes (as the rollout's caller)."""

    def get_version(self, caller: Caller, project: str, model: str,
                    version: int) -> ModelVersion: ...
    def get_traffic(self, caller: Caller, project: str, model: str) -> TrafficPolicy: ...
    def set_traffic(self, caller: Caller, project: str, model: str,
                    policy: TrafficPolicy) -> TrafficPolicy: ...
    def restore_traffic(self, caller: Caller, project: str, model: str,
                        policy: TrafficPolicy) -> TrafficPolicy: ...


class StatsPort(Protocol):
    """Live outcome figures (the breakers actor)."""

    def stats(self, key: str, window_s: float = 60.0) -> VersionStats: ...
