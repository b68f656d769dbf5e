"""The quickstart demo (``make demo``).

Starts a local platform (local Ray, SQLite and files under ``MLRAY_HOME``), trains a
small torch classifier twice on generated data, logs both runs, registers both
models, promotes the better one to Production and prints a summary.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import mlray

console = Console()


def make_data(n: int = 4000, features: int = 8, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A separable-but-noisy binary problem: label from a hidden linear rule plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=features)
    y = ((x @ w + 0.5 * rng.normal(size=n)) > 0).astype(np.float32)
    return x, y


def build_model(features: int, hidden: int) -> torch.nn.Module:
    """A two-layer MLP producing one logit."""
    return torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 1))


def train(client: mlray.Client, x: np.ndarray, y: np.ndarray, params: dict[str, float | int],
          progress: Progress) -> tuple[str, float, Path]:
    """Train one model, logging each epoch; return run id, validation accuracy, artifact dir."""
    torch.manual_seed(0)
    split = int(len(x) * 0.8)
    xt, yt = torch.from_numpy(x[:split]), torch.from_numpy(y[:split])
    xv, yv = torch.from_numpy(x[split:]), torch.from_numpy(y[split:])
    model = build_model(x.shape[1], int(params["hidden"]))
    opt = torch.optim.SGD(model.parameters(), lr=float(params["lr"]))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    epochs = int(params["epochs"])
    task = progress.add_task(f"lr={params['lr']}", total=epochs)
    with client.experiments.run("demo-classifier", params=params) as run:
        for epoch in range(epochs):
            for i in range(0, split, 128):
                opt.zero_grad()
                loss = loss_fn(model(xt[i:i + 128]).squeeze(1), yt[i:i + 128])
                loss.backward()
                opt.step()
            with torch.no_grad():
                logits = model(xv).squeeze(1)
                val_loss = loss_fn(logits, yv).item()
                acc = ((logits > 0).float() == yv).float().mean().item()
            client.experiments.log_metrics(
                run.run_id, {"train_loss": loss.item(), "val_loss": val_loss, "val_accuracy": acc},
                step=epoch)
            progress.advance(task)
        out = Path(tempfile.mkdtemp(prefix="mlray-demo-")) / "model"
        out.mkdir()
        torch.save(model.state_dict(), out / "weights.pt")
        (out / "spec.json").write_text(json.dumps({"features": x.shape[1],
                                                   "hidden": params["hidden"]}))
        client.experiments.log_artifact(run.run_id, out, "model")
    return run.run_id, acc, out


def main() -> None:
    """Run the demo end to end."""
    started = time.time()
    console.rule("[bold]mlray demo")
    client = mlray.connect()
    console.print(f"platform: Ray actors in namespace [cyan]{client.config.namespace}[/], "
                  f"state at [cyan]{client.config.resolved_state_url}[/]")
    x, y = make_data()
    sweeps = [{"lr": 0.01, "hidden": 16, "epochs": 8}, {"lr": 0.2, "hidden": 32, "epochs": 8}]
    results = []
    with Progress(console=console) as progress:
        for params in sweeps:
            results.append((params, *train(client, x, y, params, progress)))

    versions = []
    for params, run_id, acc, artifact in results:
        versions.append(client.registry.register(
            "demo-classifier", artifact, metrics={"val_accuracy": acc}, params=params,
            run_id=run_id, description=f"MLP lr={params['lr']}", owner="demo",
            framework="torch",
            input_schema=[{"name": "x", "dtype": "float32", "shape": [-1, x.shape[1]]}],
            output_schema=[{"name": "logit", "dtype": "float32", "shape": [-1, 1]}]))
    best = max(versions, key=lambda v: v.metrics["val_accuracy"])
    client.registry.transition_stage("demo-classifier", best.version, mlray.Stage.STAGING)
    client.registry.promote("demo-classifier", best.version)
    client.registry.set_alias("demo-classifier", "champion", best.version, move=True)

    # Load the champion back the safe way: verified bytes, weights_only=True.
    local = client.registry.download("models:/demo-classifier@champion")
    spec = json.loads((local / "spec.json").read_text())
    model = build_model(spec["features"], spec["hidden"])
    model.load_state_dict(torch.load(local / "weights.pt", weights_only=True))
    with torch.no_grad():
        acc = ((model(torch.from_numpy(x)).squeeze(1) > 0).float().numpy() == y).mean()

    runs = Table(title="runs (experiment demo-classifier)")
    for col in ("run", "lr", "hidden", "val_accuracy", "status"):
        runs.add_column(col)
    for r in client.experiments.search_runs(experiments=["demo-classifier"],
                                            order_by=["start_time DESC"], limit=2).runs:
        runs.add_row(r.run_id[:12], str(r.params["lr"]), str(r.params["hidden"]),
                     f"{r.metrics['val_accuracy'].value:.3f}", r.status.value)
    console.print(runs)
    table = Table(title="registry: demo-classifier")
    for col in ("version", "stage", "aliases", "val_accuracy", "run"):
        table.add_column(col)
    for v in client.registry.list_versions("demo-classifier")[-4:]:
        table.add_row(str(v.version), v.stage.value, ",".join(v.aliases),
                      f"{v.metrics['val_accuracy']:.3f}", (v.lineage.run_id or "")[:12])
    console.print(table)
    console.print(f"champion v{best.version} reloaded with weights_only=True: accuracy on all "
                  f"data {acc:.3f}")
    console.print(f"[green]demo finished in {time.time() - started:.1f}s[/]")


if __name__ == "__main__":
    main()
