"""Alert rules, states and silences through the client."""

from __future__ import annotations

from typing import Any

from mlray.alerts.rules import AlertRule
from mlray.alerts.types import AlertStatus, Notification, Silence
from mlray.client.facade import Who, _Facade

__all__ = ["AlertsClient"]


class AlertsClient(_Facade):
    """Alert states, rules and silences (the ``alerts`` actor)."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("alerts", transport, who, project)

    def list(self) -> list[AlertStatus]:
        """Pending and firing alerts."""
        return self._call("alerts", read=True)

    def rules(self) -> list[AlertRule]:
        """The rules being evaluated."""
        return self._call("rules", read=True)

    def silence(self, matchers: dict[str, str], duration_s: float, comment: str = ""
                ) -> Silence:
        """Mute notifications of matching alerts for ``duration_s`` seconds."""
        return self._call("silence", matchers, duration_s, comment)

    def silences(self) -> list[Silence]:
        """Active and future silences."""
        return self._call("silences", read=True)

    def evaluate(self) -> list[Notification]:
        """Evaluate every rule now (the actor also does it on its interval)."""
        return self._transport.call("alerts", "evaluate", self._who)
