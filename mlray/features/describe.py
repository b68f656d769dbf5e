"""Feature definitions in words, for people: what ``mlray features list|show`` print.

Plain functions over the definition models: a kind's singular name, a TTL as ``never``
or ``30d``, a definition as ``(property, value)`` rows and its fields as table rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mlray.features.definitions import (
    Entity,
    FeatureField,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    ParquetSource,
    StreamSource,
    format_duration,
)

__all__ = ["FIELD_COLUMNS", "KINDS", "describe", "field_rows", "kind_label", "parse_definition",
           "ttl_text"]

#: Repo attribute → (model, what one is called).
KINDS: dict[str, tuple[type[Any], str]] = {
    "entities": (Entity, "entity"),
    "feature_views": (FeatureView, "feature view"),
    "on_demand_feature_views": (OnDemandFeatureView, "on-demand view"),
    "feature_services": (FeatureService, "feature service"),
}
FIELD_COLUMNS = ("field", "type", "checks", "description")


def kind_label(kind: str) -> str:
    """``"feature_views"`` → ``"feature view"`` (``"entities"`` → ``"entity"``)."""
    return KINDS[kind][1] if kind in KINDS else kind.replace("_", " ")


def parse_definition(kind: str, definition: dict[str, Any]) -> Any:
    """The model of a definition as the registry returns it (``show``'s JSON)."""
    return KINDS[kind][0].model_validate(definition)


def ttl_text(ttl: dt.timedelta) -> str:
    """``never`` for 0 (values never expire), else a duration such as ``30d`` or ``90s``."""
    return "never" if not ttl else format_duration(ttl)


def _type(f: FeatureField | Any) -> str:
    items = getattr(f, "items", None)
    if f.dtype == "array":
        return f"array<{items or 'float64'}>"
    if f.dtype == "map":
        return f"map<string, {items or 'string'}>"
    return str(f.dtype)


def _number(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def _checks(f: FeatureField) -> str:
    out = []
    if f.not_null:
        out.append("not null")
    if f.range is not None:
        low, high = _number(f.range.min), _number(f.range.max)
        out.append(f"between {low} and {high}" if low and high
                   else f">= {low}" if low else f"<= {high}")
    if f.allowed_values is not None:
        out.append("one of " + ", ".join(str(v) for v in f.allowed_values))
    if f.regex is not None:
        out.append(f"matches {f.regex}")
    return "; ".join(out)


def field_rows(item: Any) -> list[list[str]]:
    """One row per field (or request value) of a view: name, type, checks, description."""
    rows = [[f"{r.name} (request)", _type(r), "", ""] for r in getattr(item, "request", [])]
    rows += [[f.name, _type(f), _checks(f), f.description]
             for f in getattr(item, "fields", [])]
    return rows


def _source(view: FeatureView) -> str:
    src = view.source
    times = f"time {src.timestamp_field}"
    if src.created_timestamp_field:
        times += f", created {src.created_timestamp_field}"
    if isinstance(src, ParquetSource):
        return f"parquet {src.path} ({times})"
    if isinstance(src, StreamSource):
        late = (f"events up to {format_duration(src.allowed_lateness)} late"
                if src.allowed_lateness else "events in order")
        return f"stream {src.stream} ({times}; {late})"
    return f"push ({times})"


def describe(item: Any) -> list[tuple[str, str]]:
    """``(property, value)`` rows of one definition, in reading order; empty ones left out."""
    rows: list[tuple[str, str]] = [("name", item.name)]
    if isinstance(item, Entity):
        rows.append(("join keys", ", ".join(f"{k.name} ({k.dtype})" for k in item.join_keys)))
    elif isinstance(item, FeatureView):
        rows += [("entities", ", ".join(item.entities)), ("source", _source(item)),
                 ("ttl", ttl_text(item.ttl)),
                 ("online", "yes" if item.online else "no (offline only)")]
        rows += [("aggregation", f"{a.output} = {a.function}({a.column or 'events'}) over "
                                 f"{format_duration(a.window)}") for a in item.aggregations]
    elif isinstance(item, OnDemandFeatureView):
        rows += [("function", item.function), ("reads", ", ".join(item.sources) or "-")]
    elif isinstance(item, FeatureService):
        rows += [("features", ", ".join(item.features))]
    rows += [("description", item.description), ("owner", item.owner or ""),
             ("tags", ", ".join(f"{k}={v}" for k, v in item.tags.items()))]
    return [(k, v) for k, v in rows if v]
