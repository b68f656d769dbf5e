"""The quickstart demo (``make demo``).

On a local platform (local Ray, SQLite and files under ``MLRAY_HOME``): generate a
fraud dataset, train the fraud MLP on Ray Train with two workers, run a short Ray Tune
sweep, register both models with their gates, promote the better one to Production,
load it back from its registry URI and score a few transactions.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import mlray
from mlray.datasets import example_transactions, write_fraud
from mlray.models import load
from mlray.registry.types import ModelVersion, Stage
from mlray.training.config import TrainConfig, load_train_config
from mlray.training.runner import run_training
from mlray.training.tuning import run_tuning

console = Console(width=110)
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train" / "fraud.yaml"


def _config(data: Path) -> TrainConfig:
    """The example training config, pointed at the generated data, sized for a laptop."""
    base = load_train_config(CONFIG)
    tune = base.tune.model_copy(update={"num_samples": 2}) if base.tune else None
    return base.model_copy(update={
        "data": base.data.model_copy(update={"path": str(data)}),
        "hyperparameters": base.hyperparameters.model_copy(update={"epochs": 5}),
        "tune": tune})


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console)


def _gates(version: ModelVersion) -> str:
    report = version.validation
    if report is None:
        return "no gates"
    return "; ".join(f"{'ok' if r.passed else 'FAIL'} {r.name}" for r in report.results)


def main() -> None:
    """Run the demo end to end."""
    started = time.time()
    console.rule("[bold]mlray demo: train, tune, gate, promote, serve from the registry")
    client = mlray.connect()
    home = client.config.home
    console.print(f"platform: actors in Ray namespace [cyan]{client.config.namespace}[/], "
                  f"state at [cyan]{client.config.resolved_state_url}[/]")
    data = write_fraud(home / "data" / "fraud.parquet", 20_000, seed=0)
    config = _config(data)
    console.print(f"data: 20,000 generated transactions in {data}")

    with _bar() as bar:
        task = bar.add_task("Ray Train, 2 workers", total=config.hyperparameters.epochs)
        trained = run_training(client, config.model_copy(update={"promote": "none"}),
                               progress=lambda epoch, m: bar.update(task, completed=epoch + 1))
    assert config.tune is not None
    with _bar() as bar:
        task = bar.add_task("Ray Tune sweep (ASHA)", total=config.tune.num_samples)
        tuned = run_tuning(client, config.model_copy(update={"promote": "none"}),
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total))

    candidates = [v for v in (trained.version, tuned.version) if v is not None]
    best = max(candidates, key=lambda v: v.metrics.get("roc_auc", 0.0))
    table = Table(title=f"registry: {config.name}")
    for col in ("version", "from", "roc_auc", "f1", "log_loss", "gates"):
        table.add_column(col)
    for origin, v in (("Ray Train", trained.version), ("Ray Tune best", tuned.version)):
        if v is not None:
            table.add_row(str(v.version), origin, f"{v.metrics['roc_auc']:.4f}",
                          f"{v.metrics['f1']:.4f}", f"{v.metrics['log_loss']:.4f}", _gates(v))
    console.print(table)

    uri = f"models:/{config.name}/Production"
    if best.validation is not None and not best.validation.passed:
        console.print(f"[yellow]v{best.version} failed its gates "
                      f"({best.validation.failed_critical}); not promoted[/]")
        uri = best.uri
    else:
        client.registry.transition_stage(config.name, best.version, Stage.STAGING)
        client.registry.promote(config.name, best.version)
        client.registry.set_alias(config.name, "champion", best.version, move=True)
        console.print(f"promoted [green]{config.name} v{best.version}[/] to Production "
                      "(alias champion)")

    predictor = load(uri, client)
    rows = example_transactions()
    risky, safe = predictor.predict(rows)
    console.print(f"{uri} scores a risky transaction "
                  f"{risky:.3f} and an ordinary one {safe:.3f}")
    jobs = Table(title="jobs")
    for col in ("job", "kind", "status", "run", "version"):
        jobs.add_column(col)
    for job in client.jobs.list(limit=2):
        jobs.add_row(job.job_id, job.kind, job.status.value, (job.run_id or "")[:12],
                     str(job.model_version))
    console.print(jobs)
    console.print(f"[green]demo finished in {time.time() - started:.0f}s[/]")


if __name__ == "__main__":
    main()
