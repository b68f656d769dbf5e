"""A small filter and ordering language shared by run and model-version search.

    metrics.auc >= 0.9 and params.optimizer = 'adam' and status = FINISHED

A condition is ``<field> <op> <value>``; a field is ``metrics.<k>``, ``params.<k>``,
``tags.<k>`` or a plain attribute. Values are numbers or (optionally quoted) strings;
numbers compare numerically, also against string-valued params that parse as numbers.
Ordering is ``<field> [ASC|DESC]``, missing values last either way.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mlray.errors import InvalidInput

__all__ = ["Condition", "OrderKey", "evaluate", "get_field", "parse_filter", "parse_order",
           "sort_by"]

T = TypeVar("T")
Getter = Callable[[T, str, str | None], Any]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_COND = re.compile(
    r"""^\s*(?P<field>[A-Za-z_][\w-]*(?:\.[\w./-]+)?)\s*(?P<op>==|!=|<=|>=|=|<|>)\s*
    (?P<value>'[^']*'|"[^"]*"|[^\s'"]+)\s*$""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
NAMESPACES = ("metrics", "params", "tags")


@dataclass(frozen=True)
class Condition:
    """One parsed ``field op value`` condition."""

    namespace: str
    key: str | None
    op: str
    value: Any


@dataclass(frozen=True)
class OrderKey:
    """One parsed ordering clause."""

    namespace: str
    key: str | None
    descending: bool


def get_field(item: Any, namespace: str, key: str | None) -> Any:
    """The value a filter names on a pydantic object: an attribute, or ``namespace[key]``
    (a value object such as a metric's latest value is unwrapped to its ``value``)."""
    value = getattr(item, namespace, None) if key is None else getattr(item, namespace).get(key)
    return getattr(value, "value", value)


def _split_field(field: str, attributes: Iterable[str], where: str) -> tuple[str, str | None]:
    head, _, key = field.partition(".")
    if head in NAMESPACES and key:
        return head, key
    if not key and head in attributes:
        return head, None
    allowed = ", ".join([f"{n}.<key>" for n in NAMESPACES] + sorted(attributes))
    raise InvalidInput(f"unknown field {field!r} in {where}; use one of: {allowed}", field=where)


def _literal(raw: str) -> Any:
    if raw[:1] in "'\"":
        return raw[1:-1]
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def parse_filter(text: str | None, attributes: Iterable[str]) -> list[Condition]:
    """Parse ``a and b and ...``; raise :class:`InvalidInput` naming the bad condition."""
    if not text or not text.strip():
        return []
    conditions = []
    for part in _AND.split(text.strip()):
        match = _COND.match(part)
        if not match:
            raise InvalidInput(
                f"cannot parse filter condition {part!r}; expected <field> <op> <value> "
                f"with op one of {', '.join(_OPS)}",
                field="filter",
            )
        ns, key = _split_field(match["field"], attributes, "filter")
        conditions.append(Condition(ns, key, match["op"], _literal(match["value"])))
    return conditions


def parse_order(clauses: Sequence[str] | None, attributes: Iterable[str]) -> list[OrderKey]:
    """Parse ``["metrics.loss ASC", "start_time DESC"]``."""
    keys = []
    for clause in clauses or []:
        parts = clause.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in
                                           ("ASC", "DESC")):
            raise InvalidInput(f"cannot parse order {clause!r}; use '<field> [ASC|DESC]'",
                               field="order_by")
        ns, key = _split_field(parts[0], attributes, "order_by")
        keys.append(OrderKey(ns, key, len(parts) == 2 and parts[1].upper() == "DESC"))
    return keys


def _comparable(actual: Any, wanted: Any) -> tuple[Any, Any] | None:
    if actual is None:
        return None
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        if isinstance(actual, int | float) and not isinstance(actual, bool):
            return actual, wanted
        try:
            return float(actual), wanted
        except (TypeError, ValueError):
            return None
    if hasattr(actual, "value"):  # enums compare by value
        actual = actual.value
    return str(actual), str(wanted)


def evaluate(item: T, conditions: Sequence[Condition], get: Getter[T]) -> bool:
    """True when ``item`` satisfies every condition; a missing field fails its condition."""
    for cond in conditions:
        pair = _comparable(get(item, cond.namespace, cond.key), cond.value)
        if pair is None:
            return False
        try:
            if not _OPS[cond.op](*pair):
                return False
        except TypeError:
            return False
    return True


def sort_by(items: list[T], order: Sequence[OrderKey], get: Getter[T]) -> list[T]:
    """Stable multi-key sort, missing values last for each key."""
    for key in reversed(order):
        present = [i for i in items if get(i, key.namespace, key.key) is not None]
        missing = [i for i in items if get(i, key.namespace, key.key) is None]
        present.sort(key=lambda i, k=key: _sort_value(get(i, k.namespace, k.key)),
                     reverse=key.descending)
        items = present + missing
    return items


def _sort_value(value: Any) -> tuple[int, Any]:
    if hasattr(value, "value"):
        value = value.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))
