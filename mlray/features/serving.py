"""Online retrieval across views: ``get_online_features`` for the serving data plane.

:class:`FeatureReader` reads every view a request needs with one
:meth:`OnlineStore.read_many` call (one pipelined round trip on Redis), runs on-demand
views over the request's columns and the fetched features, and returns the features in
the order they were asked as Arrow columns, with an ``(entities, features)`` status
matrix and event times (numpy), so there is no Python object per returned value.

What a feature list resolves to (views, bound join keys, output names, Arrow types,
where each output comes from) is worked out once per distinct request shape and kept
(:class:`_Plan`); a call then only encodes the keys (once per distinct join-key
set), reads (:meth:`OnlineStore.read_columns`), and builds one Arrow array per output.

An on-demand feature's status is the worst of its sources' for that entity
(OUTSIDE_MAX_AGE, then NOT_FOUND, else PRESENT); its value is whatever the function
made of the inputs it had, and its event time is the newest of its sources'.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlray.errors import InvalidInput, NotFound
from mlray.features.definitions import FeatureService, parse_ref
from mlray.features.offline import _needed, to_table
from mlray.features.ondemand import input_columns, run_on_demand
from mlray.features.online import FeatureStatus, OnlineStore, encode_key_columns
from mlray.features.repo import BoundView, FeatureRepo, Selection
from mlray.features.rowcodec import Columns
from mlray.features.validate import check_keys

__all__ = ["FeatureReader", "OnlineFeatures"]

_NAT = np.datetime64("NaT", "us")
_PLANS = 256


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one feature list resolves to, kept per request shape."""

    selections: list[Selection]
    out_names: list[str]
    refs: list[str]
    reads: list[tuple[BoundView, list[str], list[pa.DataType]]]  # per view read
    sources: list[tuple[int, int] | None]  # per output: (read, column), None: on-demand
    on_demand: list[str]  # on-demand views asked
    by_type: list[tuple[pa.DataType, list[tuple[int, int]]]]  # (read, column)s per type
    flat_status: np.ndarray | None  # without on-demand: per output, its column among all
    flat_view: np.ndarray | None  # ... and its read


