"""The offline store: Parquet datasets through ``pyarrow.dataset``, and point-in-time retrieval.

Where a view's rows live: its Parquet source's path for ``parquet`` views, else
``<root>/<view>``. Either may be a local path or any ``pyarrow.fs`` URI (``s3://``,
``gs://``, ``file://``). :meth:`OfflineStore.write` appends files partitioned by the
UTC date of the event (``date=YYYY-MM-DD``, hive style), so a retrieval reads only
the days its entity rows and TTL can reach. All timestamps are normalised to UTC;
timestamps without a time zone are refused.

:meth:`OfflineStore.get_historical_features` implements DESIGN's point-in-time rule
(see :mod:`mlray.features.pit` for the algorithm and why it is numpy rather than
``merge_asof``): every entity row comes back in input order, duplicates included, with
its own columns passed through and the features as of its timestamp (nulls where
nothing matches).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from mlray.errors import BackendUnavailable, InvalidInput, NotFound
from mlray.features.definitions import FeatureService, arrow_type, duration_ns
from mlray.features.ondemand import input_columns, run_on_demand
from mlray.features.pit import asof_indices, encode_keys
from mlray.features.repo import BoundView, FeatureRepo, Selection, check_source_path
from mlray.features.validate import UTC_NS, cast_column, check_fields, check_keys, to_utc_ns
from mlray.storage.fsuri import join_uri, project_uri

__all__ = ["OfflineStore", "to_table"]

PARTITION = "date"
#: Entity sets up to this many keys are pushed into the scan as a filter; for more, the
#: filter costs more than the rows it drops (the join skips unmatched keys anyway).
_PROBE_KEYS = 10_000
_PARTITIONING = ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive")
_NS_PER_DAY = 86_400 * 10**9


def to_table(rows: pa.Table | pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]],
             what: str = "rows") -> pa.Table:
    """An Arrow table from a table, a DataFrame, a dict of columns or a list of row dicts."""
    if isinstance(rows, pa.Table):
        return rows
    try:
        if isinstance(rows, pd.DataFrame):
            return pa.Table.from_pandas(rows, preserve_index=False)
        if isinstance(rows, Mapping):
            return pa.table(dict(rows))
        return pa.Table.from_pylist(list(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"{what} cannot be read as a table: {exc}", field=what) from None


def _open(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        try:
            return pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"offline location {uri!r}: {exc}", field="path") from None
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().absolute())


class OfflineStore:
    """One project's feature rows in Parquet, written by view (under
    ``<root>/<project>/features/<view>``) and read back as of points in time."""

    def __init__(self, root_uri: str, repo: FeatureRepo, *, project: str) -> None:
        self.root_uri = project_uri(root_uri, project, "features")
        self.project = project
        self.repo = repo

    def location(self, view: str) -> str:
        """Where ``view``'s rows live (path or URI)."""
        fv = self.repo.feature_view(view)
        if fv.source.type == "parquet":
            return fv.source.path
        return join_uri(self.root_uri, fv.name)

    def source(self, view: str) -> tuple[pafs.FileSystem, str, pafs.FileType] | None:
        """The filesystem, path and kind (file or directory) of ``view``'s rows, or None
        when there are none: a push or stream view nothing was written to yet, or an
        empty directory.

        Raises:
            NotFound: a Parquet source that does not exist (never read as no rows).
            InvalidInput: a Parquet source given as a relative path (it would follow the
                reader's working directory; :func:`~mlray.features.repo.load_repo` and
                ``apply`` store them absolute).
            BackendUnavailable: the location cannot be inspected.
        """
        fv = self.repo.feature_view(view)
        if fv.source.type == "parquet":
            check_source_path(view, fv.source.path)
        fs, path = _open(self.location(view))
        try:
            kind = fs.get_file_info(path).type
            if kind == pafs.FileType.Directory and not fs.get_file_info(
                    pafs.FileSelector(path, recursive=False)):
                return None
        except OSError as exc:
            raise BackendUnavailable(f"cannot inspect view {view!r} at {path}: {exc}") from exc
        if kind != pafs.FileType.NotFound:
            return fs, path, kind
        if fv.source.type == "parquet":
            raise NotFound(f"view {view!r}: its source {fv.source.path} does not exist",
                           field=f"feature_views.{view}.source.path")
        return None

    def write(self, view: str, rows: pa.Table | pd.DataFrame | Sequence[Mapping[str, Any]],
              ) -> int:
        """Append rows to ``view``; every row is checked first and none is written if any fails.

        The batch needs the join keys, the event timestamp (with a time zone) and every
        field; a declared created-timestamp column missing from the batch is filled with
        the time of the write. Other columns are dropped.

        Returns:
            The number of rows written.

        Raises:
            InvalidInput: a column is missing, has the wrong type, or breaks a validator.
            NotFound: no such view.
        """
        bound = self.repo.bind(view)
        table = to_table(rows)
        src = bound.view.source
        what = f"view {view!r}"
        columns: dict[str, pa.ChunkedArray] = dict(check_keys(table, bound.join_keys, what))
        if src.timestamp_field not in table.column_names:
            raise InvalidInput(f"{what}: missing timestamp column {src.timestamp_field!r}",
                               field=src.timestamp_field)
        ts = to_utc_ns(table[src.timestamp_field], src.timestamp_field)
        if ts.null_count:
            raise InvalidInput(f"{what}: {src.timestamp_field} has nulls; nothing was written",
                               field=src.timestamp_field)
        columns[src.timestamp_field] = ts
        if src.created_timestamp_field:
            name = src.created_timestamp_field
            if name in table.column_names:
                columns[name] = to_utc_ns(table[name], name)
            else:
                stamp = pa.scalar(dt.datetime.now(dt.UTC), type=UTC_NS)
                columns[name] = pa.chunked_array([pa.array([stamp] * len(table), UTC_NS)])
        columns.update(check_fields(table, bound.view.fields, what))
        if not len(table):
            return 0
        days = pc.strftime(ts, format="%Y-%m-%d")
        columns[PARTITION] = days
        out = pa.table(columns)
        if src.type == "parquet":
            check_source_path(view, src.path)
        fs, path = _open(self.location(view))
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise InvalidInput(f"{what}: its source {path} is a single Parquet file; point the "
                               "source at a directory to write to it", field="source.path")
        try:
            ds.write_dataset(out, path, filesystem=fs, format="parquet",
                             partitioning=_PARTITIONING,
                             basename_template=f"part-{uuid.uuid4().hex}-{{i}}.parquet",
                             existing_data_behavior="overwrite_or_ignore")
        except OSError as exc:
            raise BackendUnavailable(f"cannot write {what} to {path}: {exc}") from exc
        return len(out)

    def read(self, view: str, *, start: dt.datetime | None = None,
             end: dt.datetime | None = None) -> pa.Table:
        """The rows of ``view`` with event time in ``[start, end)``, timestamps in UTC.

        Columns: the join keys, the timestamp (and created timestamp) and the fields.
        """
        bound = self.repo.bind(view)
        lo = None if start is None else _ns(start, "start")
        hi = None if end is None else _ns(end, "end") - 1
        return cut_to_window(self._scan(bound, lo, hi, None), bound, lo, hi)

    def _scan(self, bound: BoundView, lo: int | None, hi: int | None,
              keys: pa.Array | None) -> pa.Table:
        """Rows of ``bound`` with ``lo <= event time <= hi`` (ns, inclusive), typed and in UTC."""
        view, src = bound.view, bound.view.source
        wanted = view_columns(bound)
        empty = pa.table({n: pa.array([], t) for n, t in _schema(bound).items()})
        found = self.source(view.name)
        if found is None:
            return empty
        fs, path, _ = found
        try:
            dataset = ds.dataset(path, filesystem=fs, format="parquet",
                                 partitioning=_PARTITIONING)
        except OSError as exc:
            raise BackendUnavailable(f"cannot read view {view.name!r} at {path}: {exc}") from exc
        missing = [n for n in wanted if n not in dataset.schema.names]
        if missing:
            raise InvalidInput(f"view {view.name!r}: {path} has no columns {missing}",
                               field=missing[0])
        ts_type = dataset.schema.field(src.timestamp_field).type
        to_utc_ns(pa.array([], ts_type), f"{view.name}.{src.timestamp_field}")
        expr = pc.scalar(True)
        if lo is not None:
            expr &= pc.field(src.timestamp_field) >= _bound(lo, ts_type, up=False)
            if _partitioned(dataset):
                expr &= pc.field(PARTITION) >= _day(lo)
        if hi is not None:
            expr &= pc.field(src.timestamp_field) <= _bound(hi, ts_type, up=True)
            if _partitioned(dataset):
                expr &= pc.field(PARTITION) <= _day(hi)
        if keys is not None and len(bound.join_keys) == 1 and len(keys) <= _PROBE_KEYS:
            key_type = dataset.schema.field(bound.key_names[0]).type
            # If the types cannot meet the filter is skipped; the join compares after casting.
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                expr &= pc.field(bound.key_names[0]).isin(keys.cast(key_type))
        try:
            table = dataset.to_table(columns=wanted, filter=expr)
        except OSError as exc:
            raise BackendUnavailable(f"cannot read view {view.name!r} at {path}: {exc}") from exc
        return normalise_rows(table, bound, f"view {view.name!r} data")

    def get_historical_features(
        self,
        entity_rows: pa.Table | pd.DataFrame | Sequence[Mapping[str, Any]],
        features: Sequence[str] | FeatureService | str,
        *,
        full_feature_names: bool = False,
        timestamp_field: str = "event_timestamp",
        as_pandas: bool = False,
    ) -> pa.Table | pd.DataFrame:
        """Features as of each entity row's timestamp (DESIGN's point-in-time rule).

        Args:
            entity_rows: the join keys of every view asked, a tz-aware timestamp column
                and any other columns (passed through unchanged).
            features: ``"view:feature"`` / ``"view:*"`` references, a feature service, or
                a service's name. On-demand views are computed after the join.
            full_feature_names: name columns ``view__feature`` instead of ``feature``.
            timestamp_field: the entity rows' timestamp column.
            as_pandas: return a pandas DataFrame instead of an Arrow table.

        Returns:
            The entity rows in input order, then one column per feature in the order
            asked.

        Raises:
            InvalidInput: a missing or mistyped key or timestamp column, a naive or null
                timestamp, or two output columns with the same name.
            NotFound: an unknown view, feature or service.
        """
        table = to_table(entity_rows, "entity_rows")
        selections = self.repo.select(features)
        times = entity_times(table, timestamp_field)
        joined: dict[str, pa.ChunkedArray] = {}
        for view, names in _needed(self.repo, selections).items():
            joined.update(self._join_view(table, times, self.repo.bind(view), names))
        result = assemble(self.repo, table, joined, selections, full_feature_names)
        return result.to_pandas() if as_pandas else result

    def _join_view(self, table: pa.Table, times: np.ndarray, bound: BoundView,
                   names: list[str]) -> dict[str, pa.ChunkedArray]:
        """The ``names`` features of one view as of each entity row, named ``view__f``."""
        keys = check_keys(table, bound.join_keys, "entity_rows")
        if not len(times):
            return join_rows(keys, times, bound, names, None)
        ttl = ttl_ns(bound)
        lo = int(times.min()) - ttl if ttl else None
        probe = keys[bound.key_names[0]].unique() if len(bound.join_keys) == 1 else None
        return join_rows(keys, times, bound, names, self._scan(bound, lo, int(times.max()),
                                                               probe))


