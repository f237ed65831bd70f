"""``cdc publish``: POST one event to a running daemon's ``/publish`` (admin token).

Invariants:
- the URL may be ``http(s)://host:port[/...]`` or ``ws(s)://host:port[/ws/events]``: the
  request always goes to ``http(s)://host:port/publish``;
- the token goes in an ``Authorization: Bearer`` header and never into a message;
- success prints the server's JSON answer (``{"id": N}``) on stdout and returns 0; a rejection
  is one line (the server's reason) with exit 2; an unreachable daemon exit 3.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import msgspec

from cdc.errors import ConfigError

__all__ = ["build_body", "publish", "publish_url"]


def split_daemon_url(url: str, kind: str) -> tuple[str, urllib.parse.SplitResult]:
    """A daemon URL given as ``http(s)://``, ``ws(s)://`` or ``host:port`` -> (the scheme of
    ``kind`` ("http" or "ws") with the same security, the split URL). The one URL parser of the
    client commands (``tail``, ``publish``).

    Raises:
        ValueError: not an http(s)/ws(s) URL.
    """
    url = url.strip()
    if "://" not in url:
        url = f"{kind}://{url}"
    parts = urllib.parse.urlsplit(url)
    secure = {"http": False, "ws": False, "https": True, "wss": True}.get(parts.scheme.lower())
    if secure is None or not parts.netloc:
        raise ValueError(f"not an http(s):// or ws(s):// URL: {url!r}")
    return kind + ("s" if secure else ""), parts


def publish_url(url: str) -> str:
    """Map any daemon URL to its ``/publish`` endpoint."""
    try:
        scheme, parts = split_daemon_url(url, "http")
    except ValueError as exc:
        raise ConfigError(f"URL: {exc}") from None
    path = parts.path.rstrip("/")
    if path.endswith("/ws/events"):
        path = path[: -len("/ws/events")]
    if not path.endswith("/publish"):
        path += "/publish"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def build_body(type_: str, status: str | None, details: str | None, fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """Assemble the event body; ConfigError naming the option for malformed JSON."""
    if not type_.strip():
        raise ConfigError("--type: empty")
    body: dict[str, Any] = {"type": type_.strip()}
    if status is not None:
        body["status"] = status
    if details is not None:
        try:
            parsed = msgspec.json.decode(details.encode())
        except msgspec.DecodeError as exc:
            raise ConfigError(f"--details: invalid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise ConfigError("--details: must be a JSON object, e.g. '{\"peer\": \"b\"}'")
        body["details"] = parsed
    for item in fields:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--field: expected KEY=JSON, got {item!r}")
        try:
            body[key.strip()] = msgspec.json.decode(raw.encode())
        except msgspec.DecodeError:
            body[key.strip()] = raw  # a bare word is a string
    return body


def _reason(data: bytes) -> str:
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        text = data.decode("utf-8", "replace").strip()
        return " ".join(text.split())[:200] or "no details"
    if isinstance(obj, dict):
        for k in ("error", "message", "reason", "detail"):
            if isinstance(obj.get(k), str):
                return obj[k]
    return msgspec.json.encode(obj).decode()[:200]


def publish(url: str, body: dict[str, Any], token: str | None, *, timeout_s: float = 10.0) -> int:
    """POST the body; print the answer. Raises UserError (one line + exit code) on failure."""
    from cdc.errors import UserError

    target = publish_url(url)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(target, data=msgspec.json.encode(body), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data = resp.read()
    except urllib.error.HTTPError as exc:
        reason = _reason(exc.read() or b"")
        if exc.code == 401:
            raise UserError(f"publish rejected: token missing, invalid or expired (HTTP 401): {reason}", 2) from None
        if exc.code == 403:
            raise UserError(f"publish rejected: an admin token is required (HTTP 403): {reason}", 2) from None
        if 400 <= exc.code < 500:
            raise UserError(f"publish rejected (HTTP {exc.code}): {reason}", 2) from None
        raise UserError(f"publish failed (HTTP {exc.code}): {reason}", 1) from None
    except urllib.error.URLError as exc:
        why = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise UserError(f"cannot reach {target}: {why}", 3) from None
    except (TimeoutError, socket.timeout):
        raise UserError(f"no answer from {target} within {timeout_s:g}s", 3) from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise UserError(f"cannot talk to {target}: {type(exc).__name__}", 3) from None
    print(data.decode("utf-8", "replace").strip(), flush=True)
    return 0
