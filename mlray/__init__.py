"""mlray: an ML platform on Ray.

    import mlray
    client = mlray.connect()            # local Ray + embedded storage, or a running cluster
    client.registry.register("fraud", "model.pt", metrics={"auc": 0.93})
    client.registry.promote("fraud", 1)
    client.serving.deploy("fraud", 1, strategy="canary")   # needs a cluster: `mlray up`
"""

import os as _os

# Ray clusters here run with token auth; a client only sends its token when this is set
# before ray is imported, and every mlray import passes through this file first.
_os.environ.setdefault("RAY_AUTH_MODE", "token")

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlray.client import Client, ExperimentsClient, RegistryClient, ServingClient, connect
    from mlray.config import PlatformConfig, load_config
    from mlray.errors import (
        AlreadyExists,
        BackendUnavailable,
        ConfigError,
        Conflict,
        IntegrityError,
        InvalidInput,
        InvalidTransition,
        MlrayError,
        NotFound,
        PayloadTooLarge,
        PermissionDenied,
        PredictionFailed,
        RateLimited,
        Unauthenticated,
    )
    from mlray.identity import Caller, Role
    from mlray.registry.types import ModelSpec, ModelVersion, RegisteredModel, Stage, VersionSpec
    from mlray.serving.rollout import Rollout, RolloutStatus, Strategy
    from mlray.serving.traffic import TrafficPolicy
    from mlray.storage import ArtifactRef, ArtifactStore, StateStore, open_state_store
    from mlray.tracking.types import Experiment, MetricPoint, Run, RunPage, RunStatus

#: Where each public name lives. They load on first use, so a process that needs one part
#: (a control-plane actor, a model replica) does not import the client and all it pulls in.
_HOMES = {
    **dict.fromkeys(("Client", "ExperimentsClient", "RegistryClient", "ServingClient",
                     "connect"), "mlray.client"),
    **dict.fromkeys(("PlatformConfig", "load_config"), "mlray.config"),
    **dict.fromkeys(("AlreadyExists", "BackendUnavailable", "ConfigError", "Conflict",
                     "IntegrityError", "InvalidInput", "InvalidTransition", "MlrayError",
                     "NotFound", "PayloadTooLarge", "PermissionDenied", "PredictionFailed",
                     "RateLimited", "Unauthenticated"), "mlray.errors"),
    **dict.fromkeys(("Caller", "Role"), "mlray.identity"),
    **dict.fromkeys(("ModelSpec", "ModelVersion", "RegisteredModel", "Stage", "VersionSpec"),
                    "mlray.registry.types"),
    **dict.fromkeys(("Rollout", "RolloutStatus", "Strategy"), "mlray.serving.rollout"),
    "TrafficPolicy": "mlray.serving.traffic",
    **dict.fromkeys(("ArtifactRef", "ArtifactStore", "StateStore", "open_state_store"),
                    "mlray.storage"),
    **dict.fromkeys(("Experiment", "MetricPoint", "Run", "RunPage", "RunStatus"),
                    "mlray.tracking.types"),
}


def __getattr__(name: str) -> object:
    """Import a public name's module the first time the name is used."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mlray' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "ArtifactRef",
    "ArtifactStore",
    "BackendUnavailable",
    "Caller",
    "Client",
    "ConfigError",
    "Conflict",
    "Experiment",
    "ExperimentsClient",
    "IntegrityError",
    "InvalidInput",
    "InvalidTransition",
    "MetricPoint",
    "MlrayError",
    "ModelSpec",
    "ModelVersion",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PlatformConfig",
    "PredictionFailed",
    "RateLimited",
    "RegisteredModel",
    "RegistryClient",
    "Role",
    "Rollout",
    "RolloutStatus",
    "Run",
    "RunPage",
    "RunStatus",
    "ServingClient",
    "Stage",
    "StateStore",
    "Strategy",
    "TrafficPolicy",
    "Unauthenticated",
    "VersionSpec",
    "__version__",
    "connect",
    "load_config",
    "open_state_store",
]