def entity_times(table: pa.Table, timestamp_field: str) -> np.ndarray:
    """The entity rows' times as int64 ns (UTC).

    Raises:
        InvalidInput: the column is missing, naive, or has nulls.
    """
    if timestamp_field not in table.column_names:
        raise InvalidInput(f"entity_rows: missing timestamp column {timestamp_field!r}",
                           field=timestamp_field)
    t = to_utc_ns(table[timestamp_field], f"entity_rows.{timestamp_field}")
    if t.null_count:
        raise InvalidInput(f"entity_rows.{timestamp_field}: {t.null_count} rows have no "
                           "timestamp", field=timestamp_field)
    return t.cast(pa.int64()).to_numpy()


def join_rows(keys: Mapping[str, pa.ChunkedArray], times: np.ndarray, bound: BoundView,
              names: list[str], rows: pa.Table | None) -> dict[str, pa.ChunkedArray]:
    """The ``names`` features of one view as of each entity row (its join ``keys``, typed
    by :func:`check_keys`, and ``times``, int64 ns), named ``view__f``, from the view's
    ``rows`` (normalised; None: no rows)."""
    view, src = bound.view, bound.view.source
    if rows is None or not len(times):
        types = _schema(bound)
        return {f"{view.name}__{n}": pa.nulls(len(times), types[n]) for n in names}
    lcode, rcode = encode_keys([keys[k] for k in bound.key_names],
                               [rows[k] for k in bound.key_names])
    rts = rows[src.timestamp_field]
    rcode[np.asarray(pc.is_null(rts).to_numpy(zero_copy_only=False))] = -1
    created = None
    if src.created_timestamp_field:
        created = _int_ns(rows[src.created_timestamp_field], fill=np.iinfo(np.int64).min)
    idx = asof_indices(lcode, times, rcode, _int_ns(rts, fill=0), created, ttl_ns(bound))
    take = pa.array(idx, mask=idx < 0)
    return {f"{view.name}__{n}": rows[n].take(take) for n in names}


