"""Training and tuning job records: status, times, error, run id, and cancellation.

PENDING → RUNNING → COMPLETED | FAILED | CANCELLED (PENDING may also end directly).
A running job's driver sends heartbeats; a RUNNING job whose heartbeat is older than
``stale_after_s`` is marked FAILED when read, so a job whose driver died never
stays RUNNING. Cancelling a RUNNING job sets a flag the training loop checks after
each epoch.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from pydantic import BaseModel, Field

from mlray._private.types import Project, now
from mlray._private.validation import boundary
from mlray.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from mlray.identity import Caller, Role
from mlray.storage.base import AuditEntry, Put, StateStore
from mlray.storage.idempotency import IdempotencyKey, KeyedWrite

__all__ = ["JobBook", "JobStatus", "TrainingJob"]

JOBS = "jobs"


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


_NEXT: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class TrainingJob(BaseModel):
    """One training or tuning job."""

    job_id: str
    project: str
    kind: str = Field(description="train or tune")
    name: str
    user: str
    status: JobStatus = JobStatus.PENDING
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
    error: str | None = None
    run_id: str | None = None
    model_version: int | None = None
    cancel_requested: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class JobBook:
    """Job records over a :class:`StateStore`."""

    def __init__(self, store: StateStore, stale_after_s: float = 300.0) -> None:
        self._store = store
        self.stale_after_s = stale_after_s

    def _load(self, caller: Caller, project: str, job_id: str,
              role: Role) -> tuple[int, TrainingJob]:
        caller.require(project, role)
        doc = self._store.get(JOBS, job_id)
        if doc is None or doc.data["project"] != project:
            raise NotFound(f"job {job_id!r} does not exist in project {project!r}",
                           field="job_id")
        return doc.version, TrainingJob.model_validate(doc.data)

    def _save(self, caller: Caller, version: int, job: TrainingJob, action: str,
              extra: list[Put] | None = None) -> TrainingJob:
        self._store.apply(
            [Put(collection=JOBS, key=job.job_id, data=job.model_dump(mode="json"),
                 expected_version=version), *(extra or [])],
            AuditEntry(user=caller.user, project=job.project, action=action,
                       target=job.job_id, after={"status": job.status.value}))
        return job

    def _expire(self, caller: Caller, version: int, job: TrainingJob) -> TrainingJob:
        beat = job.heartbeat_at or job.started_at or job.created_at
        if job.status is JobStatus.RUNNING and now() - beat > self.stale_after_s:
            job = job.model_copy(update={
                "status": JobStatus.FAILED, "ended_at": now(),
                "error": f"no heartbeat for {now() - beat:.0f}s: the job's driver died"})
            return self._save(caller, version, job, "job.lost")
        return job

    @boundary
    def create_job(self, caller: Caller, project: Project, kind: str, name: str,
                   details: dict[str, Any] | None = None, *,
                   idempotency_key: IdempotencyKey | None = None) -> TrainingJob:
        """Record a new PENDING job (a retry with the same ``idempotency_key`` gets the
        first job back, never a second)."""
        caller.require(project, Role.editor)
        if kind not in ("train", "tune"):
            raise InvalidInput(f"kind must be train or tune, got {kind!r}", field="kind")
        keyed = KeyedWrite(self._store, project, "jobs.create_job", idempotency_key,
                           [caller.user, kind, name, details])
        if (done := keyed.previous(TrainingJob)) is not None:
            return done
        job = TrainingJob(job_id=uuid.uuid4().hex[:16], project=project, kind=kind, name=name,
                          user=caller.user, created_at=now(), details=details or {})
        try:
            return self._save(caller, 0, job, "job.create", keyed.record(job))
        except Conflict:
            if (done := keyed.previous(TrainingJob)) is not None:
                return done  # a concurrent attempt with this key got there first
            raise

    @boundary
    def update_job(self, caller: Caller, project: Project, job_id: str, *,
                   status: JobStatus | None = None, run_id: str | None = None,
                   error: str | None = None, model_version: int | None = None,
                   heartbeat: bool = False) -> TrainingJob:
        """Move a job on, attach its run or version, or beat its heartbeat.

        Raises:
            InvalidTransition: the status change is not allowed (e.g. from an end state).
        """
        version, job = self._load(caller, project, job_id, Role.editor)
        changes: dict[str, Any] = {}
        ts = now()
        if status is not None and status is not job.status:
            if status not in _NEXT[job.status]:
                raise InvalidTransition(f"job {job_id} is {job.status.value}; it cannot become "
                                        f"{status.value}", field="status")
            changes["status"] = status
            if status is JobStatus.RUNNING:
                changes["started_at"] = ts
            else:
                changes["ended_at"] = ts
        if heartbeat or status is JobStatus.RUNNING:
            changes["heartbeat_at"] = ts
        for key, value in (("run_id", run_id), ("error", error),
                           ("model_version", model_version)):
            if value is not None:
                changes[key] = value
        return self._save(caller, version, job.model_copy(update=changes),
                          f"job.{(status or job.status).value.lower()}")

    @boundary
    def cancel_job(self, caller: Caller, project: Project, job_id: str) -> TrainingJob:
        """Cancel a job: a PENDING one at once, a RUNNING one after its current epoch."""
        version, job = self._load(caller, project, job_id, Role.editor)
        job = self._expire(caller, version, job)
        if job.status is JobStatus.PENDING:
            return self._save(caller, version, job.model_copy(update={
                "status": JobStatus.CANCELLED, "ended_at": now()}), "job.cancelled")
        if job.status is not JobStatus.RUNNING:
            raise InvalidTransition(f"job {job_id} already ended as {job.status.value}",
                                    field="job_id")
        return self._save(caller, version, job.model_copy(update={"cancel_requested": True}),
                          "job.cancel_requested")

    @boundary
    def get_job(self, caller: Caller, project: Project, job_id: str) -> TrainingJob:
        """One job (a RUNNING job with a stale heartbeat comes back FAILED)."""
        version, job = self._load(caller, project, job_id, Role.viewer)
        return self._expire(caller, version, job)

    @boundary
    def list_jobs(self, caller: Caller, project: Project, *, status: JobStatus | None = None,
                  limit: int = 100) -> list[TrainingJob]:
        """The project's jobs, newest first."""
        caller.require(project, Role.viewer)
        jobs = [self._expire(caller, d.version, TrainingJob.model_validate(d.data))
                for d in self._store.list(JOBS, {"project": project})]
        jobs = [j for j in jobs if status is None or j.status is status]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)[:limit]
