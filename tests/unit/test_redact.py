"""Credentials never reach a message, an error body, a config repr or status output."""

from __future__ import annotations

import pickle

import pytest

from mlray._private.redact import redact, redact_all
from mlray.config import load_config
from mlray.errors import BackendUnavailable, ConfigError, MlrayError
from mlray.features.online import open_online_store
from mlray.storage import open_state_store
from tests.conftest import free_port

SECRET = "hunter2-Sekret"


@pytest.mark.parametrize(("text", "shown"), [
    ("at redis://app:hunter2@db:6379/0: refused", "at redis://app:***@db:6379/0: refused"),
    ("redis://:p@ss@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
    ("rediss://tok3n@host/0", "rediss://***@host/0"),
    ("redis://h:1/0?password=abc&db=1", "redis://h:1/0?password=***&db=1"),
    ("s3://b/k?access_key=AK&secret_key=SK", "s3://b/k?access_key=***&secret_key=***"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("mail ops@example.com", "mail ops@example.com"),
])
def test_redact_masks_url_passwords_and_secret_parameters(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_all_walks_nested_values() -> None:
    out = redact_all({"a": [f"redis://:{SECRET}@h/0"], "b": (1, f"x?token={SECRET}")})
    assert SECRET not in repr(out) and out["b"][0] == 1


def _leaks(exc: MlrayError) -> list[str]:
    back = pickle.loads(pickle.dumps(exc))
    texts = [str(exc), exc.message, repr(exc), str(exc.to_dict()), str(back), str(back.to_dict())]
    return [t for t in texts if SECRET in t]


def test_a_dead_redis_with_a_password_never_shows_it() -> None:
    url = f"redis://mlray:{SECRET}@127.0.0.1:{free_port()}/0"
    with pytest.raises(BackendUnavailable) as state_err:
        open_state_store(url)
    with pytest.raises(BackendUnavailable) as online_err:
        open_online_store(f"{url}?password={SECRET}", project="default")
    for err in (state_err.value, online_err.value):
        assert not _leaks(err), err
        assert "127.0.0.1" in err.message  # still says where


def test_config_errors_and_the_config_repr_hide_passwords() -> None:
    with pytest.raises(ConfigError) as bad:
        load_config(env={"MLRAY_STATE_URL": f"postgres://u:{SECRET}@db/x"})
    assert not _leaks(bad.value) and "postgres" in bad.value.message
    config = load_config(env={"MLRAY_STATE_URL": f"redis://u:{SECRET}@db:6379/0"})
    assert SECRET not in repr(config) and SECRET in config.resolved_state_url


def test_every_mlray_error_masks_at_construction() -> None:
    err = BackendUnavailable(f"lost redis://:{SECRET}@h:1/0 and ?password={SECRET}")
    assert not _leaks(err)


def test_log_records_are_masked_whatever_logger_or_handler(
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from mlray._private.redact import install_log_redaction

    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        log.info("connecting to %s", "redis://app:s3cret@db:6379/0")
        try:
            raise ConnectionError("redis://:hunter2@db:6379 refused")
        except ConnectionError:
            log.exception("lost %s", "the store")
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "s3cret" not in text and "hunter2" not in text, text
    assert "redis://app:***@db:6379/0" in text


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.example.com/services/T0/B0/tok", "https://hooks.example.com/***"),
    ("http://u:p@10.0.0.1:8080/hook?token=t", "http://10.0.0.1:8080/***"),
    ("https://alerts.example.com", "https://alerts.example.com"),
    ("https://alerts.example.com/", "https://alerts.example.com"),
    ("not a url", "***"),
])
def test_url_origin_keeps_only_scheme_host_and_port(url: str, shown: str) -> None:
    from mlray._private.redact import url_origin

    assert url_origin(url) == shown


def test_alert_channel_settings_never_show_a_webhook_token_or_header_in_repr() -> None:
    """A webhook's path is its token and its headers carry credentials: the settings'
    repr and str (as a log line or an error would show them) keep only the origin."""
    from mlray.alerts.rules import parse_rules

    config = parse_rules({"channels": {
        "oncall": {"type": "webhook", "url": "https://hooks.example.com/services/T0/B0/TOKEN9",
                   "headers": {"Authorization": "Bearer HEADERTOKEN"}},
        "pub": {"type": "redis", "url": "redis://app:REDISPW@db:6379/0"}}, "rules": []})
    for shown in (repr(config), str(config), repr(config.channels["oncall"]),
                  f"{config.channels['pub']!r}"):
        for secret in ("TOKEN9", "HEADERTOKEN", "REDISPW"):
            assert secret not in shown, shown
    assert "https://hooks.example.com/***" in repr(config)
    assert "redis://app:***@db:6379/0" in repr(config)


def test_tokens_and_the_internal_credential_are_masked_whole() -> None:
    token = "mlt_eyJ1c2VyIjoiYW5hIn0.c2lnbmF0dXJl-_x"
    internal = "mli_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"
    shown = redact(f"token {token} and {internal}; html_mlt_ stays")
    assert token not in shown and internal not in shown
    assert shown == "token mlt_*** and mli_***; html_mlt_ stays"
