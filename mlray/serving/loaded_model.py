"""A loaded model version answering column batches: the model app's logic, without Ray.

Requests reach a model as columns (name → 1-d numpy array), already checked against
the version's input schema by the ingress, so a batch of requests is a concatenation
per column and one matrix multiply, with no Python object per row.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

from mlray.errors import InvalidInput
from mlray.models.predictor import Predictor
from mlray.registry.types import TensorSpec

__all__ = ["Columns", "VersionRunner", "concat_columns", "example_columns", "split_rows"]

Columns = dict[str, np.ndarray]


def example_columns(schema: list[TensorSpec], predictor: Predictor, rows: int) -> Columns:
    """A batch shaped by ``schema``: typical values (the mean, a known category)."""
    pre = predictor.preprocessor
    columns: Columns = {}
    for spec in schema:
        if spec.name in pre.numeric:
            mean = pre.means[pre.numeric.index(spec.name)]
            columns[spec.name] = np.full(rows, mean, dtype=np.float64)
        elif spec.name in pre.categorical:
            vocab = pre.vocab.get(spec.name) or [""]
            columns[spec.name] = np.array([vocab[i % len(vocab)] for i in range(rows)],
                                          dtype=object)
        else:
            columns[spec.name] = np.zeros(rows, dtype=np.float64)
    return columns


def concat_columns(batches: list[Mapping[str, np.ndarray]]) -> Columns:
    """One column batch out of several with the same columns."""
    if len(batches) == 1:
        return dict(batches[0])
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def split_rows(values: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """``values`` cut into consecutive pieces of ``lengths`` rows."""
    return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) > 1 else [values]


class VersionRunner:
    """One model version, ready to predict: loaded, optionally quantized, warmed up.

    Quantization (dynamic int8 of Linear layers) runs on the CPU only.
    """

    def __init__(self, predictor: Predictor, schema: list[TensorSpec], *,
                 quantize: bool = False, device: str = "cpu", warmup_rows: int = 64) -> None:
        missing = [f for f in predictor.features if f not in {s.name for s in schema}]
        if schema and missing:
            raise InvalidInput(f"the input schema lacks the model's feature(s) {missing}",
                               field="input_schema")
        self.schema = schema or [TensorSpec(name=f, dtype="float64") for f in predictor.features]
        if quantize and device == "cpu":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predictor.module = torch.ao.quantization.quantize_dynamic(
                    predictor.module, {torch.nn.Linear}, dtype=torch.qint8)
        self.predictor = predictor.to(device)
        self.quantized = quantize and device == "cpu"
        self.probe = example_columns(self.schema, predictor, warmup_rows)
        self.check()  # the first call is the warm-up

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predictions (probabilities or values) for a column batch, as float32."""
        matrix = self.predictor.preprocessor.transform(columns)
        return self.predictor.predict_matrix(matrix).astype(np.float32, copy=False)

    def check(self) -> None:
        """Predict the probe batch; raises when the model cannot answer sensibly."""
        out = self.predict(self.probe)
        if out.shape != (len(next(iter(self.probe.values()))),) or not np.isfinite(out).all():
            raise RuntimeError(f"health probe gave unusable predictions (shape {out.shape})")
