"""Traffic policies in the registry: what the serving ingress routes by, kept with the
versions so one compare-and-set write guards the rule between them (a version that takes
traffic is never archived or deleted; an Archived version's traffic may only shrink,
except when a rollback restores a policy that served)."""

from __future__ import annotations

from mlray._private.types import Name, Project
from mlray._private.validation import boundary
from mlray.errors import InvalidTransition, NotFound
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.registry._documents import (
    MODELS,
    TRAFFIC,
    VERSIONS,
    RegistryDocuments,
    version_key,
)
from mlray.registry.served import traffic_quota
from mlray.registry.types import ModelVersion, ServedModel, Stage, TrafficPolicy
from mlray.storage.base import Op, Put

__all__ = ["TrafficRules", "traffic_taken"]


class TrafficRules(RegistryDocuments):
    """The traffic-policy calls of :class:`mlray.registry.ModelRegistry`."""

    def _stored_traffic(self, model_key: str) -> TrafficPolicy | None:
        doc = self._store.get(TRAFFIC, model_key)
        return TrafficPolicy.model_validate(doc.data) if doc is not None else None

    def _write_traffic(self, caller: Caller, project: str, model: str, policy: TrafficPolicy,
                       *, restore: bool) -> TrafficPolicy:
        mdoc = self._model_doc(project, model)
        named = sorted({*policy.weights, *policy.shadows})
        docs = self._store.get_many([(VERSIONS, version_key(project, model, v)) for v in named])
        before = self._store.get(TRAFFIC, mdoc.key)
        quota: list[Op] = []
        if restore:
            gone = {n for n, doc in zip(named, docs, strict=True) if doc is None}
            kept = {v: w for v, w in policy.weights.items() if v not in gone}
            if not any(w > 0 for w in kept.values()):
                raise NotFound(f"no version of the policy to restore exists any more "
                               f"(deleted: {sorted(gone)})", field="weights")
            policy = policy.model_copy(update={
                "weights": kept, "shadows": [v for v in policy.shadows if v not in gone]})
        else:
            old = TrafficPolicy.model_validate(before.data) if before else None
            for number, doc in zip(named, docs, strict=True):
                if doc is None:
                    raise NotFound(f"model {model!r} has no version {number}", field="weights")
                if doc.data["stage"] == Stage.ARCHIVED.value and gains(old, policy, number):
                    raise InvalidTransition(
                        f"{model} v{number} is Archived; its traffic can shrink but not grow "
                        f"(move it to Staging or Production first)", field="weights")
            quota = traffic_quota(self._store, project, model,
                                  {*policy.serving, *policy.shadows})
        self._store.apply(
            [Put(collection=TRAFFIC, key=mdoc.key, data=policy.model_dump(mode="json")),
             Put(collection=MODELS, key=mdoc.key, data=mdoc.data,
                 expected_version=mdoc.version), *quota],
            self._audit(caller, project, "traffic.restore" if restore else "traffic.set",
                        mdoc.key, before=before.data if before else None,
                        after=policy.model_dump(mode="json")))
        return policy

    @boundary
    def set_traffic(self, caller: Caller, project: Project, model: Name,
                    policy: TrafficPolicy) -> TrafficPolicy:
        """Store ``model``'s traffic policy (what the serving ingress routes by).

        Raises:
            NotFound: a version in the policy does not exist.
            InvalidTransition: an Archived version would get a larger share than it has
                (or become a shadow): Archived versions may only lose traffic.
            QuotaExceeded: the project would serve more versions than its ``deployments``
                quota (:func:`mlray.registry.served.traffic_quota`).
        """
        caller.require(project, Role.editor)
        return self._retry(lambda: self._write_traffic(caller, project, model, policy,
                                                       restore=False))

    @boundary
    def restore_traffic(self, caller: Caller, project: Project, model: Name,
                        policy: TrafficPolicy) -> TrafficPolicy:
        """Put back a policy that served before (a rollback): Archived versions in it are
        allowed, versions deleted since are left out (audited as ``traffic.restore``).

        Not on the registry actor's API: only the deployments actor's rollbacks call it.

        Raises:
            NotFound: none of the policy's weighted versions exists any more.
        """
        caller.require(project, Role.editor)
        return self._retry(lambda: self._write_traffic(caller, project, model, policy,
                                                       restore=True))

    def traffic_policies(self, caller: Caller) -> dict[tuple[str, str], TrafficPolicy]:
        """Every stored policy of every project, by (project, model): the serving state
        the deployments actor reconciles Ray Serve to (needs a role in every project)."""
        caller.require(ALL_PROJECTS, Role.viewer)
        out = {}
        for doc in self._store.list(TRAFFIC):
            project, _, model = doc.key.partition("/")
            out[(project, model)] = TrafficPolicy.model_validate(doc.data)
        return out

    @boundary
    def get_traffic(self, caller: Caller, project: Project, model: Name) -> TrafficPolicy:
        """``model``'s traffic policy; without one, all traffic to its Production version.

        Raises:
            NotFound: no policy and no Production version.
        """
        caller.require(project, Role.viewer)
        mdoc = self._model_doc(project, model)
        doc = self._store.get(TRAFFIC, mdoc.key)
        if doc is not None:
            return TrafficPolicy.model_validate(doc.data)
        live = self._store.list(VERSIONS, {"stage": Stage.PRODUCTION.value},
                                prefix=f"{project}/{model}/")
        if not live:
            raise NotFound(f"model {model!r} has no traffic policy and no Production version",
                           field="model")
        return TrafficPolicy(weights={doc.data["version"]: 1.0 for doc in live[-1:]})

    @boundary
    def serving_view(self, caller: Caller, project: Project) -> dict[str, ServedModel]:
        """What the ingress routes by, for every model with a policy or a Production version:
        the policy and the versions it names (one read of the store per collection)."""
        caller.require(project, Role.viewer)
        prefix = f"{project}/"
        policies = {d.key[len(prefix):]: TrafficPolicy.model_validate(d.data)
                    for d in self._store.list(TRAFFIC, prefix=prefix)}
        services = {d.key[len(prefix):]: d.data.get("feature_service")
                    for d in self._store.list(MODELS, prefix=prefix)}
        versions: dict[str, dict[int, ModelVersion]] = {}
        for doc in self._store.list(VERSIONS, prefix=prefix):
            version = ModelVersion.model_validate(doc.data)
            versions.setdefault(version.model, {})[version.version] = version
        view: dict[str, ServedModel] = {}
        for model, known in versions.items():
            policy = policies.get(model)
            if policy is None:
                live = [v for v, mv in known.items() if mv.stage is Stage.PRODUCTION]
                if not live:
                    continue
                policy = TrafficPolicy(weights={max(live): 1.0})
            named = {*policy.weights, *policy.shadows}
            # The ingress needs schemas and stages, not baselines: keep the refresh small.
            view[model] = ServedModel(policy=policy,
                                      versions={v: known[v].model_copy(update={"baseline": None})
                                                for v in named if v in known},
                                      feature_service=services.get(model))
        return view


def share(policy: TrafficPolicy, version: int) -> float:
    total = sum(policy.weights.values())
    return policy.weights.get(version, 0.0) / total if total > 0 else 0.0


def gains(before: TrafficPolicy | None, after: TrafficPolicy, version: int) -> bool:
    """Whether ``version`` gets a larger share, or becomes a shadow, in ``after``."""
    if version in after.shadows and (before is None or version not in before.shadows):
        return True
    return share(after, version) > (share(before, version) if before else 0.0) + 1e-9


def traffic_taken(policy: TrafficPolicy | None, version: int) -> str | None:
    """How ``version`` takes traffic under ``policy`` ("100%", "copies (shadow)"), if it does."""
    if policy is None:
        return None
    if policy.weights.get(version, 0) > 0:
        return f"{share(policy, version):.0%}"
    return "copies (shadow)" if version in policy.shadows else None
