"""Stages of bench/pipelines.py (importable by the pipelines actor and its tasks, which
get the bench's ``sys.path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def noop(ctx: Any) -> None:
    """Nothing: what a stage costs on its own."""
    return None


def make_data(ctx: Any) -> Path:
    """``params.rows`` rows of a noisy linear target, as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(int(ctx.params.get("seed", 0)))
    rows, width = int(ctx.params["rows"]), 16
    x = rng.normal(size=(rows, width))
    y = x @ np.arange(1, width + 1) + rng.normal(scale=0.1, size=rows)
    out = ctx.workdir / "data.parquet"
    pq.write_table(pa.table({**{f"x{i}": x[:, i] for i in range(width)}, "y": y}), out)
    return out


def _xy(path: Path) -> tuple[Any, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    x = np.column_stack([table[c].to_numpy() for c in table.column_names if c != "y"])
    return x, table["y"].to_numpy()


def fit(ctx: Any) -> list[float]:
    """Least squares with ``params.rounds`` rounds of bootstrap (the work of a small fit)."""
    import numpy as np

    x, y = _xy(ctx.input_path("data"))
    rng = np.random.default_rng(0)
    coefs = []
    for _ in range(int(ctx.params.get("rounds", 20))):
        pick = rng.integers(0, len(y), len(y))
        coefs.append(np.linalg.lstsq(x[pick], y[pick], rcond=None)[0])
    return [float(c) for c in np.mean(coefs, axis=0)]


def evaluate(ctx: Any) -> dict[str, float]:
    """Mean squared error of the fit on the data."""
    import numpy as np

    x, y = _xy(ctx.input_path("data"))
    coef = np.asarray(ctx.input("fit"))
    return {"mse": float(np.mean((x @ coef - y) ** 2)), "rows": float(len(y))}
