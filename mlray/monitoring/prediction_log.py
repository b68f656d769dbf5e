"""The prediction log: sampled predictions appended in batches to Parquet.

Each ingress replica buffers what it answered (request id, time, model, version, the
input columns, the output, the latency) and appends the buffer as one Parquet file per
model version and flush under ``<offline_uri>/<project>/predictions/model=<m>/
version=<v>/date=<YYYY-MM-DD>/``; feedback (a label for a request id, possibly hours
later) lands under ``<offline_uri>/<project>/feedback/date=<YYYY-MM-DD>/``. Both are the
raw material of drift, ground truth and retraining, readable with ``pyarrow.dataset``
(hive partitioning)."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mlray._private.safepath import safe_name
from mlray.errors import BackendUnavailable, InvalidInput
from mlray.storage.fsuri import project_uri

__all__ = ["FeedbackLog", "PredictionLog"]


def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    fs, path = pafs.FileSystem.from_uri(root) if "://" in root else (
        pafs.LocalFileSystem(), root)
    return fs, path.rstrip("/")


def _write(fs: pafs.FileSystem, directory: str, table: pa.Table) -> str:
    fs.create_dir(directory, recursive=True)
    path = f"{directory}/part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    try:
        pq.write_table(table, path, filesystem=fs)
    except OSError as exc:
        raise BackendUnavailable(f"cannot write {path}: {exc}") from exc
    return path


class PredictionLog:
    """A replica's buffer of sampled predictions, flushed as Parquet files."""

    def __init__(self, root_uri: str, project: str, sample: float = 1.0,
                 rng: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.time) -> None:
        if not 0.0 <= sample <= 1.0:
            raise InvalidInput(f"sample must be in [0, 1], got {sample}", field="sample")
        self._fs, self._root = _filesystem(project_uri(root_uri, project))
        self.sample, self._rng, self._clock = sample, rng, clock
        self._buffer: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.logged = 0

    def add(self, request_id: str, model: str, version: int,
            inputs: Mapping[str, np.ndarray], outputs: np.ndarray, latency_ms: float,
            routing_key: str | None = None) -> bool:
        """Buffer one answered request (all its rows) if it is sampled; True if kept.

        ``routing_key`` (the sticky key, when the caller sent one) names the unit an A/B
        analysis groups requests by (CUPED's pre-period covariate)."""
        safe_name(model, field="model")
        if self.sample < 1.0 and self._rng() >= self.sample:
            return False
        entry = {"request_id": request_id, "ts": self._clock(), "latency_ms": latency_ms,
                 "inputs": inputs, "outputs": outputs, "routing_key": routing_key}
        with self._lock:
            self._buffer.setdefault((model, version), []).append(entry)
        return True

    def pending(self) -> int:
        """Requests buffered and not yet written."""
        with self._lock:
            return sum(len(v) for v in self._buffer.values())

    def flush(self) -> list[str]:
        """Write every buffered request (one file per model version); returns the paths.

        On a write failure the buffer of that version is kept for the next flush.
        """
        with self._lock:
            buffer, self._buffer = self._buffer, {}
        paths = []
        for (model, version), entries in buffer.items():
            table = _table(entries)
            day = dt.datetime.fromtimestamp(entries[0]["ts"], dt.UTC).date().isoformat()
            directory = (f"{self._root}/predictions/model={model}/version={version}/"
                         f"date={day}")
            try:
                paths.append(_write(self._fs, directory, table))
            except BackendUnavailable:
                with self._lock:
                    self._buffer.setdefault((model, version), [])[:0] = entries
                raise
            self.logged += len(entries)
        return paths


def _table(entries: list[dict[str, Any]]) -> pa.Table:
    """One row per predicted row: request id, row index, time, latency, output, routing
    key (null without one), inputs (model and version are the partition keys of the file's
    directory)."""
    lengths = [len(e["outputs"]) for e in entries]
    columns: dict[str, Any] = {
        "request_id": np.repeat([e["request_id"] for e in entries], lengths),
        "row": np.concatenate([np.arange(k) for k in lengths]),
        "ts": pa.array(np.repeat([int(e["ts"] * 1e6) for e in entries], lengths),
                       pa.timestamp("us", tz="UTC")),
        "latency_ms": np.repeat([e["latency_ms"] for e in entries], lengths),
        "prediction": np.concatenate([np.asarray(e["outputs"]) for e in entries]),
        "routing_key": pa.array([e.get("routing_key") for e in entries
                                 for _ in range(len(e["outputs"]))], pa.string()),
    }
    names = list(entries[0]["inputs"])
    for name in names:
        values = np.concatenate([np.asarray(e["inputs"].get(name, [None] * k))
                                 for e, k in zip(entries, lengths, strict=True)])
        columns[f"input_{name}"] = pa.array(values.tolist() if values.dtype == object
                                            else values)
    return pa.table(columns)


class FeedbackLog:
    """One project's labels for logged predictions, by request id, appended as Parquet."""

    def __init__(self, root_uri: str, project: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._fs, self._root = _filesystem(project_uri(root_uri, project))
        self._clock = clock

    def write(self, rows: list[tuple[str, float, int]]) -> str:
        """Append ``(request_id, label, row)`` triples; returns the file written."""
        if not rows:
            raise InvalidInput("no feedback to write", field="feedback")
        now = self._clock()
        day = dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()
        table = pa.table({
            "request_id": [r[0] for r in rows], "label": pa.array([r[1] for r in rows],
                                                                  pa.float64()),
            "row": pa.array([r[2] for r in rows], pa.int64()),
            "ts": pa.array([int(now * 1e6)] * len(rows), pa.timestamp("us", tz="UTC"))})
        return _write(self._fs, f"{self._root}/feedback/date={day}", table)