@dataclasses.dataclass(frozen=True)
class OnlineFeatures:
    """Features of several entities, in the order asked.

    Attributes:
        names: the output names (``feature`` or ``view__feature``).
        refs: the ``view:feature`` reference of each output.
        columns: one Arrow array per output, one value per entity (null unless PRESENT,
            or as an on-demand function computed it).
        status: ``(entities, features)`` int8 :class:`FeatureStatus` codes.
        event_ts: ``(entities, features)`` ``datetime64[us]`` UTC event times (NaT: none).
    """

    names: list[str]
    refs: list[str]
    columns: list[pa.Array]
    status: np.ndarray
    event_ts: np.ndarray

    def __len__(self) -> int:
        return int(self.status.shape[0])

    def column(self, name: str) -> pa.Array:
        """The values of one output."""
        return self.columns[self.names.index(name)]

    def statuses(self, name: str) -> list[FeatureStatus]:
        """The statuses of one output, per entity."""
        return [FeatureStatus(int(s)) for s in self.status[:, self.names.index(name)]]

    def to_table(self) -> pa.Table:
        """The values as an Arrow table, one column per output."""
        return pa.table(dict(zip(self.names, self.columns, strict=True)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: names, values per feature, status names and ISO event times."""
        names = [s.name for s in FeatureStatus]
        ts = np.datetime_as_string(self.event_ts, unit="us", timezone="UTC")
        return {
            "features": self.names,
            "values": [c.to_pylist() for c in self.columns],
            "statuses": [[names[s] for s in col] for col in self.status.T.tolist()],
            "event_timestamps": [[None if t == "NaT" else t for t in col]
                                 for col in ts.T.tolist()],
        }


class FeatureReader:
    """Reads features of several views (and on-demand views) straight from the online store.

    Args:
        repo: the definitions.
        online: the online store (SQLite or Redis).
    """

    def __init__(self, repo: FeatureRepo, online: OnlineStore) -> None:
        self.repo = repo
        self.online = online
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._plans_repo = repo

    def get_online_features(
        self,
        entity_rows: pa.Table | pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        features: Sequence[str] | FeatureService | str,
        *,
        full_feature_names: bool = False,
        now: dt.datetime | None = None,
    ) -> OnlineFeatures:
        """The latest features of each entity row, with statuses and event times.

        Args:
            entity_rows: the join keys of every view asked (columns, a table, a DataFrame
                or row dicts), plus the request columns on-demand views read.
            features: ``"view:feature"`` / ``"view:*"`` references, a feature service or a
                service's name.
            full_feature_names: name outputs ``view__feature`` instead of ``feature``.
            now: the time TTLs are measured from (default: the clock).

        Raises:
            InvalidInput: a missing or mistyped key or request column, or two outputs with
                the same name.
            NotFound: an unknown view, feature or service.
            BackendUnavailable: the online store cannot be reached.
        """
        table = to_table(entity_rows, "entity_rows")
        plan = self._plan(features, full_feature_names)
        n = table.num_rows

        keys_by_set: dict[tuple[str, ...], list[bytes]] = {}
        requests = []
        for bound, names, _ in plan.reads:
            key_names = tuple(k.name for k in bound.join_keys)
            keys = keys_by_set.get(key_names)
            if keys is None:
                cols = check_keys(table, bound.join_keys, "entity_rows")
                keys = keys_by_set[key_names] = encode_key_columns(
                    bound, [cols[k] for k in key_names])
            requests.append((bound, keys, names))
        reads = self.online.read_columns(requests, now=now)
        arrays = _arrays(plan, [cols for cols, _, _ in reads], n)
        if plan.flat_status is not None and plan.flat_view is not None:
            status = np.hstack([st for _, st, _ in reads])[:, plan.flat_status]
            event_ts = np.stack([ts for _, _, ts in reads], axis=1)[:, plan.flat_view]
            return OnlineFeatures(plan.out_names, plan.refs,
                                  [arrays[r][c] for r, c in plan.sources],  # type: ignore[misc]
                                  status, event_ts)

        computed: dict[str, tuple[pa.Array, np.ndarray, np.ndarray]] = {}
        if plan.on_demand:
            fetched = {f"{bound.name}__{name}": (arrays[r][j], st[:, j], ts)
                       for r, ((bound, names, _), (_, st, ts)) in enumerate(
                           zip(plan.reads, reads, strict=True)) for j, name in enumerate(names)}
            for view in plan.on_demand:
                computed.update(self._on_demand(view, table, fetched, n))

        width = len(plan.out_names)
        columns = []
        status = np.empty((n, width), dtype=np.int8)
        event_ts = np.empty((n, width), dtype="datetime64[us]")
        for j, (ref, source) in enumerate(zip(plan.refs, plan.sources, strict=True)):
            if source is None:
                values, st, ts = computed[ref.replace(":", "__", 1)]
            else:
                r, c = source
                values, st, ts = arrays[r][c], reads[r][1][:, c], reads[r][2]
            columns.append(values)
            status[:, j] = st
            event_ts[:, j] = ts
        return OnlineFeatures(plan.out_names, plan.refs, columns, status, event_ts)

    def _plan(self, features: Sequence[str] | FeatureService | str,
              full_feature_names: bool) -> _Plan:
        """What ``features`` resolves to, worked out once per distinct list (and repo)."""
        if self._plans_repo is not self.repo:
            self._plans, self._plans_repo = {}, self.repo
        if isinstance(features, str):
            key: tuple[Any, ...] = ("service", features, full_feature_names)
        elif isinstance(features, FeatureService):
            key = ("refs", tuple(features.features), full_feature_names)
        else:
            key = ("refs", tuple(features), full_feature_names)
        try:
            plan = self._plans.get(key)
        except TypeError:  # unhashable references: let select() say what is wrong
            plan, key = None, ()
        if plan is not None:
            return plan
        selections = self.repo.select(features)
        flat = self._flatten(features)
        out_names = [f"{v}__{f}" if full_feature_names else f for v, f in flat]
        clash = sorted({x for x in out_names if out_names.count(x) > 1})
        if clash:
            raise InvalidInput(f"output names {clash} would be duplicated; ask with "
                               "full_feature_names=True", field="features")
        reads = []
        where: dict[tuple[str, str], tuple[int, int]] = {}
        for r, (view, names) in enumerate(_needed(self.repo, selections).items()):
            bound = self.repo.bind(view)
            types = []
            for j, name in enumerate(names):
                field = bound.view.field(name)
                assert field is not None
                types.append(field.arrow_type)
                where[(view, name)] = (r, j)
            reads.append((bound, names, types))
        on_demand = {sel.view for sel in selections if sel.on_demand}
        sources = [None if v in on_demand else where[(v, f)] for v, f in flat]
        by_type: dict[pa.DataType, list[tuple[int, int]]] = {}
        for r, (_, _, types) in enumerate(reads):
            for c, typ in enumerate(types):
                by_type.setdefault(typ, []).append((r, c))
        flat_status = flat_view = None
        if not on_demand:
            first = np.cumsum([0] + [len(names) for _, names, _ in reads])
            flat_status = np.array([first[r] + c for r, c in sources],  # type: ignore[misc]
                                   dtype=np.intp)
            flat_view = np.array([r for r, _ in sources], dtype=np.intp)  # type: ignore[misc]
        plan = _Plan(
            selections=selections, out_names=out_names,
            refs=[f"{v}:{f}" for v, f in flat], reads=reads, sources=sources,
            on_demand=[sel.view for sel in selections if sel.on_demand],
            by_type=list(by_type.items()), flat_status=flat_status, flat_view=flat_view)
        if key:
            if len(self._plans) >= _PLANS:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _flatten(self, features: Sequence[str] | FeatureService | str) -> list[tuple[str, str]]:
        """``(view, feature)`` pairs in the order asked, ``view:*`` expanded, first kept."""
        if isinstance(features, str):
            features = self.repo.feature_service(features).features
        elif isinstance(features, FeatureService):
            features = features.features
        flat: dict[tuple[str, str], None] = {}
        for ref in features:
            view, feature = parse_ref(ref)
            if feature == "*":
                try:
                    names = self.repo.feature_view(view).feature_names
                except NotFound:  # select() checked it: an on-demand view
                    names = self.repo.on_demand_view(view).feature_names
                flat.update({(view, f): None for f in names})
            else:
                flat[(view, feature)] = None
        return list(flat)

    def _on_demand(self, name: str, table: pa.Table,
                   fetched: Mapping[str, tuple[pa.Array, np.ndarray, np.ndarray]], n: int,
                   ) -> dict[str, tuple[pa.Array, np.ndarray, np.ndarray]]:
        odfv = self.repo.on_demand_view(name)
        names = input_columns(odfv)
        inputs: dict[str, pa.Array | pa.ChunkedArray] = {
            r: table[r] for r in names[:len(odfv.request)] if r in table.column_names}
        sources = [fetched[s] for s in names[len(odfv.request):]]
        inputs.update({s: fetched[s][0] for s in names[len(odfv.request):]})
        status = np.full(n, FeatureStatus.PRESENT, dtype=np.int8)
        event_ts = np.full(n, _NAT, dtype="datetime64[us]")
        for _, st, ts in sources:
            status[st == FeatureStatus.NOT_FOUND] = np.where(
                status[st == FeatureStatus.NOT_FOUND] == FeatureStatus.OUTSIDE_MAX_AGE,
                FeatureStatus.OUTSIDE_MAX_AGE, FeatureStatus.NOT_FOUND)
            status[st == FeatureStatus.OUTSIDE_MAX_AGE] = FeatureStatus.OUTSIDE_MAX_AGE
            newer = ~np.isnat(ts) & (np.isnat(event_ts) | (ts > event_ts))
            event_ts[newer] = ts[newer]
        results = run_on_demand(odfv, inputs)
        return {f"{name}__{f}": (results[f].combine_chunks(), status, event_ts)
                for f in odfv.feature_names}


def _arrays(plan: _Plan, columns: Sequence[Columns], n: int) -> list[list[pa.Array]]:
    """One Arrow array per column. Fixed-width views already read as arrays; the Python
    columns of one type, across every view, are converted in one ``pa.array`` call and
    sliced (zero-copy), not one call per column."""
    out: list[list[Any]] = [[None] * len(types) for _, _, types in plan.reads]
    for typ, where in plan.by_type:
        lists = []
        for r, c in where:
            if isinstance(columns[r][c], pa.Array):
                out[r][c] = columns[r][c]
            else:
                lists.append((r, c))
        if len(lists) == 1:
            r, c = lists[0]
            out[r][c] = pa.array(columns[r][c], typ)
        elif lists:
            flat = pa.array(list(itertools.chain.from_iterable(
                [columns[r][c] for r, c in lists])), typ)
            for k, (r, c) in enumerate(lists):
                out[r][c] = flat.slice(k * n, n)
    return out
