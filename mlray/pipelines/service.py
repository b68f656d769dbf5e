"""The pipelines service (the ``pipelines`` actor's logic): definitions per project, runs,
approvals and triggers.

Definitions are applied with a diff (added, changed, removed) and audited. A run is
started by hand (``run``), by a trigger (cron, new data, new feedback rows; checked by
:meth:`check_triggers`) or by an alert rule firing (:meth:`alert_fired`); a start for a
pipeline that already has an active run (in the store: another process's too) is coalesced
into that run (counted on its stored record), never run twice. A trigger's state is saved
only after the run it fired was created, so a crash in between fires it again (and the
second firing is coalesced) rather than losing it. Stages act as the run's requester (a
trigger's runs as whoever applied the pipeline), through a project-scoped token the
platform mints for each stage.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from mlray._private.types import Name, Project
from mlray._private.validation import boundary
from mlray.errors import Conflict, InvalidInput, MlrayError
from mlray.identity import Caller, Role
from mlray.pipelines.cache import StageCache, code_versions
from mlray.pipelines.code_policy import CodePolicy
from mlray.pipelines.definitions import AlertFired, PipelineSpec
from mlray.pipelines.driver import Driver
from mlray.pipelines.engine import RunEngine
from mlray.pipelines.executors import Executor
from mlray.pipelines.runs import RunBook, new_run_id
from mlray.pipelines.state import PipelineRun, RunState, StageRun
from mlray.pipelines.triggers import due, feedback_rows
from mlray.storage.artifacts import ArtifactStore
from mlray.storage.base import AuditEntry, Delete, Put, StateStore

__all__ = ["ApplyResult", "PipelineService", "PipelineSummary", "RunStart"]

R = TypeVar("R")
PIPELINES = "pipelines"
TRIGGERS = "pipeline_triggers"

#: Mints the credential a stage presents: (requester, project) -> token or None.
Mint = Callable[[Caller, str], str | None]


class ApplyResult(BaseModel):
    """What an apply changed (or would change, for a dry run)."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]
    applied: bool


class RunStart(BaseModel):
    """A started run, or the active run a start was folded into (``coalesced``)."""

    run: PipelineRun
    coalesced: bool = False


class PipelineSummary(BaseModel):
    """A pipeline as listed: its definition and its latest run."""

    spec: PipelineSpec
    applied_by: str
    last_run: str | None = None
    last_state: RunState | None = None
    runs: int = Field(0, description="Runs kept for it.")


def _serial(fn: Callable[..., R]) -> Callable[..., R]:
    """One call at a time per service (the driver's threads and the callers')."""
    @functools.wraps(fn)
    def wrapper(self: PipelineService, *args: Any, **kwargs: Any) -> R:
        with self._lock:
            return fn(self, *args, **kwargs)
    return wrapper


