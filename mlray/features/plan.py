"""What ``apply`` would change: a diff of two feature repos, with breaking changes flagged.

A change is breaking when readers of existing data or existing models could fail:
a view loses a field or a field changes type (dtype or item type), a view changes
its entities, a view or on-demand view disappears, or an entity changes its join
keys. Whether a breaking change is allowed (the view in use, ``--force``) is the
caller's decision.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from mlray.features.definitions import Entity, FeatureView, OnDemandFeatureView
from mlray.features.repo import FeatureRepo

__all__ = ["Action", "ApplyPlan", "Change", "plan_apply"]

_KINDS = ("entities", "feature_views", "on_demand_feature_views", "feature_services")


class Action(enum.StrEnum):
    """What happens to one definition."""

    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


@dataclasses.dataclass(frozen=True)
class Change:
    """One definition added, changed or removed; ``reasons`` say why it is breaking."""

    kind: str
    name: str
    action: Action
    fields: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def breaking(self) -> bool:
        """True when existing readers could fail after this change."""
        return bool(self.reasons)

    def describe(self) -> str:
        """A one-line summary such as ``changed feature_views/user (ttl, fields)``."""
        what = f"{self.action} {self.kind}/{self.name}"
        if self.fields:
            what += f" ({', '.join(self.fields)})"
        if self.reasons:
            what += " BREAKING: " + "; ".join(self.reasons)
        return what


@dataclasses.dataclass(frozen=True)
class ApplyPlan:
    """Every change between two repos, in kind then name order."""

    changes: tuple[Change, ...]

    @property
    def breaking(self) -> list[Change]:
        """The breaking changes."""
        return [c for c in self.changes if c.breaking]

    @property
    def empty(self) -> bool:
        """True when the repos are the same."""
        return not self.changes

    def of(self, action: Action) -> list[Change]:
        """The changes with ``action``."""
        return [c for c in self.changes if c.action == action]

    def summary(self) -> list[str]:
        """One line per change."""
        return [c.describe() for c in self.changes]


def _by_name(items: Sequence[BaseModel]) -> dict[str, BaseModel]:
    return {item.name: item for item in items}  # type: ignore[attr-defined]


def _changed_fields(old: BaseModel, new: BaseModel) -> tuple[str, ...]:
    a: dict[str, Any] = old.model_dump(mode="json")
    b: dict[str, Any] = new.model_dump(mode="json")
    return tuple(k for k in b if a.get(k) != b.get(k))


def _field_types(view: FeatureView | OnDemandFeatureView) -> dict[str, tuple[str, str | None]]:
    return {f.name: (f.dtype, f.items) for f in view.fields}


def _breaking(old: BaseModel | None, new: BaseModel | None) -> tuple[str, ...]:
    if isinstance(old, FeatureView | OnDemandFeatureView) and new is None:
        return ("view removed",)
    reasons: list[str] = []
    if isinstance(old, FeatureView | OnDemandFeatureView) and isinstance(
            new, FeatureView | OnDemandFeatureView):
        before, after = _field_types(old), _field_types(new)
        for name, typ in before.items():
            if name not in after:
                reasons.append(f"field {name!r} removed")
            elif after[name] != typ:
                reasons.append(f"field {name!r} changed type {_show(typ)} -> "
                               f"{_show(after[name])}")
    if isinstance(old, FeatureView) and isinstance(new, FeatureView) and (
            old.entities != new.entities):
        reasons.append(f"entities changed {old.entities} -> {new.entities}")
    if isinstance(old, Entity) and isinstance(new, Entity) and old.join_keys != new.join_keys:
        reasons.append("join keys changed "
                       f"{[(k.name, k.dtype) for k in old.join_keys]} -> "
                       f"{[(k.name, k.dtype) for k in new.join_keys]}")
    return tuple(reasons)


def _show(typ: tuple[str, str | None]) -> str:
    return typ[0] if typ[1] is None else f"{typ[0]}<{typ[1]}>"


def plan_apply(current: FeatureRepo, new: FeatureRepo) -> ApplyPlan:
    """The changes that turn ``current`` into ``new``.

    Args:
        current: what is registered now (an empty repo when nothing is).
        new: what is being applied.

    Returns:
        An :class:`ApplyPlan`; its ``breaking`` list is empty when the apply is safe.
    """
    changes: list[Change] = []
    for kind in _KINDS:
        before = _by_name(getattr(current, kind))
        after = _by_name(getattr(new, kind))
        for name in sorted(before.keys() | after.keys()):
            old, cur = before.get(name), after.get(name)
            if old is None:
                changes.append(Change(kind, name, Action.ADDED))
            elif cur is None:
                changes.append(Change(kind, name, Action.REMOVED, reasons=_breaking(old, None)))
            elif old != cur:
                changes.append(Change(kind, name, Action.CHANGED, _changed_fields(old, cur),
                                      _breaking(old, cur)))
    return ApplyPlan(tuple(changes))
