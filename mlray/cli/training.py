"""``mlray train``, ``mlray tune`` and ``mlray jobs``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mlray.cli._common import JsonOpt, console, emit, err_console, state, when
from mlray.training.config import load_train_config
from mlray.training.data import require_data

jobs_app = typer.Typer(help="Training and tuning jobs.", no_args_is_help=True)

ConfigOpt = typer.Option(..., "--config", "-f", help="Training YAML (configs/train/*.yaml).",
                         exists=False)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=err_console)


def train(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Train a model on Ray Train (a local Ray unless a cluster is running)."""
    from mlray.training.orchestrator import run_training

    spec = load_train_config(config)
    require_data(spec.data)  # before Ray starts: a missing file fails in a second
    client = state.ray_client()
    with _progress() as bar:
        task = bar.add_task(f"train {spec.name}", total=spec.hyperparameters.epochs, info="")

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            info = " ".join(f"{k}={metrics[k]:.4f}" for k in ("train_loss", "val_loss")
                            if k in metrics)
            bar.update(task, completed=epoch + 1, info=info)

        outcome = run_training(client, spec, progress=on_epoch)
    version = outcome.version
    emit({"job_id": outcome.job_id, "run_id": outcome.run_id, "epochs": outcome.epochs,
          "test_metrics": outcome.test_metrics, "version": version, "gates": outcome.gates},
         as_json, ("", ""),
         [["job", outcome.job_id], ["run", outcome.run_id], ["epochs", outcome.epochs],
          *[[f"test {k}", f"{v:.4f}"] for k, v in outcome.test_metrics.items()],
          ["version", f"{version.uri} ({version.stage.value})" if version else "not registered"],
          ["gates", "none" if outcome.gates is None else
           ("passed" if outcome.gates.passed else f"FAILED: {outcome.gates.failed_critical}")]],
         f"trained {spec.name}")


def tune(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Sweep hyperparameters on Ray Tune and register the best trial's model."""
    from mlray.errors import ConfigError
    from mlray.training.tuning import run_tuning

    spec = load_train_config(config)
    if spec.tune is None:
        raise ConfigError(f"{config}: no tune section", field="tune")
    require_data(spec.data)
    client = state.ray_client()
    with _progress() as bar:
        task = bar.add_task(f"tune {spec.name}", total=spec.tune.num_samples, info="trials")
        outcome = run_tuning(client, spec, progress=lambda done, total: bar.update(
            task, completed=done, total=total))
    emit({"job_id": outcome.job_id, "sweep_id": outcome.sweep_id,
          "best_run_id": outcome.best_run_id, "best_config": outcome.best_config,
          "trials": outcome.trials, "test_metrics": outcome.test_metrics,
          "version": outcome.version}, as_json, ("", ""),
         [["job", outcome.job_id], ["sweep", outcome.sweep_id],
          ["best run", outcome.best_run_id], ["best config", outcome.best_config],
          *[[f"trial run {r}", s] for r, s in outcome.trials.items()],
          *[[f"test {k}", f"{v:.4f}"] for k, v in outcome.test_metrics.items()],
          ["version", outcome.version.uri if outcome.version else "not registered"]],
         f"tuned {spec.name}")


@jobs_app.command("list")
def list_jobs(status: str = typer.Option(None, "--status", help="PENDING, RUNNING, ..."),
              limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
              as_json: bool = JsonOpt) -> None:
    """Jobs of the project, newest first."""
    jobs = state.client().jobs.list(status=status, limit=limit)
    emit(jobs, as_json, ("job", "kind", "name", "status", "started", "ended", "run", "version",
                         "error"),
         [[j.job_id, j.kind, j.name, j.status.value, when(j.started_at), when(j.ended_at),
           j.run_id, j.model_version, (j.error or "")[:60]] for j in jobs], "jobs",
         whole=("job", "run"))


@jobs_app.command("show")
def show_job(job_id: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """One job."""
    job = state.client().jobs.get(job_id)
    if as_json:
        emit(job, True)
        return
    console.print_json(job.model_dump_json(exclude={"details"}))


@jobs_app.command("stop")
def stop_job(job_id: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """Cancel a job: a pending one at once, a running one after its current epoch."""
    job = state.client().jobs.cancel(job_id)
    what = "cancelled" if job.status.value == "CANCELLED" else "stop requested"
    emit(job, as_json, ("job", "status"), [[job.job_id, what]], "jobs stop")
