"""What each project has deployed on Serve, with replicas.

Replica-seconds accrue from the desired state the deployments actor reconciles Serve to
(stored traffic policies, and the versions rollouts keep), not Serve's own status: a
version counts from when it is asked for until nothing wants it. The deployments and
replicas quotas hold the state a rollout ends in (:func:`deploy_quota`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlray.quotas.guard import QuotaGuard
from mlray.registry._documents import TRAFFIC
from mlray.registry.served import planned_versions, served_pairs
from mlray.registry.types import TrafficPolicy
from mlray.serving.settings import ModelServing
from mlray.storage.base import Op, StateStore

if TYPE_CHECKING:
    from mlray.serving.rollout import RolloutController

__all__ = ["deploy_quota", "deployed_replicas", "per_project", "replicas_of"]


def replicas_of(serving: ModelServing) -> int:
    """Replicas a version holds at most: fixed, or its autoscaling maximum."""
    return serving.autoscaling.max_replicas if serving.autoscaling else serving.num_replicas


def deployed_replicas(store: StateStore, rollouts: RolloutController,
                      project: str | None = None) -> dict[tuple[str, str, int], int]:
    """Replicas of every deployed version, by (project, model, version)."""
    wanted: set[tuple[str, str, int]] = set()
    for doc in store.list(TRAFFIC, prefix=f"{project}/" if project else None):
        owner, _, model = doc.key.partition("/")
        policy = TrafficPolicy.model_validate(doc.data)
        wanted.update((owner, model, v) for v in [*policy.serving, *policy.shadows])
    wanted.update(k for k in rollouts.held() if project is None or k[0] == project)
    return {(p, m, v): replicas_of(rollouts.serving_of(p, m, v)) for p, m, v in sorted(wanted)}


def per_project(deployed: dict[tuple[str, str, int], int]
                ) -> tuple[dict[str, int], dict[str, int]]:
    """Replicas and deployed versions per project, from :func:`deployed_replicas`."""
    replicas: dict[str, int] = {}
    versions: dict[str, int] = {}
    for (project, _, _), n in deployed.items():
        replicas[project] = replicas.get(project, 0) + n
        versions[project] = versions.get(project, 0) + 1
    return replicas, versions


def deploy_quota(store: StateStore, rollouts: RolloutController, project: str, model: str,
                 version: int, overrides: dict[str, Any], shadow: bool = False) -> list[Op]:
    """The quota ops of a rollout of ``model`` v``version`` with ``overrides``, for the
    rollout's own write (see :class:`~mlray.quotas.guard.QuotaGuard`).

    Quotas hold the state a rollout ends in: ``model`` served by the new version alone
    (beside its old ones for a shadow rollout), with the other models as they are and
    will be once their running rollouts end (:func:`~mlray.registry.served.planned_versions`).
    The old versions a rollout keeps for its rollback window are not counted.

    Raises:
        QuotaExceeded: the project is at its ``deployments`` or ``replicas`` quota.
    """
    def end_state() -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        now = planned_versions(store, project)
        after = {**now, model: ({*now.get(model, set()), version} if shadow else {version})}
        return served_pairs(now), served_pairs(after)

    def replicas(pairs: set[tuple[str, int]]) -> int:
        return sum(replicas_of(rollouts.serving.for_model(model, **overrides))
                   if (m, v) == (model, version) else
                   replicas_of(rollouts.serving_of(project, m, v)) for m, v in pairs)

    def measure(count: Callable[[set[tuple[str, int]]], int]
                ) -> Callable[[], tuple[float, float]]:
        def both() -> tuple[float, float]:
            now, after = end_state()
            return count(now), count(after)
        return both

    guard = QuotaGuard(store)
    return [*guard.admit_change(project, "deployments", measure(len)),
            *guard.admit_change(project, "replicas", measure(replicas))]