def assemble(repo: FeatureRepo, table: pa.Table, joined: Mapping[str, pa.ChunkedArray],
             selections: list[Selection], full_feature_names: bool) -> pa.Table:
    """The entity rows followed by the features asked, in order: joined ones (``view__f``
    in ``joined``) and on-demand ones computed from them.

    Raises:
        InvalidInput: two output columns would have the same name.
    """
    out_cols: list[pa.ChunkedArray] = []
    for sel in selections:
        if sel.on_demand:
            odfv = repo.on_demand_view(sel.view)
            inputs = {n: table[n] for n in input_columns(odfv)[: len(odfv.request)]
                      if n in table.column_names}
            inputs.update({n: joined[n] for n in input_columns(odfv)[len(odfv.request):]})
            computed = run_on_demand(odfv, inputs)
            values = [computed[f] for f in sel.features]
        else:
            values = [joined[f"{sel.view}__{f}"] for f in sel.features]
        out_cols += values
    out_names = output_names(selections, full_feature_names)
    check_output_names(out_names, table.column_names)
    result = table
    for name, column in zip(out_names, out_cols, strict=True):
        result = result.append_column(name, column)
    return result


def output_names(selections: list[Selection], full_feature_names: bool) -> list[str]:
    """The output column of each feature asked, in order."""
    return [f"{sel.view}__{f}" if full_feature_names else f
            for sel in selections for f in sel.features]


