"""What an ingress replica answered, held until its next sketch flush.

The request path only appends (columns, predictions) to a list; the background flush
concatenates them per version, sketches them against the version's baseline bins in a
worker thread, and hands the sketches to the ``monitor`` actor.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlray.monitoring.baseline import Baseline
from mlray.monitoring.sketch import Recorder, Sketcher

__all__ = ["SketchBuffer"]

_MAX_PENDING = 10_000  # requests per version kept between flushes (older ones dropped)


class SketchBuffer:
    """Per (model, version): answered batches waiting to be sketched, and the recorder."""

    def __init__(self, bucket_s: float = 60.0) -> None:
        self.bucket_s = bucket_s
        self._pending: dict[tuple[str, int], list[tuple[Mapping[str, Any], Any]]] = {}
        self._recorders: dict[tuple[str, int], Recorder | None] = {}
        self._lock = threading.Lock()

    def add(self, model: str, version: int, columns: Mapping[str, Any], out: Any) -> None:
        """Hold one answered batch (cheap: a list append)."""
        key = (model, version)
        if self._recorders.get(key, True) is None:
            return  # known to have no baseline
        with self._lock:
            batches = self._pending.setdefault(key, [])
            if len(batches) < _MAX_PENDING:
                batches.append((columns, out))

    def unknown(self) -> list[tuple[str, int]]:
        """Versions with answers whose baseline was not looked up yet."""
        with self._lock:
            return [k for k in self._pending if k not in self._recorders]

    def set_baseline(self, model: str, version: int, baseline: dict[str, Any] | None) -> None:
        """The version's training baseline (None: it has none; its answers are not sketched)."""
        recorder = (Recorder(Sketcher(Baseline.model_validate(baseline), self.bucket_s))
                    if baseline else None)
        with self._lock:
            self._recorders[(model, version)] = recorder
            if recorder is None:
                self._pending.pop((model, version), None)

    def drain(self, project: str) -> list[dict[str, Any]]:
        """Sketch everything pending; the sketch envelopes for the ``monitor`` actor."""
        with self._lock:
            pending, self._pending = self._pending, {}
        envelopes = []
        for (model, version), batches in pending.items():
            recorder = self._recorders.get((model, version))
            if recorder is None:
                with self._lock:  # baseline not known yet: keep for the next flush
                    self._pending.setdefault((model, version), [])[:0] = batches
                continue
            names = list(batches[0][0])
            columns = {n: np.concatenate([np.asarray(b[0][n]) for b in batches])
                       for n in names}
            recorder.record(columns, np.concatenate([np.asarray(b[1]) for b in batches]))
            envelopes += [{"project": project, "model": model, "version": version,
                           "sketch": sketch} for sketch in recorder.drain()]
        return envelopes
