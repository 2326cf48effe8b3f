"""The authorization server's signing keys, as Grace needs them to verify access tokens.

The issuer's metadata is discovered as an MCP server's clients discover it: RFC 8414
(``/.well-known/oauth-authorization-server``) first, then OpenID Connect Discovery
(``/.well-known/openid-configuration``), each in the path-inserted form and, for OIDC, the
path-appended one too. Its ``issuer`` must be the configured one (RFC 8414 section 3.3);
its ``jwks_uri`` gives the keys.

The key set is kept in memory and read again:

- when a token names a key id it does not hold (the issuer rotated its key), at most once
  per ``refresh_min_s`` — a flood of tokens with made-up key ids costs one fetch per period,
  and concurrent requests for the same new key share one fetch;
- when it is older than ``max_age_s`` (so withdrawn keys drop out).

A fetch that fails keeps the keys already held; with none, verification answers "the
issuer cannot be reached" (a 503 at the door, not a 401 sending the client to log in again).
Every fetch is counted in ``grace_oauth_fetches_total{document, outcome}`` and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError
from prometheus_client import CollectorRegistry, Counter

from mads.core.errors import MadError
from mads.core.logs import quoted

MAX_DOCUMENT_BYTES = 1024 * 1024
FETCH_TIMEOUT_S = 10.0


class IssuerUnavailable(MadError):
    """The issuer's metadata or keys cannot be had right now (one line, for logs and 503s)."""


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be, in the order the MCP authorization spec tries
    them (RFC 8414 section 3.1, OpenID Connect Discovery 1.0 section 4)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(well_known: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, well_known, "", ""))

    if not path:
        return [
            at("/.well-known/oauth-authorization-server"),
            at("/.well-known/openid-configuration"),
        ]
    return [
        at(f"/.well-known/oauth-authorization-server{path}"),
        at(f"/.well-known/openid-configuration{path}"),
        at(f"{path}/.well-known/openid-configuration"),
    ]


def same_issuer(a: str, b: str) -> bool:
    """Issuer identifiers compared as RFC 8414 says, a trailing slash aside."""
    return a.rstrip("/") == b.rstrip("/")


@dataclass(frozen=True)
class KeySet:
    keys: dict[str, PyJWK]
    """By key id; a key without an id is kept under ``""``."""
    fetched_at: float


