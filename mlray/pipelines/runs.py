"""Durable run records: one document per run, written with compare-and-set.

The engine saves a run before it acts on a change (a stage is stored RUNNING before its
task starts) and before anyone reads it back, so what a caller sees is always stored.
"""

from __future__ import annotations

import uuid
from typing import Any

from mlray.errors import NotFound
from mlray.pipelines.state import ACTIVE, PipelineRun
from mlray.storage.base import AuditEntry, Put, StateStore

__all__ = ["RUNS", "RunBook", "new_run_id"]

RUNS = "pipeline_runs"


def new_run_id() -> str:
    """A short unique run id."""
    return uuid.uuid4().hex[:12]


class RunBook:
    """Runs by ``<project>/<run_id>``, with the stored version of each kept for CAS."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._versions: dict[str, int] = {}

    @staticmethod
    def key(project: str, run_id: str) -> str:
        """The document key of a run."""
        return f"{project}/{run_id}"

    def save(self, run: PipelineRun, audit: AuditEntry | None = None) -> None:
        """Store ``run`` (with ``audit`` appended in the same write).

        Raises:
            Conflict: someone else wrote the run since this book last read or wrote it.
        """
        key = self.key(run.project, run.run_id)
        doc = self._store.apply([Put(collection=RUNS, key=key, data=run.model_dump(mode="json"),
                                     expected_version=self._versions.get(key, 0))], audit)[0]
        assert doc is not None
        self._versions[key] = doc.version

    def get(self, project: str, run_id: str) -> PipelineRun:
        """The stored run.

        Raises:
            NotFound: no such run in the project.
        """
        key = self.key(project, run_id)
        doc = self._store.get(RUNS, key)
        if doc is None:
            raise NotFound(f"no pipeline run {run_id!r} in project {project!r}", field="run")
        self._versions[key] = doc.version
        return PipelineRun.model_validate(doc.data)

    def list(self, project: str | None = None, **where: Any) -> list[PipelineRun]:
        """Runs of ``project`` (every project when None), newest first."""
        docs = self._store.list(RUNS, where or None,
                                prefix=f"{project}/" if project else None)
        for doc in docs:
            self._versions[doc.key] = doc.version
        runs = [PipelineRun.model_validate(d.data) for d in docs]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def active(self, project: str | None = None, pipeline: str | None = None
               ) -> list[PipelineRun]:
        """Runs that can still move, optionally of one pipeline."""
        where = {"pipeline": pipeline} if pipeline else {}
        return [r for r in self.list(project, **where) if r.state in ACTIVE]

    def reload(self, run: PipelineRun) -> PipelineRun:
        """The stored form of ``run`` (after a lost compare-and-set)."""
        return self.get(run.project, run.run_id)