def check_output_names(out_names: Sequence[str], entity_columns: Sequence[str]) -> None:
    """Raise InvalidInput when two outputs, or an output and an entity column, share a name."""
    clash = sorted({n for n in out_names if list(out_names).count(n) > 1}
                   | (set(out_names) & set(entity_columns)))
    if clash:
        raise InvalidInput(f"output columns {clash} would be duplicated; ask with "
                           "full_feature_names=True or rename the entity columns",
                           field="features")


def ttl_ns(bound: BoundView) -> int:
    """The view's TTL in ns; 0: no limit."""
    return duration_ns(bound.view.ttl)


def view_columns(bound: BoundView) -> list[str]:
    """The stored columns a view's rows are read with: join keys, timestamps, fields."""
    src = bound.view.source
    created = [src.created_timestamp_field] if src.created_timestamp_field else []
    return [*bound.key_names, src.timestamp_field, *created, *bound.view.feature_names]


def cut_to_window(rows: pa.Table, bound: BoundView, lo: int | None, hi: int | None,
                  ) -> pa.Table:
    """The normalised ``rows`` whose event time is set and within ``[lo, hi]`` (int ns,
    inclusive; None: unbounded)."""
    ts = rows[bound.view.source.timestamp_field].cast(pa.int64())
    keep = pc.is_valid(ts)
    if lo is not None:
        keep = pc.and_(keep, pc.greater_equal(ts, lo))
    if hi is not None:
        keep = pc.and_(keep, pc.less_equal(ts, hi))
    return rows.filter(keep)


