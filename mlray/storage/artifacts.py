"""Content-addressed artifacts on any ``pyarrow.fs`` filesystem.

``put`` hashes a file or directory locally, then copies it to
``<root>/objects/<sha[:2]>/<sha>/<name>``; the same bytes land in the same place. A
directory's sha256 is the hash of its manifest (sorted ``path size sha256`` lines).
Every read verifies the hash first: a mismatch raises :class:`IntegrityError` and
nothing is handed to the caller.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

from mlray._private.safepath import confine, safe_key, safe_name
from mlray.errors import (
    AlreadyExists,
    BackendUnavailable,
    IntegrityError,
    InvalidInput,
    NotFound,
)
from mlray.storage.fsuri import open_uri

__all__ = ["ArtifactRef", "ArtifactStore", "file_sha256"]

_CHUNK = 1 << 20
_REMOTE_BUFFER = 16 << 20


class ArtifactRef(BaseModel):
    """Where an artifact lives and what its bytes hash to."""

    model_config = ConfigDict(frozen=True)

    uri: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, description="Total bytes (all files of a directory).")
    is_dir: bool = False


def file_sha256(path: Path) -> str:
    """The hex sha256 of a local file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(entries: list[tuple[str, int, str]]) -> str:
    lines = "".join(f"{rel}\t{size}\t{sha}\n" for rel, size, sha in sorted(entries))
    return hashlib.sha256(lines.encode()).hexdigest()


def _mismatch(uri: str, actual: str, expected: str) -> IntegrityError:
    return IntegrityError(
        f"artifact {uri} hashes to {actual[:12]}..., expected {expected[:12]}...; refusing to load",
        field="sha256",
    )


def _local_tree(path: Path) -> list[tuple[str, int, str]]:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [(p.relative_to(path).as_posix(), p.stat().st_size, file_sha256(p)) for p in files]


