"""Type aliases shared across the domain modules."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import AfterValidator, Field

from mlray._private.validation import check_name
from mlray.identity import check_project_name

__all__ = ["FiniteFloat", "Name", "ParamValue", "Project", "Tags", "now"]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
ParamValue = str | int | FiniteFloat | bool
Name = Annotated[str, AfterValidator(check_name)]
Project = Annotated[str, AfterValidator(check_project_name)]
TagKey = Annotated[str, Field(min_length=1, max_length=256)]
Tags = dict[TagKey, Annotated[str, Field(max_length=5000)]]


def now() -> float:
    """Wall-clock seconds since the epoch (one place to read the clock)."""
    return time.time()
