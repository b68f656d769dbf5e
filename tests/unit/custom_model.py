"""A user model for the ``module:callable`` test: built as ``build(in_features=, task=)``."""

from __future__ import annotations

import torch


class Linear(torch.nn.Module):
    """A logistic/linear model."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


def build(in_features: int, task: str) -> torch.nn.Module:
    """The model the training config names as tests.unit.custom_model:build."""
    return Linear(in_features)


def not_a_module(in_features: int, task: str) -> str:
    """Returns the wrong thing on purpose."""
    return "nope"
