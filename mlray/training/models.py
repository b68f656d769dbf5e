"""Built-in tabular models and the spec that rebuilds any model from its artifact."""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import Literal

import torch
from pydantic import BaseModel, Field

from mlray.errors import ConfigError

__all__ = ["MLP", "ModelArchitecture", "build_model"]


class ModelArchitecture(BaseModel):
    """Everything needed to rebuild the network before loading its ``state_dict``."""

    type: str = Field(description="mlp, or module:callable")
    task: Literal["classification", "regression"]
    in_features: int = Field(ge=1)
    hidden: list[int] = Field(default_factory=list)
    dropout: float = 0.0


class MLP(torch.nn.Module):
    """Linear → ReLU (→ Dropout) per hidden layer, then one output (a logit or a value)."""

    def __init__(self, in_features: int, hidden: list[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
            if dropout:
                layers.append(torch.nn.Dropout(dropout))
            width = size
        layers.append(torch.nn.Linear(width, 1))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build_model(arch: ModelArchitecture,
                allowed: Collection[str] | None = None) -> torch.nn.Module:
    """Instantiate the network ``arch`` describes (weights uninitialized-by-training).

    A ``module:callable`` is called as ``callable(in_features=..., task=...)`` and must
    return an ``nn.Module`` mapping ``(batch, in_features)`` to ``(batch,)``.

    With ``allowed`` (a loaded artifact), ``arch.type`` must be built in or listed there.

    Raises:
        PermissionDenied: ``arch.type`` is not built in nor in ``allowed``.
        ConfigError: the callable cannot be imported or does not return a module.
    """
    if allowed is not None:  # loading someone's artifact, not running one's own job
        from mlray.registry.architectures import check_architecture

        check_architecture(arch.type, allowed)
    if arch.type == "mlp":
        return MLP(arch.in_features, arch.hidden, arch.dropout)
    module_name, _, attr = arch.type.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model.type {arch.type!r}: cannot import: {exc}",
                          field="model.type") from None
    model = factory(in_features=arch.in_features, task=arch.task)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model.type {arch.type!r} returned {type(model).__name__}, "
                          "not a torch.nn.Module", field="model.type")
    return model
