"""The fraud MLP trained by a plain single-process torch loop: the baseline of the
training benchmarks, and the GPU check (it needs no Ray)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from mlray.datasets import FRAUD_CATEGORICAL, FRAUD_NUMERIC
from mlray.training.config import TrainConfig
from mlray.training.models import build_model
from mlray.training.prepare import prepare

__all__ = ["config_for", "plain_loop", "steady"]


def config_for(data: Path, workers: int, epochs: int, batch: int, gpu: bool) -> TrainConfig:
    """The benchmark's training config."""
    return TrainConfig.model_validate({
        "name": "bench", "register_model": False,
        "data": {"path": str(data), "label": "is_fraud", "numeric": FRAUD_NUMERIC,
                 "categorical": FRAUD_CATEGORICAL},
        "model": {"type": "mlp_classifier", "hidden": [64, 32]},
        "hyperparameters": {"lr": 0.003, "batch_size": batch, "epochs": epochs},
        "scaling": {"num_workers": workers, "use_gpu": gpu},
        "failure": {"checkpoint_every": epochs}})


def plain_loop(config: TrainConfig, device: str) -> list[float]:
    """Samples/s per epoch of a single-process loop over in-memory tensors."""
    prepared = prepare(config)
    pre = prepared.preprocessor
    train, val = prepared.part("train"), prepared.part("validation")
    x = torch.from_numpy(pre.transform(train)).to(device)
    y = torch.from_numpy(train["is_fraud"].to_numpy("float32")).to(device)
    xv = torch.from_numpy(pre.transform(val)).to(device)
    yv = torch.from_numpy(val["is_fraud"].to_numpy("float32")).to(device)
    model = build_model(prepared.architecture).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.hyperparameters.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = config.hyperparameters.batch_size
    rates = []
    for _ in range(config.hyperparameters.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y), device=device)  # shuffled per epoch, like the worker
        x, y = x[order], y[order]
        model.train()
        for i in range(0, len(x), batch):
            opt.zero_grad()
            loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for i in range(0, len(xv), batch):
                loss_fn(model(xv[i:i + batch]), yv[i:i + batch]).item()
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(len(x) / (time.perf_counter() - start))
    return rates


def steady(rates: list[float]) -> float:
    """Median over epochs after the first (warm-up)."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)
