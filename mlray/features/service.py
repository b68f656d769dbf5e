"""The feature registry (the ``features`` actor's logic): definitions per project, applied
as a whole with a diff, and the materialization bookkeeping.

One document per project holds the applied :class:`FeatureRepo`; an apply replaces it
with compare-and-set, so two concurrent applies cannot interleave. A breaking change
(a field removed or retyped, a view's entities or an entity's keys changed, a view
removed) to a view that is in use (named by a feature service, or materialized) is
refused unless forced by an admin; every apply is audited with its diff. Parquet sources
must lie below the project's storage root or a prefix a platform admin allowed
(:mod:`mlray.features.confine`). A Redis stream feeds one project: a view may not read a
stream that another project's view reads (its events are that project's data).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlray._private.types import Name, Project
from mlray._private.validation import boundary
from mlray.errors import Conflict, NotFound
from mlray.features.confine import SourcePolicy, check_confined, project_root
from mlray.features.plan import Action, plan_apply
from mlray.features.repo import FeatureRepo, check_source_path
from mlray.identity import Caller, Role
from mlray.storage.base import AuditEntry, Put, StateStore

__all__ = ["ApplyResult", "FeatureRegistry", "Materialization"]

REPOS = "feature_repos"
MATERIALIZATIONS = "materializations"
_RETRIES = 16


class ApplyResult(BaseModel):
    """What an apply changed (or would change, for a dry run)."""

    model_config = ConfigDict(frozen=True)

    added: list[str]
    changed: list[str]
    removed: list[str]
    breaking: list[str]
    applied: bool


class Materialization(BaseModel):
    """How far a view has been moved offline → online, and by which run."""

    view: str
    end: dt.datetime = Field(description="The window end of the last completed run.")
    start: dt.datetime
    rows: int
    finished_at: float


class FeatureRegistry:
    """Applied feature definitions per project, and materialization progress."""

    def __init__(self, store: StateStore, offline_uri: str | None = None) -> None:
        self._store = store
        self._offline_uri = offline_uri  # None: only admin-allowed sources are accepted

    def _doc(self, project: str) -> tuple[FeatureRepo, int]:
        doc = self._store.get(REPOS, project)
        if doc is None:
            return FeatureRepo(), 0
        return FeatureRepo.model_validate(doc.data), doc.version

    def _check_streams(self, project: str, repo: FeatureRepo) -> None:
        """Refuse a stream source another project's views already read (without saying
        which project)."""
        mine = {v.source.stream: v.name for v in repo.feature_views
                if v.source.type == "stream"}
        if not mine:
            return
        for doc in self._store.list(REPOS):
            if doc.key == project:
                continue
            for view in doc.data.get("feature_views", []):
                source = view.get("source", {})
                if source.get("type") == "stream" and source.get("stream") in mine:
                    name = mine[source["stream"]]
                    raise Conflict(f"view {name!r}: stream {source['stream']!r} feeds another "
                                   "project; give this project's view a stream of its own",
                                   field=f"feature_views.{name}.source.stream")

    def _in_use(self, project: str, repo: FeatureRepo) -> set[str]:
        used = {ref.split(":", 1)[0] for s in repo.feature_services for ref in s.features}
        used |= {d.key.split("/", 1)[1]
                 for d in self._store.list(MATERIALIZATIONS, prefix=f"{project}/")}
        return used

    @boundary
    def apply(self, caller: Caller, project: Project, repo: FeatureRepo, *,
              force: bool = False, dry_run: bool = False) -> ApplyResult:
        """Make ``repo`` the project's definitions; returns the diff.

        Raises:
            Conflict: a breaking change to a view in use, without ``force``.
            PermissionDenied: ``force`` without admin, or no editor role.
            InvalidInput: a Parquet source path that is not absolute.
        """
        caller.require(project, Role.admin if force else Role.editor)
        roots = [project_root(self._offline_uri, project)] if self._offline_uri else []
        allowed = SourcePolicy(self._store).allowed()
        for view in repo.feature_views:  # stored paths are absolute (see load_repo)
            if view.source.type == "parquet":
                check_source_path(view.name, view.source.path)
                check_confined(view.name, view.source.path, roots, allowed)
        self._check_streams(project, repo)
        for _ in range(_RETRIES):
            current, version = self._doc(project)
            plan = plan_apply(current, repo)
            in_use = self._in_use(project, current)
            blocked = [c.describe() for c in plan.breaking if c.name in in_use]
            result = ApplyResult(
                added=[c.describe() for c in plan.of(Action.ADDED)],
                changed=[c.describe() for c in plan.of(Action.CHANGED)],
                removed=[c.describe() for c in plan.of(Action.REMOVED)],
                breaking=[c.describe() for c in plan.breaking], applied=False)
            if blocked and not force:
                raise Conflict(f"breaking change(s) to view(s) in use: {blocked}; apply "
                               "with force (admin) if readers are ready", field="force")
            if dry_run or plan.empty:
                return result
            try:
                self._store.apply(
                    [Put(collection=REPOS, key=project, data=repo.model_dump(mode="json"),
                         expected_version=version)],
                    AuditEntry(user=caller.user, project=project, action="features.apply",
                               target=f"features/{project}", after={
                                   "changes": plan.summary(), "forced": force and bool(blocked)}))
            except Conflict:
                continue  # another apply landed first: diff against it
            return result.model_copy(update={"applied": True})
        raise Conflict("feature definitions kept changing during apply; try again")

    @boundary
    def allowed_sources(self, caller: Caller, project: Project) -> list[str]:
        """The source prefixes a platform admin allowed beyond the projects' own roots."""
        caller.require(project, Role.viewer)
        return sorted(SourcePolicy(self._store).allowed())

    @boundary
    def allow_sources(self, caller: Caller, project: Project, allow: list[str] | None = None,
                      revoke: list[str] | None = None) -> list[str]:
        """Add or remove allowed source prefixes for the whole platform (admins of every
        project only; audited). ``project`` is where the call was made from."""
        return SourcePolicy(self._store).change(caller, allow=allow or (), revoke=revoke or ())

    def repo(self, caller: Caller, project: Project) -> FeatureRepo:
        """The project's applied definitions (empty when none were applied)."""
        caller.require(project, Role.viewer)
        return self._doc(project)[0]

    @boundary
    def show(self, caller: Caller, project: Project, name: Name) -> dict[str, Any]:
        """One definition by name (entity, view, on-demand view or service), with its kind."""
        repo = self.repo(caller, project)
        for kind in ("entities", "feature_views", "on_demand_feature_views",
                     "feature_services"):
            for item in getattr(repo, kind):
                if item.name == name:
                    return {"kind": kind, "definition": item.model_dump(mode="json")}
        raise NotFound(f"no entity, view or service named {name!r} in project {project!r}",
                       field="name")

    @boundary
    def record_materialization(self, caller: Caller, project: Project, run: Materialization
                               ) -> Materialization:
        """Store a finished materialization of one view (incremental runs start at its end)."""
        caller.require(project, Role.editor)
        self.repo(caller, project).bind(run.view)  # NotFound for unknown views
        self._store.apply([Put(collection=MATERIALIZATIONS, key=f"{project}/{run.view}",
                               data=run.model_dump(mode="json"))],
                          AuditEntry(user=caller.user, project=project,
                                     action="features.materialize", target=run.view,
                                     after=run.model_dump(mode="json")))
        return run

    @boundary
    def materializations(self, caller: Caller, project: Project) -> dict[str, Materialization]:
        """The last finished materialization per view."""
        caller.require(project, Role.viewer)
        return {d.key.split("/", 1)[1]: Materialization.model_validate(d.data)
                for d in self._store.list(MATERIALIZATIONS, prefix=f"{project}/")}
