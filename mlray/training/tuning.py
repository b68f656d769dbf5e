"""Hyperparameter sweeps on Ray Tune around Ray Train.

Under Train V2 a ``TorchTrainer`` cannot be handed to ``tune.Tuner``; instead each
trial is a function that fits its own trainer, with ``TuneReportCallback`` feeding
Tune and :class:`TrackerCallback` feeding the trial's run. Each trial is one run in
the tracker (tagged with the sweep and trial ids). Trials that the scheduler stops
end as KILLED; the best trial's last checkpoint is evaluated, registered and gated
like a plain training job.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlray.errors import InvalidTransition
from mlray.registry.gates import GateReport
from mlray.registry.types import ModelVersion
from mlray.storage.fsuri import run_storage
from mlray.tracking.jobs import JobStatus
from mlray.tracking.types import RunStatus
from mlray.training.callbacks import TOKEN_TTL_S, TrackerCallback, TrackingTarget
from mlray.training.config import SearchSpace, TrainConfig, TuneSettings
from mlray.training.orchestrator import (
    Heartbeat,
    close_failed_job,
    finalize,
    loop_config,
    make_trainer,
    train_params,
)
from mlray.training.prepare import Prepared, check_cluster, historical_from, prepare

__all__ = ["TuneOutcome", "run_tuning", "search_space"]

STOPPED = "stopped early by the Tune scheduler"

#: Called with (finished trials, total trials) while the sweep runs.
TrialProgress = Callable[[int, int], None]


@dataclass
class TuneOutcome:
    """What a sweep produced."""

    job_id: str
    sweep_id: str
    best_run_id: str
    best_config: dict[str, Any]
    version: ModelVersion | None
    test_metrics: dict[str, float]
    gates: GateReport | None
    trials: dict[str, str]


def _space(spec: SearchSpace) -> Any:
    from ray import tune

    if spec.type == "uniform":
        return tune.uniform(spec.low, spec.high)
    if spec.type == "loguniform":
        return tune.loguniform(spec.low, spec.high)
    if spec.type == "randint":
        return tune.randint(int(spec.low or 0), int(spec.high or 1))
    if spec.type == "choice":
        return tune.choice(spec.values)
    return tune.grid_search(spec.values)


def search_space(settings: TuneSettings) -> dict[str, Any]:
    """The Tune param space for the configured search spaces."""
    return {name: _space(spec) for name, spec in settings.search_space.items()}


def _trial(trial_config: dict[str, Any], config: TrainConfig, prepared: Prepared,
           target: TrackingTarget, sweep_id: str, storage: str) -> None:
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    settings = config.tune
    assert settings is not None
    params = {**train_params(config), **{k: (",".join(map(str, v)) if isinstance(v, list)
                                             else v) for k, v in trial_config.items()},
              "num_workers": settings.workers_per_trial}
    run = target.call("experiments", "start_run", config.name, name=f"trial-{trial_id}",
                      params=params, tags={"sweep": sweep_id, "trial": trial_id,
                                           "job_id": target.job_id or ""})
    run_target = TrackingTarget(target.namespace, target.credential, target.project,
                                run.run_id, target.job_id)
    trainer = make_trainer(config, prepared, loop_config(config, prepared, trial_config),
                           f"{sweep_id}-{trial_id}", storage,
                           [TuneReportCallback(), TrackerCallback(run_target)],
                           workers=settings.workers_per_trial)
    from ray.exceptions import ActorDiedError

    try:
        result = trainer.fit()
    except ActorDiedError:
        # Tune stopped this trial and tore down its trainer; the driver closes the run.
        raise
    except BaseException as exc:
        target.call("experiments", "end_run", run.run_id, RunStatus.FAILED,
                    error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    status = RunStatus.FINISHED if result.error is None else RunStatus.FAILED
    target.call("experiments", "end_run", run.run_id, status,
                error=None if result.error is None else str(result.error)[:2000])


def _watch(client: Any, sweep_id: str, total: int, progress: TrialProgress,
           done: threading.Event) -> None:
    seen = -1
    while not done.wait(1.0):
        page = client.experiments.search_runs(filter=f"tags.sweep = '{sweep_id}'", limit=1000)
        finished = sum(r.status is not RunStatus.RUNNING for r in page.runs)
        if finished != seen:
            seen = finished
            progress(finished, total)


def run_tuning(client: Any, config: TrainConfig, *,
               progress: TrialProgress | None = None) -> TuneOutcome:
    """Sweep, then evaluate, register and gate the best trial's model.

    Raises:
        ConfigError: the config has no ``tune`` section, or preflight failed.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from mlray.errors import ConfigError

    settings = config.tune
    if settings is None:
        raise ConfigError("the config has no tune section", field="tune")
    job = client.jobs.create("tune", config.name, {"config": config.model_dump(mode="json")})
    sweep_id = f"sweep-{uuid.uuid4().hex[:10]}"
    done = threading.Event()
    try:
        prepared = prepare(config, historical_from(client))
        check_cluster(config, tune=True)
        client.jobs.update(job.job_id, status=JobStatus.RUNNING)
        # The trials log to the experiments actor by name: start it here, once, before they
        # race to (control-plane actors start on first use).
        client.experiments.list_experiments()
        target = TrackingTarget(client.config.namespace, client.delegate(TOKEN_TTL_S),
                                client.project, "", job.job_id)
        storage = client.config.storage_uri
        grid_points = 1
        for spec in settings.search_space.values():
            if spec.type == "grid":
                grid_points *= len(spec.values or [])
        # max_t beyond the last epoch: a trial that trains to the end finishes on its own
        # (Tune ending it at max_t would remove its placement group under the trainer).
        scheduler = (ASHAScheduler(max_t=config.hyperparameters.epochs + 1,
                                   grace_period=settings.grace_period)
                     if settings.scheduler == "asha" else FIFOScheduler())
        storage_path, storage_fs = run_storage(storage)
        trainable = tune.with_resources(
            tune.with_parameters(_trial, config=config, prepared=prepared, target=target,
                                 sweep_id=sweep_id, storage=storage), {"cpu": 0.01})
        tuner = tune.Tuner(
            trainable, param_space=search_space(settings),
            tune_config=tune.TuneConfig(
                metric=settings.metric, mode=settings.mode, num_samples=settings.num_samples,
                max_concurrent_trials=settings.max_concurrent_trials, scheduler=scheduler),
            run_config=tune.RunConfig(name=sweep_id, storage_path=storage_path,
                                      storage_filesystem=storage_fs, verbose=0))
        if progress is not None:
            threading.Thread(target=_watch, daemon=True, args=(
                client, sweep_id, settings.num_samples * grid_points, progress, done)).start()
        with Heartbeat(client, job.job_id):
            grid = tuner.fit()
        done.set()
        if progress is not None:
            progress(len(grid), len(grid))
        best = grid.get_best_result()
        trials = _close_stopped_trials(client, sweep_id)
        best_trial = str(best.metrics["trial_id"])
        best_run = client.experiments.search_runs(
            filter=f"tags.sweep = '{sweep_id}' and tags.trial = '{best_trial}'").runs[0]
        checkpoint = best.checkpoint or _checkpoint_at(best.metrics.get("checkpoint_path"))
        if checkpoint is None:
            raise ConfigError(f"the best trial {best_trial} reported no checkpoint")
        loop = loop_config(config, prepared, best.config)
        version, metrics, report = finalize(client, config, prepared, checkpoint,
                                            best_run.run_id, best_run.params,
                                            loop["architecture"])
        client.experiments.set_tags(best_run.run_id, {"best_of": sweep_id})
        client.jobs.update(job.job_id, status=JobStatus.COMPLETED, run_id=best_run.run_id,
                           model_version=version.version if version else None)
        return TuneOutcome(job.job_id, sweep_id, best_run.run_id, dict(best.config), version,
                           metrics, report, trials)
    except BaseException as exc:
        done.set()
        close_failed_job(client, job.job_id, exc)
        raise


def _checkpoint_at(path: str | None) -> Any:
    if not path:
        return None
    import ray.train

    return ray.train.Checkpoint(path)


def _close_stopped_trials(client: Any, sweep_id: str) -> dict[str, str]:
    """End the runs of trials the scheduler stopped as KILLED; return run id → status."""
    runs = client.experiments.search_runs(filter=f"tags.sweep = '{sweep_id}'", limit=10_000).runs
    statuses = {}
    for run in runs:
        if run.status is RunStatus.RUNNING:
            try:
                run = client.experiments.end_run(run.run_id, RunStatus.KILLED, error=STOPPED)
            except InvalidTransition:  # the trial ended it itself meanwhile
                run = client.experiments.get_run(run.run_id)
        statuses[run.run_id] = run.status.value
    return statuses
