"""A consistent set of feature definitions, its loader, and feature-reference resolution.

:class:`FeatureRepo` checks what single definitions cannot: a view's entities exist,
its fields do not shadow join keys, names are unique, and every reference in an
on-demand view or feature service resolves. :func:`load_repo` reads every
``*.yaml`` file of a directory into one repo; errors name the file and the key.

Relative source paths resolve against the directory of the YAML file that declares
them (as Feast resolves against its repo path), never against the working directory,
and are stored absolute: ``path: ../../data/fraud.parquet`` in
``configs/features/fraud.yaml`` is ``<checkout>/data/fraud.parquet`` from anywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlray.config.files import beside, load_yaml_model
from mlray.errors import ConfigError, InvalidInput, NotFound
from mlray.features.definitions import (
    Entity,
    FeatureField,
    FeatureService,
    FeatureView,
    JoinKey,
    OnDemandFeatureView,
    parse_ref,
)

__all__ = ["BoundView", "FeatureFile", "FeatureRepo", "Selection", "check_source_path",
           "check_sources", "load_repo", "resolve_sources"]


@dataclasses.dataclass(frozen=True)
class BoundView:
    """A feature view together with its entities' join keys, in order (what stores need)."""

    view: FeatureView
    join_keys: tuple[JoinKey, ...]

    @property
    def name(self) -> str:
        """The view's name."""
        return self.view.name

    @property
    def key_names(self) -> list[str]:
        """The join key column names, in order."""
        return [k.name for k in self.join_keys]


@dataclasses.dataclass(frozen=True)
class Selection:
    """Features asked of one view (or on-demand view), in the order they were asked."""

    view: str
    features: tuple[str, ...]
    on_demand: bool = False


class FeatureFile(BaseModel):
    """One ``configs/features/*.yaml`` file: lists of definitions, any of them optional."""

    model_config = ConfigDict(extra="forbid")

    entities: list[Entity] = Field(default_factory=list)
    feature_views: list[FeatureView] = Field(default_factory=list)
    on_demand_feature_views: list[OnDemandFeatureView] = Field(default_factory=list)
    feature_services: list[FeatureService] = Field(default_factory=list)


class FeatureRepo(FeatureFile):
    """Entities, views, on-demand views and services that refer to each other consistently."""

    @model_validator(mode="after")
    def _consistent(self) -> FeatureRepo:
        _unique("entity", [e.name for e in self.entities])
        _unique("feature view or on-demand view",
                [v.name for v in self.feature_views]
                + [v.name for v in self.on_demand_feature_views])
        _unique("feature service", [s.name for s in self.feature_services])
        entities = {e.name: e for e in self.entities}
        for view in self.feature_views:
            keys: list[str] = []
            for name in view.entities:
                if name not in entities:
                    raise ValueError(f"feature view {view.name!r}: unknown entity {name!r}")
                keys += [k.name for k in entities[name].join_keys]
            if len(set(keys)) != len(keys):
                raise ValueError(f"feature view {view.name!r}: its entities share join keys "
                                 f"{keys}")
            clash = sorted(set(keys) & set(view.feature_names))
            if clash:
                raise ValueError(f"feature view {view.name!r}: fields {clash} are join keys")
        for odfv in self.on_demand_feature_views:
            for ref in odfv.sources:
                self._resolve_ref(ref, allow_on_demand=False, where=f"on-demand view "
                                  f"{odfv.name!r}")
        for service in self.feature_services:
            for ref in service.features:
                self._resolve_ref(ref, allow_on_demand=True,
                                  where=f"feature service {service.name!r}")
        return self

    def _resolve_ref(self, ref: str, *, allow_on_demand: bool, where: str) -> None:
        view, feature = parse_ref(ref)
        fields = self._fields_of(view, allow_on_demand)
        if fields is None:
            raise ValueError(f"{where}: {ref!r} names no feature view")
        if feature != "*" and feature not in [f.name for f in fields]:
            raise ValueError(f"{where}: view {view!r} has no feature {feature!r}")

    def _fields_of(self, view: str, allow_on_demand: bool = True) -> list[FeatureField] | None:
        for v in self.feature_views:
            if v.name == view:
                return v.fields
        if allow_on_demand:
            for o in self.on_demand_feature_views:
                if o.name == view:
                    return o.fields
        return None

    # Look-ups.

    def entity(self, name: str) -> Entity:
        """The entity called ``name``; raises :class:`NotFound`."""
        for e in self.entities:
            if e.name == name:
                return e
        raise NotFound(f"no entity {name!r}", field="entity")

    def feature_view(self, name: str) -> FeatureView:
        """The feature view called ``name``; raises :class:`NotFound`."""
        for v in self.feature_views:
            if v.name == name:
                return v
        raise NotFound(f"no feature view {name!r}", field="view")

    def on_demand_view(self, name: str) -> OnDemandFeatureView:
        """The on-demand view called ``name``; raises :class:`NotFound`."""
        for v in self.on_demand_feature_views:
            if v.name == name:
                return v
        raise NotFound(f"no on-demand feature view {name!r}", field="view")

    def feature_service(self, name: str) -> FeatureService:
        """The feature service called ``name``; raises :class:`NotFound`."""
        for s in self.feature_services:
            if s.name == name:
                return s
        raise NotFound(f"no feature service {name!r}", field="feature_service")

    def bind(self, view: str | FeatureView) -> BoundView:
        """The view with its join keys (entities in the view's order)."""
        fv = self.feature_view(view) if isinstance(view, str) else view
        keys = tuple(k for name in fv.entities for k in self.entity(name).join_keys)
        return BoundView(fv, keys)

    def select(self, refs: Sequence[str] | FeatureService | str) -> list[Selection]:
        """Resolve feature references (or a service, or a service's name) into selections.

        Views keep the order of their first reference; features keep the order asked,
        ``view:*`` expanding to the declared order. On-demand views pull in their sources.

        Raises:
            InvalidInput: a malformed reference or an empty list.
            NotFound: an unknown view, on-demand view, feature or service.
        """
        if isinstance(refs, str):
            refs = self.feature_service(refs).features
        elif isinstance(refs, FeatureService):
            refs = refs.features
        if not refs:
            raise InvalidInput("ask for at least one feature", field="features")
        order: dict[str, list[str]] = {}
        on_demand: set[str] = set()
        for i, ref in enumerate(refs):
            try:
                view, feature = parse_ref(ref)
            except ValueError as exc:
                raise InvalidInput(str(exc), field=f"features[{i}]") from None
            fields = self._fields_of(view)
            if fields is None:
                raise NotFound(f"features[{i}]: no feature view {view!r} (in {ref!r})",
                               field=f"features[{i}]")
            names = [f.name for f in fields]
            if feature != "*" and feature not in names:
                raise NotFound(f"features[{i}]: view {view!r} has no feature {feature!r}",
                               field=f"features[{i}]")
            chosen = order.setdefault(view, [])
            for name in names if feature == "*" else [feature]:
                if name not in chosen:
                    chosen.append(name)
            if self._fields_of(view, allow_on_demand=False) is None:
                on_demand.add(view)
        return [Selection(v, tuple(f), v in on_demand) for v, f in order.items()]


