"""What an A/B experiment is: its definition (:class:`ExperimentSpec`, what the user set)
and its stored state (:class:`Experiment`: status, plan, totals, the latest evaluation).

Arms are versions of one model with traffic weights; the first arm is the control (the
version that serves today). Units are requests: each logged prediction is one unit of the
arm that answered it. Its outcome is the feedback label posted for that request id
(0/1 for a binary metric such as conversion, any number for a continuous one such as a
loss amount), or, for the :class:`ModelMetric` names, the answer checked against that
label: ``correct`` (the prediction agrees with the label) and ``caught`` (a positive the
model flagged, e.g. fraud caught). Only those differ between arms when the label does
not depend on the version that answered (is the transaction fraud?).
"""

from __future__ import annotations

import enum
import math
import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from mlray._private.types import Name
from mlray.abtest.analysis import CupedSummary, MetricResult, SecondaryMetric, parse_secondary
from mlray.abtest.arms import Alpha, ComparisonResult, MetricKind
from mlray.abtest.decision import Decision, Guardrail
from mlray.abtest.power import SampleSize
from mlray.abtest.sequential import SequentialState
from mlray.abtest.srm import SrmResult
from mlray.errors import InvalidInput

__all__ = ["ABTESTS", "ArmTotals", "Evaluation", "Experiment", "ExperimentSpec",
           "ExperimentStatus", "GuardrailSpec", "ModelMetric", "arm_name", "parse_arms",
           "parse_guardrail"]

#: The state store collection of experiments, keyed ``<project>/<model>/<id>``.
ABTESTS = "abtests"

ExperimentStatus = Literal["running", "promoted", "rolled_back", "stopped", "invalid"]
GuardrailMetric = Literal["error_ratio", "p99_ms", "accuracy"]
_GUARDRAIL = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


class ModelMetric(enum.StrEnum):
    """Binary metrics whose outcome is the answering model's, not the label itself (a
    prediction is a probability read at 0.5; the label is 0 or 1)."""

    #: 1 when the prediction agrees with the label (over the labelled requests).
    correct = "correct"
    #: 1 when a request labelled 1 got a score >= 0.5 (over the positives only).
    caught = "caught"


class GuardrailSpec(BaseModel):
    """A bound a treatment arm must keep: ``error_ratio<=0.05``, ``p99_ms<=250``,
    ``accuracy>=0.8`` (live accuracy of the predictions against the feedback)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: GuardrailMetric
    op: Literal["<=", ">="]
    threshold: float = Field(allow_inf_nan=False)

    def holds(self, value: float) -> bool:
        """Whether ``value`` keeps the bound."""
        return value <= self.threshold if self.op == "<=" else value >= self.threshold

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_guardrail(text: str) -> GuardrailSpec:
    """``error_ratio<=0.05`` -> :class:`GuardrailSpec`.

    Raises:
        InvalidInput: not ``metric<=x`` / ``metric>=x``, or an unknown metric.
    """
    m = _GUARDRAIL.match(text)
    if not m:
        raise InvalidInput(f"guardrail {text!r}: expected metric<=value or metric>=value "
                           "(e.g. error_ratio<=0.05)", field="guardrails")
    try:
        return GuardrailSpec(metric=m[1], op=m[2], threshold=float(m[3]))  # type: ignore[arg-type]
    except ValueError:
        raise InvalidInput(f"guardrail {text!r}: the metric is one of error_ratio, p99_ms, "
                           "accuracy, the value a number", field="guardrails") from None


def parse_arms(text: str) -> dict[int, float]:
    """``v1=50,v2=50`` (or ``1=50,2=50``) -> ``{1: 50.0, 2: 50.0}``, in the order given.

    Raises:
        InvalidInput: a malformed pair, a repeated version, a negative weight.
    """
    arms: dict[int, float] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        left, sep, right = pair.partition("=")
        try:
            version, weight = int(left.strip().lstrip("vV")), float(right)
        except ValueError:
            version = weight = None  # type: ignore[assignment]
        if not sep or version is None or weight is None:
            raise InvalidInput(f"arms: expected vN=WEIGHT pairs, got {pair!r}", field="arms")
        if version in arms:
            raise InvalidInput(f"arms: version {version} is named twice", field="arms")
        arms[version] = weight
    return arms


def arm_name(version: int) -> str:
    """How the statistics name a version's arm."""
    return f"v{version}"


