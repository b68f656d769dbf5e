"""What a project may hold and how fast it may call: the quota documents and their shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["COUNTED", "GUARDS", "QUOTAS", "Counted", "Grant", "QuotaLimits", "UsageReport"]

#: ``quotas/<project>``: the project's :class:`QuotaLimits` (absent: unlimited).
QUOTAS = "quotas"
#: ``quota_guards/<project>/<quota>``: bumped by every create that a quota admits, so two
#: concurrent creates cannot both take the last slot (compare-and-set on it).
GUARDS = "quota_guards"

Counted = Literal["models", "versions", "deployments", "replicas", "storage_bytes"]
COUNTED: tuple[Counted, ...] = ("models", "versions", "deployments", "replicas",
                                "storage_bytes")


class QuotaLimits(BaseModel):
    """A project's quotas; None means unlimited (the default for every field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: int | None = Field(None, ge=0, description="Registered models.")
    versions: int | None = Field(None, ge=0, description="Model versions, all models together.")
    deployments: int | None = Field(
        None, ge=0, description="Model versions deployed on Serve at once.")
    replicas: int | None = Field(
        None, ge=0, description="Model replicas at once (an autoscaled version counts its "
                                "max_replicas).")
    storage_bytes: int | None = Field(
        None, ge=0, description="Bytes of artifacts attached to versions and runs.")
    requests_per_s: float | None = Field(
        None, gt=0, le=1_000_000, description="HTTP requests per second, across every ingress "
                                              "replica together.")

    def limit(self, quota: str) -> float | None:
        """The limit called ``quota`` (None: unlimited)."""
        value: float | None = getattr(self, quota)
        return value


class Grant(BaseModel):
    """Request tokens one ingress replica may spend until ``expires_in_s`` from now."""

    model_config = ConfigDict(frozen=True)

    tokens: int = Field(ge=0)
    retry_after_s: float = Field(0.0, ge=0, description="When the budget has some again.")
    expires_in_s: float = Field(gt=0)


class UsageReport(BaseModel):
    """What a project used: since a time for what accrues, now for what it holds."""

    project: str
    since: float = Field(description="Unix time the accruing figures start from.")
    requests: int = 0
    requests_refused: int = Field(0, description="Requests refused (429) by the rate quota.")
    replica_seconds: float = 0.0
    job_cpu_seconds: float = 0.0
    job_gpu_seconds: float = 0.0
    storage_bytes: int = 0
    in_use: dict[str, float] = Field(
        default_factory=dict, description="What each count quota counts, now (replicas as "
                                          "of the deployments actor's last pass).")
    limits: QuotaLimits = QuotaLimits()
