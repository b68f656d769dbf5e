"""The online store contract: the latest row per (view, entity key), read with statuses.

Every backend stores, per view and entity key, one event time and one payload, in the
layouts of :mod:`mlray.features.rowcodec` (fixed-width for all-numeric views, msgpack
otherwise); reads decode every view's rows column by column. Backends implement two
primitives, :meth:`OnlineStore._put` (write where the event time is not older than the
stored one, atomically per key) and :meth:`OnlineStore._get`; the checked
:meth:`OnlineStore.write` and :meth:`OnlineStore.read` are built once on them.

Statuses: PRESENT; NOT_FOUND (no row for the key, or the row lacks the feature);
OUTSIDE_MAX_AGE (the row's event time is older than ``now - ttl``; its values come
back as None). ``ttl`` 0 means values never expire. The age bound is inclusive, as
offline: a row exactly ``ttl`` old is PRESENT.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa

from mlray.errors import ConfigError, InvalidInput, NotFound
from mlray.features.definitions import duration_us
from mlray.features.offline import to_table
from mlray.features.repo import BoundView
from mlray.features.rowcodec import Columns, FeatureStatus, decode_rows, pack_columns
from mlray.features.validate import check_fields, check_keys, to_utc_ns

__all__ = ["FeatureStatus", "OnlineRead", "OnlineStore", "encode_key", "open_online_store"]

_INT64 = (-(2**63), 2**63 - 1)


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


def encode_key_columns(bound: BoundView, columns: Sequence[pa.ChunkedArray]) -> list[bytes]:
    """The storage form of every entity key given as join-key columns already cast to their
    types (as :func:`mlray.features.validate.check_keys` returns them), in row order.

    Raises:
        InvalidInput: a null key (named as :func:`encode_key` names it).
    """
    lists = [c.to_pylist() for c in columns]
    if any(c.null_count for c in columns):
        rows = lists[0] if len(lists) == 1 else list(zip(*lists, strict=True))
        return [encode_key(bound, k, i) for i, k in enumerate(rows)]
    pack = msgpack.Packer(use_bin_type=True).pack
    if len(lists) == 1:
        return [pack((v,)) for v in lists[0]]
    return [pack(k) for k in zip(*lists, strict=True)]


def _now_us(now: dt.datetime | None) -> int:
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise InvalidInput("now: give a datetime with a time zone", field="now")
    return duration_us(now - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))


class OnlineStore(abc.ABC):
    """The latest feature row per (view, entity key) of one project; writes never go back in
    time.

    A store is opened for one project: every key it reads or writes lives in that project's
    space (:meth:`space`), so two projects' views of one name never share a row.
    """

    url: str
    project: str

    def space(self, view: str) -> str:
        """The stored name of ``view``: ``<project>/<view>`` (what the primitives take)."""
        return f"{self.project}/{view}"

    # Primitives each backend provides.

    @abc.abstractmethod
    def _put(self, view: str, items: Sequence[tuple[bytes, int, bytes]]) -> int:
        """Store ``(key, event_us, payload)`` items in order; an item older than what is stored
        for its key is skipped, atomically per key. Returns how many were applied."""

    @abc.abstractmethod
    def _get(self, view: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """The stored value per key, in order, None where there is none: the 8-byte event
        time (:func:`mlray.features.rowcodec.header`) followed by the payload."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    @abc.abstractmethod
    def _drop(self, space: str) -> None:
        """Delete every row stored under ``space`` (a :meth:`space` name)."""

    def drop_view(self, view: str) -> None:
        """Delete every row of this project's ``view``."""
        self._drop(self.space(view))

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
        payloads = pack_columns(bound, fields)
        pack = msgpack.Packer(use_bin_type=True).pack
        items = [(pack(key), t, payload) for key, t, payload
                 in zip(zip(*key_lists, strict=True), event_us, payloads, strict=True)]
        return self._put(self.space(bound.name), items)

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
            checked.append((bound, encoded, wanted))
        return [OnlineRead(wanted, {f: c.to_pylist() if isinstance(c, pa.Array) else list(c)
                                    for f, c in zip(wanted, cols, strict=True)},
                           status, event)
                for (_, _, wanted), (cols, status, event)
                in zip(checked, self.read_columns(checked, now=now), strict=True)]

    def read_columns(self, requests: Sequence[tuple[BoundView, Sequence[bytes], Sequence[str]]],
                     *, now: dt.datetime | None = None,
                     ) -> list[tuple[Columns, np.ndarray, np.ndarray]]:
        """The lean read under :meth:`read_many`, for callers that checked their request.

        Args:
            requests: ``(bound, keys, features)`` per view: keys already encoded (by
                :func:`encode_key` or :func:`encode_key_columns`), features the view has.
            now: the time TTLs are measured from (default: the clock).

        Returns:
            Per request ``(columns, status, event_ts)``: per feature, an Arrow array
            (fixed-width views) or a sequence of values (None unless PRESENT), the
            ``(entities, features)`` int8 statuses and the rows' event times
            (``datetime64[us]``, NaT where there is no row).
        """
        fetched = self._get_many([(self.space(bound.name), keys)
                                  for bound, keys, _ in requests])
        now_us = _now_us(now)
        return [decode_rows(bound, wanted, stored, now_us)
                for (bound, _, wanted), stored in zip(requests, fetched, strict=True)]

    def _get_many(self, requests: Sequence[tuple[str, Sequence[bytes]]],
                  ) -> list[list[bytes | None]]:
        """:meth:`_get` for several views; backends may override it to save round trips."""
        return [self._get(view, keys) if keys else [] for view, keys in requests]

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_online_store(url: str, *, project: str, redis_prefix: str = "mlray") -> OnlineStore:
    """Open ``project``'s online store at ``url``: ``sqlite:///path`` or
    ``redis://host:port/db``.

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

        return SQLiteOnlineStore(url, project=project)
    from mlray.features.online_redis import RedisOnlineStore

    return RedisOnlineStore(url, project=project, prefix=redis_prefix)
