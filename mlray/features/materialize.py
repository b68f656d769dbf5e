"""Materialization: the latest row per entity in ``[start, end)`` moved offline → online.

For each view, the rows with event time in ``[start, end)`` are reduced to one per
entity: the greatest event time, ties going to the greatest created time (then the
last row read, as in the point-in-time join), and written to the online store in
batches. Entities with no row in the window keep what the online store holds.

Two engines, the same result:

* :func:`materialize_view` (plain): reads the window with :meth:`OfflineStore.read`,
  reduces it with one stable ``numpy.lexsort`` and writes from this process. No Ray.
* :func:`materialize_with_ray` (Ray Data, for inputs larger than one process): the
  view's Parquet files are read with ``ray.data.read_parquet`` (date partitions outside
  the window are pruned), each block is filtered to the window and reduced to its own
  latest row per entity, the survivors are grouped by a hash of the entity key into
  partitions (``groupby(...).map_groups``, so every row of an entity lands in the same
  call), and each call reduces its partition and writes it to the online store, which
  it opens itself from its URL. Rows equal on both event and created time (full ties)
  may be read in any order here, so which of them wins is not defined.

Resumable and safe to repeat: online writes are idempotent and never go back in time
(an older row does not replace a newer one), so a run that died half way is simply
run again. Each view's finished run is handed to ``record`` as a
:class:`~mlray.features.service.Materialization` (the ``features`` actor stores it);
``incremental=True`` starts each view at the end of its last recorded run.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlray.errors import InvalidInput
from mlray.features.offline import (
    OfflineStore,
    _ns,
    cut_to_window,
    day_filter,
    normalise_rows,
    view_columns,
)
from mlray.features.online import OnlineStore, open_online_store
from mlray.features.pit import encode_keys
from mlray.features.repo import BoundView, FeatureRepo
from mlray.features.service import Materialization

__all__ = [
    "Progress",
    "latest_rows",
    "materialize",
    "materialize_view",
    "materialize_with_ray",
    "parse_time",
]

#: ``progress(view, rows)``: ``rows`` more rows of ``view`` were written online.
Progress = Callable[[str, int], Any]

BATCH_ROWS = 10_000
#: Rows (per Parquet metadata) above which ``engine="auto"`` uses Ray Data.
RAY_THRESHOLD_ROWS = 2_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PART = "__mlray_part"
_MIN_I64 = np.iinfo(np.int64).min
_SHUFFLE = "sort_shuffle_pull_based"


def latest_rows(table: pa.Table, bound: BoundView) -> pa.Table:
    """One row per entity key: the greatest event time, ties to the greatest created time,
    then to the row that comes last. Rows with a null key or time are dropped.

    ``table`` holds the join keys (declared types) and the view's timestamp columns as
    ``timestamp[ns, UTC]``; the result keeps every column, in entity-key order.
    """
    n = table.num_rows
    if n == 0:
        return table
    src = bound.view.source
    keys = [table[k] for k in bound.key_names]
    codes, _ = encode_keys(keys, [k.slice(0, 0) for k in keys])
    ts_col = table[src.timestamp_field].cast(pa.int64())
    codes[np.asarray(pc.is_null(ts_col).to_numpy(zero_copy_only=False))] = -1
    ts = np.asarray(ts_col.fill_null(0).to_numpy(), dtype=np.int64)
    sort_keys: list[np.ndarray] = [ts, codes]
    if src.created_timestamp_field and src.created_timestamp_field in table.column_names:
        created = table[src.created_timestamp_field].cast(pa.int64()).fill_null(_MIN_I64)
        sort_keys.insert(0, np.asarray(created.to_numpy(), dtype=np.int64))
    order = np.lexsort(sort_keys)  # stable: equal rows keep table order, the last one wins
    ordered = codes[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    last &= ordered >= 0
    return table.take(pa.array(order[last]))


def _write(online: OnlineStore, bound: BoundView, rows: pa.Table, batch_rows: int,
           progress: Progress | None) -> int:
    written = 0
    for lo in range(0, rows.num_rows, batch_rows):
        chunk = rows.slice(lo, batch_rows)
        online.write(bound, chunk)
        written += chunk.num_rows
        if progress is not None:
            progress(bound.name, chunk.num_rows)
    return written


def materialize_view(offline: OfflineStore, online: OnlineStore, bound: BoundView,
                     start: dt.datetime | None, end: dt.datetime, *,
                     batch_rows: int = BATCH_ROWS, progress: Progress | None = None) -> int:
    """Write the latest row per entity of ``bound`` in ``[start, end)`` online, in this process.

    Args:
        offline: where the view's rows are read.
        online: where they are written.
        bound: the view and its join keys.
        start: the window start, inclusive (None: from the first row).
        end: the window end, exclusive.
        batch_rows: rows per online write.
        progress: called after each batch with the view and the rows it wrote.

    Returns:
        The rows written: one per entity with a row in the window (an online row that
        is already newer is kept, but its entity still counts).

    Raises:
        InvalidInput: a naive ``start`` or ``end``, or offline rows that do not fit the view.
        BackendUnavailable: a store cannot be reached.
    """
    _check_batch(batch_rows)
    table = offline.read(bound.name, start=start, end=end)
    return _write(online, bound, latest_rows(table, bound), batch_rows, progress)


def materialize_with_ray(offline: OfflineStore, online: OnlineStore, bound: BoundView,
                         start: dt.datetime | None, end: dt.datetime, *,
                         batch_rows: int = BATCH_ROWS, partitions: int | None = None,
                         progress: Progress | None = None) -> int:
    """:func:`materialize_view` with Ray Data: read, reduce and write on Ray workers.

    Needs a running Ray (``ray.init`` or a cluster); the workers open the online store
    from ``online.url`` (and its Redis key prefix), so it must be reachable from them.

    Args:
        partitions: how many entity-hash partitions to reduce and write in parallel
            (default: from the input's row count, at least the cluster's CPUs).

    Returns and raises as :func:`materialize_view`.
    """
    import ray

    _check_batch(batch_rows)
    lo = None if start is None else _ns(start, "start")
    hi = _ns(end, "end") - 1
    found = offline.source(bound.name)  # NotFound for a Parquet source that is not there
    if found is None:
        return 0
    fs, path, kind = found
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs
    from ray.data.datasource import PathPartitionFilter

    rows_hint = pads.dataset(path, filesystem=fs, format="parquet").count_rows()
    if rows_hint == 0:
        return 0
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    count = partitions or max(cpus, math.ceil(rows_hint / 1_000_000))
    written = 0
    pruning = (PathPartitionFilter.of(day_filter(lo, hi), base_dir=path, filesystem=fs)
               if kind == pafs.FileType.Directory else None)
    dataset = ray.data.read_parquet(path, filesystem=fs, columns=view_columns(bound),
                                    partition_filter=pruning)
    reduced = ray_settings(dataset.map_batches(
        _reduce_block, batch_format="pyarrow", batch_size=max(batch_rows, 100_000),
        fn_kwargs={"bound": bound, "lo": lo, "hi": hi, "partitions": count}))
    url, prefix = online.url, str(getattr(online, "prefix", "mlray"))
    done = ray_settings(reduced.groupby(_PART, num_partitions=count).map_groups(
        _write_partition, batch_format="pyarrow",
        fn_kwargs={"bound": bound, "url": url, "prefix": prefix, "project": online.project,
                   "batch_rows": batch_rows}))
    for batch in done.iter_batches(batch_format="pyarrow", batch_size=None):
        n = int(pc.sum(batch["rows"]).as_py() or 0)
        written += n
        if progress is not None and n:
            progress(bound.name, n)
    return written


def ray_settings(dataset: Any) -> Any:
    """``dataset`` with the settings mlray's Ray Data jobs run under, set on the Dataset (it
    keeps the context it was made in) rather than globally: the sort-based shuffle, which
    on few partitions starts in seconds where the hash shuffle's aggregator actors take
    many (measured in bench/features.py), and a task's own error raised as itself rather
    than wrapped."""
    dataset.context.shuffle_strategy = _SHUFFLE
    dataset.context.raise_original_map_exception = True
    return dataset


def _reduce_block(batch: pa.Table, *, bound: BoundView, lo: int | None, hi: int,
                  partitions: int) -> pa.Table:
    """A read block, typed, cut to the window, one row per entity, tagged with its partition."""
    table = cut_to_window(normalise_rows(batch, bound, f"view {bound.name!r} data"), bound, lo,
                          hi)
    table = latest_rows(table, bound)
    return table.append_column(_PART, pa.array(_hash_part(table, bound, partitions)))


def _hash_part(table: pa.Table, bound: BoundView, partitions: int) -> np.ndarray:
    """A partition number per row from its key, the same in every process."""
    mixed = np.zeros(table.num_rows, dtype=np.uint64)
    for name in bound.key_names:
        column = table[name]
        # A null would turn an int column into floats (and change every row's hash); rows
        # with a null key match nothing, so where they go does not matter.
        values = column.fill_null("" if pa.types.is_string(column.type) else 0).to_numpy()
        mixed = mixed * np.uint64(1_000_003) ^ pd.util.hash_array(np.asarray(values, object)
                                                                  if values.dtype.kind == "O"
                                                                  else values)
    return (mixed % np.uint64(partitions)).astype(np.int64)


def _write_partition(group: pa.Table, *, bound: BoundView, url: str, prefix: str,
                     project: str, batch_rows: int) -> pa.Table:
    """On a worker: one partition's latest row per entity, written to the online store."""
    rows = latest_rows(group.drop_columns([_PART]), bound)
    store = open_online_store(url, project=project, redis_prefix=prefix)
    try:
        written = _write(store, bound, rows, batch_rows, None)
    finally:
        store.close()
    return pa.table({"rows": pa.array([written], pa.int64())})


