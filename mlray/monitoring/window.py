"""Sliding windows of sketches, by time and by count, for one model version.

The monitor adds each sketch a replica ships (:meth:`SketchWindow.add`); sketches of the
same time bucket are merged, so memory grows with the number of buckets, not replicas.
A window is the merge of the newest buckets: those that start within the last
``seconds`` (:meth:`by_time`), or the fewest newest buckets holding at least ``rows``
rows (:meth:`by_count`; bucket granularity, so it may hold a little more). Buckets older
than ``max_age_s`` are dropped; a sketch arriving for a dropped bucket is counted in
``late`` and ignored.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from mlray.errors import InvalidInput
from mlray.monitoring.sketch import Sketch

__all__ = ["SketchWindow"]


class SketchWindow:
    """Time buckets of merged sketches, oldest first."""

    def __init__(self, max_age_s: float = 7 * 86400.0) -> None:
        if max_age_s <= 0:
            raise InvalidInput(f"max_age_s must be > 0 (got {max_age_s})", field="max_age_s")
        self.max_age_s = float(max_age_s)
        self.buckets: dict[float, Sketch] = {}
        self.late = 0

    def add(self, sketch: Sketch | Mapping[str, Any], now: float | None = None) -> bool:
        """Merge a sketch (or its dict) into its bucket; False if it is too old to keep."""
        sk = sketch if isinstance(sketch, Sketch) else Sketch.from_dict(sketch)
        now = time.time() if now is None else now
        self.prune(now)
        if sk.end <= now - self.max_age_s:
            self.late += 1
            return False
        held = self.buckets.get(sk.start)
        if held is None:
            self.buckets[sk.start] = copy.deepcopy(sk)
        else:
            held.merge_in(sk)
        return True

    def prune(self, now: float | None = None) -> None:
        """Drop the buckets that ended more than ``max_age_s`` before ``now``."""
        cutoff = (time.time() if now is None else now) - self.max_age_s
        for start in [s for s, sk in self.buckets.items() if sk.end <= cutoff]:
            del self.buckets[start]

    def by_time(self, seconds: float, now: float | None = None) -> Sketch | None:
        """The merge of the buckets starting in ``[now - seconds, now]``; None if none."""
        now = time.time() if now is None else now
        keys = sorted(s for s in self.buckets if now - seconds <= s <= now)
        return Sketch.merged(self.buckets[k] for k in keys)

    def by_count(self, rows: int) -> Sketch | None:
        """The merge of the fewest newest buckets with at least ``rows`` rows (or all)."""
        picked: list[Sketch] = []
        total = 0
        for start in sorted(self.buckets, reverse=True):
            if total >= rows and picked:
                break
            picked.append(self.buckets[start])
            total += self.buckets[start].rows
        return Sketch.merged(reversed(picked))

    def to_dict(self) -> dict[str, Any]:
        """The window's state, for the monitor's durable store."""
        return {"max_age_s": self.max_age_s, "late": self.late,
                "buckets": [self.buckets[k].to_dict() for k in sorted(self.buckets)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SketchWindow:
        """Inverse of :meth:`to_dict`."""
        out = cls(max_age_s=float(data["max_age_s"]))
        out.late = int(data.get("late", 0))
        for raw in data["buckets"]:
            sk = Sketch.from_dict(raw)
            out.buckets[sk.start] = sk
        return out
