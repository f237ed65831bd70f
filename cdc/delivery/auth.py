"""Authentication and scopes: opaque tokens from a file, HS256 JWTs (PyJWT), ``mint_token``.

Invariants:
- A token's text never appears in an exception message, a log line or a metric.
- Opaque tokens are compared in constant time (every configured token is compared, with
  ``hmac.compare_digest`` on SHA-256 digests); they may subscribe to everything (no values
  restriction, no admin).
- JWTs must be HS256, carry ``exp``, and are verified with the secret from the secret file.
  Scope claims: ``types``, ``cf``, ``prefix`` (lists: what the holder may receive), ``values``
  (bool), ``admin`` (bool).
- Clock skew: ``iat`` and ``nbf`` may lie up to :data:`CLOCK_SKEW_S` (60 s) in our future (a
  backend whose clock runs fast still mints usable tokens); ``exp`` gets no leeway at all
  (:data:`EXP_LEEWAY_S` = 0): a token is never honoured past its expiry by our clock.
- Every claim is validated before use: a malformed claim (wrong type, non-finite number, a
  string that is not encodable as UTF-8, more than :data:`MAX_SCOPE_ITEMS` scope entries or an
  entry longer than :data:`MAX_SCOPE_ITEM_LEN`) is a clean ``AuthError`` 4401 that names the
  claim, never another exception.
- Scope policy (documented in docs/design.md): a request that *names* something outside the
  token's scope (a type, cf or prefix it may not receive, or ``values=1`` without ``values``)
  is refused with 4403; a request that names nothing is *narrowed* to the token's scope.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import jwt
import msgspec

from cdc.errors import AuthError, ConfigError
from cdc.model.redact import register_secret

__all__ = ["Grant", "Authenticator", "mint_token", "narrow", "parse_tokens", "FULL_GRANT"]


def parse_tokens(text: str) -> list[str]:
    """The tokens of a tokens file: THE one parser (the daemon, ``cdc config`` and
    ``cdc tail --token-file`` all use it).

    Rule: one token per line, surrounding whitespace ignored, blank lines skipped. ``#`` starts
    a comment at the start of a line or after whitespace (``tok-1   # ci runner``); anywhere
    else it is part of the token (``abc#123`` is one token). Tokens never contain whitespace.

    Raises:
        ValueError: a line holds two words before any comment (message gives the token's number
            and line, never its text).
    """
    out: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        for i, w in enumerate(words):
            if w.startswith("#"):
                words = words[:i]
                break
        if not words:
            continue
        if len(words) > 1:
            raise ValueError(f"token #{len(out) + 1} contains whitespace (line {n}; one token per line, # after a space starts a comment)")
        out.append(words[0])
    return out


class Grant:
    """What a verified token allows. ``None`` for a scope list means "everything"."""

    __slots__ = ("subject", "types", "cfs", "prefixes", "values", "admin", "exp")

    def __init__(
        self,
        subject: str = "",
        *,
        types: frozenset[str] | None = None,
        cfs: frozenset[str] | None = None,
        prefixes: tuple[bytes, ...] | None = None,
        values: bool = True,
        admin: bool = False,
        exp: float | None = None,
    ) -> None:
        self.subject = subject
        self.types = types
        self.cfs = cfs
        self.prefixes = prefixes
        self.values = values
        self.admin = admin
        self.exp = exp

    def __repr__(self) -> str:
        return f"Grant(subject={self.subject!r}, admin={self.admin}, exp={self.exp})"


FULL_GRANT = Grant("insecure-no-auth", values=True, admin=True)


CLOCK_SKEW_S = 60.0
"""Leeway for ``iat``/``nbf`` in the future (the minting backend's clock may run fast)."""
EXP_LEEWAY_S = 0.0
"""Leeway for ``exp``: none, an expired token is refused by our clock."""
MAX_SCOPE_ITEMS = 256
"""At most this many entries in each of ``types``, ``cf``, ``prefix``."""
MAX_SCOPE_ITEM_LEN = 1024
"""At most this many characters in one scope entry (and in ``sub``)."""
MAX_EXP = 253402300799.0
"""Year 9999: a later ``exp`` is stored as this (timers and the browser stay in range)."""


def _bad(name: str, what: str) -> AuthError:
    return AuthError(f"invalid token: claim '{name}' {what}", 4401)


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ScopeItem = Annotated[str, msgspec.Meta(max_length=MAX_SCOPE_ITEM_LEN)]
_Scope = Annotated[list[_ScopeItem], msgspec.Meta(max_length=MAX_SCOPE_ITEMS)] | _ScopeItem | None
_Time = int | float | msgspec.UnsetType  # absent: UNSET; null is not a number


class Claims(msgspec.Struct, kw_only=True):
    """The claims cdc reads from a signature-checked JWT (others are ignored). msgspec checks
    types and bounds; :meth:`Authenticator._grant` checks the times and the text."""

    exp: _Time = msgspec.UNSET
    nbf: _Time = msgspec.UNSET
    iat: _Time = msgspec.UNSET
    sub: _ScopeItem | None = None
    types: _Scope = None
    cf: _Scope = None
    prefix: _Scope = None
    values: bool | None = None
    admin: bool | None = None


_CLAIM_TYPE_ERRORS = {
    "exp": "must be a number (seconds since the epoch)",
    "nbf": "must be a number (seconds since the epoch)",
    "iat": "must be a number (seconds since the epoch)",
    "sub": "must be a string",
    "types": "must be a list of strings",
    "cf": "must be a list of strings",
    "prefix": "must be a list of strings",
    "values": "must be a boolean",
    "admin": "must be a boolean",
}


def _decode_claims(claims: dict[str, Any]) -> Claims:
    """msgspec's verdict on the claims, as the one-line 4401 reason that names the claim."""
    try:
        return msgspec.convert(claims, Claims, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        name = text.rsplit("at `$.", 1)[-1].split("[", 1)[0].rstrip("`") if "at `$." in text else ""
        if name not in _CLAIM_TYPE_ERRORS:
            raise AuthError("invalid token: malformed claims", 4401) from None
        if name == "sub" and "length" in text:
            raise _bad("sub", f"must be valid text of at most {MAX_SCOPE_ITEM_LEN} characters") from None
        if "`array` of length" in text:
            raise _bad(name, f"has more than {MAX_SCOPE_ITEMS} entries") from None
        if "`str` of length" in text:
            raise _bad(name, f"has an entry longer than {MAX_SCOPE_ITEM_LEN} characters") from None
        raise _bad(name, _CLAIM_TYPE_ERRORS[name]) from None


def _scope(v: list[str] | str | None, name: str) -> frozenset[str] | None:
    """A scope claim: absent/null -> None, a string -> one item, else the list's items."""
    if v is None:
        return None
    items = [v] if isinstance(v, str) else v
    for x in items:
        if not _encodable(x):
            raise _bad(name, "has an entry that is not valid Unicode text")
    return frozenset(items)


def _time(v: float | msgspec.UnsetType, name: str) -> float | None:
    """A NumericDate claim: a finite number (an infinite or huge ``exp`` is :data:`MAX_EXP`)."""
    if v is msgspec.UNSET:
        return None
    try:
        f = float(v)
    except OverflowError:
        f = math.inf if v > 0 else -math.inf
    if not math.isfinite(f):
        if name == "exp" and f > 0:
            return MAX_EXP
        raise _bad(name, "must be a finite number")
    return f


class Authenticator:
    """Verifies tokens against a tokens file and/or a JWT secret file.

    Args:
        tokens_file: path of the opaque tokens file (see :func:`parse_tokens`).
        jwt_secret_file: path of the HS256 secret (surrounding whitespace ignored).
        insecure_no_auth: accept anything (and nothing) as a full admin grant.

    Raises:
        ConfigError: a file is unreadable or empty (the message names the file, not its content).
    """

    def __init__(
        self,
        tokens_file: str | None = None,
        jwt_secret_file: str | None = None,
        *,
        insecure_no_auth: bool = False,
    ) -> None:
        self.insecure = insecure_no_auth
        self._digests: list[bytes] = []
        self._secret: bytes | None = None
        if tokens_file:
            try:
                with open(tokens_file, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read tokens file {tokens_file}: {exc.__class__.__name__}") from None
            try:
                tokens = parse_tokens("\n".join(lines))
            except ValueError as exc:
                raise ConfigError(f"--tokens-file: {tokens_file}: {exc}") from None
            for tok in tokens:
                self._digests.append(hashlib.sha256(tok.encode()).digest())
                register_secret(tok)  # never in a log line, whoever logs it
            if not self._digests:
                raise ConfigError(f"tokens file {tokens_file} has no tokens")
        if jwt_secret_file:
            try:
                with open(jwt_secret_file, "rb") as f:
                    secret = f.read().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read jwt secret file {jwt_secret_file}: {exc.__class__.__name__}") from None
            if not secret:
                raise ConfigError(f"jwt secret file {jwt_secret_file} is empty")
            self._secret = secret
            register_secret(secret)

    @property
    def configured(self) -> bool:
        """True when at least one auth source exists (or auth is explicitly disabled)."""
        return self.insecure or bool(self._digests) or self._secret is not None

    def verify(self, token: str | None, *, now: float | None = None) -> Grant:
        """Return the grant of a token.

        Raises:
            AuthError: (code 4401) missing, invalid or expired token.
        """
        if self.insecure:
            return FULL_GRANT
        if not token:
            raise AuthError("missing token", 4401)
        if self._digests:
            digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
            found = False
            for d in self._digests:  # compare all: no early exit
                found |= hmac.compare_digest(d, digest)
            if found:
                return Grant("token", values=True, admin=False)
        if self._secret is not None and token.count(".") == 2:
            return self._verify_jwt(token, now)
        raise AuthError("invalid token", 4401)

    def _verify_jwt(self, token: str, now: float | None) -> Grant:
        assert self._secret is not None
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                # signature, algorithm and exp presence by PyJWT; time claims below (own leeways)
                options={"require": ["exp"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.MissingRequiredClaimError:
            raise AuthError("invalid token: exp claim required", 4401) from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid token", 4401) from None
        except Exception:  # anything PyJWT did not anticipate in a hostile token
            raise AuthError("invalid token", 4401) from None
        if not isinstance(claims, dict):
            raise AuthError("invalid token", 4401)
        try:
            return self._grant(claims, time.time() if now is None else now)
        except AuthError:
            raise
        except Exception:  # defence in depth: a claim must never escape as another error
            raise AuthError("invalid token: malformed claims", 4401) from None

    @staticmethod
    def _grant(raw: dict[str, Any], now: float) -> Grant:
        """Validate the claims of a signature-checked JWT at time ``now``; build its grant."""
        claims = _decode_claims(raw)
        exp = _time(claims.exp, "exp")
        if exp is None:
            raise AuthError("invalid token: exp claim required", 4401)
        if exp <= now - EXP_LEEWAY_S:
            raise AuthError("token expired", 4401)
        nbf = _time(claims.nbf, "nbf")
        if nbf is not None and nbf > now + CLOCK_SKEW_S:
            raise AuthError("token not yet valid (nbf)", 4401)
        iat = _time(claims.iat, "iat")
        if iat is not None and iat > now + CLOCK_SKEW_S:
            raise AuthError("token not yet valid (iat is in the future)", 4401)
        sub = claims.sub or ""
        if not _encodable(sub):
            raise _bad("sub", f"must be valid text of at most {MAX_SCOPE_ITEM_LEN} characters")
        prefixes = _scope(claims.prefix, "prefix")
        return Grant(
            sub,
            types=_scope(claims.types, "types"),
            cfs=_scope(claims.cf, "cf"),
            prefixes=tuple(p.encode("utf-8") for p in prefixes) if prefixes is not None else None,
            values=bool(claims.values),
            admin=bool(claims.admin),
            exp=min(exp, MAX_EXP),
        )


def narrow(
    grant: Grant,
    types: Sequence[str] | None,
    cfs: Sequence[str] | None,
    prefixes: Sequence[bytes] | None,
    values: bool,
) -> tuple[frozenset[str] | None, frozenset[str] | None, tuple[bytes, ...] | None]:
    """Check a request against a grant; return the effective (types, cfs, prefixes).

    A request that names nothing for a dimension gets the grant's scope; a request that names
    something outside the scope is refused.

    Raises:
        AuthError: (code 4403) the request asks for more than the token allows.
    """
    if values and not grant.values:
        raise AuthError("token does not allow values", 4403)
    out_types = _narrow_set("types", grant.types, types)
    out_cfs = _narrow_set("cf", grant.cfs, cfs)
    if prefixes is None:
        out_prefixes = grant.prefixes
    else:
        if grant.prefixes is not None:
            for p in prefixes:
                if not p.startswith(grant.prefixes):
                    raise AuthError("token does not allow this prefix", 4403)
        out_prefixes = tuple(prefixes)
    return out_types, out_cfs, out_prefixes


def _narrow_set(name: str, allowed: frozenset[str] | None, asked: Iterable[str] | None) -> frozenset[str] | None:
    if asked is None:
        return allowed
    asked_set = frozenset(asked)
    if allowed is not None and not asked_set <= allowed:
        raise AuthError(f"token does not allow these {name}", 4403)
    return asked_set


def mint_token(
    secret: str | bytes,
    subject: str = "cdc",
    ttl: float = 3600.0,
    types: Sequence[str] | None = None,
    cf: Sequence[str] | None = None,
    prefix: Sequence[str] | None = None,
    admin: bool = False,
    values: bool = False,
    *,
    now: float | None = None,
) -> str:
    """Mint an HS256 JWT for ``serve --jwt-secret-file`` (``cdc token``).

    Args:
        secret: the key (text as in the secret file; surrounding whitespace ignored).
        ttl: seconds until ``exp``.
        types / cf / prefix: scope lists (None: unrestricted; empty lists are kept as empty);
            at most :data:`MAX_SCOPE_ITEMS` entries of :data:`MAX_SCOPE_ITEM_LEN` characters,
            as the verifier accepts (``ConfigError`` otherwise).
    """
    key = secret.encode() if isinstance(secret, str) else secret
    key = key.strip()
    if not key:
        raise ConfigError("jwt secret is empty")
    for name, items in (("types", types), ("cf", cf), ("prefix", prefix)):
        if items is not None and (len(items) > MAX_SCOPE_ITEMS or any(len(x) > MAX_SCOPE_ITEM_LEN for x in items)):
            raise ConfigError(f"--{name}: at most {MAX_SCOPE_ITEMS} entries of at most {MAX_SCOPE_ITEM_LEN} characters")
    iat = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": iat, "exp": iat + max(1, int(round(ttl)))}
    if types is not None:
        claims["types"] = list(types)
    if cf is not None:
        claims["cf"] = list(cf)
    if prefix is not None:
        claims["prefix"] = list(prefix)
    if values:
        claims["values"] = True
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, key, algorithm="HS256")
