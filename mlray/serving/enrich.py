"""Requests by entity key: fill a model's inputs from its feature service (online store).

A model that declares a feature service can be called with join keys (``entityKey``, or
key columns among its inputs) plus request-time values; the features the request does
not carry are read from the online store for those entities (on-demand features run over
the request values) and merged in. Values sent in the request win over stored ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlray.errors import InvalidInput
from mlray.features.serving import FeatureReader
from mlray.registry.types import TensorSpec

__all__ = ["fill_from_features"]


def fill_from_features(request: Mapping[str, Any], schema: list[TensorSpec], service: str,
                       reader: FeatureReader) -> dict[str, Any]:
    """``request`` (feature → value or values) completed with the service's features.

    Raises:
        InvalidInput: the request lacks a join key the service needs.
        NotFound: the service (or a view in it) is not defined.
        BackendUnavailable: the online store cannot be reached.
    """
    missing = [s.name for s in schema if s.name not in request]
    if not missing:
        return dict(request)
    many = any(isinstance(v, list) for v in request.values())
    rows = {k: (v if isinstance(v, list) else [v]) for k, v in request.items()}
    lengths = {len(v) for v in rows.values()}
    if len(lengths) > 1:
        raise InvalidInput(f"request columns have different lengths {sorted(lengths)}",
                           field="features")
    try:
        fetched = reader.get_online_features(rows, service)
    except InvalidInput as exc:
        raise InvalidInput(f"feature service {service!r}: {exc.message}",
                           field=exc.field) from None
    merged = dict(request)
    for name in missing:
        if name in fetched.names:
            values = fetched.column(name).to_pylist()
            merged[name] = values if many else values[0]
    return merged
