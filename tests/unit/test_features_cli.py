"""The feature store as a user meets it: the README's example as written, and
``mlray features list|show`` in words rather than Python dicts."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import mlray
from mlray.cli.main import main
from mlray.datasets import write_fraud
from mlray.features.describe import ttl_text
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the checkout's feature definitions with example data beside them, as the
    working directory, on an embedded platform of its own."""
    shutil.copytree(ROOT / "configs" / "features", tmp_path / "configs" / "features")
    write_fraud(tmp_path / "data" / "fraud.parquet", 400, seed=3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLRAY_CONFIG", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))  # no cluster: embedded
    mlray.connect(local=True).features.allow_sources([str(tmp_path / "data")])
    return tmp_path


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Feature store"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's feature store section has no python example"
    return blocks[0]


def test_readme_feature_example_runs_as_written(checkout: Path) -> None:
    """It once asked a service with an on-demand view without the request values."""
    scope: dict[str, object] = {}
    exec(compile(_readme_example(), "README.md", "exec"), scope)
    online = scope["online"].to_dict()  # type: ignore[attr-defined]
    statuses = dict(zip(online["features"], online["statuses"], strict=True))
    assert statuses["amount_ratio"] == ["PRESENT", "PRESENT"]
    assert statuses["account_age_days"] == ["PRESENT", "PRESENT"]
    training = scope["training"]
    assert len(training) == 400  # type: ignore[arg-type]
    assert training["account_age_days"].notna().all()  # type: ignore[index]


def test_list_and_show_read_as_words(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cli(*args: str) -> str:
        code = main(list(args))
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    cli("features", "apply", "configs/features")
    listed = cli("features", "list")
    assert "entitie " not in listed and "entity" in listed and "feature service" in listed
    shown = cli("features", "show", "customer_profile")
    assert "never" in shown and "PT0S" not in shown and "{" not in shown
    assert "account_age_days" in shown and "not null" in shown
    velocity = cli("features", "show", "customer_velocity")
    assert "1d" in velocity and "count(events) over 1h" in velocity and "PT" not in velocity
    as_json = json.loads(cli("features", "show", "customer_profile", "--json"))
    assert as_json["kind"] == "feature_views" and as_json["definition"]["ttl"] == "PT0S"


@pytest.mark.parametrize(("seconds", "text"), [(0, "never"), (30 * 86_400, "30d"),
                                               (3600, "1h"), (90, "90s"), (1.001, "1.001s")])
def test_ttl_text(seconds: float, text: str) -> None:
    import datetime as dt

    assert ttl_text(dt.timedelta(seconds=seconds)) == text
