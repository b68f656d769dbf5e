"""Small builders shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlray.models.predictor import save_model
from mlray.registry.types import VersionSpec
from mlray.storage import ArtifactStore
from mlray.training.data import Preprocessor
from mlray.training.models import ModelArchitecture, build_model


def artifact_spec(artifacts: ArtifactStore, tmp_path: Path, content: bytes = b"weights",
                  **fields: object) -> VersionSpec:
    """A VersionSpec over a real artifact holding ``content``."""
    src = tmp_path / f"art-{abs(hash(content))}.bin"
    src.write_bytes(content)
    ref = artifacts.put(src)
    return VersionSpec(artifact_uri=ref.uri, artifact_sha256=ref.sha256, **fields)  # type: ignore[arg-type]


def tiny_model(tmp_path: Path) -> tuple[Path, Path]:
    """An untrained one-feature MLP classifier's model directory (its AUC is far from 0.9)
    and a labelled Parquet file (feature ``a``, label ``y``) to evaluate it on."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "y": rng.integers(0, 2, 200)})
    pre = Preprocessor.fit(frame, ["a"], [])
    arch = ModelArchitecture(type="mlp", task="classification", in_features=pre.width,
                             hidden=[4])
    model_dir = save_model(tmp_path / "model", build_model(arch), arch, pre)
    frame.to_parquet(tmp_path / "eval.parquet")
    return model_dir, tmp_path / "eval.parquet"
