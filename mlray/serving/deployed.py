"""What each project has deployed on Serve, with replicas: the deployments and replicas
quotas count it, and replica-seconds accrue from it.

It is the desired state the deployments actor reconciles Serve to (stored traffic
policies, and the versions rollouts keep), not Serve's own status: a version counts from
when it is asked for until nothing wants it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlray.quotas.guard import QuotaGuard
from mlray.registry._documents import TRAFFIC
from mlray.serving.settings import ModelServing
from mlray.serving.traffic import TrafficPolicy
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
                 version: int, overrides: dict[str, Any]) -> list[Op]:
    """The quota ops of deploying ``model`` v``version`` with ``overrides`` (for the
    rollout's own write; see :class:`~mlray.quotas.guard.QuotaGuard`).

    Raises:
        QuotaExceeded: the project is at its ``deployments`` or ``replicas`` quota.
    """
    guard = QuotaGuard(store)
    new = replicas_of(rollouts.serving.for_model(model, **overrides))
    had = deployed_replicas(store, rollouts, project).get((project, model, version))
    return [
        *guard.admit(project, "deployments",
                     lambda: len(deployed_replicas(store, rollouts, project)),
                     0 if had is not None else 1),
        *guard.admit(project, "replicas",
                     lambda: sum(deployed_replicas(store, rollouts, project).values()),
                     new - (had or 0)),
    ]
