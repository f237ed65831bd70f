"""Logging set-up: one line per event, text or JSON, journald friendly, secrets redacted.

Invariants:
- every record becomes exactly one line (newlines in messages and tracebacks are escaped);
- anything that looks like a credential (``token=...``, ``Bearer ...``, ``"token": "..."``,
  JWT-shaped strings, ``secret=...``/``password=...``, credential header lines, and the exact
  text of every configured token/key registered with :func:`register_secret`) is replaced by
  ``[REDACTED]`` before it is written, whatever logger produced it (the filter sits on the
  handler); prose such as ``invalid token: claim 'prefix'`` is left alone;
- websockets' frame dumps (``< TEXT '...' [N bytes]``, ``> BINARY 81 a2 ...``, ``CLOSE``...)
  never show a payload: only direction, opcode, close code and byte count (an ``auth`` frame
  carries a token, and websockets prints a frame's head *and tail*);
- under journald (``$JOURNAL_STREAM`` names our stderr) text lines carry a ``<N>`` syslog
  priority prefix and no timestamp, since journald records both itself.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import msgspec

__all__ = ["RedactingFilter", "JsonFormatter", "TextFormatter", "redact", "register_secret", "setup_logging", "summarize_frame"]

from cdc.model.redact import REDACTED, redact, register_secret, summarize_frame  # noqa: F401 (re-exported)


class RedactingFilter(logging.Filter):
    """Redacts the rendered message (args included) of every record passing through.

    Attach to handlers, so records from any logger (websockets, asyncio, ...) are covered.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        clean = redact(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        return True


_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00.000Z INFO cdc.app: message key=value`` on one line."""

    _PRIO = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self, *, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        extras = _extras(record)
        if extras:
            msg += " " + " ".join(f"{k}={_short(v)}" for k, v in extras.items())
        if record.exc_info:
            msg += " | " + self.formatException(record.exc_info)
        if record.stack_info:
            msg += " | " + record.stack_info
        msg = redact(msg).replace("\r", "\\r").replace("\n", "\\n")
        if self.journald:
            prio = self._PRIO.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
            return f"<{prio}>{record.name}: {msg}"
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{ts}.{int(record.msecs):03d}Z {record.levelname} {record.name}: {msg}"


def _short(v: Any) -> str:
    s = str(v)
    return s if s and not any(c.isspace() for c in s) else repr(s)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ms), ``time``, ``level``, ``logger``, ``msg``, extras, ``exc``."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": int(record.created * 1000),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for k, v in _extras(record).items():
            if k not in out:
                out[k] = redact(v) if isinstance(v, str) else v
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact(record.stack_info)
        try:
            data = self._encoder.encode(out)
        except (TypeError, ValueError, OverflowError):
            out = {k: (v if isinstance(v, str | int | float | bool) or v is None else repr(v)) for k, v in out.items()}
            data = self._encoder.encode(out)
        return data.decode("utf-8", "replace")


def under_journald(stream: IO[str], environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journald stream named by ``$JOURNAL_STREAM`` (dev:inode)."""
    js = environ.get("JOURNAL_STREAM", "")
    if not js:
        return False
    try:
        dev, ino = (int(x) for x in js.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return st.st_dev == dev and st.st_ino == ino


_HANDLER_NAME = "cdc-root"


def setup_logging(
    fmt: str = "text",
    level: str = "info",
    *,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Configure the root logger once (idempotent): one handler on stderr with redaction.

    Args:
        fmt: ``text`` or ``json``.
        level: ``debug`` ... ``critical``.
        stream: defaults to ``sys.stderr``.
        environ: defaults to ``os.environ`` (for ``JOURNAL_STREAM``).
    """
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(journald=under_journald(stream, environ)))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # websockets logs every handshake failure at INFO/ERROR with tracebacks; keep it quieter.
    if root.level <= logging.DEBUG:
        logging.getLogger("websockets").setLevel(logging.INFO)
    else:
        logging.getLogger("websockets").setLevel(logging.WARNING)
    # watchfiles logs every batch of file changes at INFO ("1 change detected")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler
