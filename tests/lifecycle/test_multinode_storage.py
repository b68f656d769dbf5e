"""On a Ray cluster of two nodes, starting the actors on node-local stores is refused in one
line naming the key, before any actor exists. Runs in its own pytest process (lifecycle)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlray.config import load_config
from mlray.errors import ConfigError
from tests.conftest import STRANGER_RAY_VARS

pytestmark = pytest.mark.lifecycle


@pytest.fixture
def two_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import ray
    from ray.cluster_utils import Cluster

    for name in STRANGER_RAY_VARS:
        monkeypatch.delenv(name, raising=False)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False})  # the GCS picks a free port
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    cluster.connect(namespace="mlray-locality")
    yield
    ray.shutdown()
    cluster.shutdown()


def test_start_actors_refuses_local_stores_on_two_nodes(two_nodes: None, tmp_path: Path) -> None:
    import ray

    from actors import start_actors

    config = load_config(env={"MLRAY_HOME": str(tmp_path), "MLRAY_NAMESPACE": "mlray-locality"})
    with pytest.raises(ConfigError, match=r"^state_url: sqlite:///.*2 alive nodes") as info:
        start_actors(config)
    assert info.value.field == "state_url"
    assert ray.util.list_named_actors(all_namespaces=True) == []
