import pytest

from mlray._private.filters import evaluate, parse_filter, parse_order, sort_by
from mlray.errors import InvalidInput

ATTRS = {"status", "name"}
ITEMS = [
    {"status": "FINISHED", "name": "a", "metrics": {"loss": 0.5}, "params": {"lr": "0.1"}},
    {"status": "FAILED", "name": "b", "metrics": {"loss": 0.2}, "params": {"lr": "0.01"}},
    {"status": "FINISHED", "name": "c", "metrics": {}, "params": {"lr": "adam"}},
]


def get(item: dict, ns: str, key: str | None) -> object:
    return item.get(ns) if key is None else item.get(ns, {}).get(key)


def names(items: list[dict]) -> list[str]:
    return [i["name"] for i in items]


def test_numbers_compare_numerically_even_against_string_params() -> None:
    conds = parse_filter("params.lr > 0.05", ATTRS)
    assert names([i for i in ITEMS if evaluate(i, conds, get)]) == ["a"]


def test_strings_quotes_and_and() -> None:
    conds = parse_filter("status = 'FINISHED' AND metrics.loss <= 0.5", ATTRS)
    assert names([i for i in ITEMS if evaluate(i, conds, get)]) == ["a"]
    conds = parse_filter('params.lr != "adam"', ATTRS)
    assert names([i for i in ITEMS if evaluate(i, conds, get)]) == ["a", "b"]


def test_missing_values_fail_conditions_and_sort_last() -> None:
    conds = parse_filter("metrics.loss >= 0", ATTRS)
    assert names([i for i in ITEMS if evaluate(i, conds, get)]) == ["a", "b"]
    for direction in ("ASC", "DESC"):
        ordered = sort_by(ITEMS, parse_order([f"metrics.loss {direction}"], ATTRS), get)
        assert ordered[-1]["name"] == "c"
    assert names(sort_by(ITEMS, parse_order(["metrics.loss"], ATTRS), get)) == ["b", "a", "c"]


@pytest.mark.parametrize("text", ["nope = 1", "metrics. = 1", "metrics.x", "a == b == c"])
def test_bad_filters_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_filter(text, ATTRS)


def test_empty_filter_matches_everything() -> None:
    assert parse_filter("  ", ATTRS) == [] and parse_filter(None, ATTRS) == []
