"""Notification channels against real servers: HTTP webhooks and Redis pub/sub."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from mlray.alerts.channels import (
    Dispatcher,
    LogChannel,
    RedisChannel,
    WebhookChannel,
    build_dispatcher,
)
from mlray.alerts.engine import AlertEngine
from mlray.alerts.rules import AlertRule, parse_rules
from mlray.alerts.types import AlertState, Notification
from mlray.errors import BackendUnavailable, ConfigError
from tests.conftest import free_port


def notification(**fields: Any) -> Notification:
    base: dict[str, Any] = {
        "alertname": "DriftHigh", "state": AlertState.FIRING, "severity": "warning",
        "labels": {"model": "fraud", "version": "1", "alertname": "DriftHigh",
                   "severity": "warning"},
        "annotations": {"summary": "drift 0.5"}, "value": 0.5, "threshold": 0.3,
        "starts_at": 1000.0, "fingerprint": "abc", "channels": ["hook"]}
    return Notification(**{**base, **fields})


class Server:
    """A local HTTP server: answers ``statuses`` in turn (then 200); ``hold`` blocks answers."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.hold: threading.Event | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                server.bodies.append(json.loads(self.rfile.read(length)))
                server.arrived.set()
                if server.hold is not None:
                    server.hold.wait(30)
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def silent_socket() -> Iterator[str]:
    """A URL whose server accepts connections (kernel backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.close()


def test_webhook_posts_the_notification_as_json(server: Server) -> None:
    hook = WebhookChannel("hook", server.url, headers={"authorization": "Bearer t"})
    hook.send(notification())
    hook.close()
    body = server.bodies[0]
    assert body["alertname"] == "DriftHigh" and body["state"] == "firing"
    assert body["labels"]["model"] == "fraud" and body["annotations"] == {"summary": "drift 0.5"}
    assert body["value"] == 0.5 and body["starts_at"] == 1000.0 and body["ends_at"] is None


def test_webhook_retries_with_exponential_backoff(server: Server) -> None:
    server.statuses = [503, 500]
    slept: list[float] = []
    hook = WebhookChannel("hook", server.url, max_retries=3, backoff_s=0.25, sleep=slept.append)
    hook.send(notification())
    hook.close()
    assert hook.attempts == 3 and len(server.bodies) == 3
    assert slept == [0.25, 0.5]


def test_webhook_gives_up_after_retries_and_on_client_errors(server: Server) -> None:
    server.statuses = [503] * 10
    slept: list[float] = []
    hook = WebhookChannel("hook", server.url, max_retries=2, backoff_s=1, sleep=slept.append)
    with pytest.raises(BackendUnavailable, match="HTTP 503"):
        hook.send(notification())
    assert hook.attempts == 3 and slept == [1, 2]
    server.statuses = [400]
    with pytest.raises(BackendUnavailable, match="HTTP 400"):
        hook.send(notification())
    assert hook.attempts == 4  # a 4xx is not retried
    hook.close()
    capped = WebhookChannel("x", server.url, backoff_s=1, max_backoff_s=5)
    assert [capped.delay(n) for n in range(5)] == [1, 2, 4, 5, 5]
    capped.close()


def test_webhook_that_never_answers_times_out_and_retries(silent_socket: str) -> None:
    slept: list[float] = []
    hook = WebhookChannel("hook", silent_socket, timeout_s=0.2, max_retries=1, backoff_s=0.1,
                          sleep=slept.append)
    with pytest.raises(BackendUnavailable, match="Timeout"):
        hook.send(notification())
    assert hook.attempts == 2 and slept == [0.1]
    hook.close()


def test_unreachable_webhook_is_reported() -> None:
    hook = WebhookChannel("hook", f"http://127.0.0.1:{free_port()}/", max_retries=1,
                          sleep=lambda _: None)
    with pytest.raises(BackendUnavailable, match="ConnectError"):
        hook.send(notification())
    hook.close()


def test_a_hanging_webhook_never_blocks_evaluation(server: Server) -> None:
    server.hold = threading.Event()
    hook = WebhookChannel("hook", server.url, timeout_s=60, max_retries=0)
    dispatcher = Dispatcher({"hook": hook, "log": LogChannel()}, queue_sizes={"hook": 2})
    rule = AlertRule.model_validate({"name": "DriftHigh", "metric": "mlray_drift_share",
                                     "operator": ">", "threshold": 0.3, "for": 0,
                                     "channels": ["hook", "log"]})
    now = [1000.0]
    samples = [("mlray_drift_share", {"model": "fraud", "version": "1"}, 0.5, now[0])]
    engine = AlertEngine([rule], lambda: samples, notify=dispatcher, repeat_interval=1,
                         clock=lambda: now[0])
    assert len(engine.evaluate()) == 1
    assert server.arrived.wait(10)  # the webhook is stuck inside its POST...
    for _ in range(5):  # ...while evaluation goes on, repeating the notification
        now[0] += 1
        assert len(engine.evaluate()) == 1
    assert not server.hold.is_set()
    stats = dispatcher.stats()
    assert stats["hook"].dropped == 3 and stats["hook"].sent == 0  # bounded queue of 2
    assert dispatcher.wait_idle(10, ["log"])  # the log channel is not held up by the webhook...
    server.hold.set()  # ...and once the server answers, the queued ones go out
    assert dispatcher.wait_idle(10)
    assert stats["hook"].sent == 3 and stats["log"].sent == 6
    dispatcher.close()


def test_dispatcher_counts_failures_and_unknown_channels(silent_socket: str) -> None:
    hook = WebhookChannel("hook", silent_socket, timeout_s=0.1, max_retries=0)
    dispatcher = Dispatcher({"hook": hook})
    dispatcher(notification(channels=["hook", "pager"]))
    assert dispatcher.unknown == 1
    assert dispatcher.wait_idle(10)
    assert dispatcher.stats()["hook"].failed == 1
    dispatcher.close()


def test_log_channel(caplog: pytest.LogCaptureFixture) -> None:
    channel = LogChannel()
    with caplog.at_level(logging.INFO, logger="mlray.alerts"):
        channel.send(notification(severity="critical"))
        channel.send(notification(state=AlertState.RESOLVED, ends_at=2000.0))
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels[0][0] == logging.ERROR and "DriftHigh firing" in levels[0][1]
    assert levels[1][0] == logging.INFO and "DriftHigh resolved" in levels[1][1]


def test_redis_channel_publishes(redis_url: str, redis_prefix: str) -> None:
    topic = f"{redis_prefix}:alerts"
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(topic)
    assert pubsub.get_message(timeout=5) is None  # consumes the subscribe confirmation
    config = parse_rules({"channels": {"bus": {"type": "redis", "channel": topic}}})
    dispatcher = build_dispatcher(config, redis_url=redis_url)
    dispatcher(notification(channels=["bus"], state=AlertState.RESOLVED, ends_at=2000.0))
    assert dispatcher.wait_idle(10)
    message = pubsub.get_message(timeout=10)
    assert message is not None and message["channel"].decode() == topic
    body = json.loads(message["data"])
    assert (body["alertname"], body["state"], body["ends_at"]) == ("DriftHigh", "resolved",
                                                                    2000.0)
    assert body["labels"]["version"] == "1"
    dispatcher.close()
    pubsub.close()
    client.close()


def test_redis_channel_unreachable() -> None:
    channel = RedisChannel("bus", f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BackendUnavailable, match="redis channel bus"):
        channel.send(notification())
    channel.close()
    with pytest.raises(ConfigError, match="no Redis URL"):
        build_dispatcher(parse_rules({"channels": {"bus": {"type": "redis"}}}))


def test_a_failing_webhook_never_shows_its_token(caplog: pytest.LogCaptureFixture) -> None:
    """A webhook's path is its secret: errors and logs name only scheme, host and port."""
    url = f"http://user:pw@127.0.0.1:{free_port()}/services/T0/B0/SeCrEtToKeN?sig=abc"
    hook = WebhookChannel("hook", url, max_retries=0, sleep=lambda _: None)
    with pytest.raises(BackendUnavailable) as caught:
        hook.send(notification())
    assert "SeCrEtToKeN" not in str(caught.value) and "pw" not in str(caught.value)
    assert "http://127.0.0.1:" in str(caught.value) and "/***" in str(caught.value)
    dispatcher = Dispatcher({"hook": hook})
    with caplog.at_level(logging.WARNING):
        dispatcher.submit(notification())
        assert dispatcher.wait_idle()
        dispatcher.close()
    assert "could not deliver" in caplog.text and "SeCrEtToKeN" not in caplog.text
