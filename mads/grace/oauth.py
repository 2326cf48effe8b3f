"""OAuth 2.1 access tokens at the front door: who a bearer token speaks for, or why not.

A JWT access token (RFC 9068) is verified here, against the issuer's own keys
(:mod:`mads.grace.issuer`), with PyJWT: the signature with the key its ``kid`` names, by
an algorithm on the allow-list only (never ``none``, never an HMAC); ``iss`` the issuer;
``aud`` naming Grace's resource (RFC 8707); ``exp`` (required), ``nbf`` and ``iat`` with a
small leeway. A token that is not a JWT is asked about at the RFC 7662 introspection
endpoint when one is configured (:mod:`mads.grace.introspection`), and refused otherwise.

The token's scopes (``scope``, RFC 9068, or ``scp``) become a :class:`Principal` through
the scopes file (:mod:`mads.grace.scope_map`), named by its ``sub`` (or ``client_id``).

A verdict is kept per token (by its SHA-256: the token itself is not kept) until the token
expires, so a client calling again costs a hash and a dictionary lookup, as a static token
does. Refusals are one line and never contain the token.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidSubjectError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWTError,
)

from mads.core.logs import quoted
from mads.grace.introspection import Introspection
from mads.grace.issuer import IssuerKeys, IssuerUnavailable, same_issuer
from mads.grace.scope_map import ScopeMap
from mads.grace.verdicts import Accepted, Refused

CACHE_ENTRIES = 10_000
"""Tokens whose verdict is kept; past it the oldest is forgotten (and verified again)."""
MAX_TOKEN_BYTES = 16 * 1024


class OAuthVerifier:
    def __init__(
        self,
        keys: IssuerKeys,
        scopes: ScopeMap,
        *,
        audiences: list[str],
        algorithms: list[str],
        leeway_s: float,
        introspection: Introspection | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.scopes = scopes
        self.audiences = audiences
        self.algorithms = algorithms
        self.leeway_s = leeway_s
        self.introspection = introspection
        self._clock = clock
        self._accepted: OrderedDict[bytes, Accepted] = OrderedDict()

    async def verify(self, token: bytes) -> Accepted | Refused:
        if len(token) > MAX_TOKEN_BYTES:
            return Refused(f"the bearer token is longer than {MAX_TOKEN_BYTES} bytes")
        key = hashlib.sha256(token).digest()
        known = self._accepted.get(key)
        now = self._clock()
        if known is not None:
            if now <= known.expires_at:
                return known
            del self._accepted[key]
            return Refused("the access token expired")
        verdict = await self._verify(token.decode("ascii", "replace"), now)
        if isinstance(verdict, Accepted):
            self._remember(key, verdict)
        return verdict

    def _remember(self, key: bytes, verdict: Accepted) -> None:
        self._accepted[key] = verdict
        while len(self._accepted) > CACHE_ENTRIES:
            self._accepted.popitem(last=False)

    async def _verify(self, token: str, now: float) -> Accepted | Refused:
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            if self.introspection is None:
                return Refused(
                    "invalid bearer token (neither a known token nor a JWT access token)"
                )
            return await self._introspect(token, now)
        return await self._verify_jwt(token, header, now)

    async def _verify_jwt(
        self, token: str, header: dict[str, Any], now: float
    ) -> Accepted | Refused:
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            return Refused(
                f"the access token is signed with algorithm {quoted(algorithm, 20)}, which "
                f"Grace does not accept ({', '.join(self.algorithms)})"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            return Refused("the access token's key id (kid) is not a string")
        try:
            key = await self.keys.key(kid)
        except IssuerUnavailable as exc:
            return Refused(f"cannot verify access tokens right now: {exc}", status=503)
        if key is None:
            return Refused(
                f"the access token is signed with key {quoted(kid or '', 60)}, which is not "
                f"among the issuer's keys"
            )
        issuer = self.keys.issuer_id
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[str(algorithm)],
                audience=self.audiences,
                issuer=[issuer, issuer.rstrip("/"), issuer.rstrip("/") + "/"],
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except PyJWTError as exc:
            return Refused(self._describe(exc, token))
        return self._accept(claims, now)

    async def _introspect(self, token: str, now: float) -> Accepted | Refused:
        assert self.introspection is not None
        try:
            claims = await self.introspection.claims(token)
        except IssuerUnavailable as exc:
            return Refused(f"cannot verify the access token right now: {exc}", status=503)
        if claims.get("active") is not True:
            return Refused("the access token is not active (revoked, expired or unknown)")
        expires = _number(claims.get("exp"))
        if expires is not None and now > expires + self.leeway_s:
            return Refused(f"the access token expired at {_when(expires)}")
        starts = _number(claims.get("nbf"))
        if starts is not None and now < starts - self.leeway_s:
            return Refused(f"the access token is not valid before {_when(starts)}")
        issuer = claims.get("iss")
        if issuer is not None and not (
            isinstance(issuer, str) and same_issuer(issuer, self.keys.issuer_id)
        ):
            return Refused(f"the access token was issued by {quoted(issuer)}, not Grace's issuer")
        audience = claims.get("aud")
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or not set(self.audiences) & set(map(str, named)):
            return Refused(self._wrong_audience(audience))
        accepted = self._accept(claims, now)
        if isinstance(accepted, Accepted):
            keep_until = now + self.introspection.cache_s
            if expires is not None:
                keep_until = min(keep_until, expires + self.leeway_s)
            accepted = Accepted(accepted.principal, keep_until)
        return accepted

    def _accept(self, claims: dict[str, Any], now: float) -> Accepted | Refused:
        subject = claims.get("sub") or claims.get("client_id")
        if not isinstance(subject, str) or not subject:
            return Refused("the access token names no subject (sub or client_id)")
        if len(subject) > 255:
            return Refused("the access token's subject is longer than 255 characters")
        principal = self.scopes.principal(subject, granted_scopes(claims))
        expires = _number(claims.get("exp"))
        until = expires + self.leeway_s if expires is not None else now
        return Accepted(principal, until)

    def _describe(self, exc: PyJWTError, token: str) -> str:
        """One line for a token PyJWT refused (its claims are read unverified only to say
        which audience or when, never to accept anything)."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except PyJWTError:
            unverified = {}
        if isinstance(exc, ExpiredSignatureError):
            return f"the access token expired at {_when(_number(unverified.get('exp')))}"
        if isinstance(exc, ImmatureSignatureError):
            return f"the access token is not valid before {_when(_number(unverified.get('nbf')))}"
        if isinstance(exc, InvalidAudienceError):
            return self._wrong_audience(unverified.get("aud"))
        if isinstance(exc, InvalidIssuerError):
            return (
                f"the access token was issued by {quoted(unverified.get('iss'))}, not by "
                f"{self.keys.issuer_id} (GRACE_OAUTH_ISSUER)"
            )
        if isinstance(exc, MissingRequiredClaimError):
            return f"the access token has no {exc.claim!r} claim"
        if isinstance(exc, InvalidSignatureError):
            return "the access token's signature does not verify with the issuer's key"
        if isinstance(exc, InvalidAlgorithmError):
            return "the access token's algorithm does not match its key"
        if isinstance(exc, InvalidSubjectError):
            return "the access token's sub is not a string"
        if isinstance(exc, InvalidIssuedAtError):
            return "the access token's iat is in the future"
        if isinstance(exc, DecodeError | InvalidTokenError):
            return "the access token is malformed"
        return "the access token is invalid"

    def _wrong_audience(self, audience: object) -> str:
        if isinstance(audience, list) and audience:
            named = ", ".join(quoted(a) for a in audience[:5])
            named += f" (and {len(audience) - 5} more)" if len(audience) > 5 else ""
        elif isinstance(audience, str):
            named = quoted(audience)
        else:
            named = "no audience"
        return f"the access token is for {named}, not for Grace ({', '.join(self.audiences)})"


def granted_scopes(claims: dict[str, Any]) -> list[str]:
    """The scopes a token carries: RFC 9068's space-separated ``scope``, or ``scp`` (a list
    or a string, as several issuers write it)."""
    found: list[str] = []
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        if isinstance(value, str):
            found += value.split()
        elif isinstance(value, list):
            found += [v for v in value if isinstance(v, str)]
    return list(dict.fromkeys(found))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "an unknown time"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
