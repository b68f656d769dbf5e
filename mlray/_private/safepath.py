"""Checking user-supplied path pieces before they reach any filesystem call.

A *key* is a relative posix path below some root (``ab/abcd.../model``); a *name* is one
segment of it. Both are refused when they could step outside the root: ``..``, an absolute
path, a drive letter, a backslash, a NUL or another control character. :func:`confine` is the
last check for a joined local path: it must still lie under its root once resolved.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from mlray.errors import InvalidInput

__all__ = ["confine", "safe_key", "safe_name"]


def _refuse(value: str, why: str, field: str) -> InvalidInput:
    return InvalidInput(f"{field} {value!r} {why}", field=field)


def safe_key(value: str, *, field: str) -> str:
    """``value`` normalised (posix ``normpath``) if it is a relative path that stays below
    its root, else :class:`InvalidInput` naming ``field``."""
    if not isinstance(value, str) or not value:
        raise _refuse(str(value), "is empty", field)
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise _refuse(value, "holds a NUL or control character", field)
    if "\\" in value:
        raise _refuse(value, "holds a backslash; use '/'", field)
    if value.startswith("/") or (len(value) > 1 and value[1] == ":"):
        raise _refuse(value, "is an absolute path; give one relative to its root", field)
    if ".." in value.split("/"):
        raise _refuse(value, "holds a '..' segment", field)
    key = posixpath.normpath(value)  # no '..' is left to climb with, only '.' and '//'
    if key == ".":
        raise _refuse(value, "does not name anything below its root", field)
    return key


def safe_name(value: str, *, field: str) -> str:
    """``value`` if it is one safe path segment (no ``/``, not ``.`` or ``..``)."""
    key = safe_key(value, field=field)
    if "/" in key or key != value:
        raise _refuse(value, "must be a single name without '/'", field)
    return key


def confine(root: str | Path, *parts: str, field: str) -> Path:
    """``root`` joined with ``parts`` (each checked by :func:`safe_key`), refused unless the
    resolved result (symlinks followed) still lies under the resolved ``root``."""
    base = Path(root).resolve()
    target = base.joinpath(*(safe_key(p, field=field) for p in parts)).resolve()
    if target != base and base not in target.parents:
        raise _refuse("/".join(parts), f"leads outside {base}", field)
    return target
