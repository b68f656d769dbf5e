"""The documents the registry keeps and the helpers every part of it uses: keys, reads
that name what is missing, audit entries, compare-and-set retries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mlray._private.types import Project
from mlray.errors import Conflict, NotFound
from mlray.identity import Caller
from mlray.registry.types import ModelVersion, RegisteredModel
from mlray.storage.artifacts import ArtifactStore
from mlray.storage.base import AuditEntry, Document, StateStore

__all__ = ["MODELS", "TRAFFIC", "VERSIONS", "RegistryDocuments", "model_key", "version_key"]

MODELS = "models"
VERSIONS = "versions"
TRAFFIC = "traffic"
_RETRIES = 64
T = TypeVar("T")


def model_key(project: Project, name: str) -> str:
    return f"{project}/{name}"


def version_key(project: Project, name: str, version: int) -> str:
    return f"{project}/{name}/{version:08d}"


class RegistryDocuments:
    """The store, the artifact checker and the shared helpers of the registry's parts.

    ``evaluator`` scores a version for its validation report (see
    :mod:`mlray.registry.validation`); the platform wires one in, a registry without it
    cannot validate.
    """

    def __init__(self, store: StateStore, artifacts: ArtifactStore | None = None,
                 evaluator: Callable[..., Any] | None = None) -> None:
        self._store = store
        self._artifacts = artifacts
        self._evaluator = evaluator

    # -- helpers ---------------------------------------------------------------------------

    def _model_doc(self, project: str, name: str) -> Document:
        doc = self._store.get(MODELS, model_key(project, name))
        if doc is None:
            raise NotFound(f"model {name!r} does not exist in project {project!r}", field="model")
        return doc

    def _version_doc(self, project: str, name: str, version: int) -> Document:
        return self._model_and_version(project, name, version)[1]

    def _model_and_version(self, project: str, name: str,
                           version: int) -> tuple[Document, Document]:
        """Both documents in one round trip; NotFound names whichever is missing."""
        model, found = self._store.get_many([(MODELS, model_key(project, name)),
                                             (VERSIONS, version_key(project, name, version))])
        if model is None:
            raise NotFound(f"model {name!r} does not exist in project {project!r}", field="model")
        if found is None:
            raise NotFound(f"model {name!r} has no version {version}", field="version")
        return model, found

    @staticmethod
    def _version(doc: Document, model: RegisteredModel | None) -> ModelVersion:
        version = ModelVersion.model_validate(doc.data)
        if model is not None:
            version.aliases = sorted(a for a, v in model.aliases.items() if v == version.version)
        return version

    @staticmethod
    def _audit(caller: Caller, project: Project, action: str, target: str,
               before: dict[str, Any] | None = None,
               after: dict[str, Any] | None = None) -> AuditEntry:
        return AuditEntry(user=caller.user, project=project, action=action, target=target,
                          before=before, after=after)

    @staticmethod
    def _retry(attempt: Callable[[], T]) -> T:
        """Run a read-check-write attempt again when another writer got there first."""
        for _ in range(_RETRIES - 1):
            try:
                return attempt()
            except Conflict:
                continue
        return attempt()
