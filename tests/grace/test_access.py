"""The access guard in front of Grace's app, in-process (the client address is chosen)."""

import logging

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mads.grace.access import AccessGuard
from mads.grace.tokens import from_api_tokens

TOKEN = "t0ken-for-the-access-test-0123456789"


def app(tokens: list[str]) -> Starlette:
    async def ok(request):
        return PlainTextResponse("ok")

    routes = [Route(path, ok, methods=["GET", "POST"]) for path in ("/mcp", "/healthz", "/status")]
    application = Starlette(routes=routes)
    application.add_middleware(
        AccessGuard, principals=from_api_tokens(tokens), logger=logging.getLogger("grace")
    )
    return application


@pytest.mark.parametrize(
    ("client", "path", "headers", "expected"),
    [
        (("127.0.0.1", 1), "/mcp", {}, 401),
        (("127.0.0.1", 1), "/mcp", {"Authorization": "Bearer wrong-token-0123456789"}, 401),
        (("127.0.0.1", 1), "/mcp", {"Authorization": f"Basic {TOKEN}"}, 401),
        (("10.1.2.3", 1), "/mcp", {"Authorization": f"Bearer {TOKEN}"}, 200),
        (("10.1.2.3", 1), "/status", {}, 401),
        (("127.0.0.1", 1), "/status", {}, 200),
        (("10.1.2.3", 1), "/healthz", {}, 200),
    ],
)
def test_with_tokens(client, path, headers, expected, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="grace"):
        response = TestClient(app(["another-token-0123456789", TOKEN]), client=client).post(
            path, headers=headers
        )
    assert response.status_code == expected
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "token" in response.json()["error"]
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("client", "path", "expected"),
    [
        (("127.0.0.1", 1), "/mcp", 200),
        (("::1", 1), "/mcp", 200),
        (("10.1.2.3", 1), "/mcp", 403),
        (("10.1.2.3", 1), "/status", 403),
        (("10.1.2.3", 1), "/healthz", 200),
    ],
)
def test_without_tokens_only_loopback(client, path, expected) -> None:
    response = TestClient(app([]), client=client).post(path)
    assert response.status_code == expected
    if expected == 403:
        assert "loopback" in response.json()["error"]
