"""Grace as an OAuth 2.1 resource server of a real authorization server: Ory Hydra, in
memory, issuing client-credentials JWT access tokens for Grace's resource.

A Hydra token lists Grace's tools and runs the guide's step 8; a token for another
audience, an expired one, a forged one (right key id, wrong key; ``alg: none``; an HMAC
keyed with the public key; a changed payload) are refused with 401 saying why, never
echoing the token; one without the scope for ``fiedler_converse`` gets 403 naming the
OAuth scope that grants it, and nothing reaches Fiedler. Hydra rotates its signing key:
new tokens are accepted without restarting Grace, which fetched the JWKS once per rotation.
The Protected Resource Metadata validates against RFC 9728's fields and the challenges
parse with a standard RFC 7235 parser. Opaque tokens go through RFC 7662 introspection;
limits and refusal metrics are per subject. The static token keeps working beside all this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jsonschema
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.client.auth.utils import extract_resource_metadata_from_www_auth
from mcp.shared.auth import ProtectedResourceMetadata
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from werkzeug.datastructures import WWWAuthenticate

from tests.support.grace import grace_session, ok
from tests.support.grace_oauth import (
    BUS_SCOPE,
    CONVERSE_SCOPE,
    LIMITED_SUBJECT,
    READ_SCOPE,
    SMOKE,
    OAuthGroup,
)
from tests.support.grace_oauth import oauth_group as oauth_group  # the fixture
from tests.support.hydra_server import HydraServer, unverified_claims, unverified_header
from tests.support.hydra_server import hydra as hydra  # the fixture
from tests.support.waiting import async_wait_for, wait_for

REQUESTS = "mad.fiedler.requests"
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def converse_request() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "fiedler_converse", "arguments": SMOKE},
    }


def post(group: OAuthGroup, token: str | None, message: dict[str, Any]) -> httpx.Response:
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": LATEST_HANDSHAKE_VERSION,
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{group.grace.url}/mcp", json=message, headers=headers, timeout=30)


def challenge(response: httpx.Response) -> WWWAuthenticate:
    """The response's challenge, read by werkzeug's RFC 7235 parser."""
    parsed = WWWAuthenticate.from_header(response.headers["www-authenticate"])
    assert parsed is not None, response.headers["www-authenticate"]
    assert parsed.type == "bearer"
    return parsed


def assert_refused(
    group: OAuthGroup, response: httpx.Response, status: int, said: str, token: str
) -> WWWAuthenticate:
    assert response.status_code == status, (response.status_code, response.text)
    assert said in response.json()["error"], response.json()
    assert "\n" not in response.json()["error"]
    assert token not in response.text and token not in response.headers["www-authenticate"]
    assert token not in group.grace.log_text()
    parsed = challenge(response)
    assert parsed.parameters["resource_metadata"] == metadata_url(group)
    return parsed


def metadata_url(group: OAuthGroup) -> str:
    return f"{group.grace.url}/.well-known/oauth-protected-resource/mcp"


def fiedler_listed(group: OAuthGroup, token: str) -> bool:
    response = post(group, token, LIST)
    return response.status_code == 200 and "fiedler_converse" in response.text


async def test_a_hydra_token_lists_graces_tools_and_runs_step8(
    hydra: HydraServer, oauth_group: OAuthGroup
) -> None:
    client = hydra.client([CONVERSE_SCOPE, READ_SCOPE], [oauth_group.resource])
    token = hydra.token(client, [CONVERSE_SCOPE], oauth_group.resource)
    claims = unverified_claims(token)
    assert oauth_group.resource in claims["aud"] and claims["iss"] == hydra.issuer

    async with grace_session(oauth_group.grace.url, token) as s:

        async def listed() -> bool:
            return "fiedler_converse" in {t.name for t in (await s.list_tools()).tools}

        await async_wait_for(listed, timeout=30, what="Fiedler's tools listed through Grace")
        names = {t.name for t in (await s.list_tools()).tools}
        assert {"grace_send_message", "fiedler_converse", "fiedler_get_task_status"} <= names

        pending = await ok(s, "fiedler_converse", SMOKE)
        assert pending["status"] == "pending"

        async def done() -> dict[str, Any] | None:
            status = await ok(s, "fiedler_get_task_status", {"task_id": pending["task_id"]})
            return status if status["status"] in ("COMPLETED", "FAILED") else None

        status = await async_wait_for(done, timeout=30, interval=0.2, what="step 8 completed")
        assert status["status"] == "COMPLETED" and "OK" in str(status["result_payload"])


async def test_the_static_token_works_beside_oauth(oauth_group: OAuthGroup) -> None:
    wait_for(lambda: fiedler_listed(oauth_group, oauth_group.static_token), timeout=30)
    async with grace_session(oauth_group.grace.url, oauth_group.static_token) as s:
        pending = await ok(s, "fiedler_converse", {**SMOKE, "requester_id": "static"})
        assert pending["status"] == "pending"


def test_no_token_is_challenged_to_the_metadata_naming_the_scope_a_call_needs(
    oauth_group: OAuthGroup,
) -> None:
    response = post(oauth_group, None, converse_request())
    assert response.status_code == 401
    parsed = challenge(response)
    assert parsed.parameters["resource_metadata"] == metadata_url(oauth_group)
    assert parsed.parameters["scope"] == CONVERSE_SCOPE
    assert "error" not in parsed.parameters  # RFC 6750 3.1: no error code without a token
    # What an MCP client reads from it (the official SDK's own helper).
    assert extract_resource_metadata_from_www_auth(response) == metadata_url(oauth_group)

    listing = post(oauth_group, None, LIST)
    assert listing.status_code == 401
    assert "scope" not in challenge(listing).parameters


def test_the_protected_resource_metadata_validates_against_rfc9728(
    hydra: HydraServer, oauth_group: OAuthGroup
) -> None:
    for url in (
        metadata_url(oauth_group),
        f"{oauth_group.grace.url}/.well-known/oauth-protected-resource",
    ):
        response = httpx.get(url, timeout=10)  # no token: the metadata is public
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-type"].startswith("application/json")
        document = response.json()
        jsonschema.validate(document, RFC9728_SCHEMA)
        ProtectedResourceMetadata.model_validate(document)  # the MCP SDK's model of it
        # RFC 9728 3.3: the resource is the identifier the metadata URL was built from.
        assert document["resource"] == oauth_group.resource
        assert document["authorization_servers"] == [hydra.issuer]
        assert document["scopes_supported"] == [READ_SCOPE, CONVERSE_SCOPE, BUS_SCOPE]
        assert document["bearer_methods_supported"] == ["header"]


def test_a_token_for_another_audience_is_refused(
    hydra: HydraServer, oauth_group: OAuthGroup
) -> None:
    elsewhere = "https://elsewhere.example/mcp"
    client = hydra.client([CONVERSE_SCOPE], [oauth_group.resource, elsewhere])
    token = hydra.token(client, [CONVERSE_SCOPE], elsewhere)
    parsed = assert_refused(
        oauth_group,
        post(oauth_group, token, LIST),
        401,
        "is for 'https://elsewhere.example/mcp', not for Grace",
        token,
    )
    assert parsed.parameters["error"] == "invalid_token"
    assert "not for Grace" in parsed.parameters["error_description"]


async def test_an_expired_token_is_refused(hydra: HydraServer, oauth_group: OAuthGroup) -> None:
    client = hydra.client([CONVERSE_SCOPE], [oauth_group.resource])
    hydra.set_token_lifespan(client, "1s")
    token = hydra.token(client, [CONVERSE_SCOPE], oauth_group.resource)
    expires = unverified_claims(token)["exp"]
    leeway = 1
    wait_for(lambda: time.time() > expires + leeway + 1, timeout=30, what="the token to expire")
    parsed = assert_refused(
        oauth_group, post(oauth_group, token, LIST), 401, "the access token expired at", token
    )
    assert parsed.parameters["error"] == "invalid_token"


def test_a_token_without_the_converse_scope_gets_403_naming_it(
    hydra: HydraServer, oauth_group: OAuthGroup
) -> None:
    client = hydra.client([READ_SCOPE], [oauth_group.resource])
    token = hydra.token(client, [READ_SCOPE], oauth_group.resource)
    wait_for(lambda: fiedler_listed(oauth_group, token), timeout=30, what="tools listed")
    redis = oauth_group.group.redis.client()
    before = redis.xlen(REQUESTS)

    response = post(oauth_group, token, converse_request())
    parsed = assert_refused(
        oauth_group,
        response,
        403,
        f"subject '{client.client_id}' lacks the scope for tool 'fiedler_converse': "
        f"the OAuth scope '{CONVERSE_SCOPE}' grants it",
        token,
    )
    assert parsed.parameters["error"] == "insufficient_scope"
    assert parsed.parameters["scope"] == CONVERSE_SCOPE
    assert redis.xlen(REQUESTS) == before  # nothing was handed to Fiedler
    after = oauth_group.metric(
        "grace_refusals_total", token=f"subject:{client.client_id}", reason="scope"
    )
    assert after == 1  # counted under its subject, as a static token's under its name

    # In scope: answered (an unknown task is the tool's own error, not a refusal).
    status = {"name": "fiedler_get_task_status", "arguments": {"task_id": "no-such-task"}}
    answer = post(
        oauth_group, token, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": status}
    )
    assert answer.status_code == 200, answer.text


def _segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_tokens_are_refused(hydra: HydraServer, oauth_group: OAuthGroup) -> None:
    client = hydra.client([CONVERSE_SCOPE, READ_SCOPE], [oauth_group.resource])
    genuine = hydra.token(client, [READ_SCOPE], oauth_group.resource)
    assert post(oauth_group, genuine, LIST).status_code == 200
    header, claims = unverified_header(genuine), unverified_claims(genuine)
    wider = {**claims, "scp": [CONVERSE_SCOPE, READ_SCOPE], "jti": "forged"}

    # The right key id, signed with another key.
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_key = jwt.encode(wider, other_key, algorithm="RS256", headers={"kid": header["kid"]})
    # alg none, no signature.
    unsigned = f"{_segment({'alg': 'none', 'kid': header['kid'], 'typ': 'JWT'})}.{_segment(wider)}."
    # HS256 "signed" with the issuer's public key (the classic algorithm confusion).
    public_jwk = next(
        k
        for k in httpx.get(f"{hydra.issuer}/.well-known/jwks.json").json()["keys"]
        if k["kid"] == header["kid"]
    )
    signing_input = f"{_segment({'alg': 'HS256', 'kid': header['kid']})}.{_segment(wider)}"
    mac = hmac.new(json.dumps(public_jwk).encode(), signing_input.encode(), hashlib.sha256)
    confused = f"{signing_input}.{base64.urlsafe_b64encode(mac.digest()).rstrip(b'=').decode()}"
    # The genuine signature over a widened payload.
    head, _, signature = genuine.split(".")
    widened = f"{head}.{_segment(wider)}.{signature}"

    cases = {
        "wrong key": (wrong_key, "signature does not verify"),
        "alg none": (unsigned, "algorithm 'none'"),
        "HS256": (confused, "algorithm 'HS256'"),
        "widened": (widened, "signature does not verify"),
    }
    for case, (forged, said) in cases.items():
        for message in (LIST, converse_request()):
            response = post(oauth_group, forged, message)
            parsed = assert_refused(oauth_group, response, 401, said, forged)
            assert parsed.parameters["error"] == "invalid_token", case


async def test_a_rotated_signing_key_is_followed_with_one_jwks_fetch_per_rotation(
    hydra: HydraServer, oauth_group: OAuthGroup
) -> None:
    client = hydra.client([READ_SCOPE], [oauth_group.resource])
    before_any = hydra.token(client, [READ_SCOPE], oauth_group.resource)
    assert post(oauth_group, before_any, LIST).status_code == 200
    pid = oauth_group.grace.process.pid if oauth_group.grace.process else None

    def fetches() -> float:
        return oauth_group.metric("grace_oauth_fetches_total", document="jwks", outcome="ok")

    for _ in range(2):
        before = fetches()
        kid = hydra.rotate_signing_key()
        tokens = [hydra.token(client, [READ_SCOPE], oauth_group.resource) for _ in range(5)]
        assert {unverified_header(t)["kid"] for t in tokens} == {kid}
        wait_for(
            lambda t=tokens[0]: post(oauth_group, t, LIST).status_code == 200,
            timeout=30,
            interval=0.3,
            what=f"a token signed with the new key {kid} accepted",
        )
        for token in tokens:
            for _ in range(10):
                assert post(oauth_group, token, LIST).status_code == 200
        assert post(oauth_group, before_any, LIST).status_code == 200  # the old key still holds
        assert fetches() == before + 1
    assert oauth_group.grace.process is not None and oauth_group.grace.process.pid == pid
    assert oauth_group.grace.process.poll() is None


def test_an_opaque_token_is_introspected(hydra: HydraServer, oauth_group: OAuthGroup) -> None:
    client = hydra.client([READ_SCOPE], [oauth_group.resource], opaque=True)
    token = hydra.token(client, [READ_SCOPE], oauth_group.resource)
    assert token.count(".") != 2  # not a JWT
    assert fiedler_listed(oauth_group, token)
    response = post(oauth_group, token, converse_request())
    assert response.status_code == 403 and CONVERSE_SCOPE in response.json()["error"]
    made_up = "ory_at_not-a-token-anyone-issued.0123456789"
    assert_refused(oauth_group, post(oauth_group, made_up, LIST), 401, "not active", made_up)


def test_limits_hold_per_subject(hydra: HydraServer, oauth_group: OAuthGroup) -> None:
    client = hydra.client([READ_SCOPE], [oauth_group.resource], client_id=LIMITED_SUBJECT)
    token = hydra.token(client, [READ_SCOPE], oauth_group.resource)
    statuses = [post(oauth_group, token, LIST) for _ in range(10)]
    refused = [r for r in statuses if r.status_code == 429]
    assert refused, [r.status_code for r in statuses]
    assert f"subject '{LIMITED_SUBJECT}' is over its limit of 2 requests/s" in refused[0].text
    assert int(refused[0].headers["retry-after"]) >= 1
    assert oauth_group.metric(
        "grace_refusals_total", token=f"subject:{LIMITED_SUBJECT}", reason="rate"
    ) == len(refused)


RFC9728_SCHEMA: dict[str, Any] = {
    "$comment": "RFC 9728 section 2: the protected resource metadata parameters and types",
    "type": "object",
    "required": ["resource"],
    "additionalProperties": False,
    "properties": {
        "resource": {"type": "string", "pattern": "^https?://[^#]+$"},
        "authorization_servers": {"type": "array", "items": {"type": "string"}},
        "jwks_uri": {"type": "string"},
        "scopes_supported": {"type": "array", "items": {"type": "string"}},
        "bearer_methods_supported": {
            "type": "array",
            "items": {"enum": ["header", "body", "query"]},
        },
        "resource_signing_alg_values_supported": {"type": "array", "items": {"type": "string"}},
        "resource_name": {"type": "string"},
        "resource_documentation": {"type": "string"},
        "resource_policy_uri": {"type": "string"},
        "resource_tos_uri": {"type": "string"},
        "tls_client_certificate_bound_access_tokens": {"type": "boolean"},
        "authorization_details_types_supported": {"type": "array", "items": {"type": "string"}},
        "dpop_signing_alg_values_supported": {"type": "array", "items": {"type": "string"}},
        "dpop_bound_access_tokens_required": {"type": "boolean"},
        "signed_metadata": {"type": "string"},
    },
}
