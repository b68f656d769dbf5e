"""The model registry: plain rules over a state store (the actor is a shell around it)."""

from mlray.registry.service import ModelRegistry
from mlray.registry.types import ModelSpec, ModelVersion, RegisteredModel, Stage, VersionSpec
from mlray.registry.uri import ModelRef, parse_model_uri

__all__ = [
    "ModelRef",
    "ModelRegistry",
    "ModelSpec",
    "ModelVersion",
    "RegisteredModel",
    "Stage",
    "VersionSpec",
    "parse_model_uri",
]
