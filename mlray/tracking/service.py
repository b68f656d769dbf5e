"""The experiment tracker's rules, over a :class:`StateStore`; no Ray here.

Documents: ``experiments/<project>/<name>``, ``runs/<run_id>`` (params, latest metrics,
tags, artifacts) and ``metric_batches/<run_id>/<n>`` (the full history, one document
per logged batch, written atomically with the run's latest values). The tracker keeps
an in-memory index of runs, rebuilt from the store at start, so search over 100,000
runs needs no scan of the store.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from mlray._private.filters import evaluate, get_field, parse_filter, parse_order, sort_by
from mlray._private.types import Name, ParamValue, Project, Tags, now
from mlray._private.validation import boundary, build
from mlray.errors import AlreadyExists, Conflict, InvalidInput, InvalidTransition, NotFound
from mlray.identity import Caller, Role
from mlray.quotas.guard import QuotaGuard, storage_in_use
from mlray.storage.artifacts import ArtifactStore
from mlray.storage.base import AuditEntry, Put, StateStore
from mlray.storage.idempotency import IdempotencyKey, KeyedWrite
from mlray.tracking.types import (
    Experiment,
    MetricPoint,
    MetricValue,
    Run,
    RunArtifact,
    RunComparison,
    RunPage,
    RunStatus,
)

__all__ = ["ExperimentTracker"]

EXPERIMENTS = "experiments"
RUNS = "runs"
METRIC_BATCHES = "metric_batches"
_RUN_FIELDS = frozenset({"status", "name", "experiment", "user", "start_time", "end_time",
                         "run_id"})
_MAX_BATCH = 10_000
_QUOTA_RETRIES = 16


class ExperimentTracker:
    """Experiments, runs, params, step-wise metrics and artifacts, with search.

    Args:
        store: where documents live.
        artifacts: when given, logged artifacts are checked (exists, sha256).
    """

    def __init__(self, store: StateStore, artifacts: ArtifactStore | None = None) -> None:
        self._store = store
        self._artifacts = artifacts
        self._runs: dict[str, tuple[int, Run]] = {
            d.key: (d.version, Run.model_validate(d.data)) for d in store.list(RUNS)
        }

    # -- experiments -----------------------------------------------------------------------

    @boundary
    def create_experiment(self, caller: Caller, project: Project, name: Name, *,
                          description: str = "", tags: Tags | None = None,
                          idempotency_key: IdempotencyKey | None = None) -> Experiment:
        """Create an experiment (a retry with the same ``idempotency_key`` gets the first
        answer: :mod:`mlray.storage.idempotency`).

        Raises:
            AlreadyExists: the name is taken in this project.
        """
        caller.require(project, Role.editor)
        keyed = KeyedWrite(self._store, project, "experiments.create_experiment",
                           idempotency_key, [caller.user, name, description, tags])
        if (done := keyed.previous(Experiment)) is not None:
            return done
        exp = Experiment(name=name, project=project, description=description,
                         tags=tags or {}, created_at=now(), created_by=caller.user)
        key = f"{project}/{name}"
        try:
            self._store.apply(
                [Put(collection=EXPERIMENTS, key=key, data=exp.model_dump(mode="json"),
                     expected_version=0), *keyed.record(exp)],
                self._audit(caller, project, "experiment.create", key))
        except Conflict:
            if (done := keyed.previous(Experiment)) is not None:
                return done  # a concurrent attempt with this key got there first
            raise AlreadyExists(f"experiment {name!r} already exists in project {project!r}",
                                field="name") from None
        return exp

    @boundary
    def get_experiment(self, caller: Caller, project: Project, name: Name) -> Experiment:
        """The experiment called ``name``."""
        caller.require(project, Role.viewer)
        doc = self._store.get(EXPERIMENTS, f"{project}/{name}")
        if doc is None:
            raise NotFound(f"experiment {name!r} does not exist in project {project!r}",
                           field="experiment")
        return Experiment.model_validate(doc.data)

    @boundary
    def list_experiments(self, caller: Caller, project: Project) -> list[Experiment]:
        """All experiments of the project, by name."""
        caller.require(project, Role.viewer)
        return [Experiment.model_validate(d.data)
                for d in self._store.list(EXPERIMENTS, prefix=f"{project}/")]

    # -- runs ------------------------------------------------------------------------------

    @staticmethod
    def _audit(caller: Caller, project: Project, action: str, target: str,
               after: dict[str, Any] | None = None) -> AuditEntry:
        return AuditEntry(user=caller.user, project=project, action=action, target=target,
                          after=after)

    def _entry(self, caller: Caller, project: Project, run_id: str, role: Role) -> tuple[int, Run]:
        """The run as stored now (not the index's copy, which serves search only), so a
        write's compare-and-set sees changes made through another tracker."""
        caller.require(project, role)
        run_id = self._full_id(project, run_id)
        doc = self._store.get(RUNS, run_id)
        if doc is None or doc.data["project"] != project:
            raise NotFound(f"run {run_id!r} does not exist in project {project!r}",
                           field="run_id")
        run = Run.model_validate(doc.data)
        self._runs[run_id] = (doc.version, run)
        return doc.version, run

    def _full_id(self, project: str, run_id: str) -> str:
        """Accept a unique prefix of at least 8 characters, as the CLI shows ids."""
        if len(run_id) >= 32 or len(run_id) < 8:
            return run_id
        found = [r for r, (_, run) in self._runs.items()
                 if r.startswith(run_id) and run.project == project]
        if len(found) > 1:
            raise InvalidInput(f"run id prefix {run_id!r} matches {len(found)} runs; give more "
                               "characters", field="run_id")
        return found[0] if found else run_id

    def _live(self, caller: Caller, project: Project, run_id: str) -> tuple[int, Run]:
        version, run = self._entry(caller, project, run_id, Role.editor)
        if run.status is not RunStatus.RUNNING:
            raise InvalidTransition(f"run {run_id} is {run.status.value}; only a RUNNING run "
                                    "takes new params", field="run_id")
        return version, run

    def _save(self, caller: Caller, version: int, run: Run, action: str,
              after: dict[str, Any] | None = None, extra: Sequence[Put] = ()) -> Run:
        ops = [Put(collection=RUNS, key=run.run_id, data=run.model_dump(mode="json"),
                   expected_version=version), *extra]
        doc = self._store.apply(ops, self._audit(caller, run.project, action, run.run_id, after))
        assert doc[0] is not None
        self._runs[run.run_id] = (doc[0].version, run)
        return run

    @boundary
    def start_run(self, caller: Caller, project: Project, experiment: Name, *,
                  name: str | None = None, params: dict[str, ParamValue] | None = None,
                  tags: Tags | None = None,
                  idempotency_key: IdempotencyKey | None = None) -> Run:
        """Start a RUNNING run, creating the experiment when it does not exist yet.

        A retry with the same ``idempotency_key`` gets the first run back, never a second.
        """
        caller.require(project, Role.editor)
        keyed = KeyedWrite(self._store, project, "experiments.start_run", idempotency_key,
                           [caller.user, experiment, name, params, tags])
        if (done := keyed.previous(Run)) is not None:
            return done
        if self._store.get(EXPERIMENTS, f"{project}/{experiment}") is None:
            with contextlib.suppress(AlreadyExists):
                self.create_experiment(caller, project, experiment)
        run_id = uuid.uuid4().hex
        run = Run(run_id=run_id, project=project, experiment=experiment,
                  name=name or f"run-{run_id[:8]}", user=caller.user, start_time=now(),
                  params=params or {}, tags=tags or {})
        try:
            return self._save(caller, 0, run, "run.start", {"experiment": experiment},
                              extra=keyed.record(run))
        except Conflict:
            if (done := keyed.previous(Run)) is not None:
                return done  # a concurrent attempt with this key got there first
            raise

    @boundary
    def get_run(self, caller: Caller, project: Project, run_id: str) -> Run:
        """One run."""
        return self._entry(caller, project, run_id, Role.viewer)[1]

    @boundary
    def log_params(self, caller: Caller, project: Project, run_id: str,
                   params: dict[str, ParamValue]) -> Run:
        """Record params; a param is written once (the same value again is accepted).

        Raises:
            Conflict: a param already holds a different value.
        """
        version, run = self._live(caller, project, run_id)
        for key, value in params.items():
            if key in run.params and run.params[key] != value:
                raise Conflict(f"param {key!r} of run {run_id} is already {run.params[key]!r}; "
                               f"params cannot change (got {value!r})", field=f"params.{key}")
        updated = run.model_copy(update={"params": {**run.params, **params}})
        return self._save(caller, version, updated, "run.params", {"keys": sorted(params)})

    @boundary
    def set_tags(self, caller: Caller, project: Project, run_id: str, tags: Tags) -> Run:
        """Merge tags into the run (allowed in any status)."""
        version, run = self._entry(caller, project, run_id, Role.editor)
        updated = run.model_copy(update={"tags": {**run.tags, **tags}})
        return self._save(caller, version, updated, "run.tags", {"keys": sorted(tags)})

    @boundary
    def log_metrics(self, caller: Caller, project: Project, run_id: str,
                    points: list[MetricPoint]) -> Run:
        """Append a batch of metric points (the primitive ``log_metric`` builds on).

        An ended run still takes metrics (a held-out evaluation or late ground truth
        arrives after training); only its params are frozen.
        """
        if not points:
            raise InvalidInput("points is empty", field="points")
        if len(points) > _MAX_BATCH:
            raise InvalidInput(f"at most {_MAX_BATCH} points per batch, got {len(points)}",
                               field="points")
        version, run = self._entry(caller, project, run_id, Role.editor)
        ts = now()
        latest = dict(run.metrics)
        rows = []
        for p in points:
            stamp = p.timestamp if p.timestamp is not None else ts
            rows.append([p.key, p.value, p.step, stamp])
            held = latest.get(p.key)
            if held is None or (p.step, stamp) >= (held.step, held.timestamp):
                latest[p.key] = MetricValue(value=p.value, step=p.step, timestamp=stamp)
        batch = run.metric_batches + 1
        updated = run.model_copy(update={"metrics": latest, "metric_batches": batch})
        history = Put(collection=METRIC_BATCHES, key=f"{run_id}/{batch:010d}",
                      data={"run_id": run_id, "points": rows}, expected_version=0)
        return self._save(caller, version, updated, "run.metrics", {"points": len(rows)},
                          extra=[history])

    def log_metric(self, caller: Caller, project: Project, run_id: str, key: str, value: float,
                   step: int = 0, timestamp: float | None = None) -> Run:
        """Log one metric point."""
        point = build(MetricPoint, "", key=key, value=value, step=step, timestamp=timestamp)
        return self.log_metrics(caller, project, run_id, [point])

    @boundary
    def metric_history(self, caller: Caller, project: Project, run_id: str,
                       key: str) -> list[MetricPoint]:
        """Every point of metric ``key`` on the run, by step then time."""
        self._entry(caller, project, run_id, Role.viewer)
        points = [
            MetricPoint(key=k, value=v, step=s, timestamp=t)
            for doc in self._store.list(METRIC_BATCHES, prefix=f"{run_id}/")
            for k, v, s, t in doc.data["points"] if k == key
        ]
        return sorted(points, key=lambda p: (p.step, p.timestamp or 0.0))

    @boundary
    def log_artifact(self, caller: Caller, project: Project, run_id: str,
                     artifact: RunArtifact) -> Run:
        """Attach an artifact already in the artifact store (checked when one is configured).

        Raises:
            NotFound / IntegrityError: the artifact is missing or fails its hash.
            QuotaExceeded: the project is at its ``storage_bytes`` quota.
        """
        self._entry(caller, project, run_id, Role.editor)
        if self._artifacts is not None:  # the size charged is the one measured here
            ref = self._artifacts.verify(artifact.uri, artifact.sha256)
            artifact = artifact.model_copy(update={"size": ref.size})
        guard = QuotaGuard(self._store)
        for attempt in range(_QUOTA_RETRIES):
            version, run = self._entry(caller, project, run_id, Role.editor)
            kept = [a for a in run.artifacts if a.path != artifact.path]
            updated = run.model_copy(update={"artifacts": [*kept, artifact]})
            quota = guard.admit(project, "storage_bytes",
                                lambda: storage_in_use(self._store, project),
                                artifact.size - sum(a.size for a in run.artifacts
                                                    if a.path == artifact.path))
            try:
                return self._save(caller, version, updated, "run.artifact",
                                  {"path": artifact.path, "sha256": artifact.sha256},
                                  [op for op in quota if isinstance(op, Put)])
            except Conflict:
                if not quota or attempt == _QUOTA_RETRIES - 1:
                    raise  # a plain compare-and-set loss, as before
        raise AssertionError("unreachable")

    @boundary
    def end_run(self, caller: Caller, project: Project, run_id: str,
                status: RunStatus = RunStatus.FINISHED, *, error: str | None = None) -> Run:
        """Finish a run as FINISHED, FAILED or KILLED.

        Raises:
            InvalidTransition: the run already ended, or ``status`` is RUNNING.
        """
        if status is RunStatus.RUNNING:
            raise InvalidTransition("a run cannot be ended as RUNNING", field="status")
        version, run = self._live(caller, project, run_id)
        updated = run.model_copy(update={"status": status, "end_time": now(), "error": error})
        return self._save(caller, version, updated, "run.end", {"status": status.value})

    # -- search and compare ----------------------------------------------------------------

    @boundary
    def search_runs(self, caller: Caller, project: Project, *,
                    experiments: list[str] | None = None, filter: str | None = None,
                    order_by: list[str] | None = None, limit: int = 100,
                    offset: int = 0) -> RunPage:
        """Runs matching ``filter`` (e.g. ``"metrics.loss < 0.2 and params.lr = 0.01"``).

        Args:
            experiments: restrict to these experiments (None = all).
            order_by: e.g. ``["metrics.loss ASC"]``; default newest first.
            limit, offset: paging; the page says the next offset, None at the end.
        """
        caller.require(project, Role.viewer)
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be between 1 and 10000", field="limit")
        if offset < 0:
            raise InvalidInput("offset must be >= 0", field="offset")
        conditions = parse_filter(filter, _RUN_FIELDS)
        order = parse_order(order_by or ["start_time DESC"], _RUN_FIELDS)
        wanted = set(experiments) if experiments else None
        found = [run for _, run in self._runs.values()
                 if run.project == project
                 and (wanted is None or run.experiment in wanted)
                 and evaluate(run, conditions, get_field)]
        found = sort_by(found, order, get_field)
        page = found[offset: offset + limit]
        end = offset + len(page)
        return RunPage(runs=page, total=len(found), next_offset=end if end < len(found) else None)

    @boundary
    def compare_runs(self, caller: Caller, project: Project, run_ids: list[str]) -> RunComparison:
        """Params and latest metrics of the runs side by side, and which params differ."""
        if len(run_ids) < 2:
            raise InvalidInput("compare needs at least two run ids", field="run_ids")
        runs = [self._entry(caller, project, r, Role.viewer)[1] for r in run_ids]
        param_keys = sorted({k for r in runs for k in r.params})
        metric_keys = sorted({k for r in runs for k in r.metrics})
        params = {k: [r.params.get(k) for r in runs] for k in param_keys}
        metrics = {k: [r.metrics[k].value if k in r.metrics else None for r in runs]
                   for k in metric_keys}
        differing = [k for k, values in params.items() if len(set(map(repr, values))) > 1]
        return RunComparison(run_ids=run_ids, params=params, metrics=metrics,
                             differing_params=differing)
