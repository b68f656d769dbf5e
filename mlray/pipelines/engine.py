"""The run engine: moves a run's stages along its DAG, one :meth:`RunEngine.advance` at a
time, persisting every state before acting on it.

A PENDING stage whose inputs are all SUCCEEDED or CACHED is looked up in the cache (hit:
CACHED, with the run it came from), else stored RUNNING and handed to the executor
(independent stages run side by side). An ``approval`` stage waits in WAITING_APPROVAL
until :meth:`approve` or its timeout (fail, or skip it and what depends on it). A
failed try is retried after ``backoff_s * 2**n``; the last failure fails the stage, and
the run fails once nothing else can move. A RUNNING stage this engine has no handle for
was interrupted (the actor or driver died): it fails with a message saying so, and
:meth:`resume` starts it, and everything after it, again, keeping what succeeded.

A stage that starts something in the world (``abtest``: an experiment, ``deploy``: a
rollout) is told when the run first started it (``StageTask.since``, kept by resume), so a
resumed try adopts what the earlier one started instead of starting it twice; cancelling
the run starts the kind's undo task (:func:`~mlray.pipelines.kinds.undo_of`), which stops
what the stage started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlray.errors import InvalidTransition, MlrayError
from mlray.pipelines.cache import StageCache, cache_key, code_version
from mlray.pipelines.definitions import PipelineSpec, StageSpec, topological_order
from mlray.pipelines.executors import Executor, Outcome
from mlray.pipelines.kinds import target_of, undo_of
from mlray.pipelines.paths import expand_home
from mlray.pipelines.runs import RunBook
from mlray.pipelines.stage import StageTask
from mlray.pipelines.state import DONE_OK, PipelineRun, RunState, StageRun, StageState
from mlray.storage.artifacts import ArtifactRef
from mlray.storage.base import AuditEntry

__all__ = ["RunEngine"]

_S = StageState
INTERRUPTED = ("interrupted: the pipelines actor stopped while this stage ran; "
               "`mlray pipelines resume` runs it again")


class RunEngine:
    """Advances runs over a :class:`RunBook`, a :class:`StageCache` and an executor."""

    def __init__(self, book: RunBook, cache: StageCache, executor: Executor, *,
                 artifact_uri: str,
                 credential: Callable[[PipelineRun], str | None] = lambda run: None,
                 namespace: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.book = book
        self.cache = cache
        self.executor = executor
        self.artifact_uri = artifact_uri
        self.credential = credential
        self.namespace = namespace
        self.clock = clock
        self._handles: dict[tuple[str, str], Any] = {}

    def create(self, run: PipelineRun) -> PipelineRun:
        """Store a new run, then take its first steps."""
        self.book.save(run)
        return self.advance(run)

    # One step.

    def advance(self, run: PipelineRun) -> PipelineRun:
        """Move every stage that can move; the run is stored before it is returned."""
        if not run.active:
            return run
        now = self.clock()
        if run.state is RunState.PENDING:
            run.state = RunState.RUNNING
        for name in topological_order(run.spec.stages):
            stage, spec = run.stages[name], run.spec.stage(name)
            if stage.state is _S.RUNNING:
                self._watch(run, stage, spec, now)
            elif stage.state is _S.WAITING_APPROVAL:
                self._expire(stage, spec, now)
            elif stage.state is _S.PENDING:
                self._start(run, stage, spec, now)
        self._settle(run, now)
        self.book.save(run)
        return run

    def _watch(self, run: PipelineRun, stage: StageRun, spec: StageSpec, now: float) -> None:
        handle = self._handles.get((run.run_id, stage.name))
        if handle is None:
            stage.move(_S.FAILED, INTERRUPTED)
            stage.finished_at = now
            return
        outcome = self.executor.poll(handle)
        if outcome is None:
            started = stage.started_at or now
            if spec.timeout_s is None or now - started < spec.timeout_s:
                return
            self.executor.cancel(handle)
            outcome = Outcome(error=f"timed out after {spec.timeout_s:g}s")
        del self._handles[(run.run_id, stage.name)]
        if outcome.output is not None:
            stage.move(_S.SUCCEEDED, "")
            stage.output, stage.finished_at = outcome.output, now
            if spec.cache and stage.cache_key:
                self.cache.put(run.project, run.pipeline, stage.name, stage.cache_key,
                               outcome.output, run.run_id)
        elif stage.attempt <= spec.retry.attempts:
            delay = spec.retry.backoff_s * 2 ** (stage.attempt - 1)
            stage.move(_S.PENDING, f"try {stage.attempt} failed: {outcome.error}; "
                                   f"retrying in {delay:g}s")
            stage.not_before = now + delay
        else:
            stage.move(_S.FAILED, outcome.error or "failed")
            stage.finished_at = now

    @staticmethod
    def _expire(stage: StageRun, spec: StageSpec, now: float) -> None:
        if stage.deadline is None or now < stage.deadline:
            return
        gate = spec.gate
        if gate.on_timeout == "skip":
            stage.move(_S.SKIPPED, f"no approval within {gate.timeout_s:g}s: skipped")
        else:
            stage.move(_S.FAILED, f"no approval within {gate.timeout_s:g}s")
        stage.finished_at = now

    def _start(self, run: PipelineRun, stage: StageRun, spec: StageSpec, now: float) -> None:
        deps = [run.stages[d] for d in spec.depends_on]
        skipped = [d.name for d in deps if d.state is _S.SKIPPED]
        if skipped:
            stage.move(_S.SKIPPED, f"skipped: {', '.join(skipped)} skipped")
            stage.finished_at = now
            return
        if not all(d.state in DONE_OK for d in deps):
            return
        if stage.not_before is not None and now < stage.not_before:
            return
        if spec.kind == "approval":
            stage.move(_S.WAITING_APPROVAL, f"waiting for approval (timeout "
                                            f"{spec.gate.timeout_s:g}s, then "
                                            f"{spec.gate.on_timeout})")
            stage.started_at, stage.deadline = now, now + spec.gate.timeout_s
            return
        inputs = {d.name: d.output for d in deps if d.output is not None}
        params = expand_home(run.spec.stage_params(spec, run.params))  # not in the record
        try:
            target = target_of(spec.kind)
            assert target is not None
            version = run.code_versions.get(stage.name) or code_version(target, spec.version)
            stage.cache_key = cache_key(target, version, params, inputs)
        except MlrayError as exc:
            stage.move(_S.RUNNING)
            stage.move(_S.FAILED, exc.message)
            stage.finished_at = now
            return
        hit = self.cache.get(run.project, run.pipeline, stage.name, stage.cache_key) \
            if spec.cache else None
        if hit is not None:
            stage.move(_S.CACHED, "cached: unchanged code, parameters and inputs")
            stage.output, stage.finished_at = hit, now
            return
        stage.move(_S.RUNNING, "")
        stage.attempt += 1
        stage.started_at, stage.not_before = now, None
        if stage.first_started_at is None:
            stage.first_started_at = now
        self.book.save(run)  # stored RUNNING before the task exists
        task = self._task(run, stage, target, params, inputs, version)
        self._handles[(run.run_id, stage.name)] = self.executor.submit(
            task, spec.num_cpus, spec.num_gpus)

    def _task(self, run: PipelineRun, stage: StageRun, target: str, params: dict[str, Any],
              inputs: dict[str, ArtifactRef], version: str = "") -> StageTask:
        return StageTask(project=run.project, pipeline=run.pipeline, run_id=run.run_id,
                         stage=stage.name, target=target, params=params, run_params=run.params,
                         inputs=inputs, artifact_uri=self.artifact_uri,
                         credential=self.credential(run), namespace=self.namespace,
                         since=stage.first_started_at, code_version=version)

    def _undo(self, run: PipelineRun, stage: StageRun) -> None:
        """Start the task that stops what a cancelled stage started in the world (an
        experiment, a rollout), for kinds that have one; best effort, not waited for."""
        spec = run.spec.stage(stage.name)
        target = undo_of(spec.kind)
        if target is None:
            return
        inputs = {d: out for d in spec.depends_on
                  if (out := run.stages[d].output) is not None}
        params = expand_home(run.spec.stage_params(spec, run.params))
        # Not watched: a task runs on whether or not its handle is kept.
        self.executor.submit(self._task(run, stage, target, params, inputs), 0, 0)

    def _settle(self, run: PipelineRun, now: float) -> None:
        states = {s.state for s in run.stages.values()}
        if _S.RUNNING in states:
            run.state = RunState.RUNNING
        elif _S.WAITING_APPROVAL in states:
            run.state = RunState.WAITING_APPROVAL
        elif states <= DONE_OK | {_S.SKIPPED}:
            run.state, run.finished_at, run.message = RunState.SUCCEEDED, now, ""
        elif all(_blocked(run.spec, run, s.name) for s in run.stages.values()
                 if s.state is _S.PENDING):
            failed = [s for s in run.stages.values() if s.state is _S.FAILED]
            run.state, run.finished_at = RunState.FAILED, now
            run.message = "; ".join(f"{s.name}: {s.message}" for s in failed)
        else:
            run.state = RunState.RUNNING  # a retry waits for its backoff

    # Requests.

    def approve(self, run: PipelineRun, stage_name: str, user: str, *,
                reject: bool = False, comment: str = "",
                audit: AuditEntry | None = None) -> PipelineRun:
        """Let a waiting approval stage pass (or fail it with ``reject``).

        Raises:
            InvalidTransition: the stage is not waiting for approval.
        """
        run.spec.stage(stage_name)
        stage = run.stages[stage_name]
        if stage.state is not _S.WAITING_APPROVAL:
            raise InvalidTransition(f"stage {stage_name!r} of run {run.run_id} is "
                                    f"{stage.state}, not waiting for approval", field="stage")
        what = "rejected" if reject else "approved"
        stage.move(_S.FAILED if reject else _S.SUCCEEDED,
                   f"{what} by {user}" + (f": {comment}" if comment else ""))
        stage.approved_by, stage.finished_at = user, self.clock()
        self.book.save(run, audit)  # the answer is stored (and audited) before it acts
        return self.advance(run)

    def cancel(self, run: PipelineRun, reason: str = "cancelled") -> PipelineRun:
        """Stop the run's running stages (``ray.cancel``) and cancel what has not run.

        Raises:
            InvalidTransition: the run has already finished.
        """
        if not run.active:
            raise InvalidTransition(f"run {run.run_id} is {run.state}; only a running run "
                                    "can be cancelled", field="run")
        now = self.clock()
        for stage in run.stages.values():
            if stage.state in (_S.RUNNING, _S.PENDING, _S.WAITING_APPROVAL):
                handle = self._handles.pop((run.run_id, stage.name), None)
                if handle is not None:
                    self.executor.cancel(handle)
                if stage.state is _S.RUNNING:
                    self._undo(run, stage)
                stage.move(_S.CANCELLED, reason)
                stage.finished_at = now
        run.state, run.finished_at, run.message = RunState.CANCELLED, now, reason
        self.book.save(run)
        return run

    def resume(self, run: PipelineRun) -> PipelineRun:
        """Run the failed, cancelled or interrupted stages (and what follows them) again;
        SUCCEEDED and CACHED stages are kept.

        Raises:
            InvalidTransition: the run is still active or succeeded.
        """
        if run.active or run.state is RunState.SUCCEEDED:
            raise InvalidTransition(f"run {run.run_id} is {run.state}; only a failed or "
                                    "cancelled run can be resumed", field="run")
        for stage in run.stages.values():
            if stage.state in (_S.FAILED, _S.CANCELLED):
                stage.move(_S.PENDING, "resumed")
                stage.attempt, stage.not_before, stage.deadline = 0, None, None
                stage.started_at = stage.finished_at = None
                stage.approved_by = None
        run.state, run.finished_at, run.message = RunState.RUNNING, None, ""
        run.cancel_requested = False
        return self.advance(run)

    def running(self) -> int:
        """Stages this engine is watching."""
        return len(self._handles)

    def wait(self, timeout_s: float) -> None:
        """Block until a watched stage may have ended, or ``timeout_s`` (called without
        the caller's lock: a handle added meanwhile is seen on the next wait)."""
        try:
            handles = list(self._handles.values())
        except RuntimeError:  # changed while copied
            handles = []
        self.executor.wait(handles, min(timeout_s, 0.05) if not handles else timeout_s)


def _blocked(spec: PipelineSpec, run: PipelineRun, name: str) -> bool:
    """True when ``name`` can never start in this run (something before it failed)."""
    for dep in spec.stage(name).depends_on:
        state = run.stages[dep].state
        if state in (_S.FAILED, _S.CANCELLED) or (state is _S.PENDING
                                                   and _blocked(spec, run, dep)):
            return True
    return False
