"""Log-safe renderings for the network edge: no token, query string or credential header reaches
a log line; websockets' own records carry ``peer=host:port`` instead of a connection object."""

from __future__ import annotations

import logging
import re
from typing import Any

from cdc.server.http import _Connection

__all__ = ["_redact", "_redact_ws", "_peer", "_clean", "_RedactFilter", "_ws_logger"]

_TOKEN_RE = re.compile(r"(token=)[^&\s\"']+|(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


_QUERY_RE = re.compile(r"(/[^\s?]*)\?[^\s]*")


def _redact(text: str) -> str:
    return _TOKEN_RE.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


_SECRET_HEADER_RE = re.compile(r"^([<>] (?:Cookie|Set-Cookie|Authorization|Proxy-Authorization|Sec-WebSocket-Protocol):).*$", re.IGNORECASE)


def _redact_ws(text: str) -> str:
    """websockets' lines: tokens redacted, credential headers blanked, query strings dropped
    (``/ws/events?[query]``)."""
    return _QUERY_RE.sub(r"\1?[query]", _SECRET_HEADER_RE.sub(r"\1 [redacted]", _redact(text)))


def _peer(conn: Any) -> str:
    """``host:port`` of a connection's peer ("?" when unknown); never raises."""
    try:
        addr = conn.remote_address
    except Exception:  # pragma: no cover - transport gone
        return "?"
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return "?" if addr is None else str(addr)


def _clean(text: str, limit: int = 120) -> str:
    """A log-safe one-line rendering of a peer- or token-controlled string (no credentials)."""
    text = _redact(text[:limit])
    return "".join(c if c.isprintable() and not c.isspace() or c == " " else "?" for c in text)


class _RedactFilter(logging.Filter):
    """Removes tokens from websockets' log records (messages, args and tracebacks).

    websockets attaches the connection object as the ``websocket`` extra; it is replaced by
    ``peer=host:port`` so that log lines say who it was instead of an object address.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        conn = record.__dict__.pop("websocket", None)
        if conn is not None:
            if record.levelno < logging.INFO and isinstance(conn, _Connection) and conn.cdc_plain:
                return False  # a plain HTTP request websockets never handled ("no valid HTTP request" at its EOF)
            record.peer = _peer(conn)
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover
            return True
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = _redact_ws(msg)
        record.args = None
        return True


def _ws_logger() -> logging.Logger:
    lg = logging.getLogger("cdc.websockets")
    if not any(isinstance(f, _RedactFilter) for f in lg.filters):
        lg.addFilter(_RedactFilter())
    if lg.level == logging.NOTSET and logging.getLogger("cdc").getEffectiveLevel() > logging.DEBUG:
        lg.setLevel(logging.WARNING)  # one INFO line per connection open/close is noise at scale
    return lg

