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
