"""Project isolation (#13 part 4) where it lives in Ray: Serve app names and stream
processor actors. Two projects use the same model name and version (or the same
streaming view name) on the session platform; each keeps its own app and actor, and the
platform's ingress (serving its own project) keeps answering from its own app."""

from __future__ import annotations

from typing import Any

import pytest

from mlray._private.validation import build
from mlray.features import FeatureRepo
from tests.conftest import wait_for
from tests.integration.platform import Platform
from tests.integration.serving_models import register_model

OTHER = "iso-other"


def _other(platform: Platform, project: str = OTHER) -> Any:
    """A client of the same platform working in another project."""
    import mlray

    return mlray.connect(config=platform.config, project=project)


def test_same_model_name_in_two_projects_gets_two_apps_and_the_ingress_keeps_its_own(
        platform: Platform) -> None:
    from ray import serve

    from mlray.serving.model_names import app_name

    model = platform.model(versions=1)  # seed 0, in the platform's project
    platform.deploy(model, 1)
    before = platform.predict(model, rows=4).json()["probabilities"]
    other = _other(platform)
    register_model(other, model, platform.tmp, seed=3)  # other weights, same name and v1
    rollout = other.serving.deploy(model, 1, strategy="direct", wait=True, timeout_s=240)
    try:
        assert rollout.status == "succeeded", rollout.history
        ours, theirs = app_name(platform.project, model, 1), app_name(OTHER, model, 1)
        running = {name for name, app in serve.status().applications.items()
                   if str(getattr(app.status, "value", app.status)) == "RUNNING"}
        assert {ours, theirs} <= running  # neither replaced the other
        after = platform.predict(model, rows=4).json()["probabilities"]
        assert after == pytest.approx(before, rel=1e-6)  # still our app's weights
        rows = {r["app"] for r in other.serving.apps()}
        assert theirs in rows and ours not in rows
        assert ours in {r["app"] for r in platform.client.serving.apps()}
        assert theirs not in {r["app"] for r in platform.client.serving.apps()}
    finally:
        other.registry.delete_model(model, force=True)
    wait_for(lambda: app_name(OTHER, model, 1) not in serve.status().applications,
             timeout=120, interval=1)
    assert platform.predict(model).status_code == 200


def test_same_stream_view_in_two_projects_gets_two_processors(platform: Platform) -> None:
    import ray

    from actors.stream import processor_name

    def repo(project: str) -> FeatureRepo:
        return build(FeatureRepo, entities=[{"name": "customer",
                                             "join_keys": [{"name": "customer_id"}]}],
                     feature_views=[{
                         "name": "iso_velocity", "entities": ["customer"], "ttl": "1d",
                         "source": {"type": "stream",
                                    "stream": f"{platform.config.redis_prefix}:{project}:tx"},
                         "aggregations": [{"function": "count", "window": "1h",
                                           "name": "n_1h"}],
                         "fields": [{"name": "n_1h", "dtype": "int64"}]}])

    # two projects of their own: the platform's feature definitions stay as other tests
    # applied them
    clients = {p: _other(platform, p) for p in ("iso-a", "iso-b")}
    actors = {}
    try:
        for project, client in clients.items():
            client.features.apply(repo(project))
            client.features.start_streams(["iso_velocity"])
            actors[project] = ray.get_actor(processor_name(project, "iso_velocity"),
                                            namespace=platform.config.namespace)
        assert actors["iso-a"]._actor_id != actors["iso-b"]._actor_id
        for client in clients.values():
            assert client.features.stream_stats("iso_velocity")["pending"] == 0
    finally:
        for actor in actors.values():
            ray.kill(actor, no_restart=True)
