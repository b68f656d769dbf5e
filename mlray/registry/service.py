"""The model registry's rules, over a :class:`StateStore`; no Ray here.

Documents: ``models/<project>/<name>`` holds the model (with its aliases and the last
version number handed out) and ``versions/<project>/<name>/<00000001>`` each version
(``traffic/<project>/<name>`` its traffic policy: :mod:`mlray.registry.traffic`).
Every change is one atomic :meth:`StateStore.apply` with compare-and-set on the model
document, so version numbers never repeat or skip, even with several writers.
"""

from __future__ import annotations

import json
from typing import Any

from mlray._private.filters import evaluate, get_field, parse_filter, parse_order, sort_by
from mlray._private.types import Name, Project, Tags, now
from mlray._private.validation import boundary, build
from mlray.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from mlray.identity import Caller, Role
from mlray.quotas.guard import QuotaGuard, storage_in_use
from mlray.registry._documents import MODELS, TRAFFIC, VERSIONS, model_key, version_key
from mlray.registry.architectures import ArchitecturePolicy, check_architecture
from mlray.registry.traffic import TrafficRules, traffic_taken
from mlray.registry.types import (
    ALLOWED_TRANSITIONS,
    Alias,
    ModelSpec,
    ModelVersion,
    RegisteredModel,
    Stage,
    VersionSpec,
)
from mlray.registry.uri import parse_model_uri
from mlray.registry.validation import ValidationRules
from mlray.storage.base import AuditEntry, Delete, Op, Put
from mlray.storage.idempotency import IdempotencyKey, KeyedWrite

__all__ = ["ModelRegistry"]

_QUOTA_RETRIES = 16
_VERSION_FIELDS = frozenset({"version", "stage", "model", "created_at", "updated_at",
                             "created_by", "description"})


