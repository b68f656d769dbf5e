"""A small cron parser: five fields (minute hour day-of-month month day-of-week), in UTC.

Each field takes ``*``, numbers, ranges ``a-b``, steps ``*/n`` or ``a-b/n`` and lists of
those; day-of-week is 0-6 from Sunday (7 is Sunday too). As in cron, when both day fields
are restricted a day matches either of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

__all__ = ["CronSchedule"]

_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            start, end = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(span)
            end = high if step_text else start
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"cron {_NAMES[index]} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression; :meth:`next_after` finds the next matching minute."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse ``expression``.

        Raises:
            ValueError: not five fields, or a field out of range (names the field).
        """
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"cron {expression!r} needs 5 fields (minute hour day month "
                             f"weekday), got {len(parts)}")
        try:
            fields = [_field(p, i) for i, p in enumerate(parts)]
        except ValueError as exc:
            if "outside" in str(exc):
                raise
            raise ValueError(f"cron {expression!r}: {exc}") from None
        return cls(*fields, any_day=parts[2] == "*", any_weekday=parts[4] == "*")

    def _day_matches(self, day: dt.datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, t: float) -> float:
        """The first matching minute strictly after Unix time ``t``.

        Raises:
            ValueError: nothing matches within ten years (e.g. February 31st).
        """
        at = dt.datetime.fromtimestamp(t, dt.UTC).replace(second=0, microsecond=0)
        at += dt.timedelta(minutes=1)
        limit = at + dt.timedelta(days=3660)
        while at < limit:
            if at.month not in self.months:
                year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
                at = at.replace(year=year, month=month, day=1, hour=0, minute=0)
            elif not self._day_matches(at):
                at = (at + dt.timedelta(days=1)).replace(hour=0, minute=0)
            elif at.hour not in self.hours:
                at = (at + dt.timedelta(hours=1)).replace(minute=0)
            elif at.minute not in self.minutes:
                at += dt.timedelta(minutes=1)
            else:
                return at.timestamp()
        raise ValueError("cron expression matches no time within ten years")
