"""Request and response bodies of the ingress's JSON endpoints (``/v1/...``).

Request bodies are strict: a field typed as a number, integer or boolean takes only that
JSON type (``"row": false`` or ``"modelVersion": "2"`` is a 400 naming the field).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

__all__ = ["BatchPredictRequest", "ErrorBody", "FeaturesRequest", "Feedback",
           "FeedbackRequest", "PredictRequest",
           "PredictResponse", "PushRequest"]

def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8 text (lone surrogate)") from None
    return text


#: Text that is echoed back or written to logs: valid UTF-8 only.
Text = Annotated[str, AfterValidator(_utf8)]
_ID = Field(None, max_length=256, description="Echoed back; generated when absent.")
_SCALAR = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"},
                     {"type": "null"}]}
# Values are checked against the model's schema per column (mlray.serving.inputs), so
# parsing leaves them as they came (no per-value union validation on the hot path).
Row = Annotated[dict[str, Any], WithJsonSchema({"type": "object",
                                                "additionalProperties": _SCALAR})]
Columns = Annotated[dict[str, list[Any]], WithJsonSchema(
    {"type": "object", "additionalProperties": {"type": "array", "items": _SCALAR}})]


#: Request bodies: no unknown fields, no type coercion (``false`` is not ``0``).
_STRICT = ConfigDict(extra="forbid", strict=True)


class _Envelope(BaseModel):
    model_config = _STRICT

    requestId: Text | None = _ID
    modelName: Text = Field(min_length=1, max_length=128)
    modelVersion: int | None = Field(None, ge=1, description="Pin a version (else the policy).")
    routingKey: Text | None = Field(None, max_length=512,
                                   description="Sticky routing key (or x-mlray-routing-key).")
    metadata: dict[str, Any] = Field(default_factory=dict)


class PredictRequest(_Envelope):
    """``POST /v1/predict``: one row as ``features``, rows as ``instances``, or an entity's
    join keys as ``entityKey`` (with request-time values in ``features``) for a model that
    reads a feature service."""

    features: Row | None = Field(None, description="One row: feature → value.")
    instances: list[Row] | None = Field(None, description="Rows.")
    entityKey: Row | None = Field(None, description="Join keys of one entity.")

    @model_validator(mode="after")
    def _one_form(self) -> PredictRequest:
        if self.instances is not None and (self.features is not None or self.entityKey):
            raise ValueError("give instances, or features and/or entityKey, not both")
        if self.instances is None and self.features is None and self.entityKey is None:
            raise ValueError("give features, instances or entityKey")
        return self

    def row(self) -> dict[str, Any]:
        """The single row: entity keys and request values together."""
        return {**(self.entityKey or {}), **(self.features or {})}


class BatchPredictRequest(_Envelope):
    """``POST /v1/predict/batch``: columns (feature → values) or rows."""

    columns: Columns | None = Field(None, description="Feature → values.")
    instances: list[Row] | None = Field(None, description="Rows.")

    @model_validator(mode="after")
    def _one_form(self) -> BatchPredictRequest:
        if (self.columns is None) == (self.instances is None):
            raise ValueError("give exactly one of columns or instances")
        return self


class PredictResponse(BaseModel):
    """The answer: which version answered, predictions (and probabilities)."""

    requestId: str
    modelName: str
    modelVersion: int
    predictions: list[float | int]
    probabilities: list[float] | None = None
    processingTimeMs: float


class FeaturesRequest(BaseModel):
    """``POST /v1/features``: online features of some entities."""

    model_config = _STRICT

    entities: Columns = Field(description="Join keys (and request values): name → values.")
    features: list[str] | None = Field(None, description='References like "view:feature".')
    featureService: str | None = Field(None, max_length=128)
    fullFeatureNames: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> FeaturesRequest:
        if (self.features is None) == (self.featureService is None):
            raise ValueError("give exactly one of features or featureService")
        return self


class PushRequest(BaseModel):
    """``POST /v1/features/push``: rows of one view into the online and/or offline store."""

    model_config = _STRICT

    view: str = Field(min_length=1, max_length=128)
    rows: list[Row] = Field(min_length=1, max_length=100_000)
    to: Literal["online", "offline", "both"] = "online"


class Feedback(BaseModel):
    """The true outcome of one predicted row."""

    model_config = _STRICT

    requestId: Text = Field(min_length=1, max_length=256)
    label: float = Field(allow_inf_nan=False)
    row: int = Field(0, ge=0, le=10_000_000, description="Row of a multi-row request.")


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: labels for earlier predictions, by request id."""

    model_config = _STRICT

    feedback: list[Feedback] = Field(min_length=1, max_length=100_000)


class ErrorBody(BaseModel):
    """Every error: a message, a stable code, and the field at fault when known."""

    error: str
    code: str
    field: str | None = None