class PipelineService:
    """Pipelines of every project and their runs, over one state store."""

    #: Methods that take no caller and answer only the platform (admin of every project).
    PLATFORM = frozenset({"tick", "check_triggers", "alert_fired"})

    def __init__(self, store: StateStore, artifacts: ArtifactStore, executor: Executor, *,
                 offline_uri: str | None = None, mint: Mint | None = None,
                 namespace: str | None = None, clock: Callable[[], float] = time.time,
                 autodrive: bool = False,
                 versions: Callable[[PipelineSpec], dict[str, str]] = code_versions,
                 on_run: Callable[[PipelineRun, str | None], None] | None = None) -> None:
        self._lock = threading.RLock()
        self._on_run = on_run
        self._autodrive = autodrive
        self._versions = versions
        self.driver: Driver | None = None
        self._store = store
        self._offline_uri = offline_uri
        self._clock = clock
        self._mint = mint
        self.code = CodePolicy(store)
        self.book = RunBook(store)
        self.engine = RunEngine(self.book, StageCache(store, artifacts), executor,
                                artifact_uri=artifacts.address, credential=self._credential,
                                namespace=namespace, clock=clock)
        self._active: dict[str, PipelineRun] = {
            RunBook.key(r.project, r.run_id): r for r in self.book.active()}

    def start_driver(self, trigger_interval_s: float | None = None) -> Driver:
        """Drive runs (and, with an interval, triggers) from background threads."""
        if self.driver is None:
            self.driver = Driver(self, trigger_interval_s).start()
        return self.driver

    def _kick(self) -> None:
        if self.driver is None and self._autodrive:
            self.driver = Driver(self, until_idle=True).start()
        if self.driver is not None:
            self.driver.wake()

    def _started(self, run: PipelineRun) -> None:
        """A run started or resumed: drive it, and tell ``on_run`` (the actor submits the
        run's Ray job)."""
        self._kick()
        if self._on_run is not None:
            self._on_run(run, self._credential(run))

    def _credential(self, run: PipelineRun) -> str | None:
        if self._mint is None:
            return None
        return self._mint(Caller(user=run.created_by, roles=run.roles), run.project)

    # Definitions.

    def _specs(self, project: str) -> dict[str, dict[str, Any]]:
        return {d.key.split("/", 1)[1]: d.data
                for d in self._store.list(PIPELINES, prefix=f"{project}/")}

    @boundary
    @_serial
    def apply(self, caller: Caller, project: Project, pipelines: list[PipelineSpec], *,
              prune: bool = False, dry_run: bool = False) -> ApplyResult:
        """Register ``pipelines`` in the project; with ``prune``, remove the others.

        Raises:
            InvalidInput: a stage's code cannot be loaded, or a name is given twice.
            PermissionDenied: no editor role, or a stage's code is not on the admin's list
                (checked before any of it is loaded).
        """
        caller.require(project, Role.editor)
        names = [p.name for p in pipelines]
        if len(set(names)) != len(names):
            raise InvalidInput(f"pipeline names given twice: {names}", field="pipelines")
        self.code.check(pipelines)
        for spec in pipelines:
            self._versions(spec)
        current = self._specs(project)
        new = {p.name: p.model_dump(mode="json") for p in pipelines}
        added = sorted(set(new) - set(current))
        changed = sorted(n for n in set(new) & set(current) if current[n]["spec"] != new[n])
        unchanged = sorted(n for n in set(new) & set(current) if n not in changed)
        removed = sorted(set(current) - set(new)) if prune else []
        result = ApplyResult(added=added, changed=changed, removed=removed,
                             unchanged=unchanged, applied=False)
        if dry_run or not (added or changed or removed):
            return result
        ops: list[Put | Delete] = [
            Put(collection=PIPELINES, key=f"{project}/{n}",
                data={"spec": new[n], "applied_by": caller.user,
                      "roles": {k: int(v) for k, v in caller.roles.items()},
                      "applied_at": self._clock()}) for n in (*added, *changed)]
        ops += [Delete(collection=PIPELINES, key=f"{project}/{n}") for n in removed]
        self._store.apply(ops, AuditEntry(user=caller.user, project=project,
                                          action="pipelines.apply", target=f"pipelines/{project}",
                                          after={"added": added, "changed": changed,
                                                 "removed": removed}))
        return result.model_copy(update={"applied": True})

    def _spec(self, project: str, name: str) -> tuple[PipelineSpec, dict[str, Any]]:
        doc = self._store.get(PIPELINES, f"{project}/{name}")
        if doc is None:
            from mlray.errors import NotFound

            raise NotFound(f"no pipeline {name!r} in project {project!r}", field="pipeline")
        return PipelineSpec.model_validate(doc.data["spec"]), doc.data

    @boundary
    @_serial
    def pipelines(self, caller: Caller, project: Project) -> list[PipelineSummary]:
        """The project's pipelines with their latest runs."""
        caller.require(project, Role.viewer)
        runs = self.book.list(project)
        out = []
        for name, data in sorted(self._specs(project).items()):
            mine = [r for r in runs if r.pipeline == name]
            out.append(PipelineSummary(
                spec=PipelineSpec.model_validate(data["spec"]), applied_by=data["applied_by"],
                last_run=mine[0].run_id if mine else None,
                last_state=mine[0].state if mine else None, runs=len(mine)))
        return out

    @boundary
    @_serial
    def pipeline(self, caller: Caller, project: Project, name: Name) -> PipelineSpec:
        """One pipeline's definition."""
        caller.require(project, Role.viewer)
        return self._spec(project, name)[0]

    @boundary
    def allowed_code(self, caller: Caller, project: Project) -> list[str]:
        """The stage code a platform admin allowed (built-in kinds aside)."""
        caller.require(project, Role.viewer)
        return sorted(self.code.allowed())

    @boundary
    def allow_code(self, caller: Caller, project: Project, allow: list[str] | None = None,
                   revoke: list[str] | None = None) -> list[str]:
        """Add or remove allowed stage code (``module:callable`` or a module) for the whole
        platform: admins of every project only; audited. ``project`` is where the call was
        made from."""
        return self.code.change(caller, allow=allow or (), revoke=revoke or ())

    # Runs.

    def _start(self, project: str, name: str, requester: Caller, params: dict[str, Any],
               trigger: str) -> RunStart:
        spec, _ = self._spec(project, name)
        self.code.check([spec])  # revoked since it was applied? it does not run
        values = spec.run_params(params)
        for attempt in range(3):
            active = self.book.active(project, name)  # the store's, not just this process's
            if not active:
                break
            run = active[0]
            run.coalesced += 1
            run.message = f"coalesced a {trigger} trigger"
            try:
                self.book.save(run)  # counted in the store: a restarted actor still knows
            except Conflict:  # its driver wrote it meanwhile: count on what it wrote
                if attempt == 2:
                    raise
                continue
            key = RunBook.key(project, run.run_id)
            if key in self._active:
                self._active[key] = run
            return RunStart(run=run, coalesced=True)
        run = PipelineRun(
            run_id=new_run_id(), project=project, pipeline=name, spec=spec, params=values,
            trigger=trigger, created_by=requester.user,
            roles={k: int(v) for k, v in requester.roles.items()}, created_at=self._clock(),
            stages={s.name: StageRun(name=s.name) for s in spec.stages},
            code_versions=self._versions(spec))
        self._track(self.engine.create(run))
        self._started(run)
        return RunStart(run=run)

    def _track(self, run: PipelineRun) -> PipelineRun:
        key = RunBook.key(run.project, run.run_id)
        if run.active:
            self._active[key] = run
        else:
            self._active.pop(key, None)
        return run

    def _owned(self, project: str, run_id: str) -> PipelineRun:
        return self._active.get(RunBook.key(project, run_id)) or self.book.get(project, run_id)

    @boundary
    @_serial
    def run(self, caller: Caller, project: Project, name: Name,
            params: dict[str, Any] | None = None, *,
            via: Literal["manual", "http"] = "manual") -> RunStart:
        """Start ``name`` by hand (coalesced into its active run if it has one); ``via``
        is the run's ``trigger`` (``http``: the ingress's ``POST /v1/pipelines/...``).

        Raises:
            NotFound: no such pipeline. InvalidInput: a bad parameter.
        """
        caller.require(project, Role.editor)
        return self._start(project, name, caller, params or {}, via)

    @boundary
    @_serial
    def runs(self, caller: Caller, project: Project, pipeline: str | None = None,
             limit: int = 50) -> list[PipelineRun]:
        """The project's runs, newest first."""
        caller.require(project, Role.viewer)
        where = {"pipeline": pipeline} if pipeline else {}
        return self.book.list(project, **where)[:limit]

    @boundary
    @_serial
    def get_run(self, caller: Caller, project: Project, run_id: str) -> PipelineRun:
        """One run, as stored."""
        caller.require(project, Role.viewer)
        return self.book.get(project, run_id)

    @boundary
    @_serial
    def resume(self, caller: Caller, project: Project, run_id: str) -> PipelineRun:
        """Run a failed or cancelled run's unfinished stages again, keeping the others."""
        caller.require(project, Role.editor)
        run = self._owned(project, run_id)
        for other in self.book.active(project, run.pipeline):
            if other.run_id != run.run_id:
                raise InvalidInput(f"pipeline {run.pipeline!r} has an active run "
                                   f"{other.run_id}; cancel it or wait", field="run")
        self.code.check([run.spec])
        run.code_versions = self._versions(run.spec)  # code fixed since? it runs anew
        resumed = self._track(self.engine.resume(run))
        self._started(resumed)
        return resumed

    @boundary
    @_serial
    def cancel(self, caller: Caller, project: Project, run_id: str) -> PipelineRun:
        """Stop a run: running stages are cancelled (``ray.cancel``), the rest never start."""
        caller.require(project, Role.editor)
        return self._track(self.engine.cancel(self._owned(project, run_id),
                                              f"cancelled by {caller.user}"))

    @boundary
    @_serial
    def approve(self, caller: Caller, project: Project, run_id: str, stage: Name, *,
                reject: bool = False, comment: str = "") -> PipelineRun:
        """Let a run's waiting approval stage pass, or fail it (``reject``); editor or
        admin; audited."""
        caller.require(project, Role.editor)
        run = self._owned(project, run_id)
        audit = AuditEntry(user=caller.user, project=project, action="pipelines.approve",
                           target=f"pipelines/{run.pipeline}/{run_id}/{stage}",
                           after={"rejected": reject, "comment": comment})
        approved = self._track(self.engine.approve(run, stage, caller.user, reject=reject,
                                                   comment=comment, audit=audit))
        self._kick()
        return approved

    # The platform's own calls.

    @_serial
    def tick(self) -> int:
        """Advance every active run once; returns how many are still active."""
        for run in list(self._active.values()):
            try:
                self._track(self.engine.advance(run))
            except MlrayError:  # e.g. a lost compare-and-set: read it again next time
                key = RunBook.key(run.project, run.run_id)
                self._active[key] = self.book.reload(run)
        return len(self._active)

    def wait(self, timeout_s: float) -> None:
        """Block until a running stage may have ended, or ``timeout_s`` (no lock needed)."""
        self.engine.wait(timeout_s)

    @_serial
    def release_idle(self, driver: Driver) -> bool:
        """True (and ``driver`` let go) when no run has a stage running or able to start:
        an embedded driver then stops instead of polling a finished or waiting run."""
        if any(r.state in (RunState.PENDING, RunState.RUNNING) for r in self._active.values()):
            return False
        if self.driver is driver:
            self.driver = None
            self._active.clear()  # what another process does to them is read from the store
        return True

    @_serial
    def check_triggers(self) -> list[str]:
        """Evaluate every schedule, new-data and feedback trigger; the runs they started
        (or were coalesced into)."""
        started = []
        for doc in self._store.list(PIPELINES):
            project, name = doc.key.split("/", 1)
            spec = PipelineSpec.model_validate(doc.data["spec"])
            for index, trigger in enumerate(spec.triggers):
                if isinstance(trigger, AlertFired):
                    continue
                key = f"{project}/{name}/{index}"
                state = self._store.get(TRIGGERS, key)
                fires, new_state = due(trigger, state.data if state else None, self._clock(),
                                       feedback=lambda p=project: self._feedback(p))
                if fires:  # the run first: a crash before the state is saved fires again
                    started.append(self._fire(project, name, doc.data, trigger.type))
                if state is None or new_state != state.data:
                    self._store.apply([Put(collection=TRIGGERS, key=key, data=new_state)])
        return [s for s in started if s]

    def _feedback(self, project: str) -> int:
        return feedback_rows(self._offline_uri, project) if self._offline_uri else 0

    def _fire(self, project: str, name: str, data: dict[str, Any], source: str) -> str | None:
        owner = Caller(user=data["applied_by"], roles=data.get("roles", {}))
        try:
            return self._start(project, name, owner, {}, source).run.run_id
        except MlrayError:  # e.g. a parameter without default: a trigger cannot fill it
            return None

    @_serial
    def alert_fired(self, project: str, rule: str) -> list[str]:
        """Start the project's pipelines with an ``alert`` trigger on ``rule``; their runs."""
        out = []
        for doc in self._store.list(PIPELINES, prefix=f"{project}/"):
            spec = PipelineSpec.model_validate(doc.data["spec"])
            if any(isinstance(t, AlertFired) and t.rule == rule for t in spec.triggers):
                run_id = self._fire(project, spec.name, doc.data, f"alert {rule}")
                if run_id:
                    out.append(run_id)
        return out
