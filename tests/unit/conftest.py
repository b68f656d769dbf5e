"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlray.storage import ArtifactStore


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    """A local artifact store under the test's own directory."""
    return ArtifactStore(str(tmp_path / "artifacts"))
