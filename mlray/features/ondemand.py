"""Running an on-demand feature view's function over request data and other features.

The same call serves offline retrieval (a whole training set at once) and online
reads (the request's rows), so a model sees identical values in both.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping

import pandas as pd
import pyarrow as pa

from mlray.errors import ConfigError, InvalidInput
from mlray.features.definitions import OnDemandFeatureView, arrow_type, parse_ref
from mlray.features.validate import cast_column

__all__ = ["input_columns", "load_function", "run_on_demand"]


@functools.cache
def load_function(spec: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Import ``"package.module:name"``; raises :class:`ConfigError` if it is not callable."""
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"on-demand function {spec!r} cannot be imported: {exc}",
                          field="function") from None
    if not callable(fn):
        raise ConfigError(f"on-demand function {spec!r} is not callable", field="function")
    return fn  # type: ignore[no-any-return]


def input_columns(odfv: OnDemandFeatureView) -> list[str]:
    """The DataFrame columns the function receives: request fields, then ``view__feature``."""
    names = [r.name for r in odfv.request]
    for ref in odfv.sources:
        view, feature = parse_ref(ref)
        names.append(f"{view}__{feature}")
    return names


def run_on_demand(odfv: OnDemandFeatureView, inputs: Mapping[str, pa.ChunkedArray | pa.Array],
                  ) -> dict[str, pa.ChunkedArray]:
    """Call ``odfv``'s function and return its output columns cast to their declared types.

    Args:
        odfv: the on-demand view.
        inputs: the request columns by name and the source features as ``view__feature``.

    Raises:
        InvalidInput: a request column is missing, or the function returns the wrong rows.
        ConfigError: the function cannot be imported.
    """
    frame: dict[str, pa.ChunkedArray | pa.Array] = {}
    for req in odfv.request:
        if req.name not in inputs:
            raise InvalidInput(f"on-demand view {odfv.name!r} needs request column "
                               f"{req.name!r}", field=req.name)
        frame[req.name] = cast_column(inputs[req.name], arrow_type(req.dtype, req.items),
                                      req.name)
    for name in input_columns(odfv)[len(odfv.request):]:
        frame[name] = inputs[name]
    n = len(next(iter(inputs.values()))) if inputs else 0
    table = pa.table(frame) if frame else pa.table({"_": pa.nulls(n)})
    result = load_function(odfv.function)(table.to_pandas())
    if not isinstance(result, pd.DataFrame) or len(result) != n:
        raise InvalidInput(f"on-demand view {odfv.name!r}: {odfv.function} must return a "
                           f"DataFrame of {n} rows", field=odfv.name)
    out: dict[str, pa.ChunkedArray] = {}
    for f in odfv.fields:
        if f.name not in result.columns:
            raise InvalidInput(f"on-demand view {odfv.name!r}: {odfv.function} returned no "
                               f"column {f.name!r}", field=f.name)
        column = pa.array(result[f.name].reset_index(drop=True), from_pandas=True)
        out[f.name] = cast_column(column, f.arrow_type, f"{odfv.name}:{f.name}")
    return out
