"""The ``features`` actor: a thin shell over :class:`mlray.features.service.FeatureRegistry`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

__all__ = ["FeaturesActor"]


@ray.remote
class FeaturesActor(ServiceActor):
    """Owns entities, feature views, feature services and materialization progress."""

    NAME = "features"
    API = frozenset({"apply", "repo", "show", "record_materialization", "materializations",
                     "allowed_sources", "allow_sources"})