class IssuerKeys:
    """The issuer's discovered metadata and its signing keys (used from one event loop)."""

    def __init__(
        self,
        issuer: str,
        http: httpx.AsyncClient,
        *,
        refresh_min_s: float,
        max_age_s: float,
        logger: logging.Logger,
        metrics: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._http = http
        self._refresh_min_s = refresh_min_s
        self._max_age_s = max_age_s
        self.log = logger
        self._clock = clock
        self._lock = asyncio.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._last_attempt: float | None = None
        self.fetches = Counter(
            "grace_oauth_fetches",
            "Documents Grace fetched from the OAuth authorization server",
            ["document", "outcome"],
            registry=metrics,
        )
        for document in ("metadata", "jwks"):
            for outcome in ("ok", "error"):
                self.fetches.labels(document=document, outcome=outcome)

    @property
    def issuer_id(self) -> str:
        """The issuer as its metadata spells it (what tokens carry in ``iss``)."""
        if self._metadata is not None:
            return str(self._metadata.get("issuer", self.issuer))
        return self.issuer

    async def key(self, kid: str | None) -> PyJWK | None:
        """The key with id ``kid`` (None: the one key of a set without ids), fetching the
        set again when it lacks it and the rate allows; None when the issuer has no such
        key. Raises :class:`IssuerUnavailable` when no key set can be had at all."""
        wanted = kid or ""
        held = self._keys
        if held is not None and wanted in held.keys and not self._stale(held):
            return held.keys[wanted]
        async with self._lock:
            held = self._keys  # another request may have fetched it meanwhile
            if held is None or wanted not in held.keys or self._stale(held):
                await self._refresh()
            held = self._keys
        if held is None:
            raise IssuerUnavailable(f"no signing keys from {self.issuer} yet")
        return held.keys.get(wanted)

    def _stale(self, held: KeySet) -> bool:
        return self._clock() - held.fetched_at >= self._max_age_s

    def _may_refresh(self) -> bool:
        last = self._last_attempt
        return last is None or self._clock() - last >= self._refresh_min_s

    async def _refresh(self) -> None:
        """Fetch the key set again, unless it was fetched (or tried) less than
        ``refresh_min_s`` ago: then what is held stays, and with nothing held the issuer
        is unavailable."""
        held = self._keys
        if not self._may_refresh():
            if held is not None:
                return
            raise IssuerUnavailable(
                f"the signing keys of {self.issuer} could not be fetched; retrying at most "
                f"every {self._refresh_min_s:g} s"
            )
        self._last_attempt = self._clock()
        try:
            metadata = self._metadata or await self._discover()
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise IssuerUnavailable(f"the metadata of {self.issuer} names no jwks_uri")
            document = await self._fetch("jwks", jwks_uri) or {}
        except IssuerUnavailable as exc:
            self.log.warning("OAuth: %s (keeping the keys held, if any)", exc)
            if held is None:
                raise
            return
        self._keys = KeySet(signing_keys(document, self.log), self._clock())
        self.log.info(
            "OAuth: fetched %d signing key(s) from %s (key ids: %s)",
            len(self._keys.keys),
            jwks_uri,
            ", ".join(quoted(k, 40) for k in sorted(self._keys.keys)) or "none",
        )

    async def _discover(self) -> dict[str, Any]:
        problems = []
        for url in metadata_urls(self.issuer):
            try:
                metadata = await self._fetch("metadata", url, missing_ok=True)
            except IssuerUnavailable as exc:
                problems.append(str(exc))
                continue
            if metadata is None:
                continue
            named = metadata.get("issuer")
            if not isinstance(named, str) or not same_issuer(named, self.issuer):
                raise IssuerUnavailable(
                    f"the metadata at {url} names issuer {quoted(named)}, not {self.issuer} "
                    "(GRACE_OAUTH_ISSUER)"
                )
            self._metadata = metadata
            self.log.info("OAuth: authorization server metadata read from %s", url)
            return metadata
        tried = (
            "; ".join(problems)
            if problems
            else "none of " + ", ".join(metadata_urls(self.issuer)) + " answered"
        )
        raise IssuerUnavailable(f"no authorization server metadata for {self.issuer}: {tried}")

    async def _fetch(
        self, document: str, url: str, *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        try:
            data = await fetch_json(self._http, url)
        except MissingDocument:
            if missing_ok:
                return None
            self.fetches.labels(document=document, outcome="error").inc()
            raise IssuerUnavailable(f"{url} answered 404") from None
        except IssuerUnavailable:
            self.fetches.labels(document=document, outcome="error").inc()
            raise
        self.fetches.labels(document=document, outcome="ok").inc()
        return data


class MissingDocument(MadError):
    """404/410: nothing at that address (try the next one)."""


async def fetch_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """A JSON object from ``url`` (GET), at most :data:`MAX_DOCUMENT_BYTES`."""
    try:
        async with http.stream("GET", url, headers={"accept": "application/json"}) as response:
            if response.status_code in (404, 410):
                raise MissingDocument(url)
            if response.status_code != 200:
                raise IssuerUnavailable(f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise IssuerUnavailable(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(f"{url} cannot be reached ({type(exc).__name__})") from None
    try:
        data = json.loads(bytes(body))
    except ValueError:
        raise IssuerUnavailable(f"{url} did not send JSON") from None
    if not isinstance(data, dict):
        raise IssuerUnavailable(f"{url} did not send a JSON object")
    return data


def signing_keys(document: dict[str, Any], logger: logging.Logger) -> dict[str, PyJWK]:
    """The usable signature keys of a JWK Set, by key id: public keys only (a set that
    publishes a symmetric or private key has that key skipped), ``use`` ``sig`` or unset."""
    found: dict[str, PyJWK] = {}
    keys = document.get("keys")
    if not isinstance(keys, list):
        return found
    for entry in keys:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") == "oct" or "d" in entry:
            logger.warning(
                "OAuth: the issuer's JWKS publishes a symmetric or private key (%s); skipped",
                quoted(entry.get("kid", "")),
            )
            continue
        try:
            key = PyJWK(entry)
        except PyJWTError as exc:
            logger.warning(
                "OAuth: skipped key %s of the issuer's JWKS (%s)",
                quoted(entry.get("kid", "")),
                exc,
            )
            continue
        kid = entry.get("kid")
        found[kid if isinstance(kid, str) else ""] = key
    return found
