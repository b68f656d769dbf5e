"""The JSON endpoints' input rules (issue 11): one rule for NaN and huge numbers on /v1
and V2, and strict request fields."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mlray.errors import InvalidInput
from mlray.registry.types import TensorSpec
from mlray.serving.api_models import BatchPredictRequest, FeedbackRequest, PredictRequest
from mlray.serving.inputs import FLOAT32_MAX, columns_from_mapping, columns_from_rows

SCHEMA = [TensorSpec(name="amount", dtype="float64"), TensorSpec(name="country",
                                                                  dtype="string")]


@pytest.mark.parametrize("value", [1.7e308, 1e39, -1e39, float("nan"), float("inf"),
                                   10**400, -(10**39)])
def test_numbers_outside_float32_or_not_finite_are_refused(value: Any) -> None:
    for values in ([value], [1.0, value], [None, value]):  # fast path and per-value path
        with pytest.raises(InvalidInput, match="finite number within float32") as err:
            columns_from_mapping({"amount": values, "country": ["DE"] * len(values)},
                                 SCHEMA, max_rows=10)
        assert err.value.field == "amount"
        rows = [{"amount": v, "country": "DE"} for v in values]
        with pytest.raises(InvalidInput) as err:
            columns_from_rows(rows, SCHEMA, 10)
        assert err.value.field == "amount"


def test_the_float32_edge_and_nulls_pass() -> None:
    cols = columns_from_mapping({"amount": [FLOAT32_MAX, -FLOAT32_MAX, None, 3],
                                 "country": ["DE", None, "FR", "US"]}, SCHEMA, 10)
    assert cols["amount"][0] == FLOAT32_MAX and np.isnan(cols["amount"][2])


def test_a_nan_literal_in_a_v1_body_is_refused_not_taken_as_null() -> None:
    body = b'{"modelName": "m", "features": {"amount": NaN, "country": "DE"}}'
    request = PredictRequest.model_validate_json(body)  # JSON parses; the column check refuses
    with pytest.raises(InvalidInput, match="float nan") as err:
        columns_from_mapping(request.row(), SCHEMA, 10)
    assert err.value.field == "amount"
    batch = BatchPredictRequest.model_validate_json(
        b'{"modelName": "m", "columns": {"amount": [1, Infinity], "country": ["a", "b"]}}')
    with pytest.raises(InvalidInput) as err:
        columns_from_mapping(batch.columns or {}, SCHEMA, 10, where="columns")
    assert err.value.field == "amount"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"feedback": [{"requestId": "r", "label": 1, "row": false}]}', "feedback.0.row"),
        (b'{"feedback": [{"requestId": "r", "label": 1, "row": 1.0}]}', "feedback.0.row"),
        (b'{"feedback": [{"requestId": "r", "label": 1, "row": "2"}]}', "feedback.0.row"),
        (b'{"feedback": [{"requestId": "r", "label": true}]}', "feedback.0.label"),
        (b'{"feedback": [{"requestId": "r", "label": "1"}]}', "feedback.0.label"),
        (b'{"feedback": [{"requestId": "r", "label": NaN}]}', "feedback.0.label"),
    ],
)
def test_feedback_fields_are_strict(body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        FeedbackRequest.model_validate_json(body)
    assert ".".join(str(p) for p in err.value.errors()[0]["loc"]) == field
    ok = FeedbackRequest.model_validate_json(
        b'{"feedback": [{"requestId": "r", "label": 1, "row": 2}]}')
    assert ok.feedback[0].row == 2 and ok.feedback[0].label == 1.0


def test_envelope_fields_are_strict() -> None:
    for body in (b'{"modelName": "m", "modelVersion": "2", "features": {}}',
                 b'{"modelName": "m", "modelVersion": true, "features": {}}',
                 b'{"modelName": "m", "modelVersion": 2.0, "features": {}}'):
        with pytest.raises(ValidationError, match="modelVersion"):
            PredictRequest.model_validate_json(body)
    assert PredictRequest.model_validate_json(
        b'{"modelName": "m", "modelVersion": 2, "features": {"a": 1}}').modelVersion == 2
