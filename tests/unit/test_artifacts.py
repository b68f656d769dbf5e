from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlray.errors import IntegrityError, InvalidInput, NotFound
from mlray.storage import ArtifactStore


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.pt").write_bytes(b"\x00\x01" * 1000)
    (root / "sub" / "spec.json").write_text('{"layers": [4, 2]}')
    return root


def test_file_round_trip_with_sha256(artifacts: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"weights" * 100)
    ref = artifacts.put(src)
    assert ref.sha256 == hashlib.sha256(b"weights" * 100).hexdigest()
    assert ref.size == 700 and not ref.is_dir
    assert ref.uri.startswith("file://") and ref.sha256 in ref.uri
    assert artifacts.read_bytes(ref.uri, ref.sha256) == b"weights" * 100
    fetched = artifacts.fetch(ref.uri, ref.sha256, tmp_path / "out")
    assert fetched.read_bytes() == b"weights" * 100
    assert artifacts.verify(ref.uri, ref.sha256).size == 700


def test_directory_round_trip(artifacts: ArtifactStore, tmp_path: Path) -> None:
    ref = artifacts.put(_tree(tmp_path / "model"))
    assert ref.is_dir and ref.size == 2000 + len('{"layers": [4, 2]}')
    out = artifacts.fetch(ref.uri, ref.sha256, tmp_path / "out")
    assert (out / "sub" / "spec.json").read_text() == '{"layers": [4, 2]}'
    assert artifacts.verify(ref.uri, ref.sha256).is_dir


def test_same_bytes_same_place(artifacts: ArtifactStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b"
    a.write_bytes(b"same")
    b.mkdir()
    (b / "a.bin").write_bytes(b"same")
    assert artifacts.put(a) == artifacts.put(a)
    assert artifacts.put(a).sha256 != artifacts.put(b).sha256


def test_tampered_file_is_refused(artifacts: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"good")
    ref = artifacts.put(src)
    Path(ref.uri.removeprefix("file://")).write_bytes(b"evil")
    with pytest.raises(IntegrityError, match="refusing to load"):
        artifacts.read_bytes(ref.uri, ref.sha256)
    with pytest.raises(IntegrityError):
        artifacts.verify(ref.uri, ref.sha256)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError):
        artifacts.fetch(ref.uri, ref.sha256, out)
    assert not (out / "model.bin").exists()


def test_tampered_directory_is_refused(artifacts: ArtifactStore, tmp_path: Path) -> None:
    ref = artifacts.put(_tree(tmp_path / "model"))
    (Path(ref.uri.removeprefix("file://")) / "extra.txt").write_text("sneaky")
    with pytest.raises(IntegrityError):
        artifacts.verify(ref.uri, ref.sha256)
    with pytest.raises(IntegrityError):
        artifacts.fetch(ref.uri, ref.sha256, tmp_path / "out")
    assert not (tmp_path / "out" / "model").exists()


def test_missing_things_are_not_found(artifacts: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        artifacts.put(tmp_path / "nope")
    uri = f"{artifacts.root_uri}/objects/00/none/x.bin"
    with pytest.raises(NotFound):
        artifacts.verify(uri, "0" * 64)
    with pytest.raises(InvalidInput, match="not under"):
        artifacts.verify("s3://bucket/x", "0" * 64)


def test_file_uri_root(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}/arts")
    src = tmp_path / "x.bin"
    src.write_bytes(b"x")
    ref = store.put(src)
    assert store.read_bytes(ref.uri, ref.sha256) == b"x"


def test_fetch_never_touches_an_existing_target(artifacts: ArtifactStore,
                                                tmp_path: Path) -> None:
    from mlray.errors import AlreadyExists

    src = _tree(tmp_path / "model")
    ref = artifacts.put(src)
    with pytest.raises(AlreadyExists, match="exists"):
        artifacts.fetch(ref.uri, ref.sha256, tmp_path)
    assert (src / "weights.pt").exists(), "the user's folder is intact"
    out = artifacts.fetch(ref.uri, ref.sha256, tmp_path / "elsewhere")
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["model"]
    assert (out / "sub" / "spec.json").exists()


def test_empty_directories_and_foreign_paths_are_refused(artifacts: ArtifactStore,
                                                         tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="empty directory"):
        artifacts.put(tmp_path / "empty")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    with pytest.raises(InvalidInput, match="not under"):
        artifacts.verify(f"file://{outside}", hashlib.sha256(b"x").hexdigest())


@pytest.mark.parametrize("tail", ["../../x.bin", "aa/../../../x.bin", "aa/b\\..\\x", "aa/x\x00y",
                                  "aa//../../x.bin"])
def test_keys_that_leave_the_store_are_refused(artifacts: ArtifactStore, tmp_path: Path,
                                               tail: str) -> None:
    """A URI that starts under objects/ but steps out of it never reaches the filesystem."""
    secret = tmp_path / "x.bin"
    secret.write_bytes(b"x")
    with pytest.raises(InvalidInput, match="uri"):
        artifacts.read_bytes(f"{artifacts.root_uri}/objects/{tail}",
                             hashlib.sha256(b"x").hexdigest())


def test_put_refuses_a_name_with_a_path(artifacts: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"m")
    with pytest.raises(InvalidInput, match="name"):
        artifacts.put(src, name="../../escape.bin")


def test_a_symlink_out_of_the_store_is_refused(artifacts: ArtifactStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"s")
    link = tmp_path / "artifacts" / "objects" / "ab"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(tmp_path)
    with pytest.raises(InvalidInput, match="outside"):
        artifacts.read_bytes(f"{artifacts.root_uri}/objects/ab/secret.bin",
                             hashlib.sha256(b"s").hexdigest())
