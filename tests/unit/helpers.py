"""Small builders shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

from mlray.registry.types import VersionSpec
from mlray.storage import ArtifactStore


def artifact_spec(artifacts: ArtifactStore, tmp_path: Path, content: bytes = b"weights",
                  **fields: object) -> VersionSpec:
    """A VersionSpec over a real artifact holding ``content``."""
    src = tmp_path / f"art-{abs(hash(content))}.bin"
    src.write_bytes(content)
    ref = artifacts.put(src)
    return VersionSpec(artifact_uri=ref.uri, artifact_sha256=ref.sha256, **fields)  # type: ignore[arg-type]
