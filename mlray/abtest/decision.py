"""The verdict of an experiment: winner, no difference, keep running, or invalid, and why.

Rules, in order:

1. A breached guardrail ends the test: control wins (roll back), naming the guardrails.
2. A sample-ratio mismatch makes the numbers untrustworthy: ``invalid`` (fix assignment
   or logging, then restart), whatever the metrics say.
3. The metrics' p-values are corrected together (Holm by default); the primary metric's
   corrected p-value decides.
4. Fixed horizon: before both arms reach the planned size, ``keep_running`` (the p-value
   is not read early). At the planned size: significant -> the better arm wins (the
   treatment if the primary moved the good way, else control); not significant ->
   ``no_difference``.
5. Sequential: significant at any look -> the better arm wins; otherwise ``no_difference``
   once both arms reach the maximum size (if one is set), else ``keep_running``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mlray._private.validation import build
from mlray.abtest.arms import Alpha, ComparisonResult
from mlray.abtest.multiple import Correction, adjust_p_values
from mlray.abtest.srm import SrmResult

__all__ = ["Decision", "DecisionInput", "Guardrail", "Outcome", "decide"]

Outcome = Literal["winner", "no_difference", "keep_running", "invalid"]


class Guardrail(BaseModel):
    """A metric that must not get worse (error ratio, p99 latency, live accuracy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    breached: bool
    detail: str = Field("", description="What was seen against what is allowed.")


class DecisionInput(BaseModel):
    """Everything the verdict depends on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    design: Literal["fixed", "sequential"]
    alpha: Alpha = 0.05
    control: str = Field("control", min_length=1, description="The control arm's name.")
    treatment: str = Field("treatment", min_length=1,
                           description="The treatment arm's name.")
    results: dict[str, ComparisonResult] = Field(
        description="Metric -> treatment vs control (the primary included).")
    primary: str = Field(min_length=1, description="The metric that decides.")
    higher_is_better: bool = Field(True, description="For the primary metric (False for "
                                                     "a cost such as loss amount).")
    correction: Correction = "holm"
    sample_size: int | None = Field(
        None, ge=2, validate_default=True,
        description="Per arm: the planned size (fixed, required) or the maximum after which "
                    "a sequential test stops (optional).")
    guardrails: list[Guardrail] = Field(default_factory=list)
    srm: SrmResult | None = None

    @field_validator("treatment")
    @classmethod
    def _two_arms(cls, treatment: str, info: ValidationInfo) -> str:
        if treatment == info.data.get("control"):
            raise ValueError(f"the treatment is the control arm ({treatment!r})")
        return treatment

    @field_validator("primary")
    @classmethod
    def _has_result(cls, primary: str, info: ValidationInfo) -> str:
        results = info.data.get("results")
        if results is not None and primary not in results:
            raise ValueError(f"metric {primary!r} has no result (results: {sorted(results)})")
        return primary

    @field_validator("sample_size")
    @classmethod
    def _planned(cls, size: int | None, info: ValidationInfo) -> int | None:
        if size is None and info.data.get("design") == "fixed":
            raise ValueError("a fixed-horizon test needs its planned size per arm")
        return size


class Decision(BaseModel):
    """The verdict, the arm to keep (when there is one) and the reason in one sentence."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    winner: str | None = Field(description="The arm to keep; None unless outcome is winner.")
    reason: str
    p_value: float | None = Field(description="The primary metric's corrected p-value.")
    adjusted: dict[str, float] = Field(default_factory=dict,
                                       description="Every metric's corrected p-value.")


def _effect(r: ComparisonResult) -> str:
    ci = f" [{r.diff_ci.low:.4g}, {r.diff_ci.high:.4g}]" if r.diff_ci else ""
    lift = f" ({r.lift:+.2%})" if r.lift is not None else ""
    return f"diff {r.diff:+.4g}{lift}{ci}"


def decide(**fields: object) -> Decision:
    """The verdict for the fields of :class:`DecisionInput` (see the module docstring).

    Raises:
        InvalidInput: a field is missing or malformed (named), the primary has no result,
            a fixed design without its sample size.
    """
    spec = build(DecisionInput, **fields)
    breached = [g for g in spec.guardrails if g.breached]
    if breached:
        names = ", ".join(f"{g.name}" + (f" ({g.detail})" if g.detail else "")
                          for g in breached)
        return Decision(outcome="winner", winner=spec.control, p_value=None,
                        reason=f"guardrail breached: {names}; keep {spec.control}")
    if spec.srm is not None and spec.srm.flagged:
        return Decision(outcome="invalid", winner=None, p_value=None,
                        reason=f"sample ratio mismatch (p={spec.srm.p_value:.2g} < "
                               f"{spec.srm.threshold:g}): assignment or logging is broken; "
                               "fix it and restart the test")
    corrected = adjust_p_values({m: r.p_value for m, r in spec.results.items()},
                                method=spec.correction, alpha=spec.alpha)
    p = corrected.adjusted[spec.primary]
    primary = spec.results[spec.primary]
    n = min(primary.n_control, primary.n_treatment)
    reached = spec.sample_size is not None and n >= spec.sample_size
    what = f"{spec.primary}: {_effect(primary)}, p={p:.3g}"
    if len(spec.results) > 1 and spec.correction != "none":
        what += f" ({spec.correction}-corrected over {len(spec.results)} metrics)"
    base = {"p_value": p, "adjusted": corrected.adjusted}
    if spec.design == "fixed" and not reached:
        return Decision(outcome="keep_running", winner=None, **base,
                        reason=f"{n} of {spec.sample_size} planned units per arm; a "
                               "fixed-horizon test is read at its planned size")
    if p <= spec.alpha:
        better = (primary.diff > 0) == spec.higher_is_better
        winner = spec.treatment if better else spec.control
        return Decision(outcome="winner", winner=winner, **base,
                        reason=f"{what} <= alpha {spec.alpha:g}: {winner} is better")
    if reached:
        return Decision(outcome="no_difference", winner=None, **base,
                        reason=f"{what} > alpha {spec.alpha:g} at {n} units per arm: "
                               "no difference detected")
    return Decision(outcome="keep_running", winner=None, **base,
                    reason=f"{what} > alpha {spec.alpha:g}: no evidence yet")
