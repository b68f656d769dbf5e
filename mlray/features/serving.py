"""Online retrieval across views: ``get_online_features`` for the serving data plane.

:class:`FeatureReader` reads every view a request needs with one
:meth:`OnlineStore.read_many` call (one pipelined round trip on Redis), runs on-demand
views over the request's columns and the fetched features, and returns the features in
the order they were asked as Arrow columns, with an ``(entities, features)`` status
matrix and event times (numpy), so there is no Python object per returned value.

An on-demand feature's status is the worst of its sources' for that entity
(OUTSIDE_MAX_AGE, then NOT_FOUND, else PRESENT); its value is whatever the function
made of the inputs it had, and its event time is the newest of its sources'.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlray.errors import InvalidInput, NotFound
from mlray.features.definitions import FeatureService, parse_ref
from mlray.features.offline import _needed, to_table
from mlray.features.ondemand import input_columns, run_on_demand
from mlray.features.online import FeatureStatus, OnlineStore
from mlray.features.repo import FeatureRepo
from mlray.features.validate import check_keys

__all__ = ["FeatureReader", "OnlineFeatures"]

_NAT = np.datetime64("NaT", "us")


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
        selections = self.repo.select(features)
        flat = self._flatten(features)
        out_names = [f"{v}__{f}" if full_feature_names else f for v, f in flat]
        clash = sorted({x for x in out_names if out_names.count(x) > 1})
        if clash:
            raise InvalidInput(f"output names {clash} would be duplicated; ask with "
                               "full_feature_names=True", field="features")
        n = table.num_rows

        needed = _needed(self.repo, selections)
        requests = []
        for view, names in needed.items():
            bound = self.repo.bind(view)
            keys = check_keys(table, bound.join_keys, "entity_rows")
            lists = [keys[k].to_pylist() for k in bound.key_names]
            rows = lists[0] if len(lists) == 1 else list(zip(*lists, strict=True))
            requests.append((bound, rows, names))
        reads = self.online.read_many(requests, now=now)
        fetched: dict[str, tuple[pa.Array, np.ndarray, np.ndarray]] = {}
        for (bound, _, names), read in zip(requests, reads, strict=True):
            for j, name in enumerate(names):
                field = bound.view.field(name)
                assert field is not None
                values = pa.array(read.values[name], field.arrow_type)
                fetched[f"{bound.name}__{name}"] = (values, read.status[:, j], read.event_ts)

        computed: dict[str, tuple[pa.Array, np.ndarray, np.ndarray]] = {}
        for sel in selections:
            if sel.on_demand:
                computed.update(self._on_demand(sel.view, table, fetched, n))

        refs, columns = [], []
        status = np.zeros((n, len(flat)), dtype=np.int8)
        event_ts = np.full((n, len(flat)), _NAT, dtype="datetime64[us]")
        for j, (view, feature) in enumerate(flat):
            values, st, ts = (computed if f"{view}__{feature}" in computed
                              else fetched)[f"{view}__{feature}"]
            refs.append(f"{view}:{feature}")
            columns.append(values)
            status[:, j] = st
            event_ts[:, j] = ts
        return OnlineFeatures(out_names, refs, columns, status, event_ts)

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
