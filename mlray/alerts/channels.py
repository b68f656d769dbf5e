"""Notification channels (log, webhook, Redis pub/sub) and the dispatcher in front of them.

The engine hands notifications to a :class:`Dispatcher`, which only enqueues: each
channel has a bounded queue and its own worker thread, so a webhook that hangs or
fails delays nothing but its own later messages (when its queue is full the oldest
message is dropped and counted). Channel errors are logged and counted, never raised.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
import redis

from mlray._private.redact import url_origin
from mlray.alerts.rules import (
    AlertsConfig,
    ChannelConfig,
    LogChannelConfig,
    RedisChannelConfig,
    WebhookChannelConfig,
)
from mlray.alerts.types import AlertState, Notification
from mlray.errors import BackendUnavailable, ConfigError

__all__ = ["Channel", "ChannelStats", "Dispatcher", "LogChannel", "RedisChannel",
           "WebhookChannel", "build_channel", "build_dispatcher"]

logger = logging.getLogger("mlray.alerts")

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def payload(notification: Notification) -> str:
    """The JSON body every channel sends."""
    return json.dumps(notification.model_dump(mode="json"), separators=(",", ":"))


class Channel(Protocol):
    """Delivers one notification; may block and may raise (the dispatcher copes)."""

    name: str

    def send(self, notification: Notification) -> None:
        """Deliver ``notification`` or raise."""

    def close(self) -> None:
        """Release connections."""


class LogChannel:
    """Writes notifications to Python logging: critical at ERROR, firing at WARNING."""

    def __init__(self, name: str = "log", logger_name: str = "mlray.alerts") -> None:
        self.name = name
        self._logger = logging.getLogger(logger_name)

    def send(self, notification: Notification) -> None:
        """Log one line with the alert, its state, value and labels."""
        if notification.state is AlertState.RESOLVED:
            level = logging.INFO
        else:
            level = logging.ERROR if notification.severity == "critical" else logging.WARNING
        summary = notification.annotations.get("summary", "")
        self._logger.log(level, "alert %s %s value=%s labels=%s %s", notification.alertname,
                         notification.state.value, notification.value,
                         notification.labels, summary)

    def close(self) -> None:
        """Nothing to release."""


class WebhookChannel:
    """POSTs the notification as JSON; retries transport errors, 429 and 5xx with backoff.

    The delay before retry ``n`` (from 0) is ``min(max_backoff_s, backoff_s * 2**n)``.
    """

    def __init__(self, name: str, url: str, *, headers: Mapping[str, str] | None = None,
                 timeout_s: float = 5.0, max_retries: int = 3, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self.url = name, url
        self.shown = url_origin(url)  # the path and query may hold the webhook's token
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, \
            max_backoff_s
        self._sleep = sleep
        self._client = httpx.Client(timeout=timeout_s, headers=dict(headers or {}))
        self.attempts = 0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** retry))

    def send(self, notification: Notification) -> None:
        """POST once plus up to ``max_retries`` retries.

        Raises:
            BackendUnavailable: every attempt failed, or the server refused it (4xx).
        """
        body = payload(notification)
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self.delay(attempt - 1))
            self.attempts += 1
            try:
                response = self._client.post(
                    self.url, content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {str(exc).replace(self.url, self.shown)}"
                continue
            if response.is_success:
                return
            last = f"HTTP {response.status_code}"
            if response.status_code not in _RETRY_STATUS:
                break
        raise BackendUnavailable(f"webhook {self.name} ({self.shown}) failed: {last}",
                                 field=self.name)

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class RedisChannel:
    """PUBLISHes the notification as JSON on a Redis pub/sub channel."""

    def __init__(self, name: str, url: str, channel: str = "mlray:alerts", *,
                 client: redis.Redis | None = None) -> None:
        self.name, self.url, self.channel = name, url, channel
        self._client = client or redis.Redis.from_url(url, socket_timeout=5,
                                                      socket_connect_timeout=5)

    def send(self, notification: Notification) -> None:
        """Publish once (no subscriber listening is not an error).

        Raises:
            BackendUnavailable: Redis cannot be reached.
        """
        try:
            self._client.publish(self.channel, payload(notification))
        except redis.RedisError as exc:
            raise BackendUnavailable(f"redis channel {self.name}: {exc}",
                                     field=self.name) from None

    def close(self) -> None:
        """Close the Redis connections."""
        self._client.close()


@dataclass
class ChannelStats:
    """Counts of one channel's deliveries."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0


