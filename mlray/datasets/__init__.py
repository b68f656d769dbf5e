"""Deterministic generated datasets for demos, tests and benchmarks."""

from mlray.datasets.fraud import (
    FRAUD_CATEGORICAL,
    FRAUD_NUMERIC,
    example_transactions,
    generate_fraud,
    write_fraud,
)

__all__ = ["FRAUD_CATEGORICAL", "FRAUD_NUMERIC", "example_transactions", "generate_fraud",
           "write_fraud"]
