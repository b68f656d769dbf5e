"""Per-feature sketches of live traffic against a version's training baseline bins.

A serving replica builds a :class:`Sketcher` from the version's :class:`Baseline` once,
then records each batch (a dict of column arrays, plus the predictions) into the
:class:`Sketch` of the current time bucket. Sketches add up (``a + b``), serialise to a
small dict of ints (:meth:`Sketch.to_dict`) for the ``monitor`` actor, and carry the time
span they cover so the monitor can keep sliding windows (:mod:`mlray.monitoring.window`).

Binning follows :func:`mlray.monitoring.baseline.profile_numeric`: a value's bin is the
number of inner edges at or below it, so the outer bins are open-ended and values outside
the baseline's [min, max] land in them (and are also counted as ``below``/``above``).
NaN, None and infinities are nulls. For numeric features, a non-null value that is not a
real number (a string, a list) is a type mismatch; for categorical ones, anything but a
str/int/float/bool scalar is. Categories are compared as strings (as the baseline stores
them); those not in the baseline are ``unseen``. A column missing from a batch counts
as all nulls. Not thread-safe: a replica guards its recorder with its own lock.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlray.errors import InvalidInput
from mlray.monitoring.baseline import Baseline, NumericProfile

__all__ = ["CategoricalSketch", "NumericSketch", "Recorder", "Sketch", "Sketcher",
           "bucket_start"]

#: Up to this many unseen category names are kept by count (the total is always exact).
MAX_UNSEEN_NAMES = 20
_FORMAT = 1
_COMPARE_EDGES = 32  # up to this many inner edges, count by comparisons (no searchsorted)
_CHUNK = 1 << 16


def bucket_start(t: float, bucket_s: float) -> float:
    """The start of the time bucket of width ``bucket_s`` that holds ``t``."""
    return math.floor(t / bucket_s) * bucket_s


# -- sketches ---------------------------------------------------------------------------------

@dataclass
class NumericSketch:
    """Counts of one numeric column (or the predictions) on the baseline's bins."""

    counts: np.ndarray  # int64, one per baseline bin
    rows: int = 0  # every row seen, nulls and mismatches included
    values: int = 0  # non-null real numbers (== counts.sum() when there are bins)
    nulls: int = 0
    mismatches: int = 0
    below: int = 0  # values < baseline min
    above: int = 0  # values > baseline max
    sum: float = 0.0
    sumsq: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, other: NumericSketch, name: str) -> None:
        """Add ``other``'s counts into this one (same bins)."""
        if len(self.counts) != len(other.counts):
            raise InvalidInput(f"{name}: sketches have {len(self.counts)} and "
                               f"{len(other.counts)} bins", field=name)
        self.counts = self.counts + other.counts
        for attr in ("rows", "values", "nulls", "mismatches", "below", "above", "sum",
                     "sumsq"):
            setattr(self, attr, getattr(self, attr) + getattr(other, attr))
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        """Mean of the live values, None without values."""
        return self.sum / self.values if self.values else None

    @property
    def std(self) -> float | None:
        """Population standard deviation of the live values."""
        if not self.values:
            return None
        mean = self.sum / self.values
        return math.sqrt(max(self.sumsq / self.values - mean * mean, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain ints and floats (min/max None when there were no values)."""
        return {"counts": [int(c) for c in self.counts], "rows": self.rows,
                "values": self.values, "nulls": self.nulls, "mismatches": self.mismatches,
                "below": self.below, "above": self.above, "sum": self.sum,
                "sumsq": self.sumsq, "min": self.min if self.values else None,
                "max": self.max if self.values else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericSketch:
        """Inverse of :meth:`to_dict`."""
        lo, hi = data.get("min"), data.get("max")
        return cls(counts=np.asarray(data["counts"], dtype=np.int64), rows=int(data["rows"]),
                   values=int(data["values"]), nulls=int(data["nulls"]),
                   mismatches=int(data["mismatches"]), below=int(data["below"]),
                   above=int(data["above"]), sum=float(data["sum"]),
                   sumsq=float(data["sumsq"]), min=math.inf if lo is None else float(lo),
                   max=-math.inf if hi is None else float(hi))


@dataclass
class CategoricalSketch:
    """Counts of one categorical column on the baseline's categories."""

    counts: np.ndarray  # int64, one per baseline category, in the baseline's order
    rows: int = 0
    nulls: int = 0
    mismatches: int = 0
    unseen: int = 0  # values not among the baseline's categories
    unseen_names: dict[str, int] = field(default_factory=dict)  # the commonest few

    def add(self, other: CategoricalSketch, name: str) -> None:
        """Add ``other``'s counts into this one (same categories)."""
        if len(self.counts) != len(other.counts):
            raise InvalidInput(f"{name}: sketches have {len(self.counts)} and "
                               f"{len(other.counts)} categories", field=name)
        self.counts = self.counts + other.counts
        self.rows += other.rows
        self.nulls += other.nulls
        self.mismatches += other.mismatches
        self.unseen += other.unseen
        names = dict(self.unseen_names)
        for key, n in other.unseen_names.items():
            names[key] = names.get(key, 0) + n
        self.unseen_names = _top(names)

    @property
    def values(self) -> int:
        """Non-null, well-typed values (seen and unseen)."""
        return int(self.counts.sum()) + self.unseen

    def to_dict(self) -> dict[str, Any]:
        """Plain ints and strings."""
        return {"counts": [int(c) for c in self.counts], "rows": self.rows,
                "nulls": self.nulls, "mismatches": self.mismatches, "unseen": self.unseen,
                "unseen_names": dict(self.unseen_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalSketch:
        """Inverse of :meth:`to_dict`."""
        return cls(counts=np.asarray(data["counts"], dtype=np.int64), rows=int(data["rows"]),
                   nulls=int(data["nulls"]), mismatches=int(data["mismatches"]),
                   unseen=int(data["unseen"]),
                   unseen_names={str(k): int(v) for k, v in data["unseen_names"].items()})


def _top(names: dict[str, int]) -> dict[str, int]:
    if len(names) <= MAX_UNSEEN_NAMES:
        return names
    return dict(sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_UNSEEN_NAMES])


@dataclass
class Sketch:
    """Everything a replica saw of one model version over ``[start, end)``."""

    start: float
    end: float
    rows: int = 0
    numeric: dict[str, NumericSketch] = field(default_factory=dict)
    categorical: dict[str, CategoricalSketch] = field(default_factory=dict)
    predictions: NumericSketch | None = None

    def merge(self, other: Sketch) -> Sketch:
        """A new sketch holding both (same baseline); the span covers both spans."""
        out = copy.deepcopy(self)
        out.merge_in(other)
        return out

    __add__ = merge

    def merge_in(self, other: Sketch) -> None:
        """Add ``other`` into this sketch in place."""
        for kind, mine, theirs in (("numeric", self.numeric, other.numeric),
                                   ("categorical", self.categorical, other.categorical)):
            if mine.keys() != theirs.keys():
                diff = sorted(mine.keys() ^ theirs.keys())
                raise InvalidInput(f"sketches of different baselines: {kind} features "
                                   f"{diff} in only one", field=diff[0])
            for name, sk in mine.items():
                sk.add(theirs[name], name)  # type: ignore[arg-type]
        if (self.predictions is None) != (other.predictions is None):
            raise InvalidInput("sketches of different baselines: predictions in only one",
                               field="predictions")
        if self.predictions is not None and other.predictions is not None:
            self.predictions.add(other.predictions, "predictions")
        self.rows += other.rows
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)

    @classmethod
    def merged(cls, sketches: Iterable[Sketch]) -> Sketch | None:
        """All ``sketches`` added up, or None when there are none."""
        out: Sketch | None = None
        for sk in sketches:
            if out is None:
                out = copy.deepcopy(sk)
            else:
                out.merge_in(sk)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A small JSON- and msgpack-friendly dict (ints, floats, strings, lists)."""
        return {"format": _FORMAT, "start": self.start, "end": self.end, "rows": self.rows,
                "numeric": {k: v.to_dict() for k, v in self.numeric.items()},
                "categorical": {k: v.to_dict() for k, v in self.categorical.items()},
                "predictions": None if self.predictions is None else self.predictions.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sketch:
        """Inverse of :meth:`to_dict`; raises InvalidInput on a malformed dict."""
        if data.get("format") != _FORMAT:
            raise InvalidInput(f"unknown sketch format {data.get('format')!r}", field="format")
        try:
            preds = data.get("predictions")
            return cls(
                start=float(data["start"]), end=float(data["end"]), rows=int(data["rows"]),
                numeric={str(k): NumericSketch.from_dict(v)
                         for k, v in data["numeric"].items()},
                categorical={str(k): CategoricalSketch.from_dict(v)
                             for k, v in data["categorical"].items()},
                predictions=None if preds is None else NumericSketch.from_dict(preds))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"malformed sketch: {exc!r}", field="sketch") from None


# -- building sketches ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Bins:
    inner: np.ndarray  # the inner edges (bins = len(inner) + 1), empty array if no bins
    bins: int  # 0 when the baseline column had no values
    lo: float | None
    hi: float | None

    @classmethod
    def of(cls, profile: NumericProfile) -> _Bins:
        edges = np.asarray(profile.edges, dtype=np.float64)
        bins = max(len(edges) - 1, 0)
        lo = profile.min if profile.min is not None else (float(edges[0]) if bins else None)
        hi = profile.max if profile.max is not None else (float(edges[-1]) if bins else None)
        return cls(inner=edges[1:-1] if bins else edges[:0], bins=bins, lo=lo, hi=hi)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real)


def _is_category(v: Any) -> bool:
    return isinstance(v, str | numbers.Real | np.str_)


def _is_null(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


class Sketcher:
    """Builds and fills :class:`Sketch` objects for one baseline (one model version)."""

    def __init__(self, baseline: Baseline, bucket_s: float = 60.0) -> None:
        if bucket_s <= 0:
            raise InvalidInput(f"bucket_s must be > 0 (got {bucket_s})", field="bucket_s")
        self.baseline = baseline
        self.bucket_s = float(bucket_s)
        self._bins = {name: _Bins.of(p) for name, p in baseline.numeric.items()}
        self._cats = {name: {c: i for i, c in enumerate(p.frequencies)}
                      for name, p in baseline.categorical.items()}
        self._pred = None if baseline.predictions is None else _Bins.of(baseline.predictions)

    def new(self, now: float) -> Sketch:
        """An empty sketch for the time bucket holding ``now``."""
        start = bucket_start(now, self.bucket_s)
        return Sketch(
            start=start, end=start + self.bucket_s,
            numeric={n: NumericSketch(np.zeros(b.bins, np.int64)) for n, b in self._bins.items()},
            categorical={n: CategoricalSketch(np.zeros(len(c), np.int64))
                         for n, c in self._cats.items()},
            predictions=None if self._pred is None
            else NumericSketch(np.zeros(self._pred.bins, np.int64)))

    def sketch(self, columns: Mapping[str, Any], predictions: Any = None,
               now: float | None = None) -> Sketch:
        """A fresh sketch of one batch, in the bucket of ``now`` (default: the clock)."""
        out = self.new(time.time() if now is None else now)
        self.update(out, columns, predictions)
        return out

    def update(self, sketch: Sketch, columns: Mapping[str, Any], predictions: Any = None) -> None:
        """Add a batch (column name -> 1-d array, all of one length) into ``sketch``.

        Raises:
            InvalidInput: columns of different lengths, or non 1-d arrays (``field`` names it).
        """
        arrays: dict[str, np.ndarray] = {}
        rows: int | None = None
        wanted = [*self._bins, *self._cats]
        for name in wanted:
            if name in columns:
                arrays[name] = _column(columns[name], name)
        pred = None if predictions is None else _column(predictions, "predictions")
        for name, arr in [*arrays.items(), *([("predictions", pred)] if pred is not None else [])]:
            if rows is None:
                rows = len(arr)
            elif len(arr) != rows:
                raise InvalidInput(f"{name}: {len(arr)} values, expected {rows}", field=name)
        if rows is None:
            rows = len(next(iter(columns.values()))) if columns else 0
        sketch.rows += rows
        for name, b in self._bins.items():
            sk = sketch.numeric[name]
            if name in arrays:
                _numeric_into(sk, b, arrays[name])
            else:
                sk.rows += rows
                sk.nulls += rows
        for name, index in self._cats.items():
            cs = sketch.categorical[name]
            if name in arrays:
                _categorical_into(cs, index, arrays[name])
            else:
                cs.rows += rows
                cs.nulls += rows
        if pred is not None and sketch.predictions is not None and self._pred is not None:
            _numeric_into(sketch.predictions, self._pred, pred)


def _column(values: Any, name: str) -> np.ndarray:
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInput(f"{name}: expected a 1-d array, got shape {arr.shape}", field=name)
    return arr


def _object_numbers(arr: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(float values, nulls, mismatches) of an object or string column (the slow path)."""
    n = len(arr)
    objs = arr.astype(object, copy=False)
    null = np.fromiter((_is_null(v) for v in objs), dtype=bool, count=n)
    real = np.fromiter((_is_real(v) for v in objs), dtype=bool, count=n) & ~null
    nulls = int(null.sum())
    return objs[real].astype(np.float64), nulls, n - nulls - int(real.sum())


def _numeric_into(sk: NumericSketch, b: _Bins, arr: np.ndarray) -> None:
    """Add one column into ``sk``: nulls, mismatches, then the finite values chunk by chunk.

    Each chunk stays in the CPU cache for the ten-odd passes over it (finite check, sum,
    sum of squares, min, max, range and bin counts), so a column is read from memory once.
    """
    sk.rows += len(arr)
    if arr.dtype.kind in "USO":
        x, nulls, mismatches = _object_numbers(arr)
        sk.nulls += nulls
        sk.mismatches += mismatches
    elif arr.dtype.kind in "iubf":
        x = arr
    else:  # datetimes, complex, ...: not real numbers
        sk.mismatches += len(arr)
        return
    small = len(b.inner) <= _COMPARE_EDGES
    for s in range(0, len(x), _CHUNK):
        chunk = x[s:s + _CHUNK].astype(np.float64, copy=False)
        total = float(chunk.sum())
        if not math.isfinite(total):  # a NaN or an infinity (or an overflow): mask
            finite = np.isfinite(chunk)
            kept = int(np.count_nonzero(finite))
            sk.nulls += len(chunk) - kept
            if not kept:
                continue
            if kept < len(chunk):
                chunk = chunk[finite]
                total = float(chunk.sum())
        _add_finite(sk, b, chunk, total, small)


def _add_finite(sk: NumericSketch, b: _Bins, chunk: np.ndarray, total: float,
                small: bool) -> None:
    sk.values += len(chunk)
    sk.sum += total
    sk.sumsq += float(np.square(chunk).sum())  # not np.dot: BLAS threads in a replica
    lo, hi = float(chunk.min()), float(chunk.max())
    sk.min, sk.max = min(sk.min, lo), max(sk.max, hi)
    if b.lo is not None and lo < b.lo:
        sk.below += int(np.count_nonzero(chunk < b.lo))
    if b.hi is not None and hi > b.hi:
        sk.above += int(np.count_nonzero(chunk > b.hi))
    if not b.bins:
        return
    if small:
        # count(x < e_j) is the number of values in bins 0..j: a few vectorised
        # comparisons beat a binary search per value by an order of magnitude.
        n = len(chunk)
        upto = [0 if edge <= lo else n if edge > hi else np.count_nonzero(chunk < edge)
                for edge in b.inner]
        sk.counts += np.diff(np.array([0, *upto, n], dtype=np.int64))
    else:
        sk.counts += np.bincount(np.searchsorted(b.inner, chunk, side="right"),
                                 minlength=b.bins)


def _categorical_into(cs: CategoricalSketch, index: dict[str, int], arr: np.ndarray) -> None:
    n = len(arr)
    cs.rows += n
    if arr.dtype.kind in "OUS":
        objs = arr.astype(object, copy=False)
        null = np.fromiter((_is_null(v) for v in objs), dtype=bool, count=n)
        ok = np.fromiter((_is_category(v) for v in objs), dtype=bool, count=n) & ~null
        cs.nulls += int(null.sum())
        cs.mismatches += n - int(null.sum()) - int(ok.sum())
        series = pd.Series(objs[ok]).astype(str)
    elif arr.dtype.kind in "iub":
        series = pd.Series(arr).astype(str)
    elif arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        cs.nulls += n - int(finite.sum())
        series = pd.Series(arr[finite]).astype(str)
    else:
        cs.mismatches += n
        return
    for value, count in series.value_counts(sort=False).items():
        i = index.get(str(value))
        if i is None:
            cs.unseen += int(count)
            cs.unseen_names[str(value)] = cs.unseen_names.get(str(value), 0) + int(count)
        else:
            cs.counts[i] += int(count)
    cs.unseen_names = _top(cs.unseen_names)


# -- the replica side -------------------------------------------------------------------------

class Recorder:
    """A replica's sketches per time bucket, drained to the monitor in the background."""

    def __init__(self, sketcher: Sketcher) -> None:
        self.sketcher = sketcher
        self._open: dict[float, Sketch] = {}

    def record(self, columns: Mapping[str, Any], predictions: Any = None,
               now: float | None = None) -> None:
        """Add one batch to the sketch of ``now``'s bucket (default: the clock)."""
        now = time.time() if now is None else now
        start = bucket_start(now, self.sketcher.bucket_s)
        sk = self._open.get(start)
        if sk is None:
            sk = self._open[start] = self.sketcher.new(now)
        self.sketcher.update(sk, columns, predictions)

    def drain(self) -> list[dict[str, Any]]:
        """The open sketches as dicts, oldest first; the recorder starts empty again."""
        out = [self._open[k].to_dict() for k in sorted(self._open)]
        self._open = {}
        return out
