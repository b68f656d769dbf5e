"""Deployments, rollouts, traffic and breakers through the client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlray._private.validation import build
from mlray.client.facade import Who, _Facade
from mlray.client.registry_client import RegistryClient
from mlray.errors import (
    DeadlineExceeded,
)
from mlray.serving.breaker import BreakerSnapshot
from mlray.serving.breaker_board import VersionStats
from mlray.serving.rollout import Rollout, RolloutStatus
from mlray.serving.settings import BatchTuning, ModelServing
from mlray.serving.traffic import TrafficPolicy

__all__ = ["ServingClient"]


class ServingClient(_Facade):
    """Deployments and rollouts (``deployments`` actor) and live breakers (``breakers``)."""

    def __init__(self, transport: Any, who: Who, project: str,
                 registry: RegistryClient) -> None:
        super().__init__("deployments", transport, who, project)
        self._registry = registry

    def _breakers(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._transport.call("breakers", method, self._who, self.project, *args,
                                    idempotent=True, **kwargs)

    def deploy(self, model: str, version: int, *, strategy: str = "canary",
               overrides: dict[str, Any] | None = None, wait: bool = False,
               timeout_s: float = 900.0, poll_s: float = 0.5,
               on_change: Callable[[Rollout], None] | None = None) -> Rollout:
        """Roll ``model`` v``version`` out (direct, blue-green, canary or shadow).

        With ``wait``, returns once the rollout has finished (succeeded, rolled back or
        failed), calling ``on_change`` whenever its history grows.
        """
        rollout = self._call("start", model, version, strategy, overrides)
        return self.wait(rollout.id, timeout_s, poll_s, on_change) if wait else rollout

    def wait(self, rollout_id: str, timeout_s: float = 900.0, poll_s: float = 0.5,
             on_change: Callable[[Rollout], None] | None = None) -> Rollout:
        """Poll a rollout until it stops running."""
        deadline = time.monotonic() + timeout_s
        seen = -1
        while True:
            rollout = self.rollout(rollout_id)
            if on_change and len(rollout.history) != seen:
                seen = len(rollout.history)
                on_change(rollout)
            if rollout.status is not RolloutStatus.RUNNING:
                return rollout
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"rollout {rollout_id} still running after "
                                       f"{timeout_s:g} s (phase {rollout.phase})")
            time.sleep(poll_s)

    def rollout(self, rollout_id: str) -> Rollout:
        """One rollout by id."""
        return self._call("get", rollout_id, read=True)

    def rollouts(self, model: str | None = None, *, limit: int = 50) -> list[Rollout]:
        """Rollouts, newest first."""
        return self._call("list", model, limit=limit, read=True)

    def rollback(self, model: str, reason: str = "rolled back by hand") -> Rollout:
        """Put back the traffic policy from before ``model``'s latest rollout."""
        return self._call("rollback", model, reason)

    def traffic(self, model: str, weights: dict[int, float], *,
                shadows: list[int] | None = None, sticky: bool = True) -> TrafficPolicy:
        """Set the traffic split by hand (e.g. ``{1: 90, 2: 10}``)."""
        return self._registry.set_traffic(model, weights, shadows=shadows, sticky=sticky)

    def retune(self, model: str, version: int, *, max_batch_size: int | None = None,
               batch_wait_timeout_s: float | None = None) -> ModelServing:
        """Change a live version's batching without a redeploy."""
        current = self._registry.get_version(model, version)  # NotFound early
        values = {k: v for k, v in {"max_batch_size": max_batch_size,
                                    "batch_wait_timeout_s": batch_wait_timeout_s}.items()
                  if v is not None}
        tuning = build(BatchTuning, "tuning", **{**BatchTuning().model_dump(), **values})
        return self._call("retune", current.model, current.version, tuning)

    def apps(self) -> list[dict[str, Any]]:
        """The model apps on Ray Serve with their status."""
        return self._call("apps", read=True)

    def breakers(self) -> dict[str, BreakerSnapshot]:
        """Circuit-breaker state per ``model/version``."""
        return self._breakers("breaker_states")

    def stats(self, model: str, version: int, window_s: float = 60.0) -> VersionStats:
        """Live requests, errors and latency of one version."""
        return self._breakers("version_stats", model, version, window_s)