class ModelRegistry(ValidationRules, TrafficRules):
    """Registered models, versions, stages, aliases and search, with an audit trail.

    Args:
        store: where documents and the audit log live.
        artifacts: when given, each new version's artifact is checked (exists, sha256).
        evaluator: scores versions for :meth:`validate_version` (the platform wires in
            :func:`mlray.models.validation.evaluate_artifact`).
    """

    @property
    def _quotas(self) -> QuotaGuard:
        """The project quotas a create must fit in (:mod:`mlray.quotas.guard`)."""
        return QuotaGuard(self._store)

    # -- models ----------------------------------------------------------------------------

    @boundary
    def create_model(self, caller: Caller, project: Project, spec: ModelSpec, *,
                     idempotency_key: IdempotencyKey | None = None) -> RegisteredModel:
        """Register a new model name.

        A retry with the same ``idempotency_key`` answers as the first call did (see
        :mod:`mlray.storage.idempotency`).

        Raises:
            AlreadyExists: the name is taken in this project.
            QuotaExceeded: the project is at its ``models`` quota.
        """
        caller.require(project, Role.editor)
        keyed = KeyedWrite(self._store, project, "registry.create_model", idempotency_key,
                           [caller.user, spec])
        if (done := keyed.previous(RegisteredModel)) is not None:
            return done
        ts = now()
        model = RegisteredModel(**spec.model_dump(), project=project, created_at=ts,
                                updated_at=ts, created_by=caller.user)
        key = model_key(project, spec.name)
        for attempt in range(_QUOTA_RETRIES):
            quota = self._quotas.admit(
                project, "models", lambda: len(self._store.list(MODELS, prefix=f"{project}/")))
            try:
                self._store.apply(
                    [Put(collection=MODELS, key=key, data=model.model_dump(mode="json"),
                         expected_version=0), *keyed.record(model), *quota],
                    self._audit(caller, project, "model.create", key,
                                after={"name": spec.name}))
                return model
            except Conflict:
                if (done := keyed.previous(RegisteredModel)) is not None:
                    return done  # a concurrent attempt with this key got there first
                if (quota and attempt < _QUOTA_RETRIES - 1
                        and self._store.get(MODELS, key) is None):
                    continue  # another create took the quota's guard first: count again
                raise AlreadyExists(f"model {spec.name!r} already exists in project "
                                    f"{project!r}", field="name") from None
        raise AssertionError("unreachable")

    @boundary
    def get_model(self, caller: Caller, project: Project, name: Name) -> RegisteredModel:
        """The registered model called ``name``."""
        caller.require(project, Role.viewer)
        return RegisteredModel.model_validate(self._model_doc(project, name).data)

    @boundary
    def update_model(self, caller: Caller, project: Project, name: Name, *,
                     description: str | None = None, owner: str | None = None,
                     tags: Tags | None = None, feature_service: str | None = None
                     ) -> RegisteredModel:
        """Change a model's description, owner, tags (merged; '' deletes one) or feature
        service ('' clears it)."""
        caller.require(project, Role.editor)

        def attempt() -> RegisteredModel:
            doc = self._model_doc(project, name)
            model = RegisteredModel.model_validate(doc.data)
            changes: dict[str, Any] = {"updated_at": now()}
            if description is not None:
                changes["description"] = description
            if owner is not None:
                changes["owner"] = owner
            if feature_service is not None:
                changes["feature_service"] = feature_service or None
            if tags is not None:
                merged = {**model.tags, **tags}
                changes["tags"] = {k: v for k, v in merged.items() if v != ""}
            updated = build(RegisteredModel, "", **{**model.model_dump(), **changes})
            self._store.put(MODELS, doc.key, updated.model_dump(mode="json"), doc.version,
                            self._audit(caller, project, "model.update", doc.key,
                                        after={k: v for k, v in changes.items()
                                               if k != "updated_at"}))
            return updated

        return self._retry(attempt)

    @boundary
    def list_models(self, caller: Caller, project: Project, *, name_like: str | None = None,
                    tags: Tags | None = None) -> list[RegisteredModel]:
        """Models of the project whose name contains ``name_like`` and that carry ``tags``."""
        caller.require(project, Role.viewer)
        needle = (name_like or "").lower()
        models = [RegisteredModel.model_validate(d.data)
                  for d in self._store.list(MODELS, prefix=f"{project}/")]
        return [m for m in models if needle in m.name.lower()
                and all(m.tags.get(k) == v for k, v in (tags or {}).items())]

    @boundary
    def delete_model(self, caller: Caller, project: Project, name: Name, *,
                     force: bool = False) -> int:
        """Delete a model and all its versions; returns how many versions went.

        Raises:
            InvalidTransition: a version is in Production and ``force`` is not set.
        """
        caller.require(project, Role.admin if force else Role.editor)
        doc = self._model_doc(project, name)
        versions = self._store.list(VERSIONS, prefix=f"{project}/{name}/")
        live = [v.data["version"] for v in versions if v.data["stage"] == Stage.PRODUCTION.value]
        if live and not force:
            raise InvalidTransition(
                f"model {name!r} has version(s) {live} in Production; archive them first "
                "or pass force (admin)", field="force")
        ops: list[Op] = [Delete(collection=VERSIONS, key=v.key, expected_version=v.version)
                         for v in versions]
        ops.append(Delete(collection=MODELS, key=doc.key, expected_version=doc.version))
        policy = self._store.get(TRAFFIC, doc.key)
        if policy is not None:  # its apps go with it (the deployments actor reconciles)
            ops.append(Delete(collection=TRAFFIC, key=doc.key,
                              expected_version=policy.version))
        self._store.apply(ops, self._audit(caller, project, "model.delete", doc.key,
                                           before={"versions": len(versions)}))
        return len(versions)

    # -- versions --------------------------------------------------------------------------

    @boundary
    def create_version(self, caller: Caller, project: Project, model: Name,
                       spec: VersionSpec, *,
                       idempotency_key: IdempotencyKey | None = None) -> ModelVersion:
        """Add the next version of ``model``.

        With an ``idempotency_key``, the key and the answer are stored in the same atomic
        write as the version, so a retry whose first answer was lost gets that version
        back and never adds a second one.

        Raises:
            NotFound: no such model, or the artifact does not exist.
            IntegrityError: the artifact does not hash to ``spec.artifact_sha256``.
            InvalidInput: the key was used before for a different version.
            QuotaExceeded: the project is at its ``versions`` or ``storage_bytes`` quota.
        """
        caller.require(project, Role.editor)
        keyed = KeyedWrite(self._store, project, "registry.create_version", idempotency_key,
                           [caller.user, model, spec])
        if (done := keyed.previous(ModelVersion)) is not None:
            return done
        self._model_doc(project, model)
        if self._artifacts is not None:
            ref = self._artifacts.verify(spec.artifact_uri, spec.artifact_sha256)
            spec = spec.model_copy(update={"artifact_size": ref.size})
            if ref.is_dir:
                self._check_architecture(spec.artifact_uri)

        def attempt() -> ModelVersion:
            if (done := keyed.previous(ModelVersion)) is not None:
                return done  # a concurrent attempt with this key got there first
            doc = self._model_doc(project, model)
            registered = RegisteredModel.model_validate(doc.data)
            number = registered.latest_version + 1
            ts = now()
            version = ModelVersion(**spec.model_dump(), model=model, project=project,
                                   version=number, created_at=ts, updated_at=ts,
                                   created_by=caller.user, updated_by=caller.user)
            bumped = registered.model_copy(update={"latest_version": number, "updated_at": ts})
            key = version_key(project, model, number)
            quota = [*self._quotas.admit(
                         project, "versions",
                         lambda: len(self._store.list(VERSIONS, prefix=f"{project}/"))),
                     *self._quotas.admit(project, "storage_bytes",
                                         lambda: storage_in_use(self._store, project),
                                         spec.artifact_size)]
            self._store.apply(
                [Put(collection=MODELS, key=doc.key, data=bumped.model_dump(mode="json"),
                     expected_version=doc.version),
                 Put(collection=VERSIONS, key=key, data=version.model_dump(mode="json"),
                     expected_version=0),
                 *keyed.record(version), *quota],
                self._audit(caller, project, "version.create", key,
                            after={"version": number, "artifact_sha256": spec.artifact_sha256,
                                   "run_id": spec.lineage.run_id}))
            return version

        return self._retry(attempt)

    @boundary
    def get_version(self, caller: Caller, project: Project, model: Name,
                    version: int) -> ModelVersion:
        """One version of ``model``."""
        caller.require(project, Role.viewer)
        mdoc, vdoc = self._model_and_version(project, model, version)
        return self._version(vdoc, RegisteredModel.model_validate(mdoc.data))

    @boundary
    def list_versions(self, caller: Caller, project: Project, model: Name, *,
                      stage: Stage | None = None) -> list[ModelVersion]:
        """All versions of ``model`` (optionally in one stage), oldest first."""
        caller.require(project, Role.viewer)
        registered = RegisteredModel.model_validate(self._model_doc(project, model).data)
        where = {"stage": stage.value} if stage else None
        docs = self._store.list(VERSIONS, where, prefix=f"{project}/{model}/")
        return [self._version(d, registered) for d in docs]

    @boundary
    def search_versions(self, caller: Caller, project: Project, *, filter: str | None = None,
                        name_like: str | None = None, stage: Stage | None = None,
                        tags: Tags | None = None, order_by: list[str] | None = None,
                        limit: int = 100) -> list[ModelVersion]:
        """Versions across the project's models, e.g. ``filter="metrics.auc >= 0.9"``.

        Args:
            filter: conditions on ``metrics.*``, ``params.*``, ``tags.*``, ``stage``, ...
            name_like: substring of the model name.
            order_by: e.g. ``["metrics.auc DESC"]``; default newest first.
        """
        caller.require(project, Role.viewer)
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be between 1 and 10000", field="limit")
        conditions = parse_filter(filter, _VERSION_FIELDS)
        order = parse_order(order_by or ["created_at DESC"], _VERSION_FIELDS)
        models = {m.name: m for m in self.list_models(caller, project, name_like=name_like)}
        where = {"stage": stage.value} if stage else None
        found = []
        for doc in self._store.list(VERSIONS, where, prefix=f"{project}/"):
            if doc.data["model"] not in models:
                continue
            version = self._version(doc, models[doc.data["model"]])
            if all(version.tags.get(k) == v for k, v in (tags or {}).items()) and evaluate(
                    version, conditions, get_field):
                found.append(version)
        return sort_by(found, order, get_field)[:limit]

    @boundary
    def transition_stage(self, caller: Caller, project: Project, model: Name, version: int,
                         stage: Stage, *, archive_existing: bool = True,
                         force: bool = False) -> ModelVersion:
        """Move a version to ``stage``.

        Promoting to Production archives the current Production version(s) in the same
        atomic write unless ``archive_existing`` is False, and is refused while the
        version's platform-computed validation report has failed critical gates (or is
        missing while the model has required gates: :mod:`mlray.registry.validation`),
        unless ``force`` (admins only; the override is audited with the failed gates). A
        report a caller wrote never counts.

        A version that takes traffic (a positive weight or a shadow in the model's stored
        policy) is never archived, neither by hand nor by a promotion: the traffic must
        move first (a rollout does that, gated), so a stage change never moves live
        traffic by itself nor leaves a live version Archived.

        Raises:
            InvalidTransition: the move is not allowed (the message lists the allowed
                ones), critical gates failed (the message lists them), or the version to
                archive takes traffic (the message says how much and how to move it).
        """
        caller.require(project, Role.admin if force else Role.editor)

        def attempt() -> ModelVersion:
            doc = self._version_doc(project, model, version)
            current = ModelVersion.model_validate(doc.data)
            allowed = ALLOWED_TRANSITIONS[current.stage]
            if stage not in allowed:
                names = ", ".join(sorted(s.value for s in allowed))
                raise InvalidTransition(
                    f"{model} v{version}: cannot move from {current.stage.value} to "
                    f"{stage.value}; allowed: {names}", field="stage")
            failed = (self._gate_failures(project, model, current)
                      if stage is Stage.PRODUCTION else [])
            if failed and not force:
                raise InvalidTransition(
                    f"{model} v{version} failed critical validation gates: "
                    f"{'; '.join(failed)}; an admin may force the promotion", field="stage")
            ts = now()
            moved = current.model_copy(update={"stage": stage, "updated_at": ts,
                                               "updated_by": caller.user})
            mdoc = self._model_doc(project, model)
            policy = self._stored_traffic(mdoc.key)
            if stage is Stage.ARCHIVED and (taken := traffic_taken(policy, version)):
                raise InvalidTransition(
                    f"{model} v{version} takes {taken} of {model}'s traffic; move it first "
                    f"(`mlray deploy {model} --version N` or `mlray traffic {model} vN=100`), "
                    "then archive it", field="stage")
            ops: list[Op] = [Put(collection=VERSIONS, key=doc.key,
                                 data=moved.model_dump(mode="json", exclude={"aliases"}),
                                 expected_version=doc.version)]
            archived = []
            if stage is Stage.PRODUCTION and archive_existing:
                for other in self._store.list(VERSIONS, {"stage": Stage.PRODUCTION.value},
                                              prefix=f"{project}/{model}/"):
                    if other.key == doc.key:
                        continue
                    number = other.data["version"]
                    if taken := traffic_taken(policy, number):
                        raise InvalidTransition(
                            f"promoting {model} v{version} would archive v{number}, which "
                            f"takes {taken} of {model}'s traffic; roll v{version} out first "
                            f"(`mlray deploy {model} --version {version}`) and promote it "
                            f"after, or keep v{number} in Production (--keep-existing)",
                            field="stage")
                    old = ModelVersion.model_validate(other.data).model_copy(
                        update={"stage": Stage.ARCHIVED, "updated_at": ts,
                                "updated_by": caller.user})
                    archived.append(old.version)
                    ops.append(Put(collection=VERSIONS, key=other.key,
                                   data=old.model_dump(mode="json", exclude={"aliases"}),
                                   expected_version=other.version))
            # Rewriting the model document under compare-and-set serializes concurrent
            # stage changes of one model, so two promotions cannot both win.
            touched = RegisteredModel.model_validate(mdoc.data).model_copy(
                update={"updated_at": ts})
            ops.append(Put(collection=MODELS, key=mdoc.key,
                           data=touched.model_dump(mode="json"), expected_version=mdoc.version))
            self._store.apply(ops, self._audit(
                caller, project, "version.stage", doc.key,
                before={"stage": current.stage.value},
                after={"stage": stage.value, "archived": archived,
                       **({"forced_past_gates": failed} if force and failed else {})}))
            moved.aliases = sorted(a for a, v in touched.aliases.items() if v == version)
            return moved

        return self._retry(attempt)

    @boundary
    def delete_version(self, caller: Caller, project: Project, model: Name, version: int) -> None:
        """Delete a version and every alias that points at it; numbers are never reused.

        Raises:
            InvalidTransition: the version is in Production (archive it first) or takes
                traffic.
        """
        caller.require(project, Role.editor)

        def attempt() -> None:
            doc = self._version_doc(project, model, version)
            if doc.data["stage"] == Stage.PRODUCTION.value:
                raise InvalidTransition(
                    f"{model} v{version} is in Production; move it to Archived first",
                    field="version")
            mdoc = self._model_doc(project, model)
            if taken := traffic_taken(self._stored_traffic(mdoc.key), version):
                raise InvalidTransition(
                    f"{model} v{version} takes {taken} of {model}'s traffic; move it first "
                    f"(`mlray traffic {model} vN=100`), then delete it", field="version")
            registered = RegisteredModel.model_validate(mdoc.data)
            dropped = sorted(a for a, v in registered.aliases.items() if v == version)
            kept = {a: v for a, v in registered.aliases.items() if v != version}
            updated = registered.model_copy(update={"aliases": kept, "updated_at": now()})
            self._store.apply(
                [Delete(collection=VERSIONS, key=doc.key, expected_version=doc.version),
                 Put(collection=MODELS, key=mdoc.key, data=updated.model_dump(mode="json"),
                     expected_version=mdoc.version)],
                self._audit(caller, project, "version.delete", doc.key,
                            before={"stage": doc.data["stage"], "aliases": dropped}))

        self._retry(attempt)

    # -- aliases and URIs ------------------------------------------------------------------

    @boundary
    def set_alias(self, caller: Caller, project: Project, model: Name, alias: Alias, version: int,
                  *, move: bool = False) -> RegisteredModel:
        """Point ``alias`` at ``version``.

        Raises:
            Conflict: the alias points at another version and ``move`` is False.
        """
        caller.require(project, Role.editor)

        def attempt() -> RegisteredModel:
            mdoc, _ = self._model_and_version(project, model, version)
            registered = RegisteredModel.model_validate(mdoc.data)
            held = registered.aliases.get(alias)
            if held == version:
                return registered
            if held is not None and not move:
                raise Conflict(f"alias {alias!r} of {model!r} already points at version {held}; "
                               "pass move to repoint it", field="alias")
            updated = registered.model_copy(update={
                "aliases": {**registered.aliases, alias: version}, "updated_at": now()})
            self._store.put(MODELS, mdoc.key, updated.model_dump(mode="json"), mdoc.version,
                            self._audit(caller, project, "alias.set", f"{mdoc.key}@{alias}",
                                        before={"version": held}, after={"version": version}))
            return updated

        return self._retry(attempt)

    @boundary
    def delete_alias(self, caller: Caller, project: Project, model: Name, alias: str) -> None:
        """Remove ``alias``.

        Raises:
            NotFound: the model has no such alias.
        """
        caller.require(project, Role.editor)

        def attempt() -> None:
            mdoc = self._model_doc(project, model)
            registered = RegisteredModel.model_validate(mdoc.data)
            if alias not in registered.aliases:
                raise NotFound(f"model {model!r} has no alias {alias!r}", field="alias")
            kept = {a: v for a, v in registered.aliases.items() if a != alias}
            updated = registered.model_copy(update={"aliases": kept, "updated_at": now()})
            self._store.put(MODELS, mdoc.key, updated.model_dump(mode="json"), mdoc.version,
                            self._audit(caller, project, "alias.delete", f"{mdoc.key}@{alias}",
                                        before={"version": registered.aliases[alias]}))

        self._retry(attempt)

    @boundary
    def resolve(self, caller: Caller, project: Project, uri: str) -> ModelVersion:
        """The version a ``models:/`` URI names (``@latest`` = highest existing version).

        Raises:
            NotFound: unknown model, version or alias, or no version in that stage.
        """
        caller.require(project, Role.viewer)
        ref = parse_model_uri(uri)
        if ref.version is not None:
            mdoc, vdoc = self._model_and_version(project, ref.name, ref.version)
            return self._version(vdoc, RegisteredModel.model_validate(mdoc.data))
        registered = RegisteredModel.model_validate(self._model_doc(project, ref.name).data)
        if ref.alias is not None and ref.alias != "latest":
            if ref.alias not in registered.aliases:
                raise NotFound(f"model {ref.name!r} has no alias {ref.alias!r}", field="uri")
            return self._version(
                self._version_doc(project, ref.name, registered.aliases[ref.alias]), registered)
        where = {"stage": ref.stage.value} if ref.stage else None
        docs = self._store.list(VERSIONS, where, prefix=f"{project}/{ref.name}/")
        if not docs:
            what = f"in stage {ref.stage.value}" if ref.stage else "at all"
            raise NotFound(f"model {ref.name!r} has no version {what}", field="uri")
        return self._version(docs[-1], registered)

    def _check_architecture(self, uri: str) -> None:
        assert self._artifacts is not None
        raw = self._artifacts.read_member(uri, "architecture.json")
        if raw is None:
            return
        try:
            kind = json.loads(raw).get("type")
        except (ValueError, AttributeError):
            raise InvalidInput(f"artifact {uri}: architecture.json is not a JSON object",
                               field="artifact_uri") from None
        check_architecture(str(kind), ArchitecturePolicy(self._store).allowed())

    def loadable_architectures(self) -> frozenset[str]:
        """The allowed list for model loaders (replicas); no caller, as it is not secret."""
        return ArchitecturePolicy(self._store).allowed()

    @boundary
    def allowed_architectures(self, caller: Caller, project: Project) -> list[str]:
        """The ``module:callable`` architectures an admin allowed (built-ins aside)."""
        caller.require(project, Role.viewer)
        return sorted(ArchitecturePolicy(self._store).allowed())

    @boundary
    def allow_architectures(self, caller: Caller, project: Project,
                            allow: list[str] | None = None,
                            revoke: list[str] | None = None) -> list[str]:
        """Add or remove allowed architectures for the whole platform (admins of every
        project only; audited). ``project`` is where the call was made from."""
        return ArchitecturePolicy(self._store).change(caller, allow=allow or (),
                                                      revoke=revoke or ())

    @boundary
    def audit_log(self, caller: Caller, project: Project, *, after_seq: int = 0,
                  limit: int = 100) -> list[AuditEntry]:
        """The project's audit entries after ``after_seq`` (admins only)."""
        caller.require(project, Role.admin)
        return self._store.audit_log(after_seq=after_seq, limit=limit, project=project)
