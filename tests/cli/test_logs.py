"""Logging: one line per record, JSON mode, journald priorities, redaction of credentials."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile

import pytest

from cdc.daemon.logs import redact, setup_logging

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.c2lnbmF0dXJlLWhlcmU"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /ws/events?since=3&token=opaque-abc-123&types=x", "opaque-abc-123"),
        ("Authorization: Bearer opaque-xyz", "opaque-xyz"),
        ('{"op": "auth", "token": "refresh-me-42"}', "refresh-me-42"),
        (f"rejected {JWT} (expired)", JWT),
        (f"bad jwt {JWT[:60]}", JWT[:60]),
        ("access_token=aaa&x=1", "aaa"),
        ("secret: hunter2", "hunter2"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "[REDACTED]" in out


def test_redact_keeps_ordinary_text() -> None:
    for s in ["listening on 127.0.0.1:8765", "tokens_file=/etc/cdc/tokens", "key user:1 seq 42", "id=5 cursor=9"]:
        assert redact(s) == s


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_one_object_per_line(restore_logging) -> None:
    buf = io.StringIO()
    setup_logging("json", "debug", stream=buf, environ={})
    log = logging.getLogger("cdc.test")
    log.info("client %s sent token=%s", "1.2.3.4", "abc-secret", extra={"peer": "1.2.3.4", "n": 3})
    try:
        raise ValueError("multi\nline")
    except ValueError:
        log.exception("failed with Bearer zzz")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    a, b = (json.loads(x) for x in lines)
    assert a["level"] == "info" and a["logger"] == "cdc.test" and a["peer"] == "1.2.3.4" and a["n"] == 3
    assert "abc-secret" not in lines[0] and "[REDACTED]" in a["msg"]
    assert b["level"] == "error" and "ValueError" in b["exc"] and "zzz" not in lines[1]
    assert isinstance(a["ts"], int)


def test_text_one_line_and_other_loggers_redacted(restore_logging) -> None:
    buf = io.StringIO()
    setup_logging("text", "info", stream=buf, environ={})
    logging.getLogger("websockets.server").warning("handshake from %s: token=%s\nsecond", "x", "leak-me")
    logging.getLogger("cdc").debug("hidden at info")
    out = buf.getvalue()
    assert out.count("\n") == 1 and "leak-me" not in out and "WARNING websockets.server:" in out
    assert "hidden" not in out


def test_journald_priority_prefix(restore_logging) -> None:
    with tempfile.TemporaryFile("w+") as f:
        st = os.fstat(f.fileno())
        setup_logging("text", "info", stream=f, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        logging.getLogger("cdc.app").warning("lag high")
        logging.getLogger("cdc.app").info("ready")
        f.seek(0)
        lines = f.read().splitlines()
    assert lines == ["<4>cdc.app: lag high", "<6>cdc.app: ready"]


def test_setup_is_idempotent(restore_logging) -> None:
    buf = io.StringIO()
    setup_logging("text", "info", stream=buf, environ={})
    setup_logging("text", "info", stream=buf, environ={})
    logging.getLogger("cdc").info("once")
    assert buf.getvalue().count("once") == 1
