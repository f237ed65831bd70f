"""Query parameters of ``/ws/events`` and ``/events`` and the checks on client-message fields
(filter lists, ``key`` under a token's prefixes, echoable ``ref``). Pure: values in, values or
``ValueError`` / ``AuthError`` out."""

from __future__ import annotations

from typing import Any

from cdc.delivery.auth import Grant
from cdc.delivery.hub import check_filter_lists
from cdc.delivery.stats import STATS_TYPE
from cdc.errors import AuthError
from cdc.model.events import EVENT_TYPES

__all__ = ["SubscriptionRequest", "parse_subscription", "narrow_keys", "MAX_ID", "MAX_REF_CHARS", "MAX_COALESCE_MS", "MAX_POLL_LIMIT", "DEFAULT_POLL_LIMIT", "DEFAULT_POLL_TIMEOUT_S"]

MAX_POLL_LIMIT = 10_000
DEFAULT_POLL_LIMIT = 1000
DEFAULT_POLL_TIMEOUT_S = 25.0
MAX_ID = (1 << 63) - 1
"""Largest ``since`` accepted (ids are int64 on the wire; msgpack cannot carry more)."""
MAX_REF_CHARS = 256
MAX_COALESCE_MS = 60_000
"""Longest ``coalesce`` window (milliseconds)."""


class SubscriptionRequest:
    """Parsed query parameters of ``/ws/events`` and ``/events``."""

    __slots__ = ("types", "cfs", "prefixes", "keys", "coalesce_ms", "values", "batch", "msgpack", "since", "timeout_s", "limit", "epoch")

    def __init__(self) -> None:
        self.types: list[str] | None = None
        self.cfs: list[str] | None = None
        self.prefixes: list[bytes] | None = None
        self.keys: list[bytes] | None = None
        self.coalesce_ms = 0
        self.values = False
        self.batch = False
        self.msgpack = False
        self.since: int | None = None
        self.timeout_s: float | None = None
        self.limit = DEFAULT_POLL_LIMIT
        self.epoch: str | None = None


def _csv(v: str) -> list[str]:
    return [x for x in (p.strip() for p in v.split(",")) if x]


def _bool(name: str, v: str) -> bool:
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be 0 or 1")


def parse_subscription(params: list[tuple[str, str]]) -> SubscriptionRequest:
    """Parse query parameters; repeated ``types``/``cf``/``prefix`` accumulate (comma lists too).

    ``prefix`` values are taken as-is (not split on commas: keys may contain commas).

    Raises:
        ValueError: a parameter that is not what the contract says (one line).
    """
    req = SubscriptionRequest()
    for name, v in params:
        if name == "types":
            req.types = (req.types or []) + _csv(v)
        elif name == "cf":
            req.cfs = (req.cfs or []) + _csv(v)
        elif name == "prefix":
            req.prefixes = (req.prefixes or []) + [v.encode("utf-8", "surrogateescape")]
        elif name == "key":
            req.keys = (req.keys or []) + [v.encode("utf-8", "surrogateescape")]
        elif name == "coalesce":
            try:
                ms = int(v)
            except ValueError:
                raise ValueError(f"coalesce must be an integer from 0 to {MAX_COALESCE_MS} (milliseconds)") from None
            if not 0 <= ms <= MAX_COALESCE_MS:
                raise ValueError(f"coalesce must be an integer from 0 to {MAX_COALESCE_MS} (milliseconds)")
            req.coalesce_ms = ms
        elif name == "values":
            req.values = _bool("values", v)
        elif name == "batch":
            req.batch = _bool("batch", v)
        elif name == "format":
            if v not in ("json", "msgpack"):
                raise ValueError("format must be json or msgpack")
            req.msgpack = v == "msgpack"
        elif name == "since":
            if v == "":
                continue
            try:
                since = int(v)
            except ValueError:
                raise ValueError("since must be a non-negative integer") from None
            if since < 0 or since > MAX_ID:
                raise ValueError(f"since must be an integer from 0 to {MAX_ID}")
            req.since = since
        elif name == "epoch":
            if len(v) > 64:
                raise ValueError("epoch: at most 64 characters")
            req.epoch = v or None
        elif name == "timeout":
            try:
                t = float(v)
            except ValueError:
                raise ValueError("timeout must be a number of seconds") from None
            if not t >= 0:
                raise ValueError("timeout must be a number of seconds")
            req.timeout_s = t
        elif name == "limit":
            try:
                n = int(v)
            except ValueError:
                raise ValueError("limit must be a positive integer") from None
            if n <= 0:
                raise ValueError("limit must be a positive integer")
            req.limit = min(n, MAX_POLL_LIMIT)
    check_filter_lists(req.types, req.cfs, req.prefixes, req.keys)
    if req.types is not None:
        for t in req.types:
            if t not in EVENT_TYPES and "." not in t and t != STATS_TYPE:
                raise ValueError(f"unknown event type {t[:40]!r}")
    return req


def _list_field(m: dict[str, Any], name: str) -> tuple[bool, list[str] | None]:
    """(present, value) of an optional list-of-strings field of a client message."""
    if name not in m:
        return False, None
    v = m[name]
    if v is None:
        return True, None
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{name} must be a list of strings")
    raw = [x.encode("utf-8", "surrogateescape") for x in v] if name in ("prefix", "key") else None
    check_filter_lists(v if name == "types" else None, v if name == "cf" else None, raw if name == "prefix" else None, raw if name == "key" else None)
    return True, v


def narrow_keys(grant: Grant, keys: list[bytes] | None) -> frozenset[bytes] | None:
    """The ``key`` filter under a token: a token scoped by prefix may watch keys under its prefixes only.

    Raises:
        AuthError: (4403) a key outside the token's prefixes.
    """
    if keys is None:
        return None
    if grant.prefixes is not None:
        for k in keys:
            if not k.startswith(grant.prefixes):
                raise AuthError("token does not allow this key", 4403)
    return frozenset(keys)


def _ref_ok(ref: Any) -> bool:
    """A client ``ref`` is echoed only when every format can carry it: an int64 or a short string."""
    if isinstance(ref, bool):
        return True
    if type(ref) is int:
        return -MAX_ID - 1 <= ref <= MAX_ID
    return isinstance(ref, str) and len(ref) <= MAX_REF_CHARS

