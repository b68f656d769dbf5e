"""Storage locations as ``pyarrow.fs`` filesystems: a local path or a URI such as
``s3://bucket/prefix?endpoint_override=host:port&scheme=http``.

A URI's query string configures the filesystem, not the path, so joining a child name
onto a root URI must go before the ``?``: :func:`join_uri` does that.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

__all__ = ["is_uri", "join_uri", "open_uri", "project_uri", "run_storage"]


def is_uri(location: str) -> bool:
    """True for ``scheme://...`` (a remote or explicit filesystem), False for a plain path."""
    return "://" in location


def join_uri(root: str, *parts: str) -> str:
    """``root`` with ``parts`` appended to its path, its query string (if any) kept last."""
    base, sep, query = root.partition("?")
    joined = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return f"{joined}{sep}{query}"


def project_uri(root: str, project: str, *parts: str) -> str:
    """Where ``project``'s data of one kind lives under a shared root:
    ``<root>/<project>/<parts...>`` (feature rows, prediction logs, feedback).

    Every reader and writer of project data goes through here, so no two projects share a
    directory. Raises ``ValueError`` for an invalid project name (it must not climb out).
    """
    from mlray.identity import check_project_name

    return join_uri(root, check_project_name(project), *parts)


def open_uri(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path or a ``pyarrow.fs`` URI.

    Raises:
        ValueError: the URI names no filesystem pyarrow can open (the message says why).
    """
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).expanduser().absolute())
    try:
        fs, path = pafs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"{location!r}: {exc}") from None
    return fs, path.rstrip("/")


def run_storage(location: str) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for a Ray Train / Tune ``RunConfig``: a local
    path as is (no filesystem), a URI as its path plus the filesystem its query configures
    (Ray would drop ``endpoint_override`` and the like if handed the URI)."""
    fs, path = open_uri(location)
    return path, fs if is_uri(location) else None
