"""Small real models for the serving tests, and a switchable fault for them.

``build`` (named in an architecture as ``tests.integration.serving_models:build``) gives
an MLP whose forward pass raises or stalls while a marker file exists, so a test can
break a live version and mend it again across process boundaries.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from mlray.models.predictor import save_model
from mlray.monitoring.baseline import profile_frame
from mlray.registry.types import ModelVersion, TensorSpec
from mlray.training.data import Preprocessor
from mlray.training.models import MLP, ModelArchitecture, build_model

FAULTY = "tests.integration.serving_models:build"
FAULT_DIR = Path(tempfile.gettempdir()) / "mlray-test-faults"


def set_fault(kind: str | None) -> None:
    """Make every faulty model ``fail`` or be ``slow`` (None: healthy again)."""
    FAULT_DIR.mkdir(exist_ok=True)
    for name in ("fail", "slow"):
        (FAULT_DIR / name).unlink(missing_ok=True)
    if kind:
        (FAULT_DIR / kind).touch()


class FaultyMLP(torch.nn.Module):
    """An MLP that obeys the fault markers."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.mlp = MLP(in_features, [16])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (FAULT_DIR / "fail").exists():
            raise RuntimeError("injected model failure")
        if (FAULT_DIR / "slow").exists():
            time.sleep(0.25)
        return self.mlp(x)


def build(in_features: int, task: str) -> torch.nn.Module:
    """The faulty model's factory."""
    return FaultyMLP(in_features)


def fraud_schema() -> list[TensorSpec]:
    """The fraud model's input schema."""
    return ([TensorSpec(name=c, dtype="float64") for c in FRAUD_NUMERIC]
            + [TensorSpec(name=c, dtype="string") for c in FRAUD_CATEGORICAL])


def register_model(client: Any, name: str, tmp: Path, *, seed: int = 0,
                   model_type: str = "mlp", epochs: int = 30) -> ModelVersion:
    """Fit a small fraud classifier in-process (plain torch) and register it."""
    frame = generate_fraud(3000, seed=seed)
    pre = Preprocessor.fit(frame, FRAUD_NUMERIC, FRAUD_CATEGORICAL)
    arch = ModelArchitecture(type=model_type, task="classification", in_features=pre.width,
                             hidden=[16])
    torch.manual_seed(seed)
    module = build_model(arch)
    x = torch.from_numpy(pre.transform(frame))
    y = torch.from_numpy(frame["is_fraud"].to_numpy(dtype=np.float32))
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(module(x), y)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        scores = torch.sigmoid(module(x)).numpy()
    baseline = profile_frame(frame, FRAUD_NUMERIC, FRAUD_CATEGORICAL, scores)
    model_dir = save_model(tmp / f"{name}-{seed}-{model_type.replace(':', '_')}", module, arch,
                           pre, baseline)
    if model_type != "mlp":  # a custom callable replicas import: an admin allows it first
        client.registry.allow_architectures(allow=[model_type])
    return client.registry.register(
        name, model_dir, metrics={"train_loss": float(loss.detach())}, input_schema=fraud_schema(),
        output_schema=[TensorSpec(name="probability", dtype="float32")],
        baseline=baseline.model_dump(mode="json"), framework="torch")
