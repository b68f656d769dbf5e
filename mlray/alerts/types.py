"""What the alert engine hands out: alert states, notifications and silences."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AlertState", "AlertStatus", "Notification", "Silence", "fingerprint"]


class AlertState(enum.StrEnum):
    """Where one alert (a rule and a label set) is."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of a label set (alertname included): the deduplication key."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Notification(BaseModel):
    """One message to the channels: an alert started firing, fires still, or resolved."""

    model_config = ConfigDict(frozen=True)

    alertname: str
    state: AlertState = Field(description="firing or resolved.")
    severity: str
    labels: dict[str, str] = Field(description="Series labels plus alertname and severity.")
    annotations: dict[str, str]
    value: float | None = Field(description="The value that made it fire (last seen).")
    threshold: float
    starts_at: float = Field(description="Epoch seconds when it started firing.")
    ends_at: float | None = Field(None, description="Epoch seconds when it resolved.")
    fingerprint: str
    channels: list[str] = Field(description="Channel names it goes to.")
    action: str | None = None


class AlertStatus(BaseModel):
    """A live alert as ``mlray alerts list`` shows it."""

    model_config = ConfigDict(frozen=True)

    alertname: str
    state: AlertState
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float | None
    active_at: float = Field(description="When the condition first held.")
    fired_at: float | None
    silenced_by: list[str] = Field(default_factory=list)


class Silence(BaseModel):
    """Mutes notifications of alerts whose labels match, from ``starts_at`` to ``ends_at``.

    Silenced alerts still move between states; only their notifications (and actions)
    wait.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    matchers: dict[str, str] = Field(description="Label matchers in the compact form "
                                                 "('x', '!=x', '=~re', '!~re').")
    starts_at: float
    ends_at: float
    created_by: str = "unknown"
    comment: str = ""

    def active(self, now: float) -> bool:
        """Whether it mutes alerts at ``now``."""
        return self.starts_at <= now < self.ends_at
