"""The parts of Grace's OAuth resource server, in-process: its configuration (one line per
mistake), the scopes file, the key set's refresh policy (bounded, shared, kept on failure),
the verdict cache (held until the token expires, not after) and the challenge's quoting.
The issuer here is an in-process HTTP handler (httpx's transport for ASGI-less handlers);
tests/grace/test_oauth_hydra.py runs the same code against a real Ory Hydra."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.datastructures import WWWAuthenticate

from mads.core.settings import ConfigurationError, load_settings
from mads.grace import scope_map
from mads.grace.access import AccessGuard, OAuthDoor
from mads.grace.issuer import IssuerKeys, IssuerUnavailable, metadata_urls
from mads.grace.oauth import Accepted, OAuthVerifier, Refused
from mads.grace.resource_metadata import ProtectedResource
from mads.grace.settings import GraceSettings

ISSUER = "https://id.example"
RESOURCE = "https://grace.example/mcp"
LOG = logging.getLogger("grace")


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> GraceSettings:
    monkeypatch.setenv("REDIS_PASSWORD", "a-bus-password-0123456789")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(GraceSettings, mad_name="grace")


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"GRACE_STATIC_TOKENS": "off"}, "GRACE_STATIC_TOKENS=off needs GRACE_OAUTH_ISSUER"),
        ({"GRACE_OAUTH_ISSUER": ISSUER}, "GRACE_OAUTH_RESOURCE is required"),
        (
            {"GRACE_OAUTH_ISSUER": ISSUER, "GRACE_OAUTH_RESOURCE": RESOURCE},
            "GRACE_OAUTH_SCOPES_FILE is required",
        ),
        ({"GRACE_OAUTH_ISSUER": "id.example"}, "GRACE_OAUTH_ISSUER is invalid"),
        ({"GRACE_OAUTH_ALGORITHMS": "RS256,HS256"}, "HS256 not accepted"),
        ({"GRACE_OAUTH_ALGORITHMS": "none"}, "none not accepted"),
        ({"GRACE_STATIC_TOKENS": "maybe"}, "GRACE_STATIC_TOKENS is invalid"),
        (
            {
                "GRACE_OAUTH_ISSUER": ISSUER,
                "GRACE_OAUTH_RESOURCE": RESOURCE,
                "GRACE_OAUTH_SCOPES_FILE": "/x.json",
                "GRACE_STATIC_TOKENS": "off",
                "GRACE_API_TOKENS": "a-static-token-0123456789",
            },
            "GRACE_STATIC_TOKENS=off but GRACE_API_TOKENS or GRACE_TOKENS_FILE is set",
        ),
        ({"GRACE_OAUTH_INTROSPECTION_URL": f"{ISSUER}/i"}, "needs GRACE_OAUTH_ISSUER"),
    ],
)
def test_a_bad_oauth_configuration_is_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(monkeypatch, **env)
    assert said in str(caught.value) and "\n" not in str(caught.value)
    assert "a-static-token-0123456789" not in str(caught.value)


def test_the_secret_of_the_introspection_client_comes_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the-client-secret\n")
    loaded = settings(
        monkeypatch,
        GRACE_OAUTH_ISSUER=ISSUER,
        GRACE_OAUTH_RESOURCE=RESOURCE,
        GRACE_OAUTH_SCOPES_FILE=str(tmp_path / "scopes.json"),
        GRACE_OAUTH_INTROSPECTION_URL=f"{ISSUER}/introspect",
        GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET_FILE=str(secret),
    )
    assert loaded.grace_oauth_introspection_client_secret.get_secret_value() == "the-client-secret"
    assert loaded.oauth_audiences == [RESOURCE]
    assert "the-client-secret" not in repr(loaded)


def test_the_scopes_file(tmp_path: Path) -> None:
    path = tmp_path / "scopes.json"
    path.write_text(
        json.dumps(
            {
                "scopes": {
                    "narrow": {"tools": ["fiedler_get_task_status"]},
                    "wide": {"tools": ["fiedler_*"], "topics": ["mad.topic.*"]},
                },
                "limits": {"requests_per_second": 5},
                "subjects": {"batch": {"limits": {"concurrent_calls": 3}}},
            }
        )
    )
    mapping = scope_map.load(path)
    assert mapping.names == ["narrow", "wide"]
    reader = mapping.principal("svc", ["narrow", "unknown-scope"])
    assert reader.may_call("fiedler_get_task_status") and not reader.may_call("fiedler_converse")
    assert not reader.may_use_topic("mad.topic.x")
    assert (reader.kind, reader.key, reader.requests_per_second) == ("subject", "subject:svc", 5)
    both = mapping.principal("batch", ["narrow", "wide"])
    assert both.may_call("fiedler_converse") and both.may_use_topic("mad.topic.x")
    assert (both.requests_per_second, both.concurrent_calls) == (None, 3)
    assert mapping.granting_tool("fiedler_get_task_status") == "narrow"  # the first, in order
    assert mapping.granting_tool("fiedler_converse") == "wide"
    assert mapping.granting_tool("rogers_get_stats") is None
    assert mapping.granting_topic("mad.topic.x") == "wide"

    for content, said in (
        ("{", "is not JSON"),
        (json.dumps({"scopes": {"has space": {}}}), "scopes.has space"),
        (json.dumps({"scopes": {"a": {"tool": ["x"]}}}), "Extra inputs"),
        (json.dumps({"scopes": {}, "limits": {"requests_per_second": 0}}), "limits"),
    ):
        path.write_text(content)
        with pytest.raises(scope_map.ScopeMapError) as caught:
            scope_map.load(path)
        assert said in str(caught.value) and "\n" not in str(caught.value), said


def test_metadata_is_looked_for_where_mcp_clients_look() -> None:
    assert metadata_urls("https://id.example") == [
        "https://id.example/.well-known/oauth-authorization-server",
        "https://id.example/.well-known/openid-configuration",
    ]
    assert metadata_urls("https://id.example/tenant/1/") == [
        "https://id.example/.well-known/oauth-authorization-server/tenant/1",
        "https://id.example/.well-known/openid-configuration/tenant/1",
        "https://id.example/tenant/1/.well-known/openid-configuration",
    ]


class Issuer:
    """An issuer's documents, served to httpx in-process, with the requests counted."""

    def __init__(self) -> None:
        self.keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.requests: list[str] = []
        self.down = False
        self.wrong_issuer = False
        self.gate: asyncio.Event | None = None

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            return httpx.Response(503)
        if request.url.path == "/.well-known/openid-configuration":
            issuer = "https://other.example" if self.wrong_issuer else ISSUER
            return httpx.Response(200, json={"issuer": issuer, "jwks_uri": f"{ISSUER}/jwks"})
        if request.url.path == "/jwks":
            return httpx.Response(200, json=self.jwks())
        return httpx.Response(404)

    def token(self, kid: str, **claims: Any) -> bytes:
        body = {"iss": ISSUER, "aud": [RESOURCE], "sub": "svc", "scp": ["narrow"], **claims}
        body.setdefault("exp", 2_000_000_000)
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid}).encode()

    def fetches(self) -> int:
        return self.requests.count("/jwks")


