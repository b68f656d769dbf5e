"""Checking rows before they are written: schema, time zones and the fields' validators.

A batch is accepted whole or refused whole; the error names the column, the rule and
the first offending rows (by position in the batch), so nothing is ever half-written.
All checks are vectorised with ``pyarrow.compute``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlray.errors import InvalidInput
from mlray.features.definitions import FeatureField, JoinKey, arrow_type

__all__ = ["UTC_NS", "cast_column", "check_fields", "check_keys", "to_utc_ns"]

UTC_NS = pa.timestamp("ns", tz="UTC")
_SHOWN = 5


def _rows(mask: pa.Array | pa.ChunkedArray) -> list[int]:
    flags = pc.fill_null(mask, False)
    return np.flatnonzero(np.asarray(flags.to_numpy(zero_copy_only=False)))[:_SHOWN].tolist()


def cast_column(column: pa.Array | pa.ChunkedArray, target: pa.DataType, field: str
                ) -> pa.ChunkedArray:
    """``column`` as ``target``, refusing lossy or impossible casts with a clear error."""
    column = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    if column.type == target:
        return column
    if pa.types.is_null(column.type):
        return pa.chunked_array([pa.nulls(len(column), target)])
    textual = _is_text(column.type)
    if textual != _is_text(target) or (
            pa.types.is_boolean(column.type) != pa.types.is_boolean(target)):
        raise InvalidInput(f"{field}: expected {target}, got {column.type}", field=field)
    try:
        return column.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"{field}: expected {target}, got {column.type} ({exc})",
                           field=field) from None


def _is_text(typ: pa.DataType) -> bool:
    return bool(pa.types.is_string(typ) or pa.types.is_large_string(typ)
                or pa.types.is_binary(typ) or pa.types.is_large_binary(typ)
                or pa.types.is_string_view(typ) or pa.types.is_binary_view(typ))


def to_utc_ns(column: pa.Array | pa.ChunkedArray, field: str) -> pa.ChunkedArray:
    """A timestamp column normalised to ``timestamp[ns, UTC]``.

    Raises:
        InvalidInput: not a timestamp, a timestamp without a time zone, or out of range.
    """
    typ = column.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        column = _parse_iso(column, field)  # JSON carries times as ISO 8601 text
        typ = column.type
    if not pa.types.is_timestamp(typ):
        raise InvalidInput(f"{field}: expected a timestamp with a time zone, got {typ}",
                           field=field)
    if typ.tz is None:
        raise InvalidInput(f"{field}: timestamps have no time zone; give them one "
                           "(e.g. UTC) so points in time are unambiguous", field=field)
    column = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    try:
        return column.cast(UTC_NS, safe=True)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"{field}: timestamp out of range ({exc})", field=field) from None


_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")


def _parse_iso(column: pa.Array | pa.ChunkedArray, field: str) -> pa.ChunkedArray:
    """ISO 8601 text with an offset (``Z`` or ``+02:00``) as UTC timestamps."""
    values = column.to_pylist()
    naive = [i for i, v in enumerate(values) if v is not None and not _OFFSET.search(v)]
    if naive:
        raise InvalidInput(f"{field}: row(s) {naive[:10]} have no time zone offset; write "
                           "ISO 8601 with one (e.g. 2026-03-01T12:00:00Z)", field=field)
    try:
        parsed = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", utc=True)
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0]
        raise InvalidInput(f"{field}: not ISO 8601 times: {reason}", field=field) from None
    return pa.chunked_array([pa.array(parsed)])


def check_keys(table: pa.Table, keys: Sequence[JoinKey], what: str) -> dict[str, pa.ChunkedArray]:
    """The join key columns of ``table`` cast to their declared types."""
    out = {}
    for key in keys:
        if key.name not in table.column_names:
            raise InvalidInput(f"{what}: missing join key column {key.name!r}", field=key.name)
        out[key.name] = cast_column(table[key.name], arrow_type(key.dtype), key.name)
    return out


def check_fields(table: pa.Table, fields: Sequence[FeatureField], what: str,
                 *, require_all: bool = True) -> dict[str, pa.ChunkedArray]:
    """The feature columns of ``table`` cast to their types and checked by their validators.

    Args:
        table: the batch.
        fields: the view's fields.
        what: names the batch in errors (e.g. ``"view 'user'"``).
        require_all: a missing field is an error (else it is left out).

    Raises:
        InvalidInput: a column is missing, of the wrong type, or breaks a validator; the
            message names the column, the rule and the first offending row positions.
    """
    out: dict[str, pa.ChunkedArray] = {}
    for f in fields:
        if f.name not in table.column_names:
            if require_all:
                raise InvalidInput(f"{what}: missing feature column {f.name!r}", field=f.name)
            continue
        col = cast_column(table[f.name], f.arrow_type, f.name)
        _validate(col, f, what)
        out[f.name] = col
    return out


def _fail(what: str, f: FeatureField, rule: str, bad: pa.Array | pa.ChunkedArray) -> None:
    rows = _rows(bad)
    if rows:
        raise InvalidInput(f"{what}: {f.name}: {rule} (rows {rows}); nothing was written",
                           field=f.name)


def _validate(col: pa.ChunkedArray, f: FeatureField, what: str) -> None:
    if f.not_null:
        _fail(what, f, "must not be null", pc.is_null(col))
    if f.dtype == "float64" and f.not_null:
        _fail(what, f, "must not be NaN", pc.is_nan(col))
    if f.range is not None:
        if f.range.min is not None:
            _fail(what, f, f"must be >= {f.range.min}", pc.less(col, f.range.min))
        if f.range.max is not None:
            _fail(what, f, f"must be <= {f.range.max}", pc.greater(col, f.range.max))
        if f.dtype == "float64":
            _fail(what, f, "must be a number within the range, not NaN", pc.is_nan(col))
    if f.allowed_values is not None:
        allowed = pa.array(f.allowed_values).cast(f.arrow_type)
        inside = pc.is_in(col, value_set=allowed)
        _fail(what, f, f"must be one of {f.allowed_values}",
              pc.and_(pc.invert(inside), pc.is_valid(col)))
    if f.regex is not None:
        try:
            ok = pc.match_substring_regex(col, pattern=f"^(?:{f.regex})$")
        except pa.ArrowInvalid as exc:
            raise InvalidInput(f"{what}: {f.name}: regex cannot run: {exc}",
                               field=f.name) from None
        _fail(what, f, f"must match {f.regex!r}", pc.invert(ok))
