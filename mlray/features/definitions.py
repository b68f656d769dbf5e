"""Feature store definitions: entities, feature views, on-demand views and feature services.

These are the user-declared specs (``configs/features/*.yaml`` or Python). They validate
on construction, so a bad dtype, an unknown validator or a field that shadows a join key
fails here, naming the field. Cross-object checks (a view's entities exist, a service's
references resolve) run in :mod:`mlray.features.repo`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from mlray._private.types import FiniteFloat, Name, Tags

__all__ = [
    "AGGREGATIONS",
    "SCALAR_TYPES",
    "Aggregation",
    "Entity",
    "FeatureField",
    "FeatureService",
    "FeatureView",
    "JoinKey",
    "OnDemandFeatureView",
    "ParquetSource",
    "PushSource",
    "Range",
    "RequestField",
    "Source",
    "StreamSource",
    "ValueType",
    "arrow_type",
    "duration_ns",
    "duration_us",
    "format_duration",
    "parse_duration",
    "parse_ref",
]

ValueType = Literal["int64", "float64", "string", "bool", "bytes", "array", "map"]
ScalarType = Literal["int64", "float64", "string", "bool", "bytes"]
KeyType = Literal["int64", "string"]
SCALAR_TYPES: tuple[str, ...] = ("int64", "float64", "string", "bool", "bytes")

_ARROW: dict[str, pa.DataType] = {
    "int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
    "bool": pa.bool_(), "bytes": pa.binary(),
}
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_REF = re.compile(r"^([A-Za-z0-9][\w.-]*):(\*|[A-Za-z_][\w]*)$")
#: Column and feature names: identifiers, so ``view__feature`` stays unambiguous.
ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


def parse_duration(value: Any) -> Any:
    """``"90s"``, ``"5m"``, ``"1h"``, ``"24d"``, ``"2w"`` or seconds as a :class:`timedelta`.

    Anything else is left for pydantic (ISO 8601 ``"PT1H"``, ``timedelta``).
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m', '1h', '24d'")
    if isinstance(value, int | float):
        return dt.timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]


