"""Exact sliding-window aggregations per entity: sum, avg, min, max, count, std.

For each entity the store keeps the events of the last ``horizon`` (the longest window,
or the allowed lateness if longer) in event-time order: ``(ts, event id, values)``. The
window of length ``w`` is ``(T - w, T]`` where ``T`` is the entity's newest event time,
so every window holds at least the newest event. An event older than ``T - lateness``
is dropped as late; an event whose id the entity already holds is a duplicate and
changes nothing, so redelivered events count once.

Exactness: every finite double is an integer multiple of 2**-1074, so sums and sums of
squares are kept as Python integers of that scale (ints as they are): adding and
removing are exact, and ``sum``, ``avg`` and the variance come out correctly rounded
from one integer division (``std`` is the square root of that, population form).
``min``/``max`` use monotonic queues, which also take late events in the middle.

Persistence: :meth:`WindowStore.snapshot` packs one entity's events (msgpack bytes) and
:meth:`WindowStore.restore` rebuilds every window from them, so the caller persists
the snapshots of the entities a batch touched together with the batch (the stream
processor stores them in a Redis hash before it acknowledges the messages).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import msgpack

from mlray.errors import InvalidInput
from mlray.features.definitions import Aggregation, FeatureView, duration_us

__all__ = ["Outcome", "WindowStore"]

_SHIFT = 1074  # 2**-1074 is the smallest positive double
_MAX_ABS = 1e150  # squares stay finite
Number = int | float


class Outcome(enum.IntEnum):
    """What :meth:`WindowStore.add` did with an event."""

    ADDED = 0
    DUPLICATE = 1
    LATE = 2


@dataclasses.dataclass(frozen=True)
class _Output:
    name: str
    function: str
    window: int  # index into the store's windows
    column: int  # index into the store's columns, -1 for a plain count
    integer: bool  # the output is an int64 field


class _Queue:
    """A monotonic queue over ``(ts, value)``: values strictly decreasing (max) or
    increasing (min) with ts; late inserts go to their place in time."""

    __slots__ = ("better", "ts", "vals")

    def __init__(self, is_max: bool) -> None:
        self.ts: list[int] = []
        self.vals: list[Number] = []
        self.better = (lambda a, b: a >= b) if is_max else (lambda a, b: a <= b)

    def add(self, ts: int, value: Number) -> None:
        p = bisect.bisect_right(self.ts, ts)
        if p < len(self.ts) and self.better(self.vals[p], value):
            return  # a later event at least as good outlives this one
        j = p
        while j > 0 and self.better(value, self.vals[j - 1]):
            j -= 1
        self.ts[j:p] = [ts]
        self.vals[j:p] = [value]

    def evict(self, cut: int) -> None:
        k = bisect.bisect_right(self.ts, cut)
        if k:
            del self.ts[:k], self.vals[:k]


class _Window:
    """One window length of one entity: where it starts in the buffer, and its sums."""

    __slots__ = ("maxs", "mins", "s1", "s2", "start")

    def __init__(self, ncols: int, kinds: Sequence[frozenset[str]]) -> None:
        self.start = 0
        self.s1 = [0] * ncols
        self.s2 = [0] * ncols
        self.mins = [_Queue(False) if "min" in k else None for k in kinds]
        self.maxs = [_Queue(True) if "max" in k else None for k in kinds]


class _Entity:
    __slots__ = ("ids", "newest", "seen", "ts", "vals", "windows")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.ids: list[str] = []
        self.vals: list[tuple[Number, ...]] = []
        self.seen: set[str] = set()
        self.newest: int | None = None
        self.windows: list[_Window] = []


class WindowStore:
    """Sliding-window aggregations for many entities of one view, kept exact in memory.

    Args:
        aggregations: what to compute; each writes ``aggregation.output``.
        integer_outputs: outputs written to int64 fields (``sum``/``min``/``max`` of
            integers); their input columns must hold integers.
        allowed_lateness: how far behind an entity's newest event an event may arrive
            and still count.
    """

    def __init__(self, aggregations: Sequence[Aggregation], *,
                 integer_outputs: Iterable[str] = (),
                 allowed_lateness: dt.timedelta = dt.timedelta(0)) -> None:
        ints = set(integer_outputs)
        self.windows: tuple[int, ...] = tuple(sorted({duration_us(a.window) for a in aggregations}))
        self.columns: tuple[str, ...] = tuple(dict.fromkeys(
            a.column for a in aggregations if a.column is not None and a.function != "count"))
        self.integer: tuple[bool, ...] = tuple(
            any(a.column == c and a.output in ints for a in aggregations) for c in self.columns)
        self.lateness = duration_us(allowed_lateness)
        self.horizon = max([*self.windows, self.lateness])
        kinds: dict[tuple[int, int], set[str]] = {}
        outputs = []
        for a in aggregations:
            w = self.windows.index(duration_us(a.window))
            c = self.columns.index(a.column) if a.function != "count" and a.column else -1
            outputs.append(_Output(a.output, a.function, w, c, a.output in ints))
            kinds.setdefault((w, c), set()).add(a.function)
        self._outputs = tuple(outputs)
        self._kinds = [[frozenset(kinds.get((w, c), ())) for c in range(len(self.columns))]
                       for w in range(len(self.windows))]
        self._needs_s2 = [[bool({"std"} & k) for k in row] for row in self._kinds]
        self._entities: dict[Hashable, _Entity] = {}

    @classmethod
    def for_view(cls, view: FeatureView) -> WindowStore:
        """The store for a view's ``aggregations`` (and its stream's allowed lateness)."""
        ints = [a.output for a in view.aggregations
                if (f := view.field(a.output)) is not None and f.dtype == "int64"
                and a.function != "count"]
        lateness = getattr(view.source, "allowed_lateness", dt.timedelta(0))
        return cls(view.aggregations, integer_outputs=ints, allowed_lateness=lateness)

    @property
    def outputs(self) -> list[str]:
        """The output names, in declared order."""
        return [o.name for o in self._outputs]

    def __len__(self) -> int:
        return len(self._entities)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entities

    def newest(self, key: Hashable) -> int | None:
        """The entity's newest event time (microseconds since the epoch), or None."""
        ent = self._entities.get(key)
        return None if ent is None else ent.newest

    def check_values(self, values: Sequence[Any], field: str = "values") -> tuple[Number, ...]:
        """``values`` (one per :attr:`columns`) as numbers the windows can take exactly.

        Raises:
            InvalidInput: a missing, non-numeric, non-finite or too large value, or a
                non-integer where an int64 output needs one.
        """
        if len(values) != len(self.columns):
            raise InvalidInput(f"{field}: expected {len(self.columns)} values", field=field)
        out: list[Number] = []
        for v, name, integer in zip(values, self.columns, self.integer, strict=True):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InvalidInput(f"{name}: expected a number, got {v!r}", field=name)
            if integer:
                if isinstance(v, float):
                    if not v.is_integer():
                        raise InvalidInput(f"{name}: expected an integer, got {v!r}", field=name)
                    v = int(v)
                out.append(v)
            else:
                v = float(v)
                if not math.isfinite(v) or abs(v) > _MAX_ABS:
                    raise InvalidInput(f"{name}: {v!r} is not a finite number within "
                                       f"±{_MAX_ABS:g}", field=name)
                out.append(v)
        return tuple(out)

    # Updates.

    def add(self, key: Hashable, ts_us: int, event_id: str,
            values: Sequence[Number] = ()) -> Outcome:
        """Count one event (``values`` from :meth:`check_values`) in every window of ``key``."""
        ent = self._entities.get(key)
        if ent is None:
            ent = self._entities[key] = self._new_entity()
        if event_id in ent.seen:
            return Outcome.DUPLICATE
        if ent.newest is not None and ts_us < ent.newest - self.lateness:
            return Outcome.LATE
        vals = tuple(values)
        ent.seen.add(event_id)
        if ent.newest is None or ts_us > ent.newest:
            ent.ts.append(ts_us)
            ent.ids.append(event_id)
            ent.vals.append(vals)
            for i, win in enumerate(ent.windows):
                self._include(i, win, ts_us, vals, +1)
            ent.newest = ts_us
            for i, win in enumerate(ent.windows):
                self._evict(i, win, ent)
            self._trim(ent)
            return Outcome.ADDED
        p = bisect.bisect_right(ent.ts, ts_us)
        ent.ts.insert(p, ts_us)
        ent.ids.insert(p, event_id)
        ent.vals.insert(p, vals)
        for i, win in enumerate(ent.windows):
            if ts_us <= ent.newest - self.windows[i]:
                win.start += 1  # before the window: only shifts it
            else:
                self._include(i, win, ts_us, vals, +1)
        return Outcome.ADDED

    def _new_entity(self) -> _Entity:
        ent = _Entity()
        ent.windows = [_Window(len(self.columns), self._kinds[i])
                       for i in range(len(self.windows))]
        return ent

    def _include(self, i: int, win: _Window, ts: int, vals: tuple[Number, ...],
                 sign: int) -> None:
        for c, v in enumerate(vals):
            x = v if self.integer[c] else _scaled(v)  # type: ignore[arg-type]
            win.s1[c] += sign * x
            if self._needs_s2[i][c]:
                win.s2[c] += sign * x * x
            if sign > 0:
                if (q := win.mins[c]) is not None:
                    q.add(ts, v)
                if (q := win.maxs[c]) is not None:
                    q.add(ts, v)

    def _evict(self, i: int, win: _Window, ent: _Entity) -> None:
        assert ent.newest is not None
        cut = ent.newest - self.windows[i]
        while win.start < len(ent.ts) and ent.ts[win.start] <= cut:
            self._include(i, win, ent.ts[win.start], ent.vals[win.start], -1)
            win.start += 1
        for q in (*win.mins, *win.maxs):
            if q is not None:
                q.evict(cut)

    def _trim(self, ent: _Entity) -> None:
        assert ent.newest is not None
        k = bisect.bisect_left(ent.ts, ent.newest - self.horizon)
        if k < 64 and 2 * k < len(ent.ts):
            return  # amortised: trim in bulk
        for event_id in ent.ids[:k]:
            ent.seen.discard(event_id)
        del ent.ts[:k], ent.ids[:k], ent.vals[:k]
        for win in ent.windows:
            win.start -= k

    # Reads.

    def values(self, key: Hashable) -> dict[str, Number | None]:
        """Every output of ``key`` as of its newest event (count 0 and None if unknown)."""
        ent = self._entities.get(key)
        out: dict[str, Number | None] = {}
        for o in self._outputs:
            if ent is None or ent.newest is None:
                out[o.name] = 0 if o.function == "count" else None
                continue
            win = ent.windows[o.window]
            n = len(ent.ts) - win.start
            if o.function == "count":
                out[o.name] = n
                continue
            if n == 0:
                out[o.name] = 0 if o.function == "sum" else None
                continue
            c = o.column
            scale = 0 if self.integer[c] else _SHIFT
            s1 = win.s1[c]
            if o.function == "sum":
                out[o.name] = s1 if o.integer else s1 / (1 << scale)
            elif o.function == "avg":
                out[o.name] = s1 / (n << scale)
            elif o.function == "std":
                var = (n * win.s2[c] - s1 * s1) / ((n * n) << (2 * scale))
                out[o.name] = math.sqrt(var)
            else:
                q = win.mins[c] if o.function == "min" else win.maxs[c]
                assert q is not None
                v = q.vals[0]
                out[o.name] = v if o.integer or not self.integer[c] else float(v)
        return out

    # Persistence.

    def snapshot(self, key: Hashable) -> bytes | None:
        """The entity's events packed for :meth:`restore`, or None if it has none."""
        ent = self._entities.get(key)
        if ent is None or ent.newest is None:
            return None
        k = bisect.bisect_left(ent.ts, ent.newest - self.horizon)
        return msgpack.packb([ent.newest, ent.ts[k:], ent.ids[k:], [list(v) for v in
                                                                    ent.vals[k:]]])

    def restore(self, key: Hashable, blob: bytes | None) -> None:
        """Replace ``key``'s state with a :meth:`snapshot` (None forgets the entity)."""
        if blob is None:
            self._entities.pop(key, None)
            return
        newest, ts, ids, vals = msgpack.unpackb(blob, raw=False)
        ent = self._new_entity()
        ent.newest, ent.ts, ent.ids = newest, list(ts), list(ids)
        ent.vals = [tuple(v) for v in vals]
        ent.seen = set(ent.ids)
        for i, win in enumerate(ent.windows):
            win.start = bisect.bisect_right(ent.ts, newest - self.windows[i])
            for j in range(win.start, len(ent.ts)):
                self._include(i, win, ent.ts[j], ent.vals[j], +1)
        self._entities[key] = ent

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s in-memory state (it is reloaded from a snapshot when needed)."""
        self._entities.pop(key, None)


def _scaled(v: float) -> int:
    """``v * 2**1074`` exactly, as an integer."""
    num, den = v.as_integer_ratio()
    return num << (_SHIFT + 1 - den.bit_length())
