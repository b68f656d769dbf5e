"""The feature store through the client."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlray._private.transport import ActorTransport
from mlray.client.facade import Who, _Facade
from mlray.config import PlatformConfig
from mlray.errors import (
    BackendUnavailable,
    InvalidInput,
    NotFound,
)
from mlray.features.offline import OfflineStore
from mlray.features.online import OnlineStore, open_online_store
from mlray.features.repo import FeatureRepo, check_sources, load_repo, resolve_sources
from mlray.features.service import ApplyResult, Materialization
from mlray.features.serving import FeatureReader, OnlineFeatures

__all__ = ["FeaturesClient"]


class FeaturesClient(_Facade):
    """Feature definitions (``features`` actor) and the stores themselves (no actor hop).

    Reads and pushes go straight to the online and offline stores the platform config
    names; the definitions come from the actor, cached for ``repo_ttl_s``.
    """

    def __init__(self, transport: Any, who: Who, project: str,
                 config: PlatformConfig, repo_ttl_s: float = 5.0) -> None:
        super().__init__("features", transport, who, project)
        self._config = config
        self._repo_ttl_s = repo_ttl_s
        self._repo: tuple[float, FeatureRepo] | None = None
        self._online: OnlineStore | None = None

    def apply(self, definitions: str | Path | FeatureRepo, *, force: bool = False,
              dry_run: bool = False) -> ApplyResult:
        """Register the definitions of a directory of YAML files (or a repo), with a diff.

        Source paths are stored absolute: relative ones in YAML resolve against their
        file's directory, in a repo built in Python against the working directory now.

        Raises:
            NotFound: a local Parquet source that does not exist (naming view and path).
        """
        repo = (resolve_sources(definitions, Path.cwd()) if isinstance(definitions, FeatureRepo)
                else load_repo(definitions))
        check_sources(repo)
        result = self._call("apply", repo, force=force, dry_run=dry_run)
        self._repo = None
        return result

    def allowed_sources(self) -> list[str]:
        """Source prefixes a platform admin allowed beyond each project's storage root."""
        return self._call("allowed_sources", read=True)

    def allow_sources(self, allow: list[str] | None = None,
                      revoke: list[str] | None = None) -> list[str]:
        """Allow (or stop allowing) Parquet sources below these prefixes, for every project
        (admins of every project; audited)."""
        return self._call("allow_sources", allow=allow, revoke=revoke)

    def repo(self, fresh: bool = False) -> FeatureRepo:
        """The applied definitions."""
        if fresh or self._repo is None or time.monotonic() - self._repo[0] > self._repo_ttl_s:
            self._repo = (time.monotonic(), self._call("repo", read=True))
        return self._repo[1]

    def show(self, name: str) -> dict[str, Any]:
        """One definition by name, with its kind."""
        return self._call("show", name, read=True)

    def materializations(self) -> dict[str, Materialization]:
        """The last finished materialization per view."""
        return self._call("materializations", read=True)

    def online_store(self) -> OnlineStore:
        """The online store (opened once)."""
        if self._online is None:
            assert self._config.online_url is not None
            self._online = open_online_store(self._config.online_url, project=self.project,
                                             redis_prefix=self._config.redis_prefix)
        return self._online

    def offline_store(self) -> OfflineStore:
        """The offline store over the applied definitions."""
        assert self._config.offline_uri is not None
        return OfflineStore(self._config.offline_uri, self.repo(), project=self.project)

    def get_online_features(self, entity_rows: Any, features: list[str] | str, *,
                            full_feature_names: bool = False) -> OnlineFeatures:
        """Latest values per entity with statuses (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE)."""
        return FeatureReader(self.repo(), self.online_store()).get_online_features(
            entity_rows, features, full_feature_names=full_feature_names)

    def get_historical_features(self, entity_rows: Any, features: list[str] | str, *,
                                full_feature_names: bool = False, as_pandas: bool = False,
                                output: str | None = None) -> Any:
        """Point-in-time correct features for training (an Arrow table, or pandas).

        Given a Ray Dataset of entity rows (for inputs larger than memory), the join runs
        on Ray Data and returns a Dataset, written to the Parquet directory ``output``
        when given (:mod:`mlray.features.offline_ray`).
        """
        store = self.offline_store()
        if type(entity_rows).__module__.startswith("ray.data"):
            if as_pandas:
                raise InvalidInput("as_pandas applies to in-memory entity rows; a Ray Dataset "
                                   "of entity rows gives a Dataset", field="as_pandas")
            from mlray.features.offline_ray import get_historical_features_ray

            return get_historical_features_ray(store, entity_rows, features,
                                               full_feature_names=full_feature_names,
                                               output=output)
        if output is not None:
            raise InvalidInput("output applies to a Ray Dataset of entity rows",
                               field="output")
        return store.get_historical_features(
            entity_rows, features, full_feature_names=full_feature_names, as_pandas=as_pandas)

    def push(self, view: str, rows: Any, *, to: str = "both") -> int:
        """Write rows of ``view`` to the ``online``, ``offline`` or ``both`` stores.

        Every row is checked first; nothing is written when one fails.
        """
        if to not in ("online", "offline", "both"):
            raise InvalidInput(f"to must be online, offline or both, not {to!r}", field="to")
        repo = self.repo()
        bound = repo.bind(view)
        written = 0
        if to in ("offline", "both"):
            written = OfflineStore(self._config.offline_uri or "", repo,
                                   project=self.project).write(view, rows)
        if to in ("online", "both"):
            online = self.online_store().write(bound, rows)
            written = max(written, online)
        return written


    def materialize(self, *, start: dt.datetime | None = None, end: dt.datetime | None = None,
                    views: list[str] | None = None, incremental: bool = False,
                    progress: Callable[[str, int], None] | None = None,
                    engine: str = "auto") -> list[Materialization]:
        """Move the latest rows per entity in ``[start, end)`` offline → online, per view;
        each finished view is recorded (``incremental`` starts where the last run ended)."""
        from mlray.features.materialize import materialize

        repo = self.repo(fresh=True)
        return materialize(
            repo, OfflineStore(self._config.offline_uri or "", repo, project=self.project),
            self.online_store(),
            record=lambda run: self._call("record_materialization", run),
            previous=self.materializations() if incremental else None, views=views,
            start=start, end=end, incremental=incremental, progress=progress, engine=engine)

    def streaming_views(self) -> list[str]:
        """The views fed by a stream."""
        return [v.name for v in self.repo().feature_views if v.source.type == "stream"]

    def start_streams(self, views: list[str] | None = None) -> dict[str, Any]:
        """Start (or find) a stream processor actor per streaming view; needs a cluster."""
        if not isinstance(self._transport, ActorTransport):
            raise BackendUnavailable("stream processors are actors; connect to a Ray cluster")
        from actors.stream import start_stream_processors

        wanted = views or self.streaming_views()
        return start_stream_processors(self._config, self.project, wanted)

    def stream_stats(self, view: str) -> dict[str, Any]:
        """What a view's stream processor has handled (and what is pending).

        The caller's role in the project is checked first (reading its definitions), so
        another project's caller is refused whether or not such a processor runs."""
        import ray

        from actors.stream import processor_name

        self.repo(fresh=True)  # PermissionDenied without a role in the project
        try:
            actor = ray.get_actor(processor_name(self.project, view),
                                  namespace=self._config.namespace)
        except ValueError:
            raise NotFound(f"no stream processor for view {view!r}", field="view") from None
        return ray.get(actor.stats.remote(), timeout=30)

    def publish(self, view: str, events: list[dict[str, Any]]) -> list[str]:
        """Append events to a streaming view's Redis Stream (as a producer would)."""
        import redis

        from mlray.features.stream import publish

        source = self.repo().feature_view(view).source
        if source.type != "stream":
            raise InvalidInput(f"view {view!r} is not fed by a stream", field="view")
        if not self._config.stream_url:
            raise BackendUnavailable("stream_url is not set; streams need a Redis")
        client = redis.Redis.from_url(self._config.stream_url)
        try:
            return publish(client, source.stream, events)
        finally:
            client.close()