def duration_us(delta: dt.timedelta) -> int:
    """``delta`` in whole microseconds, by integer arithmetic (a timedelta's resolution).

    Never through ``total_seconds()``: its float makes ``1.001 s`` 1,000,999 µs, and a
    row exactly one TTL old would fall outside the TTL.
    """
    return (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds


def duration_ns(delta: dt.timedelta) -> int:
    """``delta`` in nanoseconds, exactly (see :func:`duration_us`)."""
    return duration_us(delta) * 1_000


def format_duration(delta: dt.timedelta) -> str:
    """``delta`` as people write it: ``30d``, ``1h``, ``90s``, ``1.001s``; ``0`` for none."""
    us = duration_us(delta)
    if us == 0:
        return "0"
    if us < 0 or us % 10**6:
        whole, frac = divmod(abs(us), 10**6)
        text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
        return f"{'-' if us < 0 else ''}{text}s"
    return _window_label(delta)


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``"view:feature"`` (or ``"view:*"``) into its parts; raise ``ValueError`` if bad."""
    m = _REF.match(ref) if isinstance(ref, str) else None
    if not m:
        raise ValueError(f"invalid feature reference {ref!r}: expected 'view:feature' or 'view:*'")
    return m.group(1), m.group(2)


def _check_ref(ref: str) -> str:
    parse_ref(ref)
    return ref


FeatureRef = Annotated[str, BeforeValidator(_check_ref)]


def arrow_type(dtype: str, items: str | None = None) -> pa.DataType:
    """The Arrow type of a feature dtype (``array`` is a list of ``items``, ``map`` is
    string → ``items``)."""
    if dtype == "array":
        return pa.list_(_ARROW[items or "float64"])
    if dtype == "map":
        return pa.map_(pa.string(), _ARROW[items or "string"])
    return _ARROW[dtype]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Described(_Spec):
    description: str = Field("", max_length=5000)
    owner: str | None = Field(None, max_length=256)
    tags: Tags = Field(default_factory=dict)


class JoinKey(_Spec):
    """One column of an entity key, and its type."""

    name: ColumnName
    dtype: KeyType = "int64"


class Entity(_Described):
    """What features describe (a customer, a transaction), identified by its join keys."""

    name: Name
    join_keys: list[JoinKey] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _unique_keys(self) -> Entity:
        names = [k.name for k in self.join_keys]
        if len(set(names)) != len(names):
            raise ValueError(f"join key listed twice in {names}")
        return self


class Range(_Spec):
    """Inclusive bounds for a numeric feature; either end may be open."""

    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class FeatureField(_Spec):
    """One typed feature of a view, with the checks a written value must pass."""

    name: ColumnName
    dtype: ValueType
    items: ScalarType | None = Field(
        None, description="Element type of an array, or value type of a map (keys are strings).")
    description: str = Field("", max_length=5000)
    not_null: bool = False
    range: Range | None = None
    allowed_values: list[str | int | FiniteFloat | bool] | None = Field(None, min_length=1)
    regex: str | None = Field(None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureField:
        if self.items is not None and self.dtype not in ("array", "map"):
            raise ValueError(f"items applies to array and map fields, not {self.dtype}")
        if self.range is not None and self.dtype not in ("int64", "float64"):
            raise ValueError(f"range applies to int64 and float64 fields, not {self.dtype}")
        if self.regex is not None:
            if self.dtype != "string":
                raise ValueError(f"regex applies to string fields, not {self.dtype}")
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        if self.allowed_values is not None and self.dtype not in SCALAR_TYPES:
            raise ValueError(f"allowed_values applies to scalar fields, not {self.dtype}")
        return self

    @property
    def arrow_type(self) -> pa.DataType:
        """The field's Arrow type."""
        return arrow_type(self.dtype, self.items)


class ParquetSource(_Spec):
    """Rows in a Parquet file or dataset (a local path or any ``pyarrow.fs`` URI)."""

    type: Literal["parquet"] = "parquet"
    path: str = Field(min_length=1, max_length=4096)
    timestamp_field: ColumnName = "event_timestamp"
    created_timestamp_field: ColumnName | None = None


class StreamSource(_Spec):
    """Rows arriving on a Redis Stream; the offline copy lives in the offline store.

    Events carry the join keys, ``timestamp_field`` and an ``event_id_field`` (redelivered
    or republished events with the same id count once); ``transform`` may derive columns
    before the view's aggregations run. Events up to ``allowed_lateness`` older than the
    newest one of their entity still count; older ones are dropped.
    """

    type: Literal["stream"] = "stream"
    stream: str = Field(min_length=1, max_length=512)
    timestamp_field: ColumnName = "event_timestamp"
    created_timestamp_field: ColumnName | None = None
    event_id_field: ColumnName = "event_id"
    allowed_lateness: Duration = Field(default=dt.timedelta(0), description="0 = in order.")
    transform: str | None = Field(
        None, min_length=3, max_length=512,
        description="'package.module:name': DataFrame of events -> DataFrame, row for row.")

    @model_validator(mode="after")
    def _check(self) -> StreamSource:
        if self.allowed_lateness < dt.timedelta(0):
            raise ValueError("allowed_lateness must not be negative")
        if self.transform is not None and not _CALLABLE.match(self.transform):
            raise ValueError(f"transform {self.transform!r} must look like 'package.module:name'")
        return self


class PushSource(_Spec):
    """Rows pushed through the API; the offline copy lives in the offline store."""

    type: Literal["push"] = "push"
    timestamp_field: ColumnName = "event_timestamp"
    created_timestamp_field: ColumnName | None = None


Source = Annotated[ParquetSource | StreamSource | PushSource, Field(discriminator="type")]

AGGREGATIONS: tuple[str, ...] = ("sum", "avg", "min", "max", "count", "std")
#: Output dtypes each aggregation may write (``std`` is the population standard deviation).
_AGG_DTYPES = {"sum": ("int64", "float64"), "min": ("int64", "float64"),
               "max": ("int64", "float64"), "avg": ("float64",), "std": ("float64",),
               "count": ("int64",)}


def _window_label(window: dt.timedelta) -> str:
    seconds = duration_us(window) // 10**6
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


class Aggregation(_Spec):
    """A sliding-window aggregation of an event column per entity, written to field ``name``.

    The window is ``(T - window, T]`` where ``T`` is the entity's newest event time.
    ``count`` counts events (``column`` optional); ``std`` is the population deviation.
    """

    column: ColumnName | None = None
    function: Literal["sum", "avg", "min", "max", "count", "std"]
    window: Duration
    name: ColumnName | None = Field(None, description="Default: column_function_window.")

    @model_validator(mode="after")
    def _check(self) -> Aggregation:
        if self.window <= dt.timedelta(0) or self.window.microseconds:
            raise ValueError(f"window must be a positive whole number of seconds, got "
                             f"{self.window.total_seconds():g}s")
        if self.column is None and self.function != "count":
            raise ValueError(f"{self.function} needs a column")
        return self

    @property
    def output(self) -> str:
        """The field the aggregation writes."""
        return self.name or f"{self.column or 'event'}_{self.function}_" \
            f"{_window_label(self.window)}"


class FeatureView(_Described):
    """A group of features about some entities, from one source, with a TTL.

    ``ttl`` 0 means values never expire; otherwise a value older than ``ttl`` is not
    served (online) or joined (offline).
    """

    name: Name
    entities: list[Name] = Field(min_length=1, max_length=8)
    fields: list[FeatureField] = Field(min_length=1, max_length=1000)
    source: Source
    ttl: Duration = Field(default=dt.timedelta(0), description="0 = no limit.")
    online: bool = True
    aggregations: list[Aggregation] = Field(
        default_factory=list, max_length=1000,
        description="Sliding-window aggregations (stream views); each writes one field.")

    @field_validator("ttl")
    @classmethod
    def _non_negative(cls, ttl: dt.timedelta) -> dt.timedelta:
        if ttl < dt.timedelta(0):
            raise ValueError(f"ttl must not be negative, got {ttl.total_seconds():g}s")
        return ttl

    @model_validator(mode="after")
    def _check(self) -> FeatureView:
        if len(set(self.entities)) != len(self.entities):
            raise ValueError(f"entity listed twice in {self.entities}")
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"fields listed twice: {dupes}")
        reserved = {self.source.timestamp_field, self.source.created_timestamp_field, "date"}
        clash = sorted(set(names) & {r for r in reserved if r})
        if clash:
            raise ValueError(f"fields {clash} clash with the source's timestamp or partition "
                             "columns")
        self._check_aggregations()
        return self

    def _check_aggregations(self) -> None:
        if not self.aggregations:
            return
        if self.source.type != "stream":
            raise ValueError("aggregations need a stream source")
        outputs = [a.output for a in self.aggregations]
        dupes = sorted({n for n in outputs if outputs.count(n) > 1})
        if dupes:
            raise ValueError(f"aggregations write the same fields twice: {dupes}")
        for agg in self.aggregations:
            f = self.field(agg.output)
            if f is None:
                raise ValueError(f"aggregation {agg.output!r} names no field of the view")
            if f.dtype not in _AGG_DTYPES[agg.function]:
                raise ValueError(f"aggregation {agg.output!r}: {agg.function} writes "
                                 f"{' or '.join(_AGG_DTYPES[agg.function])}, the field is "
                                 f"{f.dtype}")

    @property
    def feature_names(self) -> list[str]:
        """The field names, in declared order."""
        return [f.name for f in self.fields]

    def field(self, name: str) -> FeatureField | None:
        """The field called ``name``, or None."""
        return next((f for f in self.fields if f.name == name), None)


