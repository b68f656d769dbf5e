"""Fixtures of the integration tests: one serving platform for the session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from mlray.config import load_config
from tests.conftest import free_port
from tests.integration.platform import Platform, alerts_yaml, serving_yaml
from tests.integration.serving_models import set_fault


@pytest.fixture(scope="session")
def platform(ray_shared: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Platform]:
    """Actors, Serve and the ingress in a namespace of their own; torn down at the end."""
    import ray
    from ray import serve

    import mlray
    from actors import actor_names
    from mlray.serving.launch import start_serving

    tmp = tmp_path_factory.mktemp("serving")
    env = {"MLRAY_HOME": str(tmp / "home"), "MLRAY_NAMESPACE": f"s{uuid.uuid4().hex[:10]}",
           "MLRAY_SERVE_PORT": str(free_port()),
           "MLRAY_SERVING_CONFIG": str(serving_yaml(tmp)), "MLRAY_STREAM_URL": redis_url,
           "MLRAY_REDIS_PREFIX": f"t{uuid.uuid4().hex[:10]}",
           "MLRAY_ALERTS_CONFIG": str(alerts_yaml(tmp))}
    config = load_config(env=env)
    client = mlray.connect(config=config)
    url = start_serving(config)
    set_fault(None)
    yield Platform(config, client, url, tmp, env)
    set_fault(None)
    serve.shutdown()
    named = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == config.namespace]
    for name in {*actor_names(), *named}:
        try:
            ray.kill(ray.get_actor(name, namespace=config.namespace), no_restart=True)
        except ValueError:
            continue