class ExperimentSpec(BaseModel):
    """An experiment as the user defines it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Name
    arms: dict[int, float] = Field(description="Version -> traffic weight; the first is the "
                                               "control. Two arms, or more with a bandit.")
    metric: str = Field("conversion", min_length=1, max_length=64,
                        description="correct or caught: the model's answer checked "
                                    "against the feedback label (binary); any other name "
                                    "(conversion, loss_amount): the label itself.")
    kind: MetricKind = "binary"
    min_effect: float = Field(gt=0, allow_inf_nan=False,
                              description="Smallest absolute difference worth detecting.")
    alpha: Alpha = 0.05
    power: float = Field(0.8, gt=0, lt=1)
    sequential: bool = Field(False, description="mSPRT (read at any time) instead of a "
                                                "fixed horizon.")
    baseline: float | None = Field(None, description="Control's expected mean (binary: "
                                                     "rate; default 0.5, the largest size).")
    sd: float | None = Field(None, gt=0, description="The metric's standard deviation "
                                                     "(continuous; required).")
    higher_is_better: bool = True
    max_samples: int | None = Field(None, ge=2, description="Sequential: per arm, stop "
                                                            "with no difference past this.")
    guardrails: list[GuardrailSpec] = Field(default_factory=list)
    bandit: Literal["thompson", "epsilon"] | None = Field(
        None, description="Traffic follows the feedback (binary metrics); no auto-decision "
                          "but guardrails.")
    epsilon: float = Field(0.1, ge=0, le=1, description="Epsilon-greedy's exploration share.")
    control: int | None = Field(None, description="The control arm's version (default: the "
                                                  "first arm; stored, so order never matters).")
    secondary: list[SecondaryMetric] = Field(
        default_factory=list, max_length=20,
        description="Metrics reported beside the primary (``name`` or ``name:lower``), "
                    "their p-values corrected with the primary's; they never decide, a "
                    "significantly worse one is a warning.")
    correction: Literal["holm", "bh"] = Field(
        "holm", description="Multiplicity correction over all metrics: Holm (family-wise "
                            "error) or Benjamini-Hochberg (false discovery rate).")
    cuped: bool = Field(False, description="Adjust the primary with each unit's (routing "
                                           "key's) pre-period outcome; fixed horizon only.")

    @field_validator("secondary", mode="before")
    @classmethod
    def _parse_secondary(cls, value: object) -> object:
        if isinstance(value, str) or (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            try:
                return parse_secondary(value)  # type: ignore[arg-type]
            except InvalidInput as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("arms")
    @classmethod
    def _weights(cls, arms: dict[int, float]) -> dict[int, float]:
        if len(arms) < 2:
            raise ValueError(f"an experiment needs two arms or more, got {sorted(arms)}")
        for version, weight in arms.items():
            if version < 1:
                raise ValueError(f"{version} is not a version number")
            if not weight > 0:
                raise ValueError(f"arm v{version} has weight {weight}; every arm needs a "
                                 "positive weight")
        return arms

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        if self.control is None:
            object.__setattr__(self, "control", next(iter(self.arms)))
        elif self.control not in self.arms:
            raise ValueError(f"control: v{self.control} is not an arm ({sorted(self.arms)})")
        if self.bandit is None and len(self.arms) != 2:
            raise ValueError(f"arms: an A/B test has two arms (got {len(self.arms)}); use a "
                             "bandit for more")
        if self.metric in ModelMetric.__members__ and self.kind != "binary":
            raise ValueError(f"kind: the metric {self.metric!r} is binary (the model's "
                             f"answer right or not), got kind {self.kind!r}")
        if self.bandit is not None and self.kind != "binary":
            raise ValueError("kind: bandits need a binary metric")
        if self.kind == "continuous" and self.sd is None and not self.sequential:
            raise ValueError("sd: a continuous fixed-horizon test needs the metric's sd to "
                             "plan its size")
        if self.kind == "binary" and self.baseline is not None \
                and not 0 < self.baseline < 1:
            raise ValueError(f"baseline: a rate in (0, 1), got {self.baseline}")
        return self

    @model_validator(mode="after")
    def _analysis(self) -> ExperimentSpec:
        if any(m.name == self.metric for m in self.secondary):
            raise ValueError(f"secondary: {self.metric} is the primary metric")
        if self.bandit is not None and (self.secondary or self.cuped):
            raise ValueError("secondary, cuped: a bandit runs no test to correct or adjust")
        if self.cuped and self.sequential:
            raise ValueError("cuped: CUPED is analysed at a fixed horizon only; drop "
                             "--sequential or --cuped")
        return self

    @property
    def control_version(self) -> int:
        """The control arm's version (set by validation)."""
        assert self.control is not None
        return self.control

    @property
    def treatments(self) -> list[int]:
        """Every other arm's version."""
        return [v for v in self.arms if v != self.control]

    def shares(self) -> dict[str, float]:
        """Arm name -> its share of traffic (summing to 1)."""
        total = sum(self.arms.values())
        return {arm_name(v): w / total for v, w in self.arms.items()}


