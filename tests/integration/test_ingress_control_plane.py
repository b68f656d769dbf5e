"""A deploy of the ingress app (what a KubeRay RayService does with serveConfigV2) brings
the control-plane actors up by itself, once, in the namespace its args name."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mlray.storage.redis import RedisStateStore
from tests.conftest import OwnRay


def test_build_app_starts_the_control_plane_once(ray_shared: OwnRay, redis_url: str,
                                                 tmp_path: Path) -> None:
    import ray

    from actors import actor_names
    from mlray.serving.ingress import build_app

    namespace, prefix = f"k{uuid.uuid4().hex[:10]}", f"t{uuid.uuid4().hex[:10]}"
    args = {"namespace": namespace, "home": str(tmp_path / "home"), "state_url": redis_url,
            "redis_prefix": prefix, "project": "default"}
    for name in actor_names():
        with pytest.raises(ValueError):
            ray.get_actor(name, namespace=namespace)
    try:
        build_app(args)
        first = {n: ray.get_actor(n, namespace=namespace)._actor_id for n in actor_names()}
        config = ray.get(ray.get_actor("registry", namespace=namespace).config.remote())
        assert (config.namespace, config.state_url, config.redis_prefix) == (
            namespace, redis_url, prefix)
        build_app(args)  # a second deploy (an upgrade, another replica) finds them
        again = {n: ray.get_actor(n, namespace=namespace)._actor_id for n in actor_names()}
        assert again == first
    finally:
        for name in actor_names():
            try:
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
            except ValueError:
                continue
        RedisStateStore(redis_url, prefix=prefix).drop_all()
