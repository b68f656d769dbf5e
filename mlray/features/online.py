"""The online store contract: the latest row per (view, entity key), read with statuses.

Every backend stores, per view and entity key, one event time and one packed value
(the row's features as a msgpack map, so values keep their types: int, float, str,
bool, bytes, lists, maps; a field added later reads NOT_FOUND in old rows). Backends
implement two primitives, :meth:`OnlineStore._put` (write where the event time is not
older than the stored one, atomically per key) and :meth:`OnlineStore._get`; the
checked :meth:`OnlineStore.write` and :meth:`OnlineStore.read` are built once on them.

Statuses: PRESENT; NOT_FOUND (no row for the key, or the row lacks the feature);
OUTSIDE_MAX_AGE (the row's event time is older than ``now - ttl``; its values come
back as None). ``ttl`` 0 means values never expire. The age bound is inclusive, as
offline: a row exactly ``ttl`` old is PRESENT.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa

from mlray.errors import ConfigError, InvalidInput, NotFound
from mlray.features.offline import to_table
from mlray.features.repo import BoundView
from mlray.features.validate import check_fields, check_keys, to_utc_ns

__all__ = ["FeatureStatus", "OnlineRead", "OnlineStore", "encode_key", "open_online_store"]

_INT64 = (-(2**63), 2**63 - 1)


class FeatureStatus(enum.IntEnum):
    """Per-value outcome of an online read."""

    NOT_FOUND = 0
    PRESENT = 1
    OUTSIDE_MAX_AGE = 2


@dataclasses.dataclass(frozen=True)
class OnlineRead:
    """Values of one view for several entities, column by column.

    Attributes:
        features: the feature names, in the order asked.
        values: per feature, one value per entity (None unless PRESENT).
        status: ``(entities, features)`` int8 array of :class:`FeatureStatus` codes.
        event_ts: per entity, the stored row's event time (``datetime64[us]``, UTC; NaT
            where there is no row).
    """

    features: list[str]
    values: dict[str, list[Any]]
    status: np.ndarray
    event_ts: np.ndarray

    def statuses(self, feature: str) -> list[FeatureStatus]:
        """The statuses of one feature, per entity."""
        j = self.features.index(feature)
        return [FeatureStatus(int(s)) for s in self.status[:, j]]

    def rows(self) -> list[dict[str, Any]]:
        """One ``{feature: value}`` dict per entity (handy in tests and small reads)."""
        n = len(self.event_ts)
        return [{f: self.values[f][i] for f in self.features} for i in range(n)]


def _check_key_value(value: Any, dtype: str, field: str) -> int | str:
    if dtype == "int64":
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidInput(f"{field}: expected int64, got {type(value).__name__} {value!r}",
                               field=field)
        value = int(value)
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidInput(f"{field}: {value} does not fit in int64", field=field)
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: expected string, got {type(value).__name__} {value!r}",
                           field=field)
    return value


def encode_key(bound: BoundView, key: Any, index: int = 0) -> bytes:
    """The storage form of one entity key (a scalar for one join key, else a tuple in join-key
    order or a mapping by join-key name), after checking its types.

    Raises:
        InvalidInput: wrong arity, a missing key column, or a value of the wrong type.
    """
    names = bound.key_names
    if isinstance(key, Mapping):
        missing = [n for n in names if n not in key]
        if missing:
            raise InvalidInput(f"entity_keys[{index}]: missing {missing}",
                               field=f"entity_keys[{index}]")
        parts = [key[n] for n in names]
    elif isinstance(key, tuple | list):
        parts = list(key)
    else:
        parts = [key]
    if len(parts) != len(names):
        raise InvalidInput(f"entity_keys[{index}]: view {bound.name!r} is keyed by {names}, "
                           f"got {len(parts)} values", field=f"entity_keys[{index}]")
    checked = [_check_key_value(v, k.dtype, f"entity_keys[{index}].{k.name}")
               for v, k in zip(parts, bound.join_keys, strict=True)]
    return msgpack.packb(checked, use_bin_type=True)


def _pack(values: dict[str, Any]) -> bytes:
    return msgpack.packb(values, use_bin_type=True)


def _unpack(payload: bytes) -> dict[str, Any]:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)  # type: ignore[no-any-return]


def _now_us(now: dt.datetime | None) -> int:
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise InvalidInput("now: give a datetime with a time zone", field="now")
    delta = now - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds


class OnlineStore(abc.ABC):
    """The latest feature row per (view, entity key); writes never go back in time."""

    url: str

    # Primitives each backend provides.

    @abc.abstractmethod
    def _put(self, view: str, items: Sequence[tuple[bytes, int, bytes]]) -> int:
        """Store ``(key, event_us, payload)`` items in order; an item older than what is stored
        for its key is skipped, atomically per key. Returns how many were applied."""

    @abc.abstractmethod
    def _get(self, view: str, keys: Sequence[bytes]) -> list[tuple[int, bytes] | None]:
        """``(event_us, payload)`` per key, in order, None where there is none."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def drop_view(self, view: str) -> None:
        """Delete every row of ``view`` (optional; backends may not support it)."""
        raise NotImplementedError

    # The checked API, built on the primitives.

    def write(self, bound: BoundView,
              rows: pa.Table | pd.DataFrame | Sequence[Mapping[str, Any]]) -> int:
        """Write rows of ``bound``'s view: join keys, the tz-aware event timestamp, every field.

        The whole batch is checked first (types, time zones, validators) and nothing is
        written if any row fails. A row older than the stored one for its key is skipped;
        of several rows for one key the latest wins (the last one on equal times).

        Returns:
            The number of rows applied (skipped older rows not counted).

        Raises:
            InvalidInput: a missing or mistyped column, a naive or null timestamp, or a
                value that breaks a validator (the message names the rows).
            BackendUnavailable: the store cannot be reached.
        """
        table = to_table(rows)
        what = f"view {bound.name!r}"
        ts_field = bound.view.source.timestamp_field
        keys = check_keys(table, bound.join_keys, what)
        if ts_field not in table.column_names:
            raise InvalidInput(f"{what}: missing timestamp column {ts_field!r}", field=ts_field)
        ts = to_utc_ns(table[ts_field], ts_field)
        if ts.null_count:
            raise InvalidInput(f"{what}: {ts_field} has nulls; nothing was written",
                               field=ts_field)
        fields = check_fields(table, bound.view.fields, what)
        if not len(table):
            return 0
        for name, col in keys.items():
            if col.null_count:
                raise InvalidInput(f"{what}: join key {name!r} has nulls; nothing was written",
                                   field=name)
        key_lists = [keys[n].to_pylist() for n in bound.key_names]
        event_us = (ts.cast(pa.int64()).to_numpy() // 1000).tolist()
        columns = {name: _plain(col) for name, col in fields.items()}
        names = list(columns)
        items = []
        for i, key in enumerate(zip(*key_lists, strict=True)):
            payload = _pack({n: columns[n][i] for n in names})
            items.append((msgpack.packb(list(key), use_bin_type=True), event_us[i], payload))
        return self._put(bound.name, items)

    def read(self, bound: BoundView, entity_keys: Sequence[Any],
             features: Sequence[str] | None = None, *, now: dt.datetime | None = None,
             ) -> OnlineRead:
        """The latest values of ``features`` (default: all) for each entity key, with statuses.

        Args:
            bound: the view and its join keys.
            entity_keys: scalars (one join key), tuples in join-key order, or mappings.
            features: feature names in the order wanted.
            now: the time TTLs are measured from (default: the clock).

        Raises:
            InvalidInput: a key of the wrong shape or type.
            NotFound: a feature the view does not have.
            BackendUnavailable: the store cannot be reached.
        """
        return self.read_many([(bound, entity_keys, features)], now=now)[0]

    def read_many(self, requests: Sequence[tuple[BoundView, Sequence[Any], Sequence[str] | None]],
                  *, now: dt.datetime | None = None) -> list[OnlineRead]:
        """:meth:`read` for several views at once: ``(bound, entity_keys, features)`` each.

        Backends that can fetch every view in one round trip do (Redis: one pipeline).
        """
        checked = []
        for bound, entity_keys, features in requests:
            view = bound.view
            wanted = list(view.feature_names if features is None else features)
            for i, name in enumerate(wanted):
                if view.field(name) is None:
                    raise NotFound(f"features[{i}]: view {view.name!r} has no feature "
                                   f"{name!r}", field=f"features[{i}]")
            encoded = [encode_key(bound, k, i) for i, k in enumerate(entity_keys)]
            checked.append((bound, wanted, encoded))
        fetched = self._get_many([(b.name, keys) for b, _, keys in checked])
        now_us = _now_us(now)
        return [_decode(bound, wanted, stored, now_us)
                for (bound, wanted, _), stored in zip(checked, fetched, strict=True)]

    def _get_many(self, requests: Sequence[tuple[str, Sequence[bytes]]],
                  ) -> list[list[tuple[int, bytes] | None]]:
        """:meth:`_get` for several views; backends may override it to save round trips."""
        return [self._get(view, keys) if keys else [] for view, keys in requests]

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode(bound: BoundView, wanted: list[str], stored: list[tuple[int, bytes] | None],
            now_us: int) -> OnlineRead:
    """Statuses and values of ``wanted`` from the stored rows, TTL measured from ``now_us``."""
    view = bound.view
    n, width = len(stored), len(wanted)
    status = np.zeros((n, width), dtype=np.int8)
    event = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    values: dict[str, list[Any]] = {f: [None] * n for f in wanted}
    ttl_us = int(view.ttl.total_seconds() * 10**6)
    oldest = now_us - ttl_us if ttl_us else None
    for i, got in enumerate(stored):
        if got is None:
            continue
        event_us, payload = got
        event[i] = np.datetime64(event_us, "us")
        if oldest is not None and event_us < oldest:
            status[i, :] = FeatureStatus.OUTSIDE_MAX_AGE
            continue
        row = _unpack(payload)
        for j, name in enumerate(wanted):
            if name in row:
                status[i, j] = FeatureStatus.PRESENT
                values[name][i] = row[name]
    return OnlineRead(wanted, values, status, event)


def _plain(column: pa.ChunkedArray) -> list[Any]:
    """Python values for msgpack: maps become dicts, floats stay floats."""
    values = column.to_pylist()
    if pa.types.is_map(column.type):
        return [None if v is None else dict(v) for v in values]
    return values


def open_online_store(url: str, *, redis_prefix: str = "mlray") -> OnlineStore:
    """Open the online store named by ``url``: ``sqlite:///path`` or ``redis://host:port/db``.

    Raises:
        ConfigError: the scheme names no backend (the message lists those that exist).
        BackendUnavailable: the backend cannot be reached.
    """
    from mlray.storage.urls import check_state_url

    try:
        check_state_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("state store", "online store"),
                          field="online_url") from None
    if url.startswith("sqlite:"):
        from mlray.features.online_sqlite import SQLiteOnlineStore

        return SQLiteOnlineStore(url)
    from mlray.features.online_redis import RedisOnlineStore

    return RedisOnlineStore(url, prefix=redis_prefix)