class RequestField(_Spec):
    """A value the caller sends with the request, read by an on-demand view."""

    name: ColumnName
    dtype: ValueType
    items: ScalarType | None = None


class OnDemandFeatureView(_Described):
    """Features computed at read time by a Python function, online and offline alike.

    ``function`` (``"module:callable"``) takes a pandas DataFrame holding the
    ``request`` columns and the ``sources`` features (named ``view__feature``) and
    returns a DataFrame with one column per output field, row for row.
    """

    name: Name
    function: str = Field(min_length=3, max_length=512)
    request: list[RequestField] = Field(default_factory=list)
    sources: list[FeatureRef] = Field(default_factory=list)
    fields: list[FeatureField] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> OnDemandFeatureView:
        if not _CALLABLE.match(self.function):
            raise ValueError(f"function {self.function!r} must look like 'package.module:name'")
        if not self.request and not self.sources:
            raise ValueError("an on-demand view needs request fields, sources or both")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"field listed twice in {names}")
        return self

    @property
    def feature_names(self) -> list[str]:
        """The output field names, in declared order."""
        return [f.name for f in self.fields]

    def field(self, name: str) -> FeatureField | None:
        """The output field called ``name``, or None."""
        return next((f for f in self.fields if f.name == name), None)


class FeatureService(_Described):
    """A named list of feature references that a model declares it reads."""

    name: Name
    features: list[FeatureRef] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _unique(self) -> FeatureService:
        dupes = sorted({r for r in self.features if self.features.count(r) > 1})
        if dupes:
            raise ValueError(f"features listed twice: {dupes}")
        return self
