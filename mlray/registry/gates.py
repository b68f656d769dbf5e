"""Validation gates: what a version must show before it may serve in Production.

A gate is a metric threshold (min/max), a limit on regression against the current
Production version, or a bound on the p99 latency of a warm batch. Each is critical
(blocks promotion) or a warning (reported only).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["GateReport", "GateResult", "GateSpec", "evaluate_gates"]


class GateSpec(BaseModel):
    """One gate (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["threshold", "no_regression", "latency"]
    metric: str | None = None
    min: float | None = None
    max: float | None = None
    max_regression_pct: float | None = Field(None, ge=0)
    higher_is_better: bool = True
    p99_ms: float | None = Field(None, gt=0)
    batch_size: int = Field(256, ge=1, le=1_000_000)
    severity: Literal["critical", "warning"] = "critical"

    @model_validator(mode="after")
    def _shape(self) -> GateSpec:
        if self.kind == "threshold" and (not self.metric or (self.min is None and
                                                             self.max is None)):
            raise ValueError("a threshold gate needs metric and min and/or max")
        if self.kind == "no_regression" and (not self.metric or self.max_regression_pct is None):
            raise ValueError("a no_regression gate needs metric and max_regression_pct")
        if self.kind == "latency" and self.p99_ms is None:
            raise ValueError("a latency gate needs p99_ms")
        return self

    @property
    def name(self) -> str:
        """A readable name, e.g. ``roc_auc >= 0.8`` or ``p99 <= 50 ms``."""
        if self.kind == "latency":
            return f"p99 of a {self.batch_size}-row batch <= {self.p99_ms:g} ms"
        if self.kind == "no_regression":
            return f"{self.metric} regresses <= {self.max_regression_pct:g}% vs Production"
        bounds = [f">= {self.min:g}" if self.min is not None else "",
                  f"<= {self.max:g}" if self.max is not None else ""]
        return f"{self.metric} {' and '.join(b for b in bounds if b)}"


class GateResult(BaseModel):
    """How one gate went."""

    name: str
    severity: Literal["critical", "warning"]
    passed: bool
    observed: float | None
    message: str


class GateReport(BaseModel):
    """All gates of a version; ``passed`` is False when any critical gate failed.

    Only a report the platform computed counts for promotion: the registry fills
    ``computed_by`` itself (:data:`mlray.auth.tokens.PLATFORM_USER`) when it evaluates a
    version (:mod:`mlray.registry.validation`); a report without it never passes a gate.
    """

    passed: bool
    results: list[GateResult]
    evaluated_at: float = Field(default_factory=time.time)
    metrics: dict[str, float] = Field(default_factory=dict,
                                      description="What the evaluation measured.")
    computed_by: str | None = Field(None, description="Who computed it (the platform's user).")
    requested_by: str | None = Field(None, description="Who asked for the evaluation.")
    data_uri: str | None = Field(None, description="The labelled data it was evaluated on.")
    data_sha256: str | None = None

    @property
    def failed_critical(self) -> list[str]:
        """Names of the critical gates that failed."""
        return [r.name for r in self.results if not r.passed and r.severity == "critical"]


def _check(gate: GateSpec, metrics: dict[str, float], production: dict[str, float] | None,
           latency_p99_ms: float | None) -> GateResult:
    def result(passed: bool, observed: float | None, message: str) -> GateResult:
        return GateResult(name=gate.name, severity=gate.severity, passed=passed,
                          observed=observed, message=message)

    if gate.kind == "latency":
        if latency_p99_ms is None:
            return result(False, None, "latency was not measured")
        ok = latency_p99_ms <= (gate.p99_ms or 0)
        return result(ok, latency_p99_ms, f"p99 {latency_p99_ms:.2f} ms")
    assert gate.metric is not None
    value = metrics.get(gate.metric)
    if value is None:
        return result(False, None, f"metric {gate.metric!r} was not reported")
    if gate.kind == "threshold":
        ok = (gate.min is None or value >= gate.min) and (gate.max is None or value <= gate.max)
        return result(ok, value, f"{gate.metric} = {value:.4g}")
    reference = (production or {}).get(gate.metric)
    if reference is None:
        return result(True, value, "no Production version to compare against")
    change = (value - reference) if gate.higher_is_better else (reference - value)
    regression_pct = max(0.0, -change / abs(reference) * 100) if reference else 0.0
    ok = regression_pct <= (gate.max_regression_pct or 0.0)
    return result(ok, value, f"{gate.metric} {value:.4g} vs Production {reference:.4g} "
                             f"({regression_pct:.2f}% regression)")


def evaluate_gates(gates: list[GateSpec], metrics: dict[str, float],
                   production_metrics: dict[str, float] | None = None,
                   latency_p99_ms: float | None = None) -> GateReport:
    """Evaluate every gate; the report passes when no critical gate failed."""
    results = [_check(g, metrics, production_metrics, latency_p99_ms) for g in gates]
    passed = not any(not r.passed and r.severity == "critical" for r in results)
    return GateReport(passed=passed, results=results)