class ArtifactStore:
    """Put and fetch artifacts under one root URI, checking sha256 on every read."""

    def __init__(self, root_uri: str) -> None:
        try:
            self._fs, self._root = open_uri(root_uri)
            self._fs.create_dir(self._root, recursive=True)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise BackendUnavailable(f"cannot open artifact root {root_uri!r}: {exc}") from exc
        self._scheme = "file" if isinstance(self._fs, pafs.LocalFileSystem) else self._fs.type_name
        self.root_uri = self._to_uri(self._root)
        _, has_query, query = root_uri.partition("?")
        #: What another process opens to reach this store: ``root_uri`` with the options
        #: it was opened with (an S3 ``endpoint_override``...); they never name an artifact.
        self.address = (f"{self.root_uri}?{query}" if has_query and self._scheme != "file"
                        else self.root_uri)

    def _to_uri(self, path: str) -> str:
        return f"file://{path}" if self._scheme == "file" else f"{self._scheme}://{path}"

    def _to_path(self, uri: str) -> str:
        scheme, sep, path = uri.partition("://")
        objects = f"{self._root}/objects"
        if not sep or scheme != self._scheme or not path.startswith(f"{objects}/"):
            raise InvalidInput(f"artifact URI {uri!r} is not under {self.root_uri}/objects",
                               field="uri")
        try:
            key = safe_key(path[len(objects) + 1 :], field="uri")
            if self._scheme == "file":  # a symlink inside the store must not lead out of it
                confine(objects, key, field="uri")
        except InvalidInput as exc:
            raise InvalidInput(f"artifact URI {uri!r}: {exc.message}", field="uri") from None
        return f"{objects}/{key}"

    def put(self, local_path: str | Path, name: str | None = None) -> ArtifactRef:
        """Copy a local file or directory into the store and return its reference.

        Raises:
            NotFound: ``local_path`` does not exist.
        """
        src = Path(local_path)
        if not src.exists():
            raise NotFound(f"artifact source {src} does not exist", field="path")
        name = safe_name(name or src.name, field="name")
        if src.is_dir():
            entries = _local_tree(src)
            if not entries:
                raise InvalidInput(f"artifact source {src} is an empty directory", field="path")
            sha, size = _manifest(entries), sum(e[1] for e in entries)
        else:
            sha, size = file_sha256(src), src.stat().st_size
        dest = f"{self._root}/objects/{sha[:2]}/{sha}/{name}"
        try:
            if src.is_dir():
                for rel, _, _ in entries:
                    self._upload(src / rel, f"{dest}/{rel}")
            else:
                self._upload(src, dest)
        except OSError as exc:
            raise BackendUnavailable(f"writing artifact to {self._to_uri(dest)}: {exc}") from exc
        return ArtifactRef(uri=self._to_uri(dest), sha256=sha, size=size, is_dir=src.is_dir())

    def _upload(self, src: Path, dest: str) -> None:
        if self._scheme != "file":
            # An object store shows an object only once its upload completed, whole: no
            # temp name and rename (a server-side copy there), no directories to make.
            with src.open("rb") as f, self._fs.open_output_stream(dest) as out:
                shutil.copyfileobj(f, out, _CHUNK)
            return
        self._fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
        tmp = f"{dest}.tmp-{os.getpid()}"
        with src.open("rb") as f, self._fs.open_output_stream(tmp) as out:
            shutil.copyfileobj(f, out, _CHUNK)
        self._fs.move(tmp, dest)

    def _open(self, path: str) -> pa.NativeFile:
        # On an object store each unbuffered read is a ranged GET: read ahead in large
        # blocks instead.
        return self._fs.open_input_stream(
            path, buffer_size=None if self._scheme == "file" else _REMOTE_BUFFER)

    def _info(self, path: str) -> pafs.FileInfo:
        info = self._fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise NotFound(f"artifact {self._to_uri(path)} does not exist", field="uri")
        return info

    def _remote_sha(self, path: str) -> str:
        digest = hashlib.sha256()
        with self._open(path) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def _remote_tree(self, path: str) -> list[tuple[str, int, str]]:
        selector = pafs.FileSelector(path, recursive=True)
        return [
            (info.path[len(path) :].lstrip("/"), info.size, self._remote_sha(info.path))
            for info in self._fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        ]

    def verify(self, uri: str, sha256: str) -> ArtifactRef:
        """Check that ``uri`` exists and hashes to ``sha256``.

        Raises:
            NotFound: nothing at ``uri``.
            IntegrityError: the bytes hash to something else.
        """
        path = self._to_path(uri)
        info = self._info(path)
        is_dir = info.type == pafs.FileType.Directory
        entries = self._remote_tree(path) if is_dir else None
        if entries is not None:
            actual, size = _manifest(entries), sum(e[1] for e in entries)
        else:
            actual, size = self._remote_sha(path), info.size
        if actual != sha256:
            raise _mismatch(uri, actual, sha256)
        return ArtifactRef(uri=uri, sha256=sha256, size=size or 0, is_dir=is_dir)

    def fetch(self, uri: str, sha256: str, dest_dir: str | Path | None = None) -> Path:
        """Copy the artifact into ``dest_dir`` (default: a new temp dir), verified, and
        return its local path. The copy lands in a scratch folder first and moves into
        place only once its hash matches, so nothing unverified is left behind.

        Raises:
            NotFound: nothing at ``uri``.
            AlreadyExists: ``dest_dir`` already holds a file or folder of that name.
            IntegrityError: the copied bytes do not hash to ``sha256``.
        """
        path = self._to_path(uri)
        info = self._info(path)
        target_dir = Path(dest_dir) if dest_dir else Path(tempfile.mkdtemp(prefix="mlray-art-"))
        target = target_dir / path.rsplit("/", 1)[-1]
        if target.exists():
            raise AlreadyExists(f"{target} exists; fetch into another directory",
                                field="dest_dir")
        target_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".mlray-fetch-", dir=target_dir))
        staged = scratch / target.name
        try:
            if info.type == pafs.FileType.Directory:
                staged.mkdir()
                selector = pafs.FileSelector(path, recursive=True)
                for item in self._fs.get_file_info(selector):
                    if item.type == pafs.FileType.File:
                        self._download(item.path, staged / item.path[len(path) :].lstrip("/"))
                actual = _manifest(_local_tree(staged))
            else:
                self._download(path, staged)
                actual = file_sha256(staged)
            if actual != sha256:
                raise _mismatch(uri, actual, sha256)
            staged.rename(target)
        except OSError as exc:
            raise BackendUnavailable(f"reading artifact {uri}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target

    def read_bytes(self, uri: str, sha256: str) -> bytes:
        """The bytes of a file artifact, verified against ``sha256``."""
        path = self._to_path(uri)
        self._info(path)
        with self._open(path) as f:
            data = f.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise _mismatch(uri, actual, sha256)
        return data

    def read_member(self, uri: str, member: str, max_bytes: int = 1 << 20) -> bytes | None:
        """The bytes of ``member`` (a relative path) inside a directory artifact, or None when
        it has none. Not hash-checked on its own: for inspecting an artifact that
        :meth:`verify` accepted (a loader checks the whole again)."""
        path = f"{self._to_path(uri)}/{safe_key(member, field='member')}"
        info = self._fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            return None
        if (info.size or 0) > max_bytes:
            raise InvalidInput(f"artifact {uri}: {member} is over {max_bytes} bytes",
                               field="member")
        with self._open(path) as f:
            return f.read()

    def _download(self, path: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._open(path) as f, target.open("wb") as out:
            shutil.copyfileobj(f, out, _CHUNK)
