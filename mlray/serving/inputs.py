"""JSON feature payloads (``/v1/predict``) to checked numpy columns.

Two shapes arrive: column-major (``{"amount": [1.0, 2.5], "country": ["DE", "FR"]}``,
the fast path, one ``np.asarray`` per column) and row-major (``[{"amount": 1.0, ...}]``,
one dict per row, turned into columns once). Every problem is an :class:`InvalidInput`
naming the field (and the row) and the type the schema expects.

Numbers must be finite and within float32's range (|x| <= about 3.4e38; the models
compute in float32): ``NaN`` and ``Infinity`` literals are refused like any other bad
value, and ``null`` is the one way to say "missing" (the model fills it in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlray.errors import InvalidInput, PayloadTooLarge
from mlray.registry.types import TensorSpec
from mlray.serving.loaded_model import Columns

__all__ = ["FLOAT32_MAX", "columns_from_mapping", "columns_from_rows", "first_out_of_range",
           "typed_column"]

_NUMERIC = {"float32", "float64", "int32", "int64"}
#: The largest magnitude a model input may have: models compute in float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def first_out_of_range(array: np.ndarray, limit: float = FLOAT32_MAX) -> int | None:
    """The flat index of the first value that is NaN, infinite or beyond ``limit`` in
    magnitude (None when all fit); vectorized, no Python work per value."""
    if array.dtype.kind not in "fc":
        return None
    with np.errstate(invalid="ignore"):
        fits = np.abs(array) <= limit
    if fits.all():
        return None
    return int(np.argmin(fits.reshape(-1)))


def _bad(values: Sequence[Any], spec: TensorSpec, where: str, want: str) -> InvalidInput:
    for i, value in enumerate(values):
        if not _fits(value, spec):
            return InvalidInput(f"{where}[{i}] is {type(value).__name__} {value!r:.40}; "
                                f"expected {want}", field=spec.name)
    return InvalidInput(f"{where}: expected {want}", field=spec.name)


def _fits(value: Any, spec: TensorSpec) -> bool:
    if value is None:
        return True
    if spec.dtype in _NUMERIC:  # finite, and within float32 (NaN compares False)
        return isinstance(value, int | float) and not isinstance(value, bool) and (
            abs(value) <= FLOAT32_MAX)
    if spec.dtype == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def typed_column(values: Sequence[Any], spec: TensorSpec, where: str) -> np.ndarray:
    """One feature's values as a 1-d array of the schema's type (null allowed: NaN/None)."""
    if spec.dtype in _NUMERIC:
        want = f"a finite number within float32's range ({spec.dtype}) or null"
        try:
            array = np.asarray(values)
        except ValueError:  # ragged nesting
            raise InvalidInput(f"{where}: expected a flat list of numbers",
                               field=spec.name) from None
        if array.ndim != 1:
            raise InvalidInput(f"{where}: expected a flat list of numbers", field=spec.name)
        if array.dtype.kind not in "fiu":  # strings, booleans, nulls or huge ints
            if not all(_fits(v, spec) for v in values):
                raise _bad(values, spec, where, want)
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            return array  # each value checked; NaN here is a null
        array = array.astype(np.float64, copy=False)
        if first_out_of_range(array) is not None:  # NaN/Infinity literals, |x| > float32
            raise _bad(values, spec, where, want)
        return array
    array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise InvalidInput(f"{where}: expected a flat list", field=spec.name)
    kind = pd.api.types.infer_dtype(array, skipna=True)
    wanted = "boolean" if spec.dtype == "bool" else "string"
    if kind not in (wanted, "empty"):
        raise _bad(values, spec, where, "true/false or null" if spec.dtype == "bool"
                   else "a string or null")
    return array


def columns_from_mapping(data: Mapping[str, Any], schema: list[TensorSpec],
                         max_rows: int, where: str = "features") -> Columns:
    """Columns from ``{feature: value}`` (one row) or ``{feature: [values]}`` (many)."""
    columns: Columns = {}
    rows: int | None = None
    for spec in schema:
        if spec.name not in data:
            raise InvalidInput(f"{where} lacks {spec.name!r} ({spec.dtype})", field=spec.name)
        value = data[spec.name]
        values = value if isinstance(value, list) else [value]
        if rows is None:
            rows = len(values)
            if rows > max_rows:
                raise PayloadTooLarge(f"{rows} rows; at most {max_rows} per request",
                                      field=where)
            if rows == 0:
                raise InvalidInput(f"{where}.{spec.name} is empty", field=spec.name)
        elif len(values) != rows:
            raise InvalidInput(f"{where}.{spec.name} has {len(values)} values where "
                               f"others have {rows}", field=spec.name)
        columns[spec.name] = typed_column(values, spec, f"{where}.{spec.name}")
    return columns


def columns_from_rows(rows: Sequence[Mapping[str, Any]], schema: list[TensorSpec],
                      max_rows: int, where: str = "instances") -> Columns:
    """Columns from a list of ``{feature: value}`` rows."""
    if not rows:
        raise InvalidInput(f"{where} is empty", field=where)
    if len(rows) > max_rows:
        raise PayloadTooLarge(f"{len(rows)} rows; at most {max_rows} per request", field=where)
    needed = [spec.name for spec in schema]
    for i, row in enumerate(rows):
        missing = [name for name in needed if name not in row]
        if missing:
            raise InvalidInput(f"{where}[{i}] lacks {missing}", field=missing[0])
    return {spec.name: typed_column([row[spec.name] for row in rows], spec,
                                    f"{where}.{spec.name}") for spec in schema}
