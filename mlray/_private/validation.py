"""Validation at the boundaries: pydantic errors become :class:`InvalidInput` naming the field."""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, validate_call

from mlray._private.denials import record_denial
from mlray.errors import InvalidInput, PermissionDenied

__all__ = ["NAME_PATTERN", "boundary", "build", "check_name", "invalid_input"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)

#: Names of models, experiments and aliases: no '--' (it separates model and version in app names).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]|-(?!-)){0,127}$")


def invalid_input(
    exc: ValidationError, prefix: str = "", positional: list[str] | None = None
) -> InvalidInput:
    """The first pydantic error as an :class:`InvalidInput` with a dotted field path.

    ``positional`` names the parameters, so a positional argument's index becomes its name.
    """
    err = exc.errors()[0]
    loc = list(err["loc"])
    if positional and loc and isinstance(loc[0], int) and loc[0] < len(positional):
        loc[0] = positional[loc[0]]
    loc = [str(p) for p in loc if not str(p).startswith("function-")]
    field = ".".join(([prefix] if prefix else []) + loc) or prefix or "input"
    got = err.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    return InvalidInput(f"{field}: {err['msg']}{shown}", field=field)


def boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """Validate a public method's arguments against its type hints (coercing where safe)."""
    checked = validate_call(config=ConfigDict(arbitrary_types_allowed=True))(fn)
    names = list(inspect.signature(fn).parameters)

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return checked(*args, **kwargs)
        except PermissionDenied as exc:
            if args and names and names[0] == "self":
                with contextlib.suppress(TypeError):
                    bound = signature.bind_partial(*args, **kwargs).arguments
                    record_denial(args[0], fn.__name__, bound, exc)
            raise
        except ValidationError as exc:
            if exc.title in (getattr(fn, "__name__", None), getattr(fn, "__qualname__", None)):
                raise invalid_input(exc, positional=names) from None
            raise  # raised inside the body, not by argument checking

    return wrapper


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a valid object name, else raise ``ValueError``.

    (A validator: pydantic turns the ValueError into an error at the field's location.)
    """
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ValueError(
            f"invalid {what} {value!r}: 1-128 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, no '--')")
    return value




def build(model: type[M], prefix: str = "", /, **fields: Any) -> M:
    """Construct ``model`` from ``fields``, raising :class:`InvalidInput` instead of pydantic's."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_input(exc, prefix) from None
