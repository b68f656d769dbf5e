"""The feature store's Ray-free core: definitions, apply plans, offline and online stores.

Actors, materialization jobs and stream processors build on these; nothing here needs Ray.
"""

from mlray.features.definitions import (
    Aggregation,
    Entity,
    FeatureField,
    FeatureService,
    FeatureView,
    JoinKey,
    OnDemandFeatureView,
    ParquetSource,
    PushSource,
    Range,
    RequestField,
    StreamSource,
    parse_ref,
)
from mlray.features.offline import OfflineStore
from mlray.features.online import FeatureStatus, OnlineRead, OnlineStore, open_online_store
from mlray.features.plan import Action, ApplyPlan, Change, plan_apply
from mlray.features.repo import BoundView, FeatureRepo, Selection, load_repo
from mlray.features.serving import FeatureReader, OnlineFeatures
from mlray.features.stream import StreamProcessor, StreamStats, publish
from mlray.features.windows import Outcome, WindowStore

__all__ = [
    "Action",
    "Aggregation",
    "ApplyPlan",
    "BoundView",
    "Change",
    "Entity",
    "FeatureField",
    "FeatureReader",
    "FeatureRepo",
    "FeatureService",
    "FeatureStatus",
    "FeatureView",
    "JoinKey",
    "OfflineStore",
    "OnDemandFeatureView",
    "OnlineFeatures",
    "OnlineRead",
    "OnlineStore",
    "Outcome",
    "ParquetSource",
    "PushSource",
    "Range",
    "RequestField",
    "Selection",
    "StreamProcessor",
    "StreamSource",
    "StreamStats",
    "WindowStore",
    "load_repo",
    "open_online_store",
    "parse_ref",
    "plan_apply",
    "publish",
]
