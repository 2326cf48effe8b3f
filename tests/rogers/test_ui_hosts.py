"""Rogers' live view answers only to the names Rogers serves (DNS-rebinding protection, as
its MCP endpoint has it): ``/ui`` and its data with ``Host: evil.example`` are refused; with
loopback or a MAD_ALLOWED_HOSTS name they are served. Probes, /status and /metrics stay
reachable whatever the Host (the kubelet and Prometheus send the pod's address)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.group import process_group
from tests.support.mad_process import MadProcess

UI_PATHS = ("/ui", "/ui/app.js", "/ui/style.css", "/ui/events")


@pytest.fixture(scope="module")
def rogers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MadProcess]:
    with process_group(Path(tmp_path_factory.mktemp("ui-hosts"))) as group:
        group.start("sequential_thinking")
        yield group.start("rogers", {"MAD_ALLOWED_HOSTS": "rogers,rogers.demo.svc"})


@dataclass
class Reply:
    status_code: int
    text: str

    def error(self) -> str:
        return str(json.loads(self.text)["error"])


def get(rogers: MadProcess, path: str, **headers: str) -> Reply:
    """The status and body of a GET (of an event stream served, its first event only)."""
    with httpx.stream("GET", f"{rogers.url}{path}", headers=headers, timeout=10) as response:
        if path.endswith("/events") and response.status_code == 200:
            body = next(response.iter_bytes())
        else:
            body = response.read()
        return Reply(response.status_code, body.decode())


@pytest.mark.parametrize("path", UI_PATHS)
def test_a_foreign_host_is_refused(rogers: MadProcess, path: str) -> None:
    for host in ("evil.example", f"evil.example:{rogers.port}", "127.0.0.1.evil.example"):
        response = get(rogers, path, host=host)
        assert response.status_code == 421, (path, host)
        assert "Invalid Host header" in response.error()
    refused = get(rogers, path, origin="http://evil.example")
    assert refused.status_code == 403 and "Invalid Origin header" in refused.error()


@pytest.mark.parametrize("path", UI_PATHS)
def test_loopback_and_allowed_names_are_served(rogers: MadProcess, path: str) -> None:
    for host in (f"127.0.0.1:{rogers.port}", f"localhost:{rogers.port}", "rogers:8002"):
        assert get(rogers, path, host=host).status_code == 200, (path, host)
    same_origin = get(rogers, path, origin=f"http://127.0.0.1:{rogers.port}")
    assert same_origin.status_code == 200
    assert get(rogers, path, host="ROGERS.demo.svc").status_code == 200


def test_probes_status_and_metrics_answer_any_host(rogers: MadProcess) -> None:
    for path in ("/healthz", "/readyz", "/status", "/metrics"):
        for host in ("10.244.1.7:8002", "evil.example"):
            assert get(rogers, path, host=host).status_code == 200, (path, host)
    assert "rogers_messages_total" in get(rogers, "/metrics", host="10.244.1.7:8002").text
