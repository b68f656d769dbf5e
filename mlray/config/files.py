"""Reading a YAML file into a pydantic model, with errors that name the file and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from mlray.errors import ConfigError

__all__ = ["beside", "load_yaml_model", "read_yaml"]

M = TypeVar("M", bound=BaseModel)


def beside(raw: str, base: str | Path) -> str:
    """A local path from a file made absolute against ``base`` (the directory of the file
    that declares it, never the working directory; ``~`` and ``$VARS`` expanded, ``..``
    resolved); a URI (``scheme://...``) comes back unchanged."""
    if "://" in raw:
        return raw
    local = Path(os.path.expandvars(raw)).expanduser()
    if local.is_absolute():
        return str(local)
    return str((Path(base).expanduser().absolute() / local).resolve())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file.

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist", field=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", field=str(path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}", field=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level", field=str(path))
    return data


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Validate a YAML file against ``model``; errors name the file, the key and the reason."""
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {key}: {err['msg']}", field=key) from None
