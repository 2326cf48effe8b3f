"""RFC 7662 token introspection: asking the authorization server about an opaque token.

Grace authenticates to the endpoint as a client (``client_secret_basic``: its client id and
the secret read from a file), posts the token with ``token_type_hint=access_token`` and
reads the answer's ``active``, ``exp``, ``nbf``, ``iss``, ``aud``, ``scope`` and ``sub``.
What the answer means for access is :mod:`mads.grace.oauth`'s; answers are kept for
``cache_s`` seconds at most (never past the token's ``exp``), so a token revoked at the
server is refused within that time.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from mads.grace.issuer import MAX_DOCUMENT_BYTES, IssuerUnavailable


class Introspection:
    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        cache_s: float,
        metrics: CollectorRegistry,
    ) -> None:
        self.url = url
        self._http = http
        self._auth = httpx.BasicAuth(client_id, client_secret) if client_id else None
        self.cache_s = cache_s
        self.requests = Counter(
            "grace_oauth_introspections",
            "Tokens Grace asked the introspection endpoint about, by outcome",
            ["outcome"],
            registry=metrics,
        )
        for outcome in ("active", "inactive", "error"):
            self.requests.labels(outcome=outcome)

    async def claims(self, token: str) -> dict[str, Any]:
        """The endpoint's answer about ``token``; :class:`IssuerUnavailable` when there is
        none to be had."""
        try:
            response = await self._http.post(
                self.url,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"accept": "application/json"},
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            self.requests.labels(outcome="error").inc()
            raise IssuerUnavailable(
                f"the introspection endpoint {self.url} cannot be reached ({type(exc).__name__})"
            ) from None
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
            self.requests.labels(outcome="error").inc()
            raise IssuerUnavailable(
                f"the introspection endpoint {self.url} answered HTTP {response.status_code}"
            )
        try:
            answer = json.loads(response.content)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self.requests.labels(outcome="error").inc()
            raise IssuerUnavailable(f"the introspection endpoint {self.url} did not send JSON")
        self.requests.labels(outcome="active" if answer.get("active") is True else "inactive").inc()
        return answer