class Clock:
    """Starts at the real time (PyJWT checks exp and nbf against it); moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def keys_for(issuer: Issuer, clock: Clock, refresh_min_s: float = 30) -> IssuerKeys:
    http = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handle))
    return IssuerKeys(
        ISSUER,
        http,
        refresh_min_s=refresh_min_s,
        max_age_s=3600,
        logger=LOG,
        metrics=CollectorRegistry(),
        clock=clock,
    )


async def test_an_unknown_key_id_refreshes_the_keys_at_a_bounded_rate() -> None:
    issuer, clock = Issuer(), Clock()
    keys = keys_for(issuer, clock)
    assert await keys.key("k1") is not None
    # RFC 8414's document first, then OpenID Connect's: both tried, once.
    assert issuer.requests[:2] == [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ]
    assert issuer.fetches() == 1
    for _ in range(100):  # known key: nothing fetched
        assert await keys.key("k1") is not None
    for n in range(100):  # made-up key ids: at most one fetch per period
        assert await keys.key(f"made-up-{n}") is None
    assert issuer.fetches() == 1
    issuer.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await keys.key("k2") is None  # rotated, but within the period of the last fetch
    clock.now += 30
    assert await keys.key("k2") is not None  # the period passed: one fetch finds it
    assert issuer.fetches() == 2
    assert issuer.requests.count("/.well-known/openid-configuration") == 1  # discovered once


async def test_concurrent_requests_for_a_new_key_share_one_fetch() -> None:
    issuer, clock = Issuer(), Clock()
    keys = keys_for(issuer, clock)
    await keys.key("k1")
    clock.now += 60
    issuer.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.gate = asyncio.Event()
    waiting = [asyncio.create_task(keys.key("k2")) for _ in range(50)]
    await asyncio.sleep(0)
    issuer.gate.set()
    assert all(key is not None for key in await asyncio.gather(*waiting))
    assert issuer.fetches() == 2


async def test_keys_are_kept_when_the_issuer_is_down_and_missing_ones_are_unavailable() -> None:
    issuer, clock = Issuer(), Clock()
    keys = keys_for(issuer, clock)
    await keys.key("k1")
    issuer.down = True
    clock.now += 4000  # past the maximum age: a refresh is tried, fails, the keys stay
    assert await keys.key("k1") is not None
    fresh = keys_for(Issuer(), Clock())
    fresh_issuer_down = Issuer()
    fresh_issuer_down.down = True
    fresh = keys_for(fresh_issuer_down, Clock())
    with pytest.raises(IssuerUnavailable, match="no authorization server metadata"):
        await fresh.key("k1")
    with pytest.raises(IssuerUnavailable, match="retrying at most every 30 s"):
        await fresh.key("k1")  # within the period: not even tried


async def test_metadata_naming_another_issuer_is_refused() -> None:
    issuer = Issuer()
    issuer.wrong_issuer = True
    with pytest.raises(IssuerUnavailable, match=re.escape("names issuer 'https://other.example'")):
        await keys_for(issuer, Clock()).key("k1")


def verifier_for(issuer: Issuer, clock: Clock, tmp_path: Path) -> OAuthVerifier:
    path = tmp_path / "scopes.json"
    path.write_text(json.dumps({"scopes": {"narrow": {"tools": ["fiedler_get_task_status"]}}}))
    return OAuthVerifier(
        keys_for(issuer, clock),
        scope_map.load(path),
        audiences=[RESOURCE],
        algorithms=["RS256"],
        leeway_s=5,
        clock=clock,
    )


async def test_a_verdict_is_kept_until_the_token_expires_and_not_after(tmp_path: Path) -> None:
    issuer, clock = Issuer(), Clock()
    verifier = verifier_for(issuer, clock, tmp_path)
    token = issuer.token("k1", exp=int(clock.now) + 60)
    first = await verifier.verify(token)
    assert isinstance(first, Accepted) and first.principal.name == "svc"
    assert first.principal.may_call("fiedler_get_task_status")
    issuer.down = True  # a kept verdict needs nothing from the issuer
    clock.now += 60
    assert await verifier.verify(token) is first
    clock.now += 6  # past exp and the leeway
    verdict = await verifier.verify(token)
    assert isinstance(verdict, Refused) and verdict.reason == "the access token expired"


async def test_refusals_say_why_in_one_line_without_the_token(tmp_path: Path) -> None:
    issuer, clock = Issuer(), Clock()
    verifier = verifier_for(issuer, clock, tmp_path)
    cases = {
        "expired": (issuer.token("k1", exp=int(clock.now) - 60), "expired at"),
        "early": (issuer.token("k1", nbf=int(clock.now) + 600), "not valid before"),
        "audience": (issuer.token("k1", aud="https://x.example/mcp"), "is for 'https://x"),
        "issuer": (issuer.token("k1", iss="https://evil.example"), "issued by 'https://evil"),
        "no subject": (issuer.token("k1", sub=None), "names no subject"),
        "odd subject": (issuer.token("k1", sub=42), "sub is not a string"),
        "no exp": (issuer.token("k1", exp=None), "has no 'exp' claim"),
        "not a jwt": (b"opaque-token-0123456789", "neither a known token nor a JWT"),
    }
    for case, (token, said) in cases.items():
        verdict = await verifier.verify(token)
        assert isinstance(verdict, Refused), case
        assert said in verdict.reason and "\n" not in verdict.reason, (case, verdict.reason)
        assert token.decode() not in verdict.reason


def test_the_challenge_quotes_what_rfc6750_allows() -> None:
    resource = ProtectedResource(RESOURCE, ISSUER, ["narrow"])
    value = resource.challenge(
        error="invalid_token", description='a "quoted" \\ and ünïcode reason', scope="narrow"
    )
    parsed = WWWAuthenticate.from_header(value)
    assert parsed is not None and parsed.type == "bearer"
    assert parsed.parameters == {
        "realm": "grace",
        "resource_metadata": "https://grace.example/.well-known/oauth-protected-resource/mcp",
        "scope": "narrow",
        "error": "invalid_token",
        "error_description": "a 'quoted' ' and 'n'code reason",
    }


def test_an_unreachable_issuer_is_503_with_retry_after_not_a_login(tmp_path: Path) -> None:
    issuer = Issuer()
    issuer.down = True
    metrics = CollectorRegistry()
    verifier = verifier_for(issuer, Clock(), tmp_path)

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/mcp", ok, methods=["POST"])])
    door = OAuthDoor(verifier, ProtectedResource(RESOURCE, ISSUER, ["narrow"]))
    app.add_middleware(AccessGuard, principals={}, logger=LOG, metrics=metrics, oauth=door)
    token = issuer.token("k1").decode()
    response = TestClient(app, client=("10.1.2.3", 1)).post(
        "/mcp", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "cannot verify access tokens right now" in response.json()["error"]
    assert token not in response.text
    refused = metrics.get_sample_value(
        "grace_refusals_total", {"token": "-", "reason": "issuer_unavailable"}
    )
    assert refused == 1
