"""Rollouts of a model version: direct, blue-green, canary and shadow, as a state machine.

A :class:`Rollout` document holds everything needed to carry on after a restart; the
controller advances each running rollout one idempotent step per :meth:`tick`:

* **direct**: deploy, switch all traffic, remove the old apps.
* **blue-green**: deploy, check health with a smoke prediction, switch all traffic, keep
  the old apps for the rollback window.
* **canary**: deploy, smoke, then walk the weight steps; at the end of each step the new
  version's live error rate and p99 (against the stable versions') must pass the gates,
  or the controller rolls back by itself and records why.
* **shadow**: deploy, smoke, add the version as a shadow of the current policy.

No rollout runs forever: past ``rollout.max_duration_s`` it fails and the previous policy
is restored. Whatever goes wrong while failing or rolling back still ends the rollout
(FAILED, with both reasons), and a later ``rollback`` can try the restore again.

The controller talks to the world through three small ports (deployer, registry,
stats; in :mod:`mlray.serving.rollout_model`, with the stored :class:`Rollout`) so tests
can drive it without Ray.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from mlray._private.types import Name, Project
from mlray._private.validation import boundary
from mlray.errors import Conflict, InvalidInput, NotFound
from mlray.identity import Caller, Role
from mlray.serving.deployed import deploy_quota
from mlray.serving.model_names import app_name, breaker_key
from mlray.serving.rollout_model import (
    Deployer,
    Event,
    Hold,
    RegistryPort,
    Rollout,
    RolloutStatus,
    StatsPort,
    Strategy,
)
from mlray.serving.settings import BatchTuning, ModelServing, RolloutSettings, ServingConfig
from mlray.serving.traffic import TrafficPolicy
from mlray.storage.base import AuditEntry, Op, Put, StateStore

__all__ = [
    "Deployer",
    "Hold",
    "RegistryPort",
    "Rollout",
    "RolloutController",
    "RolloutStatus",
    "StatsPort",
    "Strategy",
]

ROLLOUTS = "rollouts"
TUNING = "tuning"
_ACTIVE_TICK_S = 0.5
_QUOTA_RETRIES = 16


class RolloutController:
    """Starts, advances, rolls back and lists rollouts; every change is stored first."""

    def __init__(self, store: StateStore, registry: RegistryPort, deployer: Deployer,
                 stats: StatsPort, serving: ServingConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store, self._registry, self._deployer, self._stats = store, registry, deployer, stats
        self.serving = serving or ServingConfig()
        self._clock = clock

    @property
    def settings(self) -> RolloutSettings:
        """The rollout gates and timings."""
        return self.serving.rollout

    # -- storage ------------------------------------------------------------------------

    def _save(self, rollout: Rollout, message: str, caller: Caller | None = None,
              action: str | None = None, extra: Sequence[Op] = ()) -> Rollout:
        now = self._clock()
        rollout.updated_at = now
        rollout.history.append(Event(ts=now, message=message))
        audit = None
        if action:
            audit = AuditEntry(user=caller.user if caller else rollout.created_by,
                               project=rollout.project, action=action,
                               target=f"{rollout.model}/v{rollout.version}",
                               after={"rollout": rollout.id, "status": rollout.status.value,
                                      "message": message})
        self._store.apply([Put(collection=ROLLOUTS, key=self._key(rollout),
                               data=rollout.model_dump(mode="json")), *extra], audit)
        return rollout

    @staticmethod
    def _key(rollout: Rollout) -> str:
        return f"{rollout.project}/{rollout.model}/{rollout.created_at:017.6f}-{rollout.id}"

    def _all(self, project: str | None = None, model: str | None = None) -> list[Rollout]:
        prefix = f"{project}/{model}/" if project and model else (
            f"{project}/" if project else None)
        return [Rollout.model_validate(d.data) for d in self._store.list(ROLLOUTS, prefix=prefix)]

    # -- the public calls ---------------------------------------------------------------

    @boundary
    def start(self, caller: Caller, project: Project, model: Name, version: int,
              strategy: Strategy = Strategy.CANARY,
              overrides: dict[str, Any] | None = None) -> Rollout:
        """Begin rolling out ``model`` v``version``; the controller carries it on.

        Raises:
            NotFound: no such version.
            Conflict: another rollout of the model is still running.
            QuotaExceeded: the project is at its ``deployments`` or ``replicas`` quota.
            InvalidInput: bad serving overrides, or the version already answers alone.
        """
        caller.require(project, Role.editor)
        target = self._registry.get_version(caller, project, model, version)
        try:
            self.serving.for_model(model, **(overrides or {}))
        except ValueError as exc:
            raise InvalidInput(f"serving overrides: {exc}", field="overrides") from None
        running = [r for r in self._all(project, model) if r.status is RolloutStatus.RUNNING]
        if running:
            raise Conflict(f"rollout {running[0].id} of {model} v{running[0].version} is "
                           "still running; wait for it or roll it back", field="model")
        try:
            previous: TrafficPolicy | None = self._registry.get_traffic(caller, project, model)
        except NotFound:
            previous = None
        if (previous and previous.serving == [version] and strategy is not Strategy.SHADOW
                and app_name(project, model, version) in self._deployer.running()):
            raise InvalidInput(f"{model} v{version} is deployed and already takes all traffic",
                               field="version")
        if strategy in (Strategy.CANARY, Strategy.SHADOW) and not previous:
            raise InvalidInput(f"a {strategy} rollout needs a version already serving; "
                               f"deploy {model} first with --strategy direct or blue-green",
                               field="strategy")
        now = self._clock()
        rollout = Rollout(id=uuid.uuid4().hex[:12], project=project, model=model,
                          version=target.version, strategy=strategy, previous=previous,
                          overrides=overrides or {}, created_by=caller.user,
                          created_at=now, updated_at=now)
        for attempt in range(_QUOTA_RETRIES):
            quota = deploy_quota(self._store, self, project, model, target.version,
                                 overrides or {}, shadow=strategy is Strategy.SHADOW)
            try:
                return self._save(rollout, f"{strategy} rollout of v{version} started",
                                  caller, "rollout.start", quota)
            except Conflict:
                if not quota or attempt == _QUOTA_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    @boundary
    def get(self, caller: Caller, project: Project, rollout_id: str) -> Rollout:
        """One rollout by id."""
        caller.require(project, Role.viewer)
        for rollout in self._all(project):
            if rollout.id == rollout_id:
                return rollout
        raise NotFound(f"no rollout {rollout_id!r} in project {project!r}", field="rollout_id")

    @boundary
    def list(self, caller: Caller, project: Project, model: Name | None = None, *,
             limit: int = 50) -> list[Rollout]:
        """Rollouts, newest first."""
        caller.require(project, Role.viewer)
        return sorted(self._all(project, model), key=lambda r: r.created_at,
                      reverse=True)[:limit]

    @boundary
    def rollback(self, caller: Caller, project: Project, model: Name,
                 reason: str = "rolled back by hand") -> Rollout:
        """Put back the policy from before the model's latest rollout.

        The policy is restored even when a version in it was archived since (versions
        deleted since are left out). A rollout whose own rollback failed can be rolled
        back again. When the restore fails, the rollout still ends (FAILED, with why).

        Raises:
            NotFound: the model has no rollout to undo.
        """
        caller.require(project, Role.editor)
        undoable = [r for r in self.list(caller, project, model)
                    if r.status in (RolloutStatus.RUNNING, RolloutStatus.SUCCEEDED,
                                    RolloutStatus.FAILED)]
        if not undoable:
            raise NotFound(f"{model} has no running or finished rollout to roll back",
                           field="model")
        rollout = undoable[0]
        if rollout.previous is None:
            raise NotFound(f"rollout {rollout.id} was {model}'s first deployment; there is "
                           "nothing to roll back to", field="model")
        why = f"{reason} (by {caller.user})"
        try:
            return self._roll_back(rollout, why, caller)
        except Exception as exc:
            if rollout.status is RolloutStatus.RUNNING:  # end it: a new deploy may start
                self._give_up(rollout, f"{why}; restoring the previous policy failed: "
                                       f"{type(exc).__name__}: {exc}")
            raise

    @boundary
    def retune(self, caller: Caller, project: Project, model: Name, version: int,
               tuning: BatchTuning) -> ModelServing:
        """Change a live version's batching without a redeploy (Serve ``user_config``).

        The tuning is stored, so later deploys of the version (a rollback) keep it.
        """
        caller.require(project, Role.editor)
        target = self._registry.get_version(caller, project, model, version)
        if app_name(project, model, version) not in self._deployer.running():
            raise NotFound(f"{model} v{version} is not deployed", field="version")
        key = f"{project}/{model}/{version}"
        data = {"tuning": tuning.model_dump()}
        self._store.apply([Put(collection=TUNING, key=key, data=data)],
                          AuditEntry(user=caller.user, project=project, action="serving.retune",
                                     target=f"{model}/v{version}", after=data))
        serving = self.serving_of(project, model, version)
        self._deployer.deploy(target, serving, wait=True)
        return serving

    def serving_of(self, project: str, model: str, version: int) -> ModelServing:
        """How ``model`` v``version`` is deployed: the serving config with the overrides of
        the version's latest rollout and its stored tuning (what a redeploy must use)."""
        rollouts = sorted((r for r in self._all(project, model) if r.version == version),
                          key=lambda r: r.created_at)
        return self._serving_for(project, model, version,
                                 rollouts[-1].overrides if rollouts else {})

    def held(self) -> dict[tuple[str, str, int], Hold]:
        """Versions that active rollouts keep, by (project, model, version): a running
        rollout's new and stable versions (it starts and stops those itself), and a
        finished one's old versions for its rollback window (these must run)."""
        out: dict[tuple[str, str, int], Hold] = {}
        for rollout in self._all():
            if not rollout.active:
                continue
            running = rollout.status is RolloutStatus.RUNNING
            hold = (Hold(f"rollout {rollout.id} ({rollout.phase})", run=False) if running
                    else Hold(f"rollback window of rollout {rollout.id}", run=True))
            old = [*rollout.stable, *(rollout.previous.shadows if rollout.previous else [])]
            for v in [*old, *([rollout.version] if running else [])]:
                out.setdefault((rollout.project, rollout.model, v), hold)
        return out

    # -- the machine ----------------------------------------------------------------------

    def _as(self, rollout: Rollout) -> Caller:
        return Caller(user=rollout.created_by, roles={rollout.project: Role.editor})

    def _serving(self, rollout: Rollout) -> ModelServing:
        return self._serving_for(rollout.project, rollout.model, rollout.version,
                                 rollout.overrides)

    def _serving_for(self, project: str, model: str, version: int,
                     overrides: dict[str, Any]) -> ModelServing:
        stored = self._store.get(TUNING, f"{project}/{model}/{version}")
        return self.serving.for_model(model, **{**overrides, **(stored.data if stored else {})})

    def _ensure_running(self, rollout: Rollout, versions: list[int]) -> None:
        running = self._deployer.running()
        for v in versions:
            if app_name(rollout.project, rollout.model, v) not in running:
                mv = self._registry.get_version(self._as(rollout), rollout.project,
                                                rollout.model, v)
                self._deployer.deploy(mv, self.serving_of(rollout.project, rollout.model, v),
                                      wait=True)

    def _existing(self, rollout: Rollout, versions: list[int]) -> list[int]:
        """The ``versions`` still in the registry (a restore leaves deleted ones out)."""
        out = []
        for v in versions:
            try:
                self._registry.get_version(self._as(rollout), rollout.project, rollout.model, v)
            except NotFound:
                continue
            out.append(v)
        return out

    def _set_weights(self, rollout: Rollout, weights: dict[int, float],
                     shadows: list[int] | None = None) -> None:
        sticky = rollout.previous.sticky if rollout.previous else True
        self._registry.set_traffic(self._as(rollout), rollout.project, rollout.model,
                                   TrafficPolicy(weights=weights, shadows=shadows or [],
                                                 sticky=sticky))

    def _roll_back(self, rollout: Rollout, reason: str, caller: Caller | None = None
                   ) -> Rollout:
        if rollout.previous is not None:
            previous = rollout.previous
            named = sorted({*previous.serving, *previous.shadows})
            self._ensure_running(rollout, self._existing(rollout, named))
            restored = self._registry.restore_traffic(self._as(rollout), rollout.project,
                                                      rollout.model, previous)
            if rollout.version not in {*restored.serving, *restored.shadows}:
                self._deployer.delete(rollout.project, rollout.model, rollout.version)
        rollout.status = RolloutStatus.ROLLED_BACK
        rollout.reason = reason
        rollout.phase = "done"
        rollout.old_apps_removed = True
        return self._save(rollout, f"rolled back: {reason}", caller, "rollout.rollback")

    def _fail(self, rollout: Rollout, reason: str) -> Rollout:
        if rollout.previous is not None:
            try:
                return self._roll_back(rollout, reason)
            except Exception as exc:  # never leave it running: end it and say why
                return self._give_up(rollout, f"{reason}; restoring the previous policy "
                                              f"failed: {type(exc).__name__}: {exc}")
        return self._give_up(rollout, reason)

    def _give_up(self, rollout: Rollout, reason: str) -> Rollout:
        rollout.status, rollout.reason, rollout.phase = RolloutStatus.FAILED, reason, "done"
        return self._save(rollout, f"failed: {reason}", action="rollout.fail")

    def tick(self) -> list[Rollout]:
        """Advance every active rollout by what is due now; returns those that changed.

        A rollout past its deadline fails (and restores the previous policy); an error
        while advancing fails it too. Either way it ends: it is never retried forever.
        """
        changed = []
        for rollout in self._all():
            if not rollout.active:
                continue
            before = rollout.model_dump()
            try:
                rollout = self._overdue(rollout) or self._advance(rollout)
            except Exception as exc:  # a deploy that cannot come up, a crashed smoke test
                why = f"{type(exc).__name__}: {exc}"
                if rollout.status is RolloutStatus.SUCCEEDED:  # cleanup only: keep traffic
                    rollout.old_apps_removed = True  # the reconciler removes what is left
                    rollout = self._save(rollout, f"could not remove the old apps: {why}")
                else:
                    rollout = self._fail(rollout, why)
            if rollout.model_dump() != before:
                changed.append(rollout)
        return changed

    def _overdue(self, rollout: Rollout) -> Rollout | None:
        """Fails a running rollout past ``max_duration_s``; None when it has time left."""
        if rollout.status is not RolloutStatus.RUNNING:
            return None
        took = self._clock() - rollout.created_at
        if took <= self.settings.max_duration_s:
            return None
        return self._fail(rollout, f"did not finish within {self.settings.max_duration_s:g} s "
                                   f"(still in phase {rollout.phase!r} after {took:.0f} s)")

    def _advance(self, rollout: Rollout) -> Rollout:
        if rollout.status is RolloutStatus.SUCCEEDED:
            return self._clean_up(rollout)
        if rollout.phase == "deploy":
            target = self._registry.get_version(self._as(rollout), rollout.project,
                                                rollout.model, rollout.version)
            self._deployer.deploy(target, self._serving(rollout), wait=False)
            rollout.phase, rollout.deploy_started_at = "starting", self._clock()
            name = app_name(rollout.project, rollout.model, rollout.version)
            return self._save(rollout, f"deploying {name}")
        if rollout.phase == "starting":
            return self._starting(rollout)
        if rollout.phase == "smoke":
            self._deployer.smoke(rollout.project, rollout.model, rollout.version)
            rollout.phase = {Strategy.CANARY: "steps", Strategy.SHADOW: "shadow"}.get(
                rollout.strategy, "switch")
            return self._save(rollout, "smoke prediction passed")
        if rollout.phase == "switch":
            self._set_weights(rollout, {rollout.version: 100.0})
            return self._succeed(rollout, f"all traffic on v{rollout.version}")
        if rollout.phase == "shadow":
            assert rollout.previous is not None
            shadows = sorted({*rollout.previous.shadows, rollout.version})
            self._set_weights(rollout, {v: w for v, w in rollout.previous.weights.items()
                                        if v != rollout.version}, shadows)
            rollout.old_apps_removed = True  # a shadow replaces nothing
            return self._succeed(rollout, f"v{rollout.version} shadows the live versions")
        if rollout.phase == "steps":
            return self._step(rollout)
        raise InvalidInput(f"rollout {rollout.id} is in an unknown phase {rollout.phase!r}",
                           field="phase")

    def _starting(self, rollout: Rollout) -> Rollout:
        status, message = self._deployer.status(rollout.project, rollout.model,
                                                rollout.version)
        if status == "RUNNING":
            rollout.phase = "smoke" if rollout.strategy is not Strategy.DIRECT else "switch"
            return self._save(rollout, f"v{rollout.version} is up")
        if status in ("DEPLOY_FAILED", "UNHEALTHY"):
            return self._fail(rollout, f"v{rollout.version} failed to deploy: {message}")
        if status == "NOT_STARTED":  # gone, e.g. Serve restarted while it was starting
            target = self._registry.get_version(self._as(rollout), rollout.project,
                                                rollout.model, rollout.version)
            self._deployer.deploy(target, self._serving(rollout), wait=False)
        assert rollout.deploy_started_at is not None
        waited = self._clock() - rollout.deploy_started_at
        if waited > self.settings.ready_timeout_s:
            return self._fail(rollout, f"v{rollout.version} was not ready after {waited:.0f} s "
                                       f"({status}: {message})")
        return rollout

    def _succeed(self, rollout: Rollout, message: str) -> Rollout:
        rollout.status, rollout.phase = RolloutStatus.SUCCEEDED, "done"
        rollout.rollback_until = self._clock() + (
            0.0 if rollout.strategy is Strategy.DIRECT else self.settings.rollback_window_s)
        return self._save(rollout, message, action="rollout.succeed")

    def _step(self, rollout: Rollout) -> Rollout:
        steps = self.settings.canary_steps
        now = self._clock()
        if rollout.step < 0:
            return self._enter_step(rollout, 0)
        assert rollout.step_started_at is not None
        elapsed = now - rollout.step_started_at
        if elapsed < self.settings.step_duration_s:
            return rollout
        verdict = self._judge(rollout, elapsed)
        if verdict is None:
            if elapsed < self.settings.max_step_wait_s:
                return rollout  # not enough traffic yet to judge
            return self._fail(rollout, f"step {steps[rollout.step]}%: fewer than "
                                       f"{self.settings.min_requests} canary requests in "
                                       f"{elapsed:.0f} s")
        passed, why = verdict
        if not passed:
            return self._fail(rollout, f"canary gate failed at {steps[rollout.step]}%: {why}")
        rollout.history.append(Event(ts=now, message=f"gate passed at "
                                                     f"{steps[rollout.step]}%: {why}"))
        rollout = self._enter_step(rollout, rollout.step + 1)
        if steps[rollout.step] >= 100:
            return self._succeed(rollout, f"canary reached 100% on v{rollout.version}")
        return rollout

    def _enter_step(self, rollout: Rollout, step: int) -> Rollout:
        share = self.settings.canary_steps[step]
        stable = rollout.stable
        weights = {v: (100.0 - share) / len(stable) for v in stable if v != rollout.version}
        weights[rollout.version] = share
        self._set_weights(rollout, {v: w for v, w in weights.items() if w > 0})
        rollout.step, rollout.step_started_at = step, self._clock()
        return self._save(rollout, f"canary at {share:g}%")

    def _judge(self, rollout: Rollout, elapsed: float) -> tuple[bool, str] | None:
        """(passed, why) for the current step; None while there is too little traffic."""
        canary = self._stats.stats(breaker_key(rollout.project, rollout.model,
                                               rollout.version), elapsed)
        gates = self.settings
        # Errors beyond what even a full sample of successes could dilute fail at once:
        # an open breaker keeps a failing canary from ever reaching min_requests.
        if canary.errors > gates.max_error_rate * max(canary.requests, gates.min_requests):
            return False, (f"error rate {canary.error_rate:.1%} ({canary.errors} errors in "
                           f"{canary.requests} requests) > {gates.max_error_rate:.1%}")
        if canary.requests < max(1, gates.min_requests):
            return None
        if canary.error_rate > gates.max_error_rate:
            return False, (f"error rate {canary.error_rate:.1%} over {canary.requests} "
                           f"requests > {gates.max_error_rate:.1%}")
        stable_p99 = [s.p99_ms for s in (self._stats.stats(breaker_key(
            rollout.project, rollout.model, v), elapsed) for v in rollout.stable
            if v != rollout.version) if s.p99_ms is not None]
        if canary.p99_ms is not None and stable_p99:
            limit = gates.max_p99_ratio * max(stable_p99)
            if canary.p99_ms > limit:
                return False, (f"p99 {canary.p99_ms:.1f} ms > {gates.max_p99_ratio:g}x "
                               f"stable p99 {max(stable_p99):.1f} ms")
        return True, (f"error rate {canary.error_rate:.1%}, p99 "
                      f"{canary.p99_ms or 0:.1f} ms over {canary.requests} requests")

    def _clean_up(self, rollout: Rollout) -> Rollout:
        if rollout.rollback_until is not None and self._clock() < rollout.rollback_until:
            return rollout
        keep = {rollout.version}
        for v in rollout.stable:
            if v not in keep:
                self._deployer.delete(rollout.project, rollout.model, v)
        rollout.old_apps_removed = True
        return self._save(rollout, "old versions' apps removed")