class ArmTotals(BaseModel):
    """Running totals of one arm: units assigned, units with an outcome, and the sums."""

    model_config = ConfigDict(extra="forbid")

    requests: int = Field(0, ge=0, description="Logged requests the arm answered.")
    labelled: int = Field(0, ge=0, description="Of those, the metric's units: requests "
                                               "with feedback (for caught, labelled 1).")
    total: float = Field(0.0, description="Sum of the outcomes (binary: successes).")
    total_sq: float = Field(0.0, ge=0, description="Sum of the squared outcomes.")
    scored: int = Field(0, ge=0, description="Labelled requests whose prediction is a "
                                             "probability (for live accuracy).")
    correct: int = Field(0, ge=0, description="Of those, predictions on the label's side "
                                              "of 0.5.")

    @property
    def mean(self) -> float:
        """Mean outcome (0 before any)."""
        return self.total / self.labelled if self.labelled else 0.0


class Evaluation(BaseModel):
    """One look at an experiment: totals, the test, SRM, guardrails and the verdict."""

    model_config = ConfigDict(extra="forbid")

    at: float
    totals: dict[str, ArmTotals]
    result: ComparisonResult | None = None
    srm: SrmResult | None = None
    guardrails: list[Guardrail] = Field(default_factory=list)
    decision: Decision | None = None
    weights: dict[str, float] | None = Field(None, description="A bandit's new shares.")
    metrics: list[MetricResult] = Field(
        default_factory=list, description="With secondary metrics or CUPED: every metric's "
                                          "test and corrected p-value, the primary first.")
    cuped: CupedSummary | None = Field(None, description="What CUPED did to the primary.")
    warnings: list[str] = Field(default_factory=list,
                                description="Secondaries significantly worse.")


class Experiment(BaseModel):
    """An experiment's stored state."""

    model_config = ConfigDict(extra="forbid")

    id: str
    project: str
    spec: ExperimentSpec
    status: ExperimentStatus = "running"
    created_at: float
    created_by: str
    updated_at: float
    sample_size: SampleSize | None = Field(None, description="Units per arm planned.")
    previous_policy: dict[str, object] | None = Field(
        None, description="The traffic policy before the start (JSON form).")
    sequential: SequentialState | None = None
    last: Evaluation | None = None
    outcome: str = Field("", description="What the end did, in one sentence.")
    winner: int | None = None
    pending_traffic: dict[int, float] | None = Field(
        None, description="Weights stored before they are set on the model (and cleared "
                          "after): a crash in between leaves them for the next look to set.")

    @field_validator("sequential", mode="before")
    @classmethod
    def _unbounded_in(cls, value: object) -> object:
        """JSON has no infinity: an open end is stored as null."""
        if isinstance(value, dict):
            return {**value, "low": -math.inf if value.get("low") is None else value["low"],
                    "high": math.inf if value.get("high") is None else value["high"]}
        return value

    @field_serializer("sequential")
    def _unbounded_out(self, state: SequentialState | None) -> dict[str, object] | None:
        if state is None:
            return None
        data = state.model_dump()
        return {k: (None if k in ("low", "high") and not math.isfinite(v) else v)
                for k, v in data.items()}

    @property
    def key(self) -> str:
        """Where it is stored."""
        return f"{self.project}/{self.spec.model}/{self.id}"
