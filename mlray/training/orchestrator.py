"""Run a training job end to end on Ray Train, with tracking, gates and registration.

    outcome = run_training(client, config)

1. preflight (data, dtypes, splits, cluster resources): errors before any worker starts;
2. a job record (PENDING → RUNNING) and one tracker run;
3. ``TorchTrainer.fit`` with Ray Data shards, checkpoints and retries; each epoch is
   logged to the run as it is reported;
4. evaluation on the held-out test split, the drift baseline, the model artifact;
5. registration, validation gates (evaluated by the platform), optional promotion; the
   job ends COMPLETED, or FAILED / CANCELLED with the error.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlray.errors import MlrayError
from mlray.models.predictor import Predictor, save_model
from mlray.monitoring.baseline import profile_frame
from mlray.registry.gates import GateReport
from mlray.registry.types import ModelVersion, Stage
from mlray.storage.fsuri import run_storage
from mlray.tracking.jobs import JobStatus
from mlray.tracking.types import RunStatus
from mlray.training.callbacks import (
    TOKEN_TTL_S,
    TrackerCallback,
    TrackingTarget,
    TrainingCancelled,
)
from mlray.training.config import TrainConfig
from mlray.training.evaluation import classification_metrics, regression_metrics
from mlray.training.loop import STATE_FILE, train_loop_per_worker
from mlray.training.models import build_model
from mlray.training.prepare import Prepared, check_cluster, historical_from, prepare

__all__ = ["Heartbeat", "Progress", "TrainOutcome", "close_failed_job", "finalize", "run_training",
           "train_params"]

log = logging.getLogger(__name__)

#: Called with (epoch, metrics) while training runs, for progress displays.
Progress = Callable[[int, dict[str, float]], None]


@dataclass
class TrainOutcome:
    """What a training job produced."""

    job_id: str
    run_id: str
    version: ModelVersion | None
    test_metrics: dict[str, float]
    gates: GateReport | None
    epochs: int


def train_params(config: TrainConfig) -> dict[str, Any]:
    """The flat params a run records."""
    hp = config.hyperparameters
    return {"lr": hp.lr, "batch_size": hp.batch_size, "epochs": hp.epochs,
            "weight_decay": hp.weight_decay, "model": config.model.type,
            "hidden": ",".join(map(str, config.model.hidden)), "dropout": config.model.dropout,
            "num_workers": config.scaling.num_workers, "use_gpu": config.scaling.use_gpu,
            "data": config.data.path, "seed": config.data.seed}


def loop_config(config: TrainConfig, prepared: Prepared,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dict the per-worker loop receives."""
    hp = config.hyperparameters
    es = config.early_stopping
    arch = prepared.architecture
    loop = {"lr": hp.lr, "batch_size": hp.batch_size, "epochs": hp.epochs,
            "weight_decay": hp.weight_decay, "pos_weight": hp.pos_weight,
            "cache_shards_mb": hp.cache_shards_mb,
            "checkpoint_every": config.failure.checkpoint_every,
            "early_stopping": None if es is None else {
                "mode": es.mode, "patience": es.patience, "min_delta": es.min_delta}}
    overrides = dict(overrides or {})
    if "hidden" in overrides or "dropout" in overrides:
        hidden = overrides.pop("hidden", arch.hidden)
        hidden = [int(h) for h in (hidden if isinstance(hidden, list) else [hidden])]
        arch = arch.model_copy(update={"hidden": hidden,
                                       "dropout": float(overrides.pop("dropout", arch.dropout))})
    loop.update(overrides)
    loop["architecture"] = arch.model_dump()
    return loop


def make_trainer(config: TrainConfig, prepared: Prepared, loop: dict[str, Any], name: str,
                 storage: str, callbacks: list[Any], workers: int | None = None) -> Any:
    """A ``TorchTrainer`` for this job."""
    import ray.train
    from ray.train.torch import TorchTrainer

    scaling = config.scaling
    storage_path, storage_fs = run_storage(storage)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop,
        datasets=prepared.datasets(config.data.label),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers or scaling.num_workers, use_gpu=scaling.use_gpu,
            resources_per_worker=dict(scaling.resources_per_worker)),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=storage_fs,
            callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=config.failure.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=config.failure.keep_checkpoints)),
    )


def _load_state(checkpoint: Any, prepared: Prepared,
                architecture: dict[str, Any] | None = None) -> Predictor:
    from mlray.training.models import ModelArchitecture

    arch = (ModelArchitecture.model_validate(architecture) if architecture
            else prepared.architecture)
    module = build_model(arch)
    with checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, weights_only=True, map_location="cpu")
    module.load_state_dict(state["model"])
    return Predictor(module, arch, prepared.preprocessor)


