"""What the auth tests share: a hand-moved clock and a counted slow key check."""

from __future__ import annotations

from mlray.auth import KeyBook
from mlray.identity import Caller


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counting:
    """The slow path, counted (so a test sees when a key was checked in full)."""

    def __init__(self, book: KeyBook) -> None:
        self.book, self.calls = book, 0

    def __call__(self, key: str) -> Caller:
        self.calls += 1
        return self.book.resolve(key)
