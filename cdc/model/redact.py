"""Redaction of credentials in text (log lines, error messages): the one redactor.

Anything that looks like a credential (``token=...``, ``Bearer ...``, ``"token": "..."``,
JWT-shaped strings, ``secret: ...``/``password=...``, credential header lines, and the exact text
of every configured token/key registered with :func:`register_secret`) becomes ``[REDACTED]``;
prose such as ``invalid token: claim 'prefix'`` and file names such as ``jwt-secret`` stay.
websockets' frame dumps are reduced to direction, opcode, close code and size.

Pure string processing; the registry of configured secrets is process-wide.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact", "register_secret", "summarize_frame"]

REDACTED = "[REDACTED]"

_KEY = r"[\w-]*(?:token|secret|password|passwd|api[_-]?key)"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JWTs, whole or truncated (header.payload.signature, base64url; a header starts eyJ = '{"')
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),
    # Authorization headers
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"',;]+"), r"\1\2" + REDACTED),
    # credential-carrying header lines as websockets logs them ("< Cookie: ...")
    (
        re.compile(r"(?im)^([<>] (?:authorization|proxy-authorization|cookie|set-cookie|x-[\w-]*(?:token|key|secret|auth)[\w-]*):[ \t]*)(?!.*\[REDACTED\])\S.*$"),
        r"\1" + REDACTED,
    ),
    # token=..., access_token=..., secret=..., password=... (query strings, key=value)
    (
        re.compile(rf"(?i)(\b{_KEY}\s*=\s*[\"']?)(?!\[REDACTED\])([^\s\"'&,;}}\]]+)"),
        r"\1" + REDACTED,
    ),
    # "token": "...", 'secret': '...' (a quoted key with a quoted value: JSON, dict reprs)
    (
        re.compile(rf"(?i)(\\?[\"']{_KEY}\\?[\"']\s*:\s*\\?[\"'])(?!\[REDACTED\])([^\"'\\]+)"),
        r"\1" + REDACTED,
    ),
)
_COLON_RE = re.compile(r"(?i)(\b[\w-]*(?:secret|password|passwd|api[_-]?key)\s*:\s*)(?!\[REDACTED\])([^\s\"'&,;}\]]+)")
_OPTION_LABEL_RE = re.compile(r"--[\w-]+:\s*$")


def _colon_form(m: re.Match[str]) -> str:
    """``secret: hunter2`` -> ``secret: [REDACTED]``, but a *path* that ends in such a word is
    left alone: ``--secret-file: jwt-secret: no such file`` and ``/etc/cdc/jwt-secret: permission
    denied`` name files (the key follows a path character, or is the value of an option label)."""
    start = m.start()
    text = m.string
    if start and text[start - 1] in "/\\.~":
        return m.group(0)
    if _OPTION_LABEL_RE.search(text, max(0, start - 80), start):
        return m.group(0)
    return m.group(1) + REDACTED


_PATTERNS += (
    # secret: ..., password: ... (unquoted colon form; not for "token", see below; not for paths)
    (_COLON_RE, _colon_form),  # type: ignore[arg-type]
)
# Not redacted on purpose: prose such as "invalid token: claim 'prefix' ..." (the word "token"
# followed by a colon and an unquoted word is a message, not a credential).

# websockets' frame dumps: "< TEXT '{...}' [34 bytes]", "> BINARY 81 a2 ... [9 bytes]",
# "< CLOSE 4401 (private use) reason [35 bytes]". The payload (which may hold an ``auth`` frame's
# token, whole or as head/tail pieces) is replaced by its size; a close frame keeps its code.
_FRAME_RE = re.compile(
    r"^([<>]) (TEXT|BINARY|CONT|PING|PONG|CLOSE)\b(?: (\d{4})\b)?.*?(\[[^\[\]]*\bbytes?\b[^\[\]]*\])?\s*$",
    re.S,
)

_MIN_SECRET_LEN = 8
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None


def register_secret(value: str | bytes) -> None:
    """Redact every later occurrence of ``value`` (a configured token or key) in log lines.

    Values shorter than 8 characters are ignored (they would redact ordinary words).
    """
    global _secrets_re
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = value.strip()
    if len(value) < _MIN_SECRET_LEN or value in _secrets:
        return
    _secrets.add(value)
    _secrets_re = re.compile("|".join(re.escape(v) for v in sorted(_secrets, key=len, reverse=True)))


def summarize_frame(text: str) -> str:
    """A websockets frame log line reduced to direction, opcode, close code and size."""
    m = _FRAME_RE.match(text)
    if m is None:
        return text
    direction, opcode, code, size = m.groups()
    out = f"{direction} {opcode}"
    if opcode == "CLOSE" and code:
        out += f" {code}"
    return f"{out} {size}" if size else out


def redact(text: str) -> str:
    """Replace everything that looks like a credential in ``text``."""
    if text[:2] in ("< ", "> "):
        text = summarize_frame(text)
    if _secrets_re is not None:
        text = _secrets_re.sub(REDACTED, text)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text
