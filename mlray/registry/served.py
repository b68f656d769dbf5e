"""The model versions a project serves: what its stored traffic policies serve, with each
running rollout's end state applied. The ``deployments`` quota counts this plan (so two
rollouts started at once cannot both take the last slot, though neither has changed a
policy yet)."""

from __future__ import annotations

from typing import Any

from mlray.quotas.guard import QuotaGuard
from mlray.registry._documents import TRAFFIC
from mlray.registry.types import TrafficPolicy
from mlray.storage.base import Op, StateStore

__all__ = ["ROLLOUTS", "planned_versions", "running_rollouts", "served_pairs",
           "served_versions", "traffic_quota"]

#: The serving layer's rollout documents (``mlray.serving.rollout.ROLLOUTS``; a test pins
#: the two equal), read here as plain data: the registry sits below serving.
ROLLOUTS = "rollouts"


def served_versions(store: StateStore, project: str) -> dict[str, set[int]]:
    """The versions each of ``project``'s stored traffic policies serves (weights and
    shadows), by model."""
    out: dict[str, set[int]] = {}
    for doc in store.list(TRAFFIC, prefix=f"{project}/"):
        policy = TrafficPolicy.model_validate(doc.data)
        out[doc.key.partition("/")[2]] = {*policy.serving, *policy.shadows}
    return out


def running_rollouts(store: StateStore, project: str) -> list[dict[str, Any]]:
    """``project``'s running rollouts (plain documents), oldest first."""
    found = [d.data for d in store.list(ROLLOUTS, prefix=f"{project}/")
             if d.data.get("status") == "running"]
    return sorted(found, key=lambda r: r["created_at"])


def planned_versions(store: StateStore, project: str) -> dict[str, set[int]]:
    """:func:`served_versions` once the running rollouts end: each one's model served by
    its new version alone (beside the others for a shadow rollout)."""
    out = served_versions(store, project)
    for rollout in running_rollouts(store, project):
        model, version = rollout["model"], rollout["version"]
        out[model] = ({*out.get(model, set()), version} if rollout["strategy"] == "shadow"
                      else {version})
    return out


def served_pairs(served: dict[str, set[int]]) -> set[tuple[str, int]]:
    """Every (model, version) in ``served``."""
    return {(model, v) for model, versions in served.items() for v in versions}


def traffic_quota(store: StateStore, project: str, model: str, versions: set[int]) -> list[Op]:
    """The ``deployments`` quota ops of ``model``'s policy coming to serve ``versions`` by
    hand. While a rollout of ``model`` runs, the versions it moves traffic between are
    its own (admitted when it started); only others count.

    Raises:
        QuotaExceeded: the project would serve more versions than its quota.
    """
    def measure() -> tuple[float, float]:
        plan = planned_versions(store, project)
        mine = {r["version"] for r in running_rollouts(store, project) if r["model"] == model}
        if mine:
            owned = served_versions(store, project).get(model, set()) | mine
            after = {**plan, model: plan.get(model, set()) | (versions - owned)}
        else:
            after = {**plan, model: set(versions)}
        return len(served_pairs(plan)), len(served_pairs(after))

    return QuotaGuard(store).admit_change(project, "deployments", measure)
