"""Every pyarrow.fs store on ``s3://``, against a real S3 API server (moto's, started by
the ``s3_endpoint`` fixture), with the endpoint given in the URI's query string."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from mlray.errors import IntegrityError
from mlray.features import OfflineStore
from mlray.identity import Caller
from mlray.monitoring.performance import live_performance
from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog
from mlray.registry import ModelRegistry, ModelSpec
from mlray.storage import ArtifactStore, open_state_store
from mlray.storage.fsuri import join_uri, open_uri, run_storage
from tests.unit.helpers import artifact_spec
from tests.unit.test_features_offline import _repo, _ts


def test_join_uri_keeps_the_query_last() -> None:
    uri = "s3://b/p/?endpoint_override=h:1&scheme=http"
    assert join_uri(uri, "v", "/x/") == "s3://b/p/v/x?endpoint_override=h:1&scheme=http"
    assert join_uri("/data/off/", "v") == "/data/off/v"
    assert run_storage("s3://b/p?endpoint_override=h:1&scheme=http")[0] == "b/p"
    assert run_storage("/tmp/rt") == ("/tmp/rt", None)


def test_artifacts_and_registry_on_s3(s3_uri: str, tmp_path: Path) -> None:
    artifacts = ArtifactStore(s3_uri)
    assert artifacts.root_uri.startswith("s3://")
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights" * 1000)
    ref = artifacts.put(src)
    assert ref.uri.startswith("s3://")
    assert ref.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert artifacts.fetch(ref.uri, ref.sha256, tmp_path / "out").read_bytes() == src.read_bytes()
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "spec.json").write_text("{}")
    tree = artifacts.put(tmp_path / "tree")
    assert artifacts.verify(tree.uri, tree.sha256).is_dir

    registry = ModelRegistry(open_state_store(f"sqlite:///{tmp_path / 's.db'}"), artifacts)
    admin = Caller.local_admin("alice")
    registry.create_model(admin, "default", ModelSpec(name="fraud"))
    version = registry.create_version(admin, "default", "fraud",
                                      artifact_spec(artifacts, tmp_path, b"w1"))
    assert version.artifact_uri.startswith("s3://")

    fs, _ = open_uri(s3_uri)
    with fs.open_output_stream(ref.uri.removeprefix("s3://")) as out:
        out.write(b"evil")
    with pytest.raises(IntegrityError, match="refusing to load"):
        artifacts.fetch(ref.uri, ref.sha256, tmp_path / "again")


def test_offline_store_point_in_time_on_s3(s3_uri: str) -> None:
    store = OfflineStore(s3_uri, _repo(ttl=10), project="default")
    store.write("stats", {"user_id": [1, 1], "event_timestamp": _ts([0, 5], dt.UTC),
                          "uid": [0, 1], "value": [0, 10]})
    fs, root = open_uri(s3_uri)
    written = fs.get_file_info(pafs.FileSelector(f"{root}/default/features/stats",
                                                 recursive=True))
    assert any(info.path.endswith(".parquet") for info in written)
    entity = {"user_id": [1] * 4, "event_timestamp": _ts([-1, 0, 10, 16], dt.UTC)}
    got = store.get_historical_features(entity, ["stats:uid"])
    assert got["uid"].to_pylist() == [None, 0, 1, None]


def test_prediction_log_and_feedback_on_s3(s3_uri: str) -> None:
    now = 1_780_000_000.0
    log = PredictionLog(s3_uri, "default", clock=lambda: now)
    log.add("r1", "fraud", 3, {"amount": np.array([1.0, 2.0])}, np.array([0.9, 0.2]), 2.0)
    assert len(log.flush()) == 1
    FeedbackLog(s3_uri, "default", clock=lambda: now).write([("r1", 1.0, 0), ("r1", 0.0, 1)])
    report = live_performance(s3_uri, "default", "fraud", 3, task="classification", now=now + 1)
    assert (report.predictions, report.labelled, report.unknown_feedback) == (2, 2, 0)
    assert report.metrics["accuracy"] == pytest.approx(1.0)


def test_a_pipeline_stage_reaches_artifacts_on_s3(s3_uri: str, tmp_path: Path) -> None:
    """A stage opens the run's artifact store itself: with the endpoint the store was
    opened with (``address``), not its bare root (which would ask AWS for the bucket)."""
    from mlray.pipelines.definitions import PipelineSpec
    from mlray.pipelines.executors import ThreadExecutor
    from mlray.pipelines.service import PipelineService
    from mlray.pipelines.state import RunState
    from tests.conftest import wait_for

    artifacts = ArtifactStore(s3_uri)
    assert artifacts.address.startswith(artifacts.root_uri + "?endpoint_override=")
    assert ArtifactStore(artifacts.address).address == artifacts.address
    executor = ThreadExecutor()
    service = PipelineService(open_state_store(f"sqlite:///{tmp_path / 's.db'}"), artifacts,
                              executor)
    admin = Caller.local_admin("alice")
    service.allow_code(admin, "p", allow=["tests.pipeline_stages"])
    service.apply(admin, "p", [PipelineSpec.model_validate({"name": "one", "stages": [
        {"name": "emit", "kind": "tests.pipeline_stages:emit", "params": {"value": 4}}]})])
    run_id = service.run(admin, "p", "one").run.run_id
    try:
        wait_for(lambda: (service.tick(), not service.get_run(admin, "p", run_id).active)[1],
                 timeout=60)
    finally:
        executor.shutdown()
    done = service.get_run(admin, "p", run_id)
    assert done.state is RunState.SUCCEEDED, done.message
    assert done.stages["emit"].output is not None
    assert done.stages["emit"].output.uri.startswith("s3://")
