"""The ingress's colocated copies, without Ray (their ``serve.batch`` batching needs a
replica: tests/integration/test_serving.py drives it)."""

from __future__ import annotations

import asyncio

import pytest
import torch

from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from mlray.models.predictor import Predictor, save_model
from mlray.registry.types import ModelVersion, TensorSpec
from mlray.serving.batched import BatchedVersion
from mlray.serving.colocated import LocalVersions
from mlray.serving.loaded_model import VersionRunner
from mlray.serving.settings import BatchTuning, ModelServing
from mlray.training.data import Preprocessor
from mlray.training.models import ModelArchitecture, build_model


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> VersionRunner:
    frame = generate_fraud(500, seed=1)
    pre = Preprocessor.fit(frame, FRAUD_NUMERIC, FRAUD_CATEGORICAL)
    arch = ModelArchitecture(type="mlp", task="classification", in_features=pre.width,
                             hidden=[8])
    torch.manual_seed(0)
    path = save_model(tmp_path_factory.mktemp("m") / "model", build_model(arch), arch, pre)
    schema = ([TensorSpec(name=c, dtype="float64") for c in FRAUD_NUMERIC]
              + [TensorSpec(name=c, dtype="string") for c in FRAUD_CATEGORICAL])
    return VersionRunner(Predictor.from_directory(path), schema)


def _version(model: str, number: int) -> ModelVersion:
    return ModelVersion.model_construct(model=model, version=number)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_copies_load_in_the_background_retry_after_a_failure_and_are_dropped(
        runner: VersionRunner) -> None:
    broken = {"m2"}
    loads: list[str] = []
    slow = asyncio.Event()

    async def load(version: ModelVersion) -> BatchedVersion:
        loads.append(version.model)
        if version.model == "m3":
            await slow.wait()  # still loading when its version is retired
        if version.model in broken:
            raise OSError("artifact store unreachable")
        return BatchedVersion(version.model, version.version, runner, BatchTuning(),
                              project="default")

    clock = _Clock()
    local = LocalVersions(load, retry_after_s=30, clock=clock)

    async def settle() -> None:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not local.loading() - {("m3", 1)}:
                return

    async def go() -> None:
        assert local.get(_version("m1", 1)) is None  # loading starts
        assert local.get(_version("m1", 1)) is None  # ... once
        assert local.get(_version("m2", 1)) is None
        assert local.get(_version("m3", 1)) is None
        await settle()
        copy = local.get(_version("m1", 1))
        assert copy is not None and copy.version == 1
        assert local.get(_version("m2", 1)) is None  # failed: not before 30 s
        await settle()
        assert loads.count("m2") == 1
        clock.now = 31
        broken.clear()
        assert local.get(_version("m2", 1)) is None
        await settle()
        assert local.get(_version("m2", 1)) is not None
        local.drop("m2", 1)  # a copy that failed a request: the app answers for 30 s
        assert local.get(_version("m2", 1)) is None and ("m2", 1) not in local.loading()
        local.keep_only([("m1", 1)])  # m3's load is cancelled, m2 forgotten
        slow.set()
        await asyncio.sleep(0.05)
        assert set(local.loaded()) == {("m1", 1)} and not local.loading()

    asyncio.run(go())
    assert loads == ["m1", "m2", "m3", "m2"]


def test_colocating_a_gpu_model_is_refused() -> None:
    with pytest.raises(ValueError, match="colocate is for CPU models"):
        ModelServing(colocate=True, num_gpus=1)


