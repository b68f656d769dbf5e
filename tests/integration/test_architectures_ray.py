"""On a cluster, a replica's loader gets the admin's architecture list from the registry."""

from __future__ import annotations

import ray

import mlray
from mlray import PlatformConfig

ALLOWED = "tests.unit.custom_model:build"


def test_a_replica_reads_the_allow_list_from_the_registry_actor(
        mlray_env: PlatformConfig) -> None:
    client = mlray.connect(config=mlray_env)
    assert client.registry.allow_architectures(allow=[ALLOWED]) == [ALLOWED]
    assert client.registry.allowed_architectures() == [ALLOWED]

    @ray.remote(num_cpus=0)
    def replica(config: PlatformConfig) -> list[str]:
        from mlray.serving.batched import allowed_architectures

        return sorted(allowed_architectures(config))

    # a state URL nothing answers on: the list can only come from the registry actor
    unreachable = mlray_env.model_copy(update={"state_url": "redis://127.0.0.1:1/0"})
    assert ray.get(replica.remote(unreachable), timeout=120) == [ALLOWED]
