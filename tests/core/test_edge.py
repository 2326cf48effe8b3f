"""The HTTP edge every MAD has (mads/core/edge.py), against a real MAD process: stateless
MCP refuses GET streams, Host and Origin must be well-formed and single, a client that
leaves mid-request leaves no traceback, and past capacity callers are told to retry."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.support.mad_process import MadProcess
from tests.support.waiting import wait_for

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/list",
    "params": {},
}
MCP_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-06-18",
}


@pytest.fixture(scope="module")
def thinking(tmp_path_factory: pytest.TempPathFactory) -> MadProcess:
    process = MadProcess(
        "sequential_thinking",
        tmp_path_factory.mktemp("edge"),
        {"MAD_MAX_INFLIGHT": "1", "MAD_INFLIGHT_WAIT_S": "0.2"},
    )
    process.start()
    yield process
    process.stop()


def raw_request(port: int, head: bytes, body: bytes = b"", *, close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        if close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def post(thinking: MadProcess, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{thinking.url}/mcp", json=INIT, headers={**MCP_HEADERS, **headers}, timeout=10
    )


def test_get_and_delete_are_405_not_a_stream(thinking: MadProcess) -> None:
    for method in ("GET", "DELETE"):
        response = httpx.request(
            method, f"{thinking.url}/mcp", headers={"accept": "text/event-stream"}, timeout=10
        )
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
    assert post(thinking).status_code == 200


@pytest.mark.parametrize(
    "host",
    ["localhost:99999", "127.0.0.1:abc", "127.0.0.1:0", "127.0.0.1:", "local host", "[::1", ""],
)
def test_a_malformed_host_is_refused(thinking: MadProcess, host: str) -> None:
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
        "accept: application/json, text/event-stream\r\ncontent-length: 2\r\n\r\n"
    ).encode()
    assert status_of(raw_request(thinking.port, head, b"{}")) in (400, 421)


@pytest.mark.parametrize(
    ("repeated", "status", "says"),
    [
        ("Host: evil.example", 421, b"exactly one"),
        ("Origin: http://evil.example", 403, b"Invalid Origin header: more than one"),
    ],
    ids=["host", "origin"],
)
def test_a_repeated_host_or_origin_header_is_refused(
    thinking: MadProcess, repeated: str, status: int, says: bytes
) -> None:
    body = json.dumps(INIT).encode()
    kind = repeated.split(":", 1)[0]
    first = f"Host: 127.0.0.1:{thinking.port}\r\n"
    if kind == "Origin":
        first += f"Origin: http://127.0.0.1:{thinking.port}\r\n"
    head = (
        f"POST /mcp HTTP/1.1\r\n{first}{repeated}\r\n"
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    reply = raw_request(thinking.port, head, body)
    assert status_of(reply) == status
    assert says in reply
    # Each alone is judged on its own: the first is served, the second refused.
    assert post(thinking, origin=f"http://127.0.0.1:{thinking.port}").status_code == 200
    assert post(thinking, origin="http://evil.example").status_code == 403


def test_origin_must_be_well_formed(thinking: MadProcess) -> None:
    assert post(thinking, origin=f"http://127.0.0.1:{thinking.port}").status_code == 200
    for origin in ("http://127.0.0.1:99999", "javascript:alert(1)", "null", "http://"):
        assert post(thinking, origin=origin).status_code == 403, origin
    assert post(thinking, origin="http://evil.example").status_code == 403  # the allow-list


def test_a_client_that_leaves_mid_request_leaves_no_traceback(thinking: MadProcess) -> None:
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{thinking.port}\r\n"
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()
    raw_request(thinking.port, head, json.dumps(INIT).encode())  # not chunked
    half = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{thinking.port}\r\n"
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\n"
        "content-length: 500\r\n\r\n"
    ).encode()
    raw_request(thinking.port, half, b'{"jsonrpc": "2.0", ')
    assert post(thinking).status_code == 200
    assert thinking.ready()
    assert "Traceback" not in thinking.log_text()


def test_past_capacity_callers_are_told_to_retry(thinking: MadProcess) -> None:
    """MAD_MAX_INFLIGHT=1: a request held open takes the only slot; the next one waits
    MAD_INFLIGHT_WAIT_S, then gets 503 with Retry-After and a JSON-RPC error."""
    body = json.dumps(INIT).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{thinking.port}\r\n"
        "content-type: application/json\r\naccept: application/json, text/event-stream\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", thinking.port), timeout=10) as holder:
        holder.sendall(head + body[:5])  # the rest never comes while we look

        def busy() -> httpx.Response | None:
            response = post(thinking)
            return response if response.status_code == 503 else None

        response = wait_for(busy, timeout=20, what="a caller told to retry")
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["code"] == -32000
        assert "retry" in error["message"]
        holder.sendall(body[5:])
        assert status_of(holder.recv(65536)) == 200
    assert post(thinking).status_code == 200
