"""The per-worker training loop run by Ray Train's ``TorchTrainer``.

Every rank reports once per epoch (``ray.train.report`` is a barrier); rank 0 attaches a
checkpoint every ``checkpoint_every`` epochs and on the last one. Losses are summed
across ranks, so every rank takes the same early-stopping decision. After a worker
dies, Ray Train restarts the group and this loop resumes from the last checkpoint.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["EarlyStopper", "ShardFeed", "train_loop_per_worker"]

STATE_FILE = "state.pt"


class EarlyStopper:
    """Patience-based early stopping on a metric; plain state, so it checkpoints."""

    def __init__(self, mode: str = "min", patience: int = 3, min_delta: float = 0.0,
                 best: float | None = None, bad_epochs: int = 0) -> None:
        self.mode, self.patience, self.min_delta = mode, patience, min_delta
        self.best, self.bad_epochs = best, bad_epochs

    def update(self, value: float) -> bool:
        """Record this epoch's value; True when training should stop."""
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min"
            else value > self.best + self.min_delta)
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


def _global_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class ShardFeed:
    """Batches of one worker's shard: streamed from Ray Data, or from memory once cached.

    The first pass streams (``iter_torch_batches``) and, when the shard is at most
    ``cache_mb``, keeps it as two tensors; later passes slice those (in a fresh random
    order when ``shuffle``), which skips Ray Data's per-batch overhead on small data.
    """

    def __init__(self, shard: Any, batch_size: int, device: torch.device, cache_mb: int,
                 shuffle: bool) -> None:
        self.shard, self.batch_size, self.device = shard, batch_size, device
        self.cache_bytes, self.shuffle = cache_mb * 2**20, shuffle
        self.cached: tuple[torch.Tensor, torch.Tensor] | None = None

    def __iter__(self) -> Any:
        if self.cached is not None:
            x, y = self.cached
            if self.shuffle:
                order = torch.randperm(len(y), device=self.device)
                x, y = x[order], y[order]
            for i in range(0, len(y), self.batch_size):
                yield x[i:i + self.batch_size], y[i:i + self.batch_size]
            return
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        size = 0
        for batch in self.shard.iter_torch_batches(batch_size=self.batch_size,
                                                   dtypes=torch.float32, device=self.device):
            x, y = batch["x"], batch["y"]
            size += x.element_size() * x.nelement() + y.element_size() * y.nelement()
            if size <= self.cache_bytes:
                kept.append((x, y))
            yield x, y
        if kept and size <= self.cache_bytes:
            self.cached = (torch.cat([k[0] for k in kept]), torch.cat([k[1] for k in kept]))


def _epoch(model: torch.nn.Module, feed: ShardFeed, loss_fn: Any,
           optimizer: torch.optim.Optimizer | None) -> tuple[float, int]:
    total, count = 0.0, 0
    model.train(optimizer is not None)
    with torch.set_grad_enabled(optimizer is not None):
        for x, y in feed:
            loss = loss_fn(model(x), y)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total += loss.item() * len(y)
            count += len(y)
    return total, count


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Train for ``config["epochs"]`` epochs on the "train" shard, validating on "validation".

    ``config`` holds: architecture (dict), lr, weight_decay, batch_size, epochs,
    pos_weight, cache_shards_mb, checkpoint_every, and early_stopping (dict or None).
    """
    import ray.train
    import ray.train.torch

    from mlray.training.models import ModelArchitecture, build_model

    arch = ModelArchitecture.model_validate(config["architecture"])
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(build_model(arch))
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"],
                                 weight_decay=config.get("weight_decay", 0.0))
    if arch.task == "classification":
        weight = config.get("pos_weight")
        loss_fn: Any = torch.nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(weight, device=device) if weight else None)
    else:
        loss_fn = torch.nn.MSELoss()
    es = config.get("early_stopping")
    stopper = EarlyStopper(**es) if es else None
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, weights_only=True, map_location="cpu")
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"]) + 1
        if stopper and state.get("stopper"):
            stopper.best, stopper.bad_epochs = state["stopper"]
    cache_mb, batch = int(config.get("cache_shards_mb", 0)), int(config["batch_size"])
    train_feed = ShardFeed(ray.train.get_dataset_shard("train"), batch, device, cache_mb, True)
    val_feed = ShardFeed(ray.train.get_dataset_shard("validation"), batch, device, cache_mb,
                         False)
    epochs, every = int(config["epochs"]), int(config.get("checkpoint_every", 1))
    metrics: dict[str, Any] = {}
    for epoch in range(start, epochs):
        began = time.perf_counter()
        t_sum, t_n = _epoch(model, train_feed, loss_fn, optimizer)
        v_sum, v_n = _epoch(model, val_feed, loss_fn, None)
        elapsed = time.perf_counter() - began
        t_sum, t_n, v_sum, v_n = _global_sum([t_sum, t_n, v_sum, v_n], device)
        val_loss = v_sum / max(v_n, 1)
        stop = stopper.update(val_loss) if stopper else False
        last = stop or epoch == epochs - 1
        metrics = {"epoch": epoch, "train_loss": t_sum / max(t_n, 1), "val_loss": val_loss,
                   "samples_per_s": t_n / max(elapsed, 1e-9), "stopped_early": stop and
                   epoch < epochs - 1}
        with tempfile.TemporaryDirectory() as tmp:
            attach = None
            if rank == 0 and ((epoch + 1) % every == 0 or last):
                torch.save({"model": _unwrap(model).state_dict(),
                            "optimizer": optimizer.state_dict(), "epoch": epoch,
                            "stopper": [stopper.best, stopper.bad_epochs] if stopper else None},
                           Path(tmp) / STATE_FILE)
                attach = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=attach)
        if stop:
            break
    return metrics
