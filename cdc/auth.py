"""Authentication and scopes: opaque tokens from a file, HS256 JWTs (PyJWT), ``mint_token``.

Invariants:
- A token's text never appears in an exception message, a log line or a metric.
- Opaque tokens are compared in constant time (every configured token is compared, with
  ``hmac.compare_digest`` on SHA-256 digests); they may subscribe to everything (no values
  restriction, no admin).
- JWTs must be HS256, carry ``exp``, and are verified with the secret from the secret file.
  Scope claims: ``types``, ``cf``, ``prefix`` (lists: what the holder may receive), ``values``
  (bool), ``admin`` (bool).
- Scope policy (documented in docs/design.md): a request that *names* something outside the
  token's scope (a type, cf or prefix it may not receive, or ``values=1`` without ``values``)
  is refused with 4403; a request that names nothing is *narrowed* to the token's scope.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence
from typing import Any

import jwt

from .errors import AuthError, ConfigError

__all__ = ["Grant", "Authenticator", "mint_token", "narrow", "FULL_GRANT"]


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


def _str_list(claims: dict[str, Any], name: str) -> frozenset[str] | None:
    v = claims.get(name)
    if v is None:
        return None
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise AuthError(f"invalid token: claim {name!r} must be a list of strings", 4401)
    return frozenset(v)


class Authenticator:
    """Verifies tokens against a tokens file and/or a JWT secret file.

    Args:
        tokens_file: path of the opaque tokens file (one per line, ``#`` comments).
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
            for line in lines:
                tok = line.split("#", 1)[0].strip()
                if tok:
                    self._digests.append(hashlib.sha256(tok.encode()).digest())
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
                options={"require": ["exp"], "verify_exp": now is None},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", 4401) from None
        except jwt.MissingRequiredClaimError:
            raise AuthError("invalid token: exp claim required", 4401) from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid token", 4401) from None
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)):
            raise AuthError("invalid token: exp claim required", 4401)
        if now is not None and exp <= now:
            raise AuthError("token expired", 4401)
        prefixes = _str_list(claims, "prefix")
        values = claims.get("values", False)
        admin = claims.get("admin", False)
        return Grant(
            str(claims.get("sub", "")),
            types=_str_list(claims, "types"),
            cfs=_str_list(claims, "cf"),
            prefixes=tuple(p.encode() for p in prefixes) if prefixes is not None else None,
            values=values is True,
            admin=admin is True,
            exp=float(exp),
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
        types / cf / prefix: scope lists (None: unrestricted; empty lists are kept as empty).
    """
    key = secret.encode() if isinstance(secret, str) else secret
    key = key.strip()
    if not key:
        raise ConfigError("jwt secret is empty")
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
