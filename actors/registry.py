"""The ``registry`` actor: a thin shell over :class:`mlray.registry.ModelRegistry`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

__all__ = ["RegistryActor"]


@ray.remote
class RegistryActor(ServiceActor):
    """Owns registered models, versions, stages and aliases."""

    NAME = "registry"
    API = frozenset({
        "create_model", "get_model", "update_model", "list_models", "delete_model",
        "create_version", "get_version", "list_versions", "search_versions",
        "transition_stage", "validate_version", "required_gates", "set_required_gates",
        "delete_version", "set_alias", "delete_alias",
        "resolve", "set_traffic", "get_traffic", "serving_view", "audit_log",
        "allowed_architectures", "allow_architectures",
    })

    def architectures(self) -> list[str]:
        """The admin-allowed model architectures, for replicas about to load a model."""
        return sorted(self._service.loadable_architectures())
