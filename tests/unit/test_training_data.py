"""Dataset generator, data checks, splits, preprocessing and the training config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlray.config.files import load_yaml_model
from mlray.datasets import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud, write_fraud
from mlray.errors import ConfigError, InvalidInput, NotFound
from mlray.training.config import DataConfig, TrainConfig, load_train_config
from mlray.training.data import (
    Preprocessor,
    check_frame,
    load_frame,
    require_data,
    split_frame,
)

ROOT = Path(__file__).resolve().parents[2]


def _data(path: str = "x.parquet", **kw: object) -> DataConfig:
    return DataConfig(path=path, label="is_fraud", numeric=FRAUD_NUMERIC,
                      categorical=FRAUD_CATEGORICAL, **kw)  # type: ignore[arg-type]


def test_generator_is_deterministic_imbalanced_and_drifts() -> None:
    a, b = generate_fraud(5000, seed=3), generate_fraud(5000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert 0.01 < a["is_fraud"].mean() < 0.08
    drifted = generate_fraud(5000, seed=3, drift=1.0)
    assert drifted["amount"].median() > 1.5 * a["amount"].median()
    assert (drifted["device"] == "mobile_web").mean() > 2 * (a["device"] == "mobile_web").mean()
    with pytest.raises(InvalidInput, match="drift"):
        generate_fraud(10, drift=2)


def test_label_carries_a_signal() -> None:
    frame = generate_fraud(20_000, seed=1)
    fraud, legit = frame[frame.is_fraud == 1], frame[frame.is_fraud == 0]
    assert fraud["txn_count_1h"].mean() > legit["txn_count_1h"].mean() + 0.3


def test_load_frame_names_missing_columns(tmp_path: Path) -> None:
    path = write_fraud(tmp_path / "f.parquet", 100)
    assert list(load_frame(_data(str(path))).columns) == [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL,
                                                          "is_fraud"]
    bad = DataConfig(path=str(path), label="is_fraud", numeric=["amount", "nope"])
    with pytest.raises(InvalidInput, match=r"no column\(s\) \['nope'\]"):
        load_frame(bad)
    with pytest.raises(NotFound, match=r"data\.path"):
        load_frame(_data(str(tmp_path / "missing.parquet")))


@pytest.mark.parametrize("uri", [False, True])
def test_missing_data_says_not_found_where_and_how_to_make_it(tmp_path: Path,
                                                              uri: bool) -> None:
    missing = tmp_path / "data" / "fraud.parquet"
    path = missing.as_uri() if uri else str(missing)
    for check in (require_data, load_frame):
        with pytest.raises(NotFound) as caught:
            check(_data(path))
        assert caught.value.field == "data.path"
        assert f"data.path {path!r} not found" in caught.value.message
        assert f"python -m mlray.datasets {path}" in caught.value.message
    write_fraud(missing, 50)
    require_data(_data(path))


def test_a_relative_data_path_is_reported_with_where_it_was_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFound, match="not found") as caught:
        require_data(_data("data/fraud.parquet"))
    assert f"(looked for {tmp_path / 'data' / 'fraud.parquet'})" in caught.value.message


def test_check_frame_catches_dtypes_and_labels() -> None:
    frame = generate_fraud(200)
    check_frame(frame, _data(), "classification")
    wrong = DataConfig(path="x", label="is_fraud", numeric=["amount", "device"])
    with pytest.raises(InvalidInput, match="'device' has dtype"):
        check_frame(frame, wrong, "classification")
    frame2 = frame.assign(is_fraud=frame["amount"])
    with pytest.raises(InvalidInput, match="must be 0/1"):
        check_frame(frame2, _data(), "classification")
    check_frame(frame2, _data(), "regression")
    with pytest.raises(InvalidInput, match="nulls"):
        check_frame(frame.assign(is_fraud=np.nan), _data(), "regression")


def test_split_is_seeded_disjoint_and_complete() -> None:
    frame = generate_fraud(1000)
    s = split_frame(frame, _data())
    assert (len(s.train), len(s.validation), len(s.test)) == (700, 150, 150)
    union = np.concatenate([s.train, s.validation, s.test])
    assert sorted(union) == list(range(1000))
    assert (split_frame(frame, _data()).train == s.train).all()
    assert not (split_frame(frame, _data(seed=7)).train == s.train).all()
    with pytest.raises(InvalidInput, match="test split of 3 rows is empty"):
        split_frame(frame.head(3), _data(split={"train": 0.7, "validation": 0.25, "test": 0.05}))


def test_preprocessor_scales_encodes_and_round_trips() -> None:
    frame = generate_fraud(2000)
    pre = Preprocessor.fit(frame, ["amount", "hour"], ["device"])
    x = pre.transform(frame)
    assert x.shape == (2000, 2 + 4 + 1) and x.dtype == np.float32
    assert abs(x[:, 0].mean()) < 1e-5 and abs(x[:, 0].std() - 1) < 1e-3
    assert (x[:, 2:].sum(axis=1) == 1).all()
    odd = pd.DataFrame({"amount": [None], "hour": [3], "device": ["smart_fridge"]})
    row = pre.transform(odd)[0]
    assert row[0] == 0.0 and row[-1] == 1.0, "null → mean, unseen → its own slot"
    again = Preprocessor.model_validate_json(pre.model_dump_json())
    assert (again.transform(frame) == x).all()
    assert pre.feature_names[-1] == "device=<unseen>"


def test_example_config_takes_its_gates_from_validation_yaml() -> None:
    config = load_train_config(ROOT / "configs" / "train" / "fraud.yaml")
    assert config.tune is not None
    assert config.gates and config.gates[0].name == "roc_auc >= 0.7"


def test_gates_in_the_config_win_and_unknown_models_get_the_default(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "validation.yaml").write_text(yaml.safe_dump({
        "default": [{"kind": "latency", "p99_ms": 7}],
        "models": {"fraud": [{"kind": "threshold", "metric": "f1", "min": 0.1}]}}))
    (tmp_path / "train").mkdir()
    base = {"data": {"path": "x", "label": "y", "numeric": ["a"]}}
    for name, gates, expected in (("fraud", None, "f1 >= 0.1"),
                                  ("churn", None, "p99 of a 256-row batch <= 7 ms"),
                                  ("fraud", [{"kind": "latency", "p99_ms": 1}],
                                   "p99 of a 256-row batch <= 1 ms")):
        path = tmp_path / "train" / f"{name}.yaml"
        body = {**base, "name": name, **({"gates": gates} if gates else {})}
        path.write_text(yaml.safe_dump(body))
        config = load_train_config(path)
        assert [g.name for g in config.gates or []] == [expected]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
        ({"data": {"path": "x", "label": "y", "numeric": ["a"], "split": {
            "train": 0.9, "validation": 0.2, "test": 0.1}}}, "must be 1"),
        ({"data": {"path": "x", "label": "a", "numeric": ["a"]}}, "also listed as a feature"),
        ({"data": {"path": "x", "label": "y"}}, "at least one feature"),
        ({"model": {"type": "pkg.mod:build"}}, "needs task"),
        ({"model": {"type": "transformer"}}, "unknown model type"),
        ({"scaling": {"num_workers": 0}}, "scaling.num_workers"),
        ({"hyperparameters": {"lr": -1}}, "hyperparameters.lr"),
        ({"tune": {"search_space": {"lr": {"type": "loguniform", "low": 0, "high": 1}}}},
         "loguniform needs low > 0"),
        ({"tune": {"search_space": {"momentum": {"type": "choice", "values": [1]}}}},
         "tune.search_space.momentum"),
        ({"gates": [{"kind": "threshold", "metric": "auc"}]}, "needs metric and min"),
        ({"name": "bad--name"}, "invalid name"),
    ],
)
def test_bad_configs_fail_naming_file_and_key(tmp_path: Path, patch: dict[str, object],
                                              message: str) -> None:
    import yaml

    base = {"name": "m", "data": {"path": "x", "label": "y", "numeric": ["a"]}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**base, **patch}))
    with pytest.raises(ConfigError, match=message) as err:
        load_yaml_model(path, TrainConfig)
    assert str(path) in err.value.message