def finalize(client: Any, config: TrainConfig, prepared: Prepared, checkpoint: Any,
             run_id: str, params: dict[str, Any],
             architecture: dict[str, Any] | None = None
             ) -> tuple[ModelVersion | None, dict[str, float], GateReport | None]:
    """Evaluate the checkpoint on the test split, save and register the model, run gates."""
    predictor = _load_state(checkpoint, prepared, architecture)
    test = prepared.part("test")
    x_test = prepared.preprocessor.transform(test)
    y_test = test[config.data.label].to_numpy()
    scores = predictor.predict_matrix(x_test)
    metrics = (classification_metrics(y_test, scores)
               if predictor.task == "classification" else regression_metrics(y_test, scores))
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    # One name per metric: the run logs the test split's figures under the names the
    # version, its gates and live monitoring use (roc_auc, not test_roc_auc).
    client.experiments.log_metrics(run_id, metrics)
    train = prepared.part("train")
    baseline = profile_frame(train, config.data.numeric, config.data.categorical,
                             predictor.predict_matrix(prepared.preprocessor.transform(train)))
    if not config.register_model:
        return None, metrics, None
    with tempfile.TemporaryDirectory(prefix="mlray-model-") as tmp:
        model_dir = save_model(Path(tmp) / "model", predictor.module, predictor.arch,
                               prepared.preprocessor, baseline)
        client.experiments.log_artifact(run_id, model_dir, "model")
        version = client.registry.register(
            config.name, model_dir, metrics=metrics, params=params, run_id=run_id,
            data_fingerprint=prepared.fingerprint, description=config.description,
            tags=config.tags, input_schema=prepared.input_schema(),
            output_schema=prepared.output_schema(), baseline=baseline.model_dump(mode="json"),
            framework="torch", feature_service=config.data.feature_service)
        # The gates are evaluated by the platform (the registry), on the test split the
        # job hands it: a report this process computed would not count for promotion.
        test.to_parquet(Path(tmp) / "test.parquet", index=False)
        version = client.registry.validate(config.name, version.version,
                                           Path(tmp) / "test.parquet", label=config.data.label,
                                           gates=config.gates or [])
    report = version.validation
    if config.promote != "none" and (report is None or report.passed):
        stage = Stage.PRODUCTION if config.promote == "production" else Stage.STAGING
        version = client.registry.transition_stage(config.name, version.version, stage)
    return version, metrics, report


class Heartbeat:
    """Beats a job's heartbeat from the driver while training runs."""

    def __init__(self, client: Any, job_id: str, every_s: float = 10.0) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, job_id, every_s),
                                        daemon=True)

    def _run(self, client: Any, job_id: str, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                client.jobs.update(job_id, heartbeat=True)
            except MlrayError:
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def fit_watching(trainer: Any, client: Any, run_id: str, progress: Progress | None) -> Any:
    """``trainer.fit()``, calling ``progress`` with each new epoch seen in the tracker."""
    if progress is None:
        return trainer.fit()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    seen = -1
    while thread.is_alive():
        thread.join(0.5)
        run = client.experiments.get_run(run_id)
        step = max((m.step for m in run.metrics.values()), default=-1)
        if step > seen:
            seen = step
            progress(step, {k: m.value for k, m in run.metrics.items()})
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_training(client: Any, config: TrainConfig, *, progress: Progress | None = None,
                 job_id: str | None = None) -> TrainOutcome:
    """Train, evaluate, register and gate one model (see the module docstring).

    Raises:
        ConfigError / InvalidInput / NotFound: preflight failed; no worker started.
        MlrayError or Ray's training error: training failed; the job and run say FAILED.
    """
    job = client.jobs.get(job_id) if job_id else client.jobs.create(
        "train", config.name, {"config": config.model_dump(mode="json")})
    run_id = None
    try:
        prepared = prepare(config, historical_from(client))
        check_cluster(config)
        params = train_params(config)
        run = client.experiments.start_run(config.name, params=params,
                                           tags={"job_id": job.job_id, **config.tags})
        run_id = run.run_id
        client.jobs.update(job.job_id, status=JobStatus.RUNNING, run_id=run_id)
        target = TrackingTarget(client.config.namespace, client.delegate(TOKEN_TTL_S),
                                client.project, run_id, job.job_id)
        trainer = make_trainer(config, prepared, loop_config(config, prepared),
                               f"{config.name}-{run_id[:12]}",
                               client.config.storage_uri, [TrackerCallback(target)])
        with Heartbeat(client, job.job_id):
            result = fit_watching(trainer, client, run_id, progress)
        if result.checkpoint is None:
            raise MlrayError(f"training of {config.name} produced no checkpoint: {result.error}")
        version, metrics, report = finalize(client, config, prepared, result.checkpoint,
                                            run_id, params)
        client.experiments.end_run(run_id)
        client.jobs.update(job.job_id, status=JobStatus.COMPLETED,
                           model_version=version.version if version else None)
        return TrainOutcome(job.job_id, run_id, version, metrics, report,
                            int(result.metrics.get("epoch", -1)) + 1)
    except BaseException as exc:
        close_failed_job(client, job.job_id, exc, run_id)
        raise


def close_failed_job(client: Any, job_id: str, exc: BaseException,
                     run_id: str | None = None) -> None:
    """End a job (and its run, if given) as CANCELLED/KILLED when it was cancelled, else
    FAILED, with the error; a failure to record this is logged, never raised over ``exc``."""
    cancelled = _was_cancelled(client, job_id, exc)
    message = f"{type(exc).__name__}: {exc}"[:2000]
    if run_id is not None:
        _quietly(client.experiments.end_run, run_id,
                 RunStatus.KILLED if cancelled else RunStatus.FAILED, error=message)
    _quietly(client.jobs.update, job_id,
             status=JobStatus.CANCELLED if cancelled else JobStatus.FAILED, error=message)


def _was_cancelled(client: Any, job_id: str, exc: BaseException) -> bool:
    if isinstance(exc, TrainingCancelled | KeyboardInterrupt) or "TrainingCancelled" in str(exc):
        return True
    try:
        return bool(client.jobs.get(job_id).cancel_requested)
    except MlrayError:
        return False


def _quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Record a failure's status without hiding the original error behind a new one."""
    try:
        fn(*args, **kwargs)
    except MlrayError as exc:
        log.warning("could not record the failure (%s): %s", fn.__name__, exc)
