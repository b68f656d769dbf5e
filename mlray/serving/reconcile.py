"""Ray Serve's model apps, reconciled to the desired state in the state store.

The desired state survives anything that happens to Ray: it is the stored traffic
policies (every version with a positive weight or a shadow must run) and the rollouts
(a finished rollout's old versions run for its rollback window; a running rollout's
versions are kept, and the rollout starts and stops them itself). A pass deploys what is
wanted and missing (with its stored overrides and tuning) and removes model apps
(``<project>--<model>--v<N>``) nobody wants; any other Serve app, the ingress included, is never
touched. A wanted app that exists in any state is left to Serve; an app whose deploy call
fails is retried with a growing pause, and the error is shown in :meth:`apps`.

A pass acts only when Serve runs for this platform (on its HTTP port, with its ingress
app): on a cluster whose Serve belongs to someone else, or before ``mlray up`` has started
Serve, it does nothing (deploying would start Serve on the wrong port).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlray._private.types import Project
from mlray._private.validation import boundary
from mlray.identity import Caller, Role
from mlray.registry.types import ModelVersion
from mlray.serving.model_names import INGRESS_APP, app_name, parse_app_name, project_apps
from mlray.serving.rollout import Deployer, RolloutController
from mlray.serving.traffic import TrafficPolicy

__all__ = ["PolicySource", "Reconciler", "ServePort", "Want"]

#: Serve's status of an app that does not exist.
MISSING = "NOT_STARTED"


class ServePort(Deployer, Protocol):
    """The deployer, plus whether Serve runs on this platform's HTTP port."""

    def on_platform_port(self) -> bool: ...


class PolicySource(Protocol):
    """The registry calls reconciling makes."""

    def traffic_policies(self, caller: Caller) -> dict[tuple[str, str], TrafficPolicy]: ...
    def get_version(self, caller: Caller, project: str, model: str,
                    version: int) -> ModelVersion: ...


@dataclass(frozen=True)
class Want:
    """A model app the desired state names: whose it is, why, and whether it must run."""

    project: str
    model: str
    version: int
    why: str
    run: bool = True


@dataclass
class Pass:
    """What one reconcile pass did."""

    deployed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class _Failure:
    count: int
    retry_at: float
    message: str


class Reconciler:
    """Brings Serve's model apps to the desired state, one idempotent pass at a time.

    Args:
        registry: the stored traffic policies and versions.
        rollouts: the rollouts (what they keep, and each version's serving settings).
        deployer: Ray Serve.
        retry_s: first pause after a failed deploy call; doubles up to ``max_retry_s``.
    """

    def __init__(self, registry: PolicySource, rollouts: RolloutController,
                 deployer: ServePort, *, clock: Callable[[], float] = time.monotonic,
                 retry_s: float = 5.0, max_retry_s: float = 300.0) -> None:
        self._registry, self._rollouts, self._deployer = registry, rollouts, deployer
        self._clock = clock
        self._retry_s, self._max_retry_s = retry_s, max_retry_s
        self._caller = Caller.local_admin("mlray-deployments")
        self._failures: dict[str, _Failure] = {}
        self._removing: dict[str, float] = {}  # app -> when its removal was asked

    def desired(self) -> dict[str, Want]:
        """Every model app the desired state names, by app name."""
        out: dict[str, Want] = {}
        for (project, model), policy in sorted(
                self._registry.traffic_policies(self._caller).items()):
            total = sum(policy.weights.values())
            for v in policy.serving:
                out[app_name(project, model, v)] = Want(
                    project, model, v, f"{policy.weights[v] / total:.0%} of traffic")
            for v in policy.shadows:
                out.setdefault(app_name(project, model, v), Want(project, model, v, "shadow"))
        for (project, model, v), hold in sorted(self._rollouts.held().items()):
            out.setdefault(app_name(project, model, v),
                           Want(project, model, v, hold.why, hold.run))
        return out

    def reconcile(self) -> Pass:
        """One pass: deploy the wanted apps that are missing, remove unwanted model apps."""
        if not self._deployer.on_platform_port():
            return Pass(skipped="Serve is not running on this platform's port")
        present = self._deployer.running(all_states=True)  # one serve.status() a pass
        if INGRESS_APP not in present:
            return Pass(skipped="Serve runs without this platform's ingress app")
        wanted = self.desired()
        done = Pass()
        for name, want in wanted.items():
            if name in present:
                self._failures.pop(name, None)
                continue
            failure = self._failures.get(name)
            if not want.run or (failure and self._clock() < failure.retry_at):
                continue
            try:
                version = self._registry.get_version(self._caller, want.project, want.model,
                                                     want.version)
                serving = self._rollouts.serving_of(want.project, want.model, want.version)
                self._deployer.deploy(version, serving, wait=False)
            except Exception as exc:  # recorded, shown by apps(), retried later
                done.errors[name] = self._failed(name, f"{type(exc).__name__}: {exc}")
                continue
            self._failures.pop(name, None)
            done.deployed.append(name)
        now = self._clock()
        for name in sorted(present - wanted.keys()):
            parsed = parse_app_name(name)
            asked = self._removing.get(name)
            if parsed is not None and (asked is None or now - asked > self._max_retry_s):
                self._deployer.delete(*parsed)  # returns at once; Serve takes a while
                self._removing[name] = now
                done.removed.append(name)
        self._removing = {n: t for n, t in self._removing.items()
                          if n in present and n not in wanted}
        for name in set(self._failures) - wanted.keys():
            del self._failures[name]
        return done

    def _failed(self, name: str, message: str) -> str:
        count = self._failures[name].count + 1 if name in self._failures else 1
        pause = min(self._max_retry_s, self._retry_s * 2 ** (count - 1))
        self._failures[name] = _Failure(count, self._clock() + pause, message)
        return message

    @boundary
    def apps(self, caller: Caller, project: Project) -> list[dict[str, Any]]:
        """The project's model apps, desired and running side by side: each wanted app
        (with why, its Serve status or NOT_STARTED, and the last deploy error), and each
        model app on Serve that nothing wants (about to be removed)."""
        caller.require(project, Role.viewer)
        wanted = self.desired()
        present = self._deployer.running(all_states=True)
        names = {n for n, w in wanted.items() if w.project == project}
        names |= project_apps(present - wanted.keys(), project)
        rows = []
        for name in sorted(names):
            _, model, version = parse_app_name(name) or (project, name, 0)
            status, message = (self._deployer.status(project, model, version) if name in present
                               else (MISSING, "no such application"))
            want = wanted.get(name)
            failure = self._failures.get(name)
            rows.append({"model": model, "version": version, "app": name, "status": status,
                         "message": failure.message if failure else message,
                         "desired": want is not None,
                         "why": want.why if want else "nothing wants it: being removed"})
        return rows
