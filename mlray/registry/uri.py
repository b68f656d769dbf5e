"""``models:/`` URIs: ``models:/name/3``, ``models:/name@alias``, ``models:/name/Production``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlray.errors import InvalidInput
from mlray.registry.types import Stage

__all__ = ["ModelRef", "parse_model_uri"]

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<ref>[^/@]+)|@(?P<alias>[^/@]+))$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI: exactly one of version, alias or stage is set."""

    name: str
    version: int | None = None
    alias: str | None = None
    stage: Stage | None = None


def parse_model_uri(uri: str) -> ModelRef:
    """Parse a ``models:/`` URI; raise :class:`InvalidInput` with the accepted forms."""
    match = _URI.match(uri)
    if not match:
        raise InvalidInput(
            f"cannot parse model URI {uri!r}; use models:/<name>/<version>, "
            "models:/<name>@<alias> or models:/<name>/<stage>",
            field="uri",
        )
    name, ref, alias = match["name"], match["ref"], match["alias"]
    if alias is not None:
        return ModelRef(name=name, alias=alias)
    assert ref is not None
    if ref.isdigit():
        return ModelRef(name=name, version=int(ref))
    for stage in Stage:
        if ref.lower() == stage.value.lower():
            return ModelRef(name=name, stage=stage)
    raise InvalidInput(
        f"{uri!r}: {ref!r} is neither a version number nor a stage "
        f"({', '.join(s.value for s in Stage)})",
        field="uri",
    )
