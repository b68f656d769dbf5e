"""Point-in-time retrieval with Ray Data, for entity rows larger than one machine's memory.

The entity rows (a Ray Dataset) and each view's offline rows are split by a hash of the
join keys into partitions; the rows of one partition, entity and feature alike, meet on
one worker, where the in-memory join of :mod:`mlray.features.offline` runs. Only one
partition at a time has to fit in a worker's memory; the shuffle goes through Ray's
object store, which spills to disk.

How the two sides travel together: a view's rows and the entity rows have different
columns, and one shuffle needs one schema. So each block is cut into its partitions
and each piece travels as one row ``(partition, side, Arrow IPC bytes)``: the shuffle
moves a few rows per block, and the worker reads the pieces back as tables.

Views keyed by different join keys are joined in stages, one per key set, each stage's
output being the next one's entity rows; on-demand features are computed last, batch by
batch. Rows come back grouped by partition, not in input order: carry a row id to
restore it. Values are those the in-memory :meth:`OfflineStore.get_historical_features`
gives for the same rows, with one exception: feature rows equal on key, event time and
created time that sit in different files or blocks are taken in the order they reach
the worker, not in table order (give such rows distinct created times). The entity
Dataset is read more than once (its time range first), so it must give the same rows
each time (no unseeded sampling).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from mlray.errors import BackendUnavailable, InvalidInput, MlrayError
from mlray.features.definitions import FeatureService
from mlray.features.materialize import _hash_part, ray_settings
from mlray.features.offline import (
    OfflineStore,
    _needed,
    _open,
    _schema,
    assemble,
    check_output_names,
    cut_to_window,
    day_filter,
    entity_times,
    join_rows,
    normalise_rows,
    output_names,
    ttl_ns,
    view_columns,
)
from mlray.features.repo import BoundView, FeatureRepo, Selection
from mlray.features.validate import check_keys

if TYPE_CHECKING:
    import ray.data

__all__ = ["get_historical_features_ray"]

_PART, _SIDE, _DATA = "__mlray_part", "__mlray_side", "__mlray_data"
_JOINED = "__mlray_joined__"  # prefix of joined columns between stages
_ROWS_PER_PARTITION = 2_000_000


def get_historical_features_ray(
    store: OfflineStore,
    entity_rows: ray.data.Dataset,
    features: Sequence[str] | FeatureService | str,
    *,
    full_feature_names: bool = False,
    timestamp_field: str = "event_timestamp",
    partitions: int | None = None,
    output: str | None = None,
) -> ray.data.Dataset:
    """:meth:`OfflineStore.get_historical_features` over a Ray Dataset of entity rows.

    Needs a running Ray; the workers read the offline store at ``store.root_uri``, so it
    must be reachable from them.

    Args:
        store: the offline store and its definitions.
        entity_rows: the join keys of every view asked, a tz-aware timestamp column and
            any other columns (passed through).
        features: as for the in-memory call.
        full_feature_names: name columns ``view__feature``.
        timestamp_field: the entity rows' timestamp column.
        partitions: how many key-hash partitions (default: one per 2M rows of both sides,
            at least the cluster's CPUs).
        output: a Parquet directory (local or a ``pyarrow.fs`` URI) to write the result
            to; the returned Dataset then reads it. Without it, the result is kept in
            Ray's object store (spilled to disk when it does not fit).

    Returns:
        The entity rows with the features, grouped by partition.

    Raises:
        InvalidInput: a missing join key or timestamp column (type errors and nulls are
            found while the rows are read and raised as the task's error).
        NotFound: an unknown view, feature or service.
    """
    repo = store.repo
    selections = repo.select(features)
    needed = _needed(repo, selections)
    schema = _arrow_schema(entity_rows)
    if timestamp_field not in schema.names:
        raise InvalidInput(f"entity_rows: missing timestamp column {timestamp_field!r}",
                           field=timestamp_field)
    stages: dict[tuple[str, ...], list[BoundView]] = {}
    for view in needed:
        bound = repo.bind(view)
        missing = [k for k in bound.key_names if k not in schema.names]
        if missing:
            raise InvalidInput(f"entity_rows: missing join key {missing[0]!r} of view "
                               f"{view!r}", field=missing[0])
        stages.setdefault(tuple(bound.key_names), []).append(bound)
    if partitions is not None and partitions < 1:
        raise InvalidInput(f"partitions must be >= 1, got {partitions}", field="partitions")
    check_output_names(output_names(selections, full_feature_names), schema.names)
    if output is not None:
        _check_empty(output)
    with _task_errors():
        return _join(store, entity_rows, schema, stages, needed, selections,
                     full_feature_names, timestamp_field, partitions, output)


def _join(store: OfflineStore, entity_rows: ray.data.Dataset, schema: pa.Schema,
          stages: dict[tuple[str, ...], list[BoundView]], needed: dict[str, list[str]],
          selections: list[Selection], full_feature_names: bool, timestamp_field: str,
          partitions: int | None, output: str | None) -> ray.data.Dataset:
    """The checked request, run: time range and counts, the stages, the finish."""
    import ray

    lo, hi, entity_count = _time_bounds(entity_rows, timestamp_field)
    feature_count = sum(_count_rows(store, b) for group in stages.values() for b in group)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    count = partitions or max(cpus, math.ceil((entity_count + feature_count)
                                              / _ROWS_PER_PARTITION))
    current = entity_rows
    for group in stages.values():
        current = _join_stage(store, current, schema, group, needed, timestamp_field, lo, hi,
                              count)
        schema = _with_joined(schema, group, needed)
    result = ray_settings(current.map_batches(
        _finish, batch_format="pyarrow", zero_copy_batch=True,
        fn_kwargs={"repo": store.repo, "selections": selections,
                   "full_feature_names": full_feature_names}))
    if output is None:
        return result.materialize()
    result.write_parquet(output)
    return ray.data.read_parquet(output)


def _check_empty(output: str) -> None:
    """Refuse an output directory that already holds files (Ray Data would add to them)."""
    fs, path = _open(output)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File or (
                info.type == pafs.FileType.Directory
                and fs.get_file_info(pafs.FileSelector(path, recursive=False))):
            raise InvalidInput(f"output {output!r} exists and is not empty; give a new "
                               "directory", field="output")
    except OSError as exc:
        raise BackendUnavailable(f"cannot inspect output {output!r}: {exc}") from exc


@contextlib.contextmanager
def _task_errors() -> Iterator[None]:
    """Raise the mlray error a Ray task raised as itself, not wrapped by Ray Data."""
    try:
        yield
    except Exception as exc:
        cause = _mlray_cause(exc)
        if cause is None:
            raise
        raise cause from None


def _mlray_cause(exc: BaseException) -> MlrayError | None:
    """The mlray error a task raised, found along the exception's causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        original = getattr(current, "cause", None)  # a RayTaskError holds the task's error
        if isinstance(original, MlrayError):
            return original
        if isinstance(current, MlrayError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _arrow_schema(dataset: ray.data.Dataset) -> pa.Schema:
    schema = dataset.schema()
    if schema is None:
        raise InvalidInput("entity_rows: the dataset is empty", field="entity_rows")
    base = getattr(schema, "base_schema", schema)
    if not isinstance(base, pa.Schema):
        raise InvalidInput("entity_rows: give a dataset of Arrow tables (e.g. from "
                           "ray.data.read_parquet)", field="entity_rows")
    return base


def _time_bounds(dataset: ray.data.Dataset, timestamp_field: str) -> tuple[int, int, int]:
    """The entity rows' earliest and latest times (int ns) and their count, in one pass
    that also checks the timestamps (naive or null ones fail the task)."""
    stats = ray_settings(dataset.map_batches(_batch_bounds, batch_format="pyarrow",
                                     fn_kwargs={"timestamp_field": timestamp_field})).take_all()
    stats = [s for s in stats if s["rows"]]
    if not stats:
        return 0, 0, 0
    return (min(s["lo"] for s in stats), max(s["hi"] for s in stats),
            sum(s["rows"] for s in stats))


def _batch_bounds(batch: pa.Table, *, timestamp_field: str) -> pa.Table:
    times = entity_times(batch, timestamp_field)
    if not len(times):
        return pa.table({"lo": [0], "hi": [0], "rows": [0]})
    return pa.table({"lo": [int(times.min())], "hi": [int(times.max())], "rows": [len(times)]})


def _count_rows(store: OfflineStore, bound: BoundView) -> int:
    found = store.source(bound.name)  # NotFound for a Parquet source that is not there
    if found is None:
        return 0
    fs, path, _ = found
    try:
        return int(pads.dataset(path, filesystem=fs, format="parquet").count_rows())
    except OSError as exc:
        raise BackendUnavailable(f"cannot read view {bound.name!r} at {path}: {exc}") from exc


def _join_stage(store: OfflineStore, entities: ray.data.Dataset, schema: pa.Schema,
                group: list[BoundView], needed: dict[str, list[str]], timestamp_field: str,
                lo: int, hi: int, count: int) -> ray.data.Dataset:
    """One shuffle: the entity rows and the rows of the views keyed like ``group[0]``."""
    import ray
    from ray.data.datasource import PathPartitionFilter

    pieces = [entities.map_batches(_split, batch_format="pyarrow",
                                   fn_kwargs={"bound": group[0], "side": 0, "count": count})]
    for side, bound in enumerate(group, start=1):
        found = store.source(bound.name)
        if found is None:
            continue
        fs, path, info = found
        ttl = ttl_ns(bound)
        first = lo - ttl if ttl else None
        pruning = (PathPartitionFilter.of(day_filter(first, hi), base_dir=path, filesystem=fs)
                   if info == pafs.FileType.Directory else None)
        rows = ray.data.read_parquet(path, filesystem=fs, columns=view_columns(bound),
                                     partition_filter=pruning)
        pieces.append(rows.map_batches(
            _split_view, batch_format="pyarrow",
            fn_kwargs={"bound": bound, "side": side, "count": count, "lo": first, "hi": hi}))
    combined = ray_settings(pieces[0].union(*pieces[1:]) if len(pieces) > 1 else pieces[0])
    return combined.groupby(_PART, num_partitions=count).map_groups(
        _join_partition, batch_format="pyarrow",
        fn_kwargs={"group": group, "needed": needed, "schema": schema,
                   "timestamp_field": timestamp_field})


def _split_view(batch: pa.Table, *, bound: BoundView, side: int, count: int, lo: int | None,
                hi: int) -> pa.Table:
    """A block of a view's rows, typed and cut to the entity rows' time window, in pieces."""
    rows = cut_to_window(normalise_rows(batch, bound, f"view {bound.name!r} data"), bound, lo,
                         hi)
    return _split(rows, bound=bound, side=side, count=count)


def _split(batch: pa.Table, *, bound: BoundView, side: int, count: int) -> pa.Table:
    """A block cut into its key-hash partitions, one row ``(partition, side, IPC bytes)``
    per non-empty piece."""
    if not batch.num_rows:
        return pa.table({_PART: pa.array([], pa.int64()), _SIDE: pa.array([], pa.int8()),
                         _DATA: pa.array([], pa.large_binary())})
    keyed = pa.table(check_keys(batch, bound.join_keys, "entity_rows"))  # typed as declared
    part = _hash_part(keyed, bound, count)
    order = np.argsort(part, kind="stable")
    ordered = batch.take(pa.array(order))
    cuts = np.flatnonzero(np.diff(part[order])) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(order)]])
    data = [_to_ipc(ordered.slice(int(a), int(b - a))) for a, b in zip(starts, ends, strict=True)]
    return pa.table({_PART: pa.array(part[order][starts], pa.int64()),
                     _SIDE: pa.array([side] * len(data), pa.int8()),
                     _DATA: pa.array(data, pa.large_binary())})


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _join_partition(group_rows: pa.Table, *, group: list[BoundView],
                    needed: dict[str, list[str]], schema: pa.Schema,
                    timestamp_field: str) -> pa.Table:
    """On a worker: one partition's entity rows with the features of ``group``'s views,
    as ``__mlray_joined__view__feature`` columns."""
    sides = group_rows[_SIDE].to_numpy()
    data = group_rows[_DATA].to_pylist()
    by_side: dict[int, list[pa.Table]] = {}
    for side, blob in zip(sides.tolist(), data, strict=True):
        by_side.setdefault(side, []).append(_from_ipc(blob))
    entities = (pa.concat_tables(by_side[0], promote_options="permissive")
                .select(schema.names).cast(schema)  # one schema in every partition
                if 0 in by_side else schema.empty_table())
    times = entity_times(entities, timestamp_field)
    out = entities
    for side, bound in enumerate(group, start=1):
        rows = pa.concat_tables(by_side[side]) if side in by_side else None
        keys = check_keys(entities, bound.join_keys, "entity_rows")
        joined = join_rows(keys, times, bound, needed[bound.name], rows)
        for name, column in joined.items():
            out = out.append_column(_JOINED + name, column)
    return out


def _with_joined(schema: pa.Schema, group: list[BoundView],
                 needed: dict[str, list[str]]) -> pa.Schema:
    """The schema after a stage: the joined columns appended."""
    for bound in group:
        types = _schema(bound)
        for name in needed[bound.name]:
            schema = schema.append(pa.field(f"{_JOINED}{bound.name}__{name}", types[name]))
    return schema


def _finish(batch: pa.Table, *, repo: FeatureRepo, selections: list[Selection],
            full_feature_names: bool) -> pa.Table:
    """The joined columns turned into the features asked, on-demand ones computed."""
    inner = [n for n in batch.column_names if n.startswith(_JOINED)]
    joined: dict[str, Any] = {n[len(_JOINED):]: batch[n] for n in inner}
    return assemble(repo, batch.drop_columns(inner), joined, selections, full_feature_names)
