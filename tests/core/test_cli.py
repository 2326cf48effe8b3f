"""``mad-status`` and ``mad-cli`` as the guide runs them: output, exit codes, error paths."""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mads.core.status import StatusReport, connected_line
from tests.support.mad_process import MadProcess
from tests.support.ports import free_port
from tests.support.thinking import thinking_fixture


def run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60, env=env
    )


thinking = thinking_fixture()


@pytest.fixture
def degraded_mad() -> Iterator[str]:
    """A stand-in MAD whose /status reports the bus down."""
    report = StatusReport.build("GraceV0", "grace", [connected_line("Conversation Bus", False)])
    body = report.model_dump_json().encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/status" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_status_block_and_exit_zero_when_healthy(thinking: MadProcess) -> None:
    result = thinking.cli("mad-status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[SequentialThinkingV1 Status]",
        "- MAD Name: sequential_thinking",
        "- Status: HEALTHY",
        "- Thoughts In Memory: 0/1000",
    ]
    as_json = json.loads(thinking.cli("mad-status", "--json").stdout)
    assert as_json["status"] == "HEALTHY"
    assert as_json["mad_name"] == "sequential_thinking"


def test_status_exit_one_when_degraded(degraded_mad: str) -> None:
    result = run("mads.core.cli.status", "--url", degraded_mad)
    assert result.returncode == 1
    assert "- Status: DEGRADED" in result.stdout
    assert "- Conversation Bus Connected: False" in result.stdout


def test_status_unreachable_is_one_line(tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("mads.core.cli.status", "--url", url)
    assert result.returncode == 1
    assert result.stderr.strip() == f"mad-status: cannot reach {url}/status: connection refused"
    assert "Traceback" not in result.stderr


def test_status_without_a_target_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MAD_NAME", "MAD_PORT")}
    result = run("mads.core.cli.status", env=env)
    assert result.returncode == 2
    assert "set MAD_NAME or MAD_PORT" in result.stderr


def test_cli_prints_the_tool_result_as_json(thinking: MadProcess) -> None:
    result = thinking.cli(
        "mad-cli",
        "sequentialthinking",
        json.dumps(
            {"thought": "a", "thoughtNumber": 1, "totalThoughts": 1, "nextThoughtNeeded": False}
        ),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "thoughtNumber": 1,
        "totalThoughts": 1,
        "nextThoughtNeeded": False,
        "branches": [],
        "thoughtHistoryLength": 1,
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("sequentialthinking", "{not json"),
            2,
            "mad-cli: arguments are not valid JSON (Expecting property name enclosed in double "
            "quotes at line 1 column 2)",
        ),
        (("sequentialthinking", "[1]"), 2, "mad-cli: arguments must be a JSON object, not list"),
        (
            ("no_such_tool", "{}"),
            2,
            "mad-cli: unknown tool 'no_such_tool'; available: sequentialthinking",
        ),
        (
            (
                "sequentialthinking",
                '{"thought": 5, "thoughtNumber": "x", "totalThoughts": 1, '
                '"nextThoughtNeeded": false}',
            ),
            1,
            "mad-cli: sequentialthinking failed: invalid arguments for sequentialthinking: "
            "thought: must be string, not integer",
        ),
    ],
)
def test_cli_errors_are_one_line(
    thinking: MadProcess, args: tuple, code: int, message: str
) -> None:
    result = thinking.cli("mad-cli", *args)
    assert result.returncode == code
    assert result.stderr.strip() == message
    assert result.stdout == ""


def test_cli_names_the_url_it_could_not_reach() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("mads.core.cli.call", "rogers_get_stats", "--url", url)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"mad-cli: cannot reach {url}/mcp: connection refused (is it running?)"
    )


def test_mad_run_rejects_unknown_names_and_bad_configuration(tmp_path) -> None:
    unknown = run("mads.core.cli.run", "nobody")
    assert unknown.returncode == 2
    assert "invalid choice: 'nobody'" in unknown.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    missing = run("mads.core.cli.run", "grace", env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("REDIS_PASSWORD is required but not set")
    assert "Traceback" not in missing.stderr


def test_mad_run_names_a_port_already_in_use() -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "MAD_PORT": str(port), "MAD_HOST": "127.0.0.1"}
        result = run("mads.core.cli.run", "sequential_thinking", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"mad-run sequential_thinking: port {port} is already in use; "
        "stop what holds it or set MAD_PORT"
    )
