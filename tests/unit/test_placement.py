"""Placement settings: custom resources for the control-plane actors and model replicas,
validated at the boundary and carried into the Ray options."""

from __future__ import annotations

import pytest

from actors._shell import actor_options
from mlray.config import load_config
from mlray.errors import ConfigError
from mlray.serving.settings import ModelServing, ServingConfig


def test_actor_options_ask_for_the_configured_resources() -> None:
    config = load_config(env={"MLRAY_ACTOR_RESOURCES": '{"mlray-control": 0.01}'})
    assert actor_options("registry", config)["resources"] == {"mlray-control": 0.01}
    assert actor_options("registry", load_config(env={}))["resources"] == {}


@pytest.mark.parametrize(("value", "says"), [
    ('{"CPU": 1}', "built-in resource"),
    ('{"mlray-control": 0}', "must be above 0"),
    ('{"9lives": 1}', "resource name"),
    ("[1, 2", "not a JSON object"),
])
def test_bad_actor_resources_name_the_key(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        load_config(env={"MLRAY_ACTOR_RESOURCES": value})
    assert err.value.field == "actor_resources"
    assert "MLRAY_ACTOR_RESOURCES" in str(err.value)


def test_replica_resources_per_model() -> None:
    config = ServingConfig.model_validate(
        {"models": {"fraud": {"replica_resources": {"mlray-model": 0.01}}}})
    assert config.for_model("fraud").replica_resources == {"mlray-model": 0.01}
    assert config.for_model("other").replica_resources == {}
    with pytest.raises(ValueError, match="num_cpus, num_gpus"):
        ModelServing(replica_resources={"GPU": 1})