def _unique(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} defined twice: {dupes}")


def resolve_sources(repo: FeatureFile, base: str | Path) -> FeatureFile:
    """``repo`` with every relative Parquet source path made absolute against ``base``
    (returns the same type; unchanged when every path already is)."""
    base = Path(base).expanduser().absolute()
    views = [v.model_copy(update={"source": v.source.model_copy(
                 update={"path": beside(v.source.path, base)})})
             if v.source.type == "parquet" and beside(v.source.path, base) != v.source.path
             else v for v in repo.feature_views]
    if all(a is b for a, b in zip(views, repo.feature_views, strict=True)):
        return repo
    return repo.model_copy(update={"feature_views": views})


def check_source_path(view: str, path: str) -> None:
    """Refuse a relative local source path (it would follow the working directory).

    Raises:
        InvalidInput: naming the view and the path.
    """
    if "://" not in path and not Path(path).expanduser().is_absolute():
        raise InvalidInput(f"view {view!r}: source path {path!r} is relative; definitions "
                           "store absolute paths (load_repo and apply resolve a relative "
                           "one against the YAML file that declares it)",
                           field=f"feature_views.{view}.source.path")


def check_sources(repo: FeatureFile) -> None:
    """Every Parquet source on the local file system exists (remote URIs are not checked:
    reading them says whether they do).

    Raises:
        InvalidInput: a relative path (resolve it first: :func:`resolve_sources`).
        NotFound: a source that does not exist, naming the view and the path.
    """
    for view in repo.feature_views:
        src = view.source
        if src.type != "parquet" or "://" in src.path:
            continue
        check_source_path(view.name, src.path)
        path = Path(src.path).expanduser()
        if not path.exists():
            raise NotFound(f"view {view.name!r}: its source {path} does not exist (create "
                           "it, e.g. an empty directory to push rows into, or fix the path)",
                           field=f"feature_views.{view.name}.source.path")


def load_repo(directory: str | Path) -> FeatureRepo:
    """Read every ``*.yaml`` / ``*.yml`` file under ``directory`` (sorted) into one repo,
    each relative source path resolved against the directory of its file.

    Raises:
        ConfigError: a file is not valid (names the file and key), or the files together
            are inconsistent (names the directory and the reason).
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(f"feature definitions directory {root} does not exist",
                          field=str(root))
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    if not files:
        raise ConfigError(f"{root}: no *.yaml feature definitions found", field=str(root))
    merged: dict[str, list[object]] = {name: [] for name in FeatureFile.model_fields}
    origin: dict[tuple[str, str], Path] = {}
    for path in files:
        part = resolve_sources(load_yaml_model(path, FeatureFile), path.parent)
        for kind in merged:
            for item in getattr(part, kind):
                ns = "view" if kind in ("feature_views", "on_demand_feature_views") else kind
                seen = origin.setdefault((ns, item.name), path)
                if seen != path:
                    raise ConfigError(f"{path}: {item.name!r} is also defined in {seen}",
                                      field=f"{kind}.{item.name}")
                merged[kind].append(item)
    try:
        return FeatureRepo(**merged)  # type: ignore[arg-type]
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        reason = errors()[0]["msg"] if callable(errors) else str(exc)
        raise ConfigError(f"{root}: {reason}", field=str(root)) from None
