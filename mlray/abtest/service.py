"""The ``abtests`` service: A/B experiments and bandits over a model's served versions.

``start`` splits the model's traffic between the arms (sticky by routing key) and stores
the experiment with its planned size; each :meth:`AbTestService.evaluate` (the actor's
thread, and every ``status``) recomputes the arms' totals from the prediction and
feedback logs, checks SRM and the guardrails, runs the fixed-horizon or sequential test
and asks :func:`~mlray.abtest.decision.decide`. A verdict ends the experiment: the winner
is promoted (all traffic, then stage Production) or traffic goes back to the control,
and the audit log records the statistics. A bandit instead rewrites the traffic weights
from the feedback at each look. Secondary metrics (reported, corrected with the primary
by Holm or BH, a warning when significantly worse) and CUPED on the primary come from
:mod:`mlray.abtest.analysis` over the per-unit rows of :mod:`mlray.abtest.units`. No Ray
here: the actor passes the live-stats port.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from mlray._private.types import Name, Project
from mlray._private.validation import boundary
from mlray.abtest.analysis import (
    CupedSummary,
    MetricResult,
    compare_values,
    cuped_primary,
    metric_results,
)
from mlray.abtest.arms import BinaryArm, ComparisonResult, ContinuousArm
from mlray.abtest.bandits import BanditState, EpsilonGreedy, ThompsonSampling
from mlray.abtest.decision import Decision, Guardrail, decide
from mlray.abtest.experiment import (
    ABTESTS,
    ArmTotals,
    Evaluation,
    Experiment,
    ExperimentSpec,
    arm_name,
)
from mlray.abtest.outcomes import arm_totals, metric_values, outcomes
from mlray.abtest.power import SampleSize, sample_size_binary, sample_size_continuous
from mlray.abtest.sequential import SequentialTest
from mlray.abtest.srm import sample_ratio_mismatch
from mlray.abtest.stats import two_proportion_test, welch_test
from mlray.abtest.units import labelled_requests, unit_means
from mlray.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    InvalidTransition,
    MlrayError,
    NotFound,
)
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.registry.served import running_rollouts
from mlray.registry.types import Stage, TrafficPolicy
from mlray.storage.base import AuditEntry, Put, StateStore

__all__ = ["AbTestService", "StatsPort"]

#: (project, model, version, window_s) -> the version's live serving figures, or None.
StatsPort = Callable[[str, str, int, float], object | None]
#: Labelled requests a treatment needs before its live accuracy is read.
MIN_SCORED = 30
#: Percentage points a bandit's weight must move before the policy is rewritten.
BANDIT_STEP = 1.0
log = logging.getLogger("mlray.abtests")
_SYSTEM = Caller.local_admin("abtests")


class AbTestService:
    """Experiments per (project, model), one running at a time.

    Args:
        store: where experiments and the audit log live.
        registry: the model registry (a :class:`~mlray.registry.ModelRegistry` on the same
            store): versions, traffic policies, stages.
        offline_uri: root of the prediction and feedback logs.
        stats: live error ratio and latency per version (the breakers'); None skips
            those guardrails.
    """

    #: Methods that take no caller and answer only the platform.
    PLATFORM = frozenset({"evaluate_all"})

    def __init__(self, store: StateStore, registry: object, offline_uri: str | None,
                 stats: StatsPort | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._registry = registry
        self._offline_uri = offline_uri
        self._stats = stats
        self._clock = clock

    # -- reading ---------------------------------------------------------------------------

    def _experiments(self, project: str, model: str | None = None) -> list[Experiment]:
        prefix = f"{project}/{model}/" if model else f"{project}/"
        found = [Experiment.model_validate(d.data)
                 for d in self._store.list(ABTESTS, prefix=prefix)]
        return sorted(found, key=lambda e: e.created_at)

    def _running(self, project: str, model: str) -> Experiment | None:
        return next((e for e in self._experiments(project, model) if e.status == "running"),
                    None)

    def _latest(self, project: str, model: str) -> Experiment:
        found = self._experiments(project, model)
        if not found:
            raise NotFound(f"model {model!r} has no A/B experiment in {project!r}",
                           field="model")
        return self._running(project, model) or found[-1]

    @boundary
    def list_abtests(self, caller: Caller, project: Project) -> list[Experiment]:
        """The project's experiments, oldest first."""
        caller.require(project, Role.viewer)
        return self._experiments(project)

    # -- start -----------------------------------------------------------------------------

    def _check_arms(self, caller: Caller, project: str, spec: ExperimentSpec) -> None:
        reg = self._registry
        rolling = [r for r in running_rollouts(self._store, project)
                   if r["model"] == spec.model]
        if rolling:
            raise Conflict(f"a rollout of {spec.model} (v{rolling[0]['version']}) is running; "
                           "wait for it to end, then start the experiment", field="model")
        for version in spec.arms:
            mv = reg.get_version(caller, project, spec.model, version)  # type: ignore[attr-defined]
            if mv.stage is Stage.ARCHIVED:
                raise InvalidInput(f"arms: {spec.model} v{version} is Archived; move it to "
                                   "Staging first", field="arms")
        try:
            current = reg.get_traffic(caller, project, spec.model)  # type: ignore[attr-defined]
        except NotFound:
            raise InvalidInput(f"arms: {spec.model} is not deployed (no traffic policy, no "
                               "Production version); deploy the control first",
                               field="arms") from None
        if spec.control_version not in current.serving:
            raise InvalidInput(f"arms: the control v{spec.control_version} (the first arm) is not "
                               f"deployed; {spec.model} serves {current.serving}",
                               field="arms")

    @staticmethod
    def plan(spec: ExperimentSpec) -> SampleSize | None:
        """Units per arm to detect ``min_effect`` at ``alpha`` and ``power`` (None when a
        sequential continuous test gives no sd)."""
        ratio = spec.arms[spec.treatments[0]] / spec.arms[spec.control_version]
        common = {"effect": "absolute", "alpha": spec.alpha, "power": spec.power,
                  "ratio": ratio}
        if spec.kind == "binary":
            return sample_size_binary(spec.baseline if spec.baseline is not None else 0.5,
                                      spec.min_effect, **common)
        if spec.sd is None:
            return None
        return sample_size_continuous(spec.baseline or 0.0, spec.sd, spec.min_effect,
                                      **common)

    @boundary
    def start(self, caller: Caller, project: Project, spec: ExperimentSpec) -> Experiment:
        """Split ``spec.model``'s traffic between the arms (sticky) and store the experiment.

        Raises:
            AlreadyExists: an experiment of the model is running.
            NotFound: an arm's version does not exist.
            InvalidInput: an Archived arm, an undeployed control, a plan that cannot be
                made (naming the field).
        """
        caller.require(project, Role.editor)
        running = self._running(project, spec.model)
        if running is not None:
            raise AlreadyExists(f"{spec.model} already runs experiment {running.id}; stop it "
                                "first (`mlray abtest stop`)", field="model")
        self._check_arms(caller, project, spec)
        size = self.plan(spec)
        previous = self._registry.get_traffic(caller, project, spec.model)  # type: ignore[attr-defined]
        ts = self._clock()
        exp = Experiment(id=uuid.uuid4().hex[:12], project=project, spec=spec,
                         created_at=ts, updated_at=ts, created_by=caller.user,
                         sample_size=size, previous_policy=previous.model_dump(mode="json"))
        self._route(exp, dict(spec.arms), caller,
                    AuditEntry(user=caller.user, project=project, action="abtest.start",
                               target=exp.key, after=_dumped(exp, ("spec", "sample_size"))))
        return exp

    def _save(self, exp: Experiment, audit: AuditEntry | None = None) -> None:
        self._store.apply([Put(collection=ABTESTS, key=exp.key,
                               data=exp.model_dump(mode="json"))], audit)

    def _route(self, exp: Experiment, weights: dict[int, float], caller: Caller = _SYSTEM,
               audit: AuditEntry | None = None) -> None:
        """Store ``exp`` with the weights it sets (and its audit entry) first, then set them
        on the model (and a promoted winner's stage), then store it done: a crash in between
        leaves the intent stored, and :meth:`_settle` finishes it at the next look."""
        exp.pending_traffic = weights
        self._save(exp, audit)
        self._settle(exp, caller)

    def _settle(self, exp: Experiment, caller: Caller = _SYSTEM) -> None:
        """Set the stored pending weights on the model, move a promoted winner to
        Production, and store the experiment with nothing pending."""
        if exp.pending_traffic is None:
            return
        reg, spec = self._registry, exp.spec
        reg.set_traffic(caller, exp.project, spec.model,  # type: ignore[attr-defined]
                        TrafficPolicy(weights=exp.pending_traffic, sticky=True))
        if exp.status == "promoted" and exp.winner is not None:
            try:
                mv = reg.get_version(_SYSTEM, exp.project, spec.model, exp.winner)  # type: ignore[attr-defined]
                if mv.stage is not Stage.PRODUCTION:
                    reg.transition_stage(_SYSTEM, exp.project, spec.model,  # type: ignore[attr-defined]
                                         exp.winner, Stage.PRODUCTION)
                exp.outcome += "; now Production"
            except InvalidTransition as exc:
                exp.outcome += f"; not moved to Production: {exc}"
        exp.pending_traffic = None
        self._save(exp)

    # -- looking ---------------------------------------------------------------------------

    def _guardrails(self, exp: Experiment, totals: dict[int, ArmTotals],
                    now: float) -> list[Guardrail]:
        spec, out = exp.spec, []
        window = min(86_400.0, max(1.0, now - exp.created_at))
        for version in spec.treatments:
            live = (self._stats(exp.project, spec.model, version, window)
                    if self._stats is not None else None)
            for g in spec.guardrails:
                value: float | None = None
                if g.metric == "accuracy":
                    t = totals[version]
                    value = t.correct / t.scored if t.scored >= MIN_SCORED else None
                elif live is not None and getattr(live, "requests", 0):
                    value = (live.error_rate if g.metric == "error_ratio"  # type: ignore[attr-defined]
                             else live.p99_ms)  # type: ignore[attr-defined]
                if value is None:
                    continue
                out.append(Guardrail(name=f"{g.metric} of {arm_name(version)}",
                                     breached=not g.holds(value),
                                     detail=f"{value:.4g} against {g}"))
        return out

    @staticmethod
    def _arm(spec: ExperimentSpec, t: ArmTotals) -> BinaryArm | ContinuousArm:
        if spec.kind == "binary":
            return BinaryArm(n=t.labelled, successes=min(t.labelled, max(0, round(t.total))))
        return ContinuousArm(n=t.labelled, total=t.total,
                             total_sq=max(t.total_sq, t.total ** 2 / t.labelled
                                          if t.labelled else 0.0))

    def _test(self, exp: Experiment, totals: dict[int, ArmTotals]) -> ComparisonResult:
        spec = exp.spec
        control = self._arm(spec, totals[spec.control_version])
        treatment = self._arm(spec, totals[spec.treatments[0]])
        if spec.sequential:
            test = SequentialTest(mixture_sd=spec.min_effect, alpha=spec.alpha,
                                  state=exp.sequential)
            result = test.look(control, treatment)
            exp.sequential = test.state
            return result
        if isinstance(control, BinaryArm) and isinstance(treatment, BinaryArm):
            return two_proportion_test(control, treatment, alpha=spec.alpha)
        return welch_test(control, treatment, alpha=spec.alpha)  # type: ignore[arg-type]

    def _bandit_weights(self, spec: ExperimentSpec, totals: dict[int, ArmTotals]
                        ) -> dict[str, float]:
        state = BanditState(arms={arm_name(v): {
            "successes": min(t.labelled, max(0, round(t.total))),
            "failures": t.labelled - min(t.labelled, max(0, round(t.total)))}
            for v, t in totals.items()})
        bandit = (ThompsonSampling(state, floor=0.01) if spec.bandit == "thompson"
                  else EpsilonGreedy(state, epsilon=spec.epsilon))
        return bandit.weights()

    def _analyse(self, exp: Experiment, result: ComparisonResult, now: float
                 ) -> tuple[dict[str, ComparisonResult], list[MetricResult],
                            CupedSummary | None, list[str]]:
        """Metric -> result (the primary CUPED-adjusted when asked, the secondaries from
        the per-request rows), each metric's corrected p-value, CUPED's summary and the
        warnings; only the primary's ``result`` without secondaries or CUPED."""
        spec = exp.spec
        results = {spec.metric: result}
        if not (spec.secondary or spec.cuped) or not self._offline_uri:
            return results, [], None, []
        pair = (spec.control_version, spec.treatments[0])
        rows = labelled_requests(self._offline_uri, exp.project, spec.model, exp.created_at,
                                 versions=list(pair))
        arms = [rows.of(v) for v in pair]
        for m in spec.secondary:
            control, treatment = (outcomes(m.name, a.label, a.score) for a in arms)
            results[m.name] = compare_values(control, treatment, alpha=spec.alpha)
        cuped = None
        if spec.cuped:
            pre = labelled_requests(self._offline_uri, exp.project, spec.model,
                                    exp.created_at - max(now - exp.created_at, 0.0),
                                    until=exp.created_at)
            keep, x = metric_values(spec.metric, pre.score, pre.label)
            per_unit = []
            for arm in arms:
                mask, y = metric_values(spec.metric, arm.score, arm.label)
                per_unit.append(unit_means(arm.unit[mask], y[mask]))
            adjusted = cuped_primary(per_unit[0], per_unit[1],
                                     unit_means(pre.unit[keep], x[keep]), alpha=spec.alpha)
            if adjusted is not None:
                results[spec.metric], cuped = adjusted
        directions = {spec.metric: spec.higher_is_better,
                      **{m.name: m.higher_is_better for m in spec.secondary}}
        metrics, warnings = metric_results(results, spec.metric, directions,
                                           spec.correction, spec.alpha)
        return results, metrics, cuped, warnings

    def _look(self, exp: Experiment) -> Evaluation:
        spec, now = exp.spec, self._clock()
        totals = (arm_totals(self._offline_uri, exp.project, spec.model, list(spec.arms),
                             exp.created_at, spec.metric) if self._offline_uri
                  else {v: ArmTotals() for v in spec.arms})
        guardrails = self._guardrails(exp, totals, now)
        result = self._test(exp, totals)
        results, metrics, cuped, warnings = self._analyse(exp, result, now)
        names = {v: arm_name(v) for v in spec.arms}
        look = Evaluation(at=now, totals={names[v]: t for v, t in totals.items()},
                          result=results[spec.metric], guardrails=guardrails,
                          metrics=metrics, cuped=cuped, warnings=warnings)
        design = "sequential" if spec.sequential else "fixed"
        # a sequential primary is read at every look; the secondaries' fixed-horizon
        # p-values are not, so they are reported but kept out of its verdict
        deciding = ({spec.metric: results[spec.metric]} if spec.sequential else results)
        common = {"design": design, "alpha": spec.alpha, "control": names[spec.control_version],
                  "treatment": names[spec.treatments[0]], "results": deciding,
                  "primary": spec.metric, "higher_is_better": spec.higher_is_better,
                  "correction": spec.correction, "guardrails": guardrails}
        if spec.bandit is not None:
            look.weights = self._bandit_weights(spec, totals)
            if any(g.breached for g in guardrails):
                look.decision = decide(**common, sample_size=2)
            return look
        look.srm = sample_ratio_mismatch({names[v]: t.requests for v, t in totals.items()},
                                         spec.shares())
        size = (exp.sample_size.control if exp.sample_size and not spec.sequential
                else spec.max_samples)
        if size is None and design == "fixed":
            size = 2
        look.decision = decide(**common, srm=look.srm, sample_size=size)
        return look

    def _conclude(self, exp: Experiment, decision: Decision) -> None:
        spec = exp.spec
        winner = next((v for v in spec.arms if arm_name(v) == decision.winner), None)
        if decision.outcome == "winner" and winner is not None and winner != spec.control_version:
            exp.status, exp.winner = "promoted", winner
            exp.outcome = f"v{winner} won and takes all traffic"
        else:
            exp.status = "invalid" if decision.outcome == "invalid" else "rolled_back"
            exp.winner = spec.control_version
            exp.outcome = f"rolled back: all traffic to the control v{spec.control_version}"
        action = {"promoted": "abtest.promote", "invalid": "abtest.invalid"}.get(
            exp.status, "abtest.rollback")
        self._route(exp, {exp.winner: 100.0}, _SYSTEM,
                    AuditEntry(user=_SYSTEM.user, project=exp.project, action=action,
                               target=exp.key, after={
                                   "outcome": exp.outcome, "winner": exp.winner,
                                   "reason": decision.reason,
                                   **_dumped(exp.last, ("result", "srm", "guardrails",
                                                        "decision", "totals", "metrics",
                                                        "cuped", "warnings"))}))

    def _evaluate(self, exp: Experiment) -> Experiment:
        self._settle(exp)  # weights a crash left stored but not set
        look = self._look(exp)
        exp.last, exp.updated_at = look, look.at
        if look.decision is not None and look.decision.outcome != "keep_running":
            self._conclude(exp, look.decision)
            return exp
        if look.weights is not None:
            weights = {v: round(100.0 * look.weights[arm_name(v)], 3) for v in exp.spec.arms}
            current = self._registry.get_traffic(_SYSTEM, exp.project, exp.spec.model)  # type: ignore[attr-defined]
            if any(abs(current.weights.get(v, 0.0) - w) >= BANDIT_STEP
                   for v, w in weights.items()):
                self._registry.set_traffic(_SYSTEM, exp.project, exp.spec.model,  # type: ignore[attr-defined]
                                           TrafficPolicy(weights=weights, sticky=True))
        self._save(exp)
        return exp

    @boundary
    def status(self, caller: Caller, project: Project, model: Name) -> Experiment:
        """The model's running experiment after a fresh look (which may conclude it), or
        its latest one.

        Raises:
            NotFound: the model never had an experiment.
        """
        caller.require(project, Role.viewer)
        exp = self._latest(project, model)
        return self._evaluate(exp) if exp.status == "running" else exp

    def evaluate_all(self) -> list[Experiment]:
        """Look at every running experiment of every project (the actor's loop)."""
        _SYSTEM.require(ALL_PROJECTS, Role.admin)
        found = [Experiment.model_validate(d.data) for d in self._store.list(ABTESTS)
                 if d.data.get("status") == "running" or d.data.get("pending_traffic")]
        looked = []
        for exp in found:
            try:
                if exp.status != "running":
                    self._settle(exp)  # concluded or stopped: its traffic was not set yet
                    continue
                looked.append(self._evaluate(exp))
            except MlrayError as exc:  # one broken experiment does not stop the others
                log.warning("experiment %s of %s/%s: %s", exp.id, exp.project,
                            exp.spec.model, exc)
        return looked

    @boundary
    def stop(self, caller: Caller, project: Project, model: Name) -> Experiment:
        """End the model's running experiment without a verdict: traffic back to the
        control (audited as ``abtest.stop`` with the latest statistics).

        Raises:
            NotFound: no experiment of the model is running.
        """
        caller.require(project, Role.editor)
        exp = self._running(project, model)
        if exp is None:
            raise NotFound(f"model {model!r} runs no A/B experiment", field="model")
        exp.status, exp.updated_at = "stopped", self._clock()
        exp.outcome = (f"stopped by {caller.user}: all traffic to the control "
                       f"v{exp.spec.control_version}")
        self._route(exp, {exp.spec.control_version: 100.0}, caller,
                    AuditEntry(user=caller.user, project=project, action="abtest.stop",
                               target=exp.key, after={"outcome": exp.outcome,
                                                      **_dumped(exp.last, ("result",
                                                                           "totals"))}))
        return exp


def _dumped(obj: object | None, fields: tuple[str, ...]) -> dict[str, object]:
    """The named fields of a pydantic object in JSON form (empty for None)."""
    if obj is None:
        return {}
    return obj.model_dump(mode="json", include=set(fields))  # type: ignore[attr-defined]
