"""Request and response bodies of the ingress's JSON endpoints (``/v1/...``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BatchPredictRequest", "ErrorBody", "PredictRequest", "PredictResponse"]

_ID = Field(None, max_length=256, description="Echoed back; generated when absent.")
Scalar = float | int | str | bool | None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requestId: str | None = _ID
    modelName: str = Field(min_length=1, max_length=128)
    modelVersion: int | None = Field(None, ge=1, description="Pin a version (else the policy).")
    routingKey: str | None = Field(None, max_length=512,
                                   description="Sticky routing key (or x-mlray-routing-key).")
    metadata: dict[str, Any] = Field(default_factory=dict)


class PredictRequest(_Envelope):
    """``POST /v1/predict``: one row as ``features``, or rows as ``instances``."""

    features: dict[str, Scalar] | None = Field(None, description="One row: feature → value.")
    instances: list[dict[str, Scalar]] | None = Field(None, description="Rows.")

    @model_validator(mode="after")
    def _one_form(self) -> PredictRequest:
        if (self.features is None) == (self.instances is None):
            raise ValueError("give exactly one of features or instances")
        return self


class BatchPredictRequest(_Envelope):
    """``POST /v1/predict/batch``: columns (feature → values) or rows."""

    columns: dict[str, list[Scalar]] | None = Field(None, description="Feature → values.")
    instances: list[dict[str, Scalar]] | None = Field(None, description="Rows.")

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


class ErrorBody(BaseModel):
    """Every error: a message, a stable code, and the field at fault when known."""

    error: str
    code: str
    field: str | None = None