_STOP = object()


class _Worker:
    """A bounded queue and the thread that drains it into one channel."""

    def __init__(self, channel: Channel, queue_size: int) -> None:
        self.channel = channel
        self.stats = ChannelStats()
        self.queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self.thread = threading.Thread(target=self._run, name=f"mlray-alerts-{channel.name}",
                                       daemon=True)
        self.thread.start()

    def put(self, item: object) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.queue.task_done()
                    self.stats.dropped += 1
                    logger.warning("alerts: channel %s is behind; dropped its oldest "
                                   "notification", self.channel.name)
                except queue.Empty:
                    continue

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, Notification)
                self.channel.send(item)
                self.stats.sent += 1
            except Exception as exc:
                self.stats.failed += 1
                logger.warning("alerts: channel %s could not deliver: %s", self.channel.name,
                               exc)
            finally:
                self.queue.task_done()

    def idle(self, timeout: float) -> bool:
        with self.queue.all_tasks_done:
            return self.queue.all_tasks_done.wait_for(
                lambda: self.queue.unfinished_tasks == 0, timeout)


class Dispatcher:
    """Routes notifications to their channels without ever blocking or raising.

    Call it (or :meth:`submit`) with a notification; use it as the engine's ``notify``.
    """

    def __init__(self, channels: Mapping[str, Channel], queue_size: int = 1000,
                 queue_sizes: Mapping[str, int] | None = None) -> None:
        sizes = queue_sizes or {}
        self._workers = {name: _Worker(ch, sizes.get(name, queue_size))
                         for name, ch in channels.items()}
        self.unknown = 0

    def __call__(self, notification: Notification) -> None:
        self.submit(notification)

    def submit(self, notification: Notification) -> None:
        """Enqueue ``notification`` for each of its channels (unknown names are counted)."""
        for name in notification.channels:
            worker = self._workers.get(name)
            if worker is None:
                self.unknown += 1
                logger.warning("alerts: %s names unknown channel %r", notification.alertname,
                               name)
                continue
            worker.put(notification)

    def stats(self) -> dict[str, ChannelStats]:
        """Deliveries per channel name."""
        return {name: w.stats for name, w in self._workers.items()}

    def wait_idle(self, timeout: float = 10.0, channels: Iterable[str] | None = None) -> bool:
        """Wait until the queues (of ``channels``, default all) are drained and delivered;
        False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        names = self._workers if channels is None else channels
        return all(self._workers[n].idle(max(0.0, deadline - time.monotonic())) for n in names)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers (waiting up to ``timeout`` for queued work) and the channels."""
        deadline = time.monotonic() + timeout
        for w in self._workers.values():
            w.put(_STOP)
        for w in self._workers.values():
            w.thread.join(max(0.0, deadline - time.monotonic()))
            try:
                w.channel.close()
            except Exception:
                logger.debug("alerts: closing channel %s failed", w.channel.name,
                             exc_info=True)


def build_channel(name: str, config: ChannelConfig, *, redis_url: str | None = None) -> Channel:
    """The channel a config entry describes; ``redis_url`` is the platform's Redis.

    Raises:
        ConfigError: a Redis channel without a URL and no platform Redis.
    """
    if isinstance(config, LogChannelConfig):
        return LogChannel(name, config.logger)
    if isinstance(config, WebhookChannelConfig):
        return WebhookChannel(name, config.url, headers=config.headers,
                              timeout_s=config.timeout_s, max_retries=config.max_retries,
                              backoff_s=config.backoff_s, max_backoff_s=config.max_backoff_s)
    if isinstance(config, RedisChannelConfig):
        url = config.url or redis_url
        if url is None:
            raise ConfigError(f"channels.{name}.url: no Redis URL and the platform has none",
                              field=f"channels.{name}.url")
        return RedisChannel(name, url, config.channel)
    raise ConfigError(f"channels.{name}: unknown channel type", field=f"channels.{name}")


def build_dispatcher(config: AlertsConfig, *, redis_url: str | None = None) -> Dispatcher:
    """A dispatcher over every channel of ``config`` (webhooks keep their queue size)."""
    channels = {n: build_channel(n, c, redis_url=redis_url) for n, c in config.channels.items()}
    sizes = {n: c.queue_size for n, c in config.channels.items()
             if isinstance(c, WebhookChannelConfig)}
    return Dispatcher(channels, queue_sizes=sizes)