def day_filter(lo: int | None, hi: int) -> Callable[[dict[str, str]], bool]:
    """Whether a ``date=`` partition (its path's parts) can hold event times in
    ``[lo, hi]``: for Ray Data's partition pruning."""
    low, high = None if lo is None else _day(lo), _day(hi)

    def keep(parts: dict[str, str]) -> bool:
        day = parts.get(PARTITION)
        return day is None or ((low is None or day >= low) and day <= high)

    return keep


def normalise_rows(table: pa.Table, bound: BoundView, what: str) -> pa.Table:
    """Keys, timestamps (UTC ns) and fields of a view's raw rows, typed; other columns
    dropped.

    Raises:
        InvalidInput: a missing or mistyped column, or a naive timestamp.
    """
    src = bound.view.source
    cols: dict[str, pa.ChunkedArray] = dict(check_keys(table, bound.join_keys, what))
    for name in (src.timestamp_field, src.created_timestamp_field):
        if name:
            if name not in table.column_names:
                raise InvalidInput(f"{what}: missing timestamp column {name!r}", field=name)
            cols[name] = to_utc_ns(table[name], f"{bound.name}.{name}")
    for f in bound.view.fields:
        if f.name not in table.column_names:
            raise InvalidInput(f"{what}: missing feature column {f.name!r}", field=f.name)
        cols[f.name] = cast_column(table[f.name], f.arrow_type, f"{bound.name}.{f.name}")
    return pa.table(cols)


def _needed(repo: FeatureRepo, selections: list[Selection]) -> dict[str, list[str]]:
    """Per regular view, the features to join: those asked and those on-demand views read."""
    needed: dict[str, list[str]] = {}
    for sel in selections:
        if sel.on_demand:
            for name in input_columns(repo.on_demand_view(sel.view)):
                if "__" in name:
                    view, feature = name.split("__", 1)
                    if feature not in needed.setdefault(view, []):
                        needed[view].append(feature)
        else:
            chosen = needed.setdefault(sel.view, [])
            chosen += [f for f in sel.features if f not in chosen]
    return needed


def _schema(bound: BoundView) -> dict[str, pa.DataType]:
    src = bound.view.source
    out = {k.name: arrow_type(k.dtype) for k in bound.join_keys}
    out[src.timestamp_field] = UTC_NS
    if src.created_timestamp_field:
        out[src.created_timestamp_field] = UTC_NS
    out.update({f.name: f.arrow_type for f in bound.view.fields})
    return out


def _partitioned(dataset: ds.Dataset) -> bool:
    files = getattr(dataset, "files", None) or []
    return bool(files) and f"/{PARTITION}=" in files[0]


def _int_ns(column: pa.ChunkedArray, fill: int) -> np.ndarray:
    return np.asarray(column.cast(pa.int64()).fill_null(fill).to_numpy(), dtype=np.int64)


def _ns(value: dt.datetime, field: str) -> int:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InvalidInput(f"{field}: give a datetime with a time zone", field=field)
    return int(pa.scalar(value, type=UTC_NS).cast(pa.int64()).as_py())


def _day(ns: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            + dt.timedelta(days=ns // _NS_PER_DAY)).strftime("%Y-%m-%d")


def _bound(ns: int, ts_type: pa.DataType, *, up: bool) -> pa.Scalar:
    """``ns`` in the stored column's unit, rounded outwards so the filter loses nothing."""
    per = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[ts_type.unit]
    value = -(-ns // per) if up else ns // per
    return pa.scalar(value, type=pa.int64()).cast(ts_type)