def _check_batch(batch_rows: int) -> None:
    if batch_rows < 1:
        raise InvalidInput(f"batch_rows must be >= 1, got {batch_rows}", field="batch_rows")


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 time with a time zone (``Z`` or an offset); None stays None.

    Raises:
        InvalidInput: not ISO 8601, or without a time zone.
    """
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"--{name} {value!r} is not an ISO 8601 time", field=name) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"--{name} {value!r} has no time zone; add one (e.g. Z or +00:00)",
                           field=name)
    return parsed


def _aware(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InvalidInput(f"{name}: give a datetime with a time zone (e.g. UTC)", field=name)
    return value.astimezone(dt.UTC)


def _pick_views(repo: FeatureRepo, views: Sequence[str] | None) -> list[BoundView]:
    if views is None:
        return [repo.bind(v) for v in repo.feature_views if v.online]
    chosen = []
    for name in dict.fromkeys(views):
        bound = repo.bind(name)  # NotFound for unknown views
        if not bound.view.online:
            raise InvalidInput(f"view {name!r} is not served online (online: false)",
                               field="views")
        chosen.append(bound)
    return chosen


def _use_ray(engine: str, offline: OfflineStore, view: str) -> bool:
    if engine == "ray":
        return True
    if engine == "local":
        return False
    import ray

    if not ray.is_initialized():
        return False
    found = offline.source(view)
    if found is None:
        return False
    fs, path, _ = found
    import pyarrow.dataset as pads

    return bool(pads.dataset(path, filesystem=fs, format="parquet").count_rows()
                > RAY_THRESHOLD_ROWS)


def materialize(
    repo: FeatureRepo,
    offline: OfflineStore,
    online: OnlineStore,
    *,
    record: Callable[[Materialization], Any] | None = None,
    previous: Mapping[str, Materialization] | None = None,
    views: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    incremental: bool = False,
    progress: Progress | None = None,
    engine: str = "auto",
    batch_rows: int = BATCH_ROWS,
) -> list[Materialization]:
    """Materialize views offline → online, one after the other; the client's and CLI's entry.

    Args:
        repo: the applied definitions.
        offline: the offline store (over ``repo``).
        online: the online store.
        record: called with each view's finished run, as soon as it finishes (the caller
            stores it, e.g. through the ``features`` actor's ``record_materialization``).
        previous: the last recorded run per view (``materializations()``); needed for
            ``incremental``.
        views: the views to move (default: every view with ``online: true``).
        start: the window start, inclusive (None: from each view's first row).
        end: the window end, exclusive (default: now).
        incremental: start each view where its last recorded run ended (views never
            materialized start at ``start``); a view already past ``end`` is skipped.
        progress: ``progress(view, rows)`` after each written batch.
        engine: ``"local"`` (this process), ``"ray"`` (Ray Data) or ``"auto"`` (Ray Data
            when Ray is up and a view holds more than 2,000,000 rows).
        batch_rows: rows per online write.

    Returns:
        One :class:`Materialization` per view, in order; skipped views (nothing to do)
        come back with ``rows=0`` and ``start == end`` and are not recorded.

    Raises:
        InvalidInput: a naive time, ``start`` after ``end``, a view not served online,
            a bad ``engine``.
        NotFound: an unknown view.
        BackendUnavailable: a store cannot be reached.
    """
    if engine not in ("auto", "local", "ray"):
        raise InvalidInput(f"engine must be auto, local or ray, not {engine!r}", field="engine")
    start = _aware(start, "start")
    end = _aware(end, "end") or dt.datetime.now(dt.UTC)
    if start is not None and start > end:
        raise InvalidInput(f"start {start.isoformat()} is after end {end.isoformat()}",
                           field="start")
    previous = previous or {}
    runs = []
    for bound in _pick_views(repo, views):
        begin = start
        last = previous.get(bound.name)
        if incremental and last is not None:
            begin = last.end.astimezone(dt.UTC)
        if begin is not None and begin >= end:
            runs.append(Materialization(view=bound.name, start=begin, end=begin, rows=0,
                                        finished_at=time.time()))
            continue
        run = materialize_with_ray if _use_ray(engine, offline, bound.name) else materialize_view
        rows = run(offline, online, bound, begin, end, batch_rows=batch_rows,
                   progress=progress)
        done = Materialization(view=bound.name, start=begin or _EPOCH, end=end, rows=rows,
                               finished_at=time.time())
        if record is not None:
            record(done)
        runs.append(done)
    return runs
