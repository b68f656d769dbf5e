"""A model artifact on disk and the predictor that serves it.

Layout of a model directory (the registered artifact)::

    architecture.json   how to rebuild the network (mlray.training.models.ModelArchitecture)
    preprocessor.json   how raw feature rows become the input matrix
    weights.pt          the state_dict, loaded with torch.load(weights_only=True)
    baseline.json       the training baseline (for drift detection)

Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlray.errors import IntegrityError, InvalidInput
from mlray.monitoring.baseline import Baseline
from mlray.training.data import Preprocessor
from mlray.training.models import ModelArchitecture, build_model

__all__ = ["Predictor", "load", "save_model"]

Rows = pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any]


def save_model(directory: str | Path, module: torch.nn.Module, arch: ModelArchitecture,
               preprocessor: Preprocessor, baseline: Baseline | None = None) -> Path:
    """Write a model directory (see the module docstring); returns its path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "architecture.json").write_text(arch.model_dump_json(indent=1))
    (out / "preprocessor.json").write_text(preprocessor.model_dump_json(indent=1))
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save(state, out / "weights.pt")
    if baseline is not None:
        (out / "baseline.json").write_text(baseline.model_dump_json())
    return out


class Predictor:
    """A loaded model: raw rows in, probabilities (classification) or values out."""

    def __init__(self, module: torch.nn.Module, arch: ModelArchitecture,
                 preprocessor: Preprocessor) -> None:
        self.module = module.eval()
        self.arch = arch
        self.preprocessor = preprocessor
        self.device = torch.device("cpu")

    @classmethod
    def from_directory(cls, path: str | Path, allowed: Collection[str] = ()) -> Predictor:
        """Load a model directory written by :func:`save_model`; its architecture must be
        built in or one of ``allowed`` (see :mod:`mlray.registry.architectures`).

        Raises:
            PermissionDenied: the architecture is not allowed (nothing was imported).
            IntegrityError: a file is missing or the weights do not fit the architecture.
        """
        path = Path(path)
        try:
            arch = ModelArchitecture.model_validate_json((path / "architecture.json").read_text())
            pre = Preprocessor.model_validate_json((path / "preprocessor.json").read_text())
            module = build_model(arch, allowed)
            module.load_state_dict(torch.load(path / "weights.pt", weights_only=True,
                                              map_location="cpu"))
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            raise IntegrityError(f"model directory {path} cannot be loaded: {exc}") from exc
        return cls(module, arch, pre)

    @property
    def features(self) -> list[str]:
        """The raw feature columns a row must carry."""
        return [*self.preprocessor.numeric, *self.preprocessor.categorical]

    @property
    def task(self) -> str:
        """classification or regression."""
        return self.arch.task

    def _frame(self, rows: Rows) -> pd.DataFrame:
        if isinstance(rows, pd.DataFrame):
            frame = rows
        elif isinstance(rows, Mapping):
            frame = pd.DataFrame([rows])
        else:
            frame = pd.DataFrame(list(rows))
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise InvalidInput(f"rows lack feature(s) {missing}", field=missing[0])
        return frame

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Predictions for an already-preprocessed float32 matrix."""
        if x.ndim != 2 or x.shape[1] != self.preprocessor.width:
            raise InvalidInput(f"expected a matrix of shape (n, {self.preprocessor.width}), "
                               f"got {x.shape}", field="inputs")
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            out = self.module(tensor.to(self.device, non_blocking=True))
            if self.task == "classification":
                out = torch.sigmoid(out)
        return out.cpu().numpy().reshape(-1)

    def to(self, device: str) -> Predictor:
        """Move the model to ``device`` (``cpu``, ``cuda``); predictions stay numpy."""
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    def predict(self, rows: Rows) -> np.ndarray:
        """Predict for raw rows (a DataFrame, a list of dicts, or one dict)."""
        return self.predict_matrix(self.preprocessor.transform(self._frame(rows)))

    def latency_p99_ms(self, batch: np.ndarray, repeats: int = 50, warmup: int = 5) -> float:
        """p99 latency of predicting ``batch`` (preprocessed) on a warm model, in ms."""
        for _ in range(warmup):
            self.predict_matrix(batch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.predict_matrix(batch)
            times.append((time.perf_counter() - start) * 1e3)
        return float(np.percentile(times, 99))


def load(uri: str, client: Any = None) -> Predictor:
    """A ready predictor for ``models:/name/3``, ``models:/name@alias`` or a stage URI.

    The artifact is fetched and checked against its sha256 before anything is loaded.
    """
    if client is None:
        import mlray

        client = mlray.connect()
    return Predictor.from_directory(client.registry.download(uri),
                                    client.registry.allowed_architectures())


