"""Local paths in stage parameters and triggers: ``~`` expanded where a path is used (the
stored definition keeps what was written), and the fingerprint of the data a path names,
for the stage cache key.

A parameter names input data when its key is one of
:data:`~mlray.pipelines.definitions.PATH_PARAMS` (``config``, ``path``, ``data``,
``entity_rows``; a user stage that reads data takes it under one of those names too). Its
fingerprint is the sha256 of a file up to :data:`HASH_LIMIT` bytes, else its size and
modification time; of a directory, the name, size and modification time of every file in
it. Other parameters (a log file a stage appends to, an output directory) never enter the
key, or their own writes would make every run a cache miss.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlray.pipelines.definitions import PATH_PARAMS
from mlray.storage.artifacts import file_sha256

__all__ = ["HASH_LIMIT", "data_fingerprints", "expand_home", "local_path"]

#: Files up to this size are hashed; larger ones are fingerprinted by size and mtime.
HASH_LIMIT = 4 << 20


def local_path(raw: str) -> str:
    """``raw`` with a leading ``~`` expanded (a ``scheme://`` URI comes back unchanged)."""
    if "://" in raw or not raw.startswith("~"):
        return raw
    return os.path.expanduser(raw)


def expand_home(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every string value that starts with ``~`` expanded (a copy)."""
    return {k: local_path(v) if isinstance(v, str) else v for k, v in params.items()}


def _file(path: Path) -> str:
    stat = path.stat()
    if stat.st_size > HASH_LIMIT:
        return f"size:{stat.st_size}:mtime:{stat.st_mtime_ns}"
    return "sha256:" + file_sha256(path)


def _tree(root: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                stat = path.stat()
            except OSError:  # removed while walked
                continue
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0"
                          f"{stat.st_mtime_ns}\n".encode())
    return "tree:" + digest.hexdigest()


def data_fingerprints(params: Mapping[str, Any]) -> dict[str, str]:
    """Param name -> fingerprint of the existing local file or directory it names (only
    the data params, see the module docstring); params naming nothing local are left out."""
    out: dict[str, str] = {}
    for key, value in sorted(params.items()):
        if key not in PATH_PARAMS or not isinstance(value, str) or "://" in value:
            continue
        path = Path(local_path(value))
        try:
            if path.is_file():
                out[key] = _file(path)
            elif path.is_dir():
                out[key] = _tree(path)
        except OSError:  # unreadable: the stage will say so itself
            continue
    return out
