"""Hostile input, generated: thousands of seeded cases against Grace's and Fiedler's
``/mcp`` and against ``mad-cli``. Whatever comes in: no 5xx, no process exits, no traceback
in any MAD's log or the CLI's output, no log line over the cap, no line a client wrote
that passes for the service's own; and the guide's step 8 still completes afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mads.core.cli import call as mad_cli
from mads.core.logs import MAX_LINE
from mads.core.mcp_client import call_tool
from tests.grace.support import new_token
from tests.support.group import process_group
from tests.support.mad_process import MadProcess

CASES = 2000
FUZZ = settings(
    max_examples=CASES,
    derandomize=True,  # the same cases on every run: a failure is reproducible
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
PROMPT = "System check, please respond with OK."
FORGED = "INFO:fiedler:Task 00000000-0000-0000-0000-000000000000 status changed to COMPLETED"
LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[A-Za-z0-9_.]+:")
TOOLS = [
    "fiedler_converse",
    "fiedler_get_task_status",
    "fiedler_list_tasks",
    "grace_send_message",
    "grace_subscribe",
    "grace_poll_messages",
    "rogers_get_stats",
    "sequentialthinking",
]
METHODS = [
    "tools/call",
    "tools/list",
    "initialize",
    "ping",
    "resources/list",
    "prompts/list",
    "notifications/initialized",
    "tasks/get",
    "logging/setLevel",
]
VERSIONS = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28", "1999-01-01", ""]


@dataclass
class Group:
    grace: MadProcess
    fiedler: MadProcess
    token: str
    db_path: Path

    def mads(self) -> list[MadProcess]:
        return [self.grace, self.fiedler]


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    workdir = tmp_path_factory.mktemp("fuzz")
    token = new_token()
    db_path = workdir / "fiedler_state.db"
    with process_group(workdir) as processes:
        processes.start("sequential_thinking")
        fiedler = processes.start("fiedler", {"FIEDLER_DB_PATH": str(db_path)})
        grace = processes.start("grace", {"GRACE_API_TOKENS": token})
        yield Group(grace, fiedler, token, db_path)


# -- what a hostile client sends --------------------------------------------------------

tricky_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            FORGED,
            f"x\n{FORGED}",
            "\r\n" + FORGED,
            "\u2028" + FORGED,
            "\x00",
            "a" * 5000,
            "../../etc/passwd",
            "mad.system.heartbeat",
            "${REDIS_PASSWORD}",
            "'; DROP TABLE tasks; --",
        ]
    ),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(tricky_text, children, max_size=5)
    ),
    max_leaves=15,
)
arguments = st.one_of(
    st.dictionaries(
        st.sampled_from(
            ["prompt", "requester_id", "request_id", "task_id", "limit", "status", "channel"]
        )
        | tricky_text,
        json_values,
        max_size=6,
    ),
    json_values,
)
tool_calls = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "id": st.integers(min_value=1, max_value=10**6),
        "method": st.just("tools/call"),
        "params": st.fixed_dictionaries(
            {"name": st.sampled_from(TOOLS) | tricky_text, "arguments": arguments}
        ),
    }
)
requests = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2]),
        "method": st.sampled_from(METHODS) | tricky_text,
        "params": st.one_of(
            st.fixed_dictionaries(
                {"name": st.sampled_from(TOOLS) | tricky_text, "arguments": arguments}
            ),
            json_values,
        ),
    },
    optional={"id": st.one_of(st.integers(), tricky_text, st.none(), json_values)},
)
encoded = st.builds(lambda r: json.dumps(r).encode(), tool_calls)
others = [
    requests.map(lambda r: json.dumps(r).encode()),
    st.lists(requests, max_size=3).map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    requests.map(lambda r: json.dumps(r).encode()[: len(json.dumps(r)) // 2]),
]
# Six in ten cases are well-formed tool calls that reach the tools; the rest are anything.
bodies = st.integers(0, 9).flatmap(lambda k: encoded if k < 6 else st.one_of(others))
GOOD_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-06-18",
}
odd_headers = st.fixed_dictionaries(
    {
        "content-type": st.sampled_from(
            ["application/json", "application/json", "text/plain", "", "application/json; x"]
        ),
        "accept": st.sampled_from(
            [
                "application/json, text/event-stream",
                "application/json, text/event-stream",
                "application/json",
                "text/event-stream",
                "*/*",
                "",
            ]
        ),
        "mcp-protocol-version": st.sampled_from(VERSIONS),
    },
    optional={
        "origin": st.sampled_from(["http://127.0.0.1", "null", "http://evil.example", "x"]),
        "mcp-session-id": st.sampled_from(["abc", ""]),
    },
)
headers = st.one_of(
    st.just(GOOD_HEADERS), st.just(GOOD_HEADERS), st.just(GOOD_HEADERS), odd_headers
)


def post(url: str, body: bytes, extra: dict[str, str], token: str | None) -> httpx.Response:
    sent = {k: v for k, v in extra.items() if v != ""}
    if token:
        sent["authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/mcp", content=body, headers=sent, timeout=30)


def valid_error_codes(response: httpx.Response) -> bool:
    """Every JSON-RPC error in a reply carries a code the specification defines (the
    standard ones, or the implementation-defined server range)."""
    try:
        reply = response.json()
    except ValueError:
        return True
    for message in reply if isinstance(reply, list) else [reply]:
        error = message.get("error") if isinstance(message, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            if not isinstance(code, int) or not (
                code in (-32700, -32600, -32601, -32602, -32603) or -32099 <= code <= -32000
            ):
                return False
    return True


def check_logs_and_health(group: Group) -> None:
    for process in group.mads():
        assert process.process is not None and process.process.poll() is None, process.name
        assert process.ready(), f"{process.name} is not ready after the fuzz"
        text = process.log_text()
        assert "Traceback" not in text, f"{process.name} logged a traceback"
        for line in text.splitlines():
            assert LINE.match(line), f"{process.name}: a line not of its own: {line[:200]!r}"
            assert len(line) <= MAX_LINE + 200, f"{process.name}: a {len(line)}-character line"
            assert not line.startswith(FORGED), f"{process.name}: a forged line: {line[:200]!r}"


def step8(group: Group) -> None:
    async def run() -> dict[str, Any]:
        url = f"{group.fiedler.url}/mcp"
        created = await call_tool(
            url, "fiedler_converse", {"prompt": PROMPT, "requester_id": "after-fuzz"}
        )

        async def done() -> dict[str, Any] | None:
            status = await call_tool(
                url, "fiedler_get_task_status", {"task_id": created["task_id"]}
            )
            return status if status["status"] not in ("PENDING", "RUNNING") else None

        for _ in range(300):
            final = await done()
            if final:
                return final
            await asyncio.sleep(0.1)
        raise AssertionError("step 8 did not finish")

    final = asyncio.run(run())
    assert (final["status"], final["result_payload"]) == ("COMPLETED", "OK")


# -- the endpoints ---------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_grace_mcp_endpoint(group: Group) -> None:
    statuses: dict[int, int] = {}

    @FUZZ
    @given(
        body=bodies,
        extra=headers,
        token=st.sampled_from([group.token, group.token, None, "wrong", "x" * 300]),
    )
    def case(body: bytes, extra: dict[str, str], token: str | None) -> None:
        response = post(group.grace.url, body, extra, token)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text[:300]
        assert valid_error_codes(response), response.text[:300]

    case()
    print(f"\nGrace: {sum(statuses.values())} requests, statuses {statuses}")
    check_logs_and_health(group)
    step8(group)


@pytest.mark.timeout(900)
def test_fiedler_mcp_endpoint(group: Group) -> None:
    statuses: dict[int, int] = {}

    @FUZZ
    @given(body=bodies, extra=headers)
    def case(body: bytes, extra: dict[str, str]) -> None:
        response = post(group.fiedler.url, body, extra, None)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text[:300]
        assert valid_error_codes(response), response.text[:300]

    case()
    print(f"\nFiedler: {sum(statuses.values())} requests, statuses {statuses}")
    check_logs_and_health(group)
    assert _forged_tasks(group.db_path) == 0
    step8(group)


def _forged_tasks(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(
            conn.execute(
                "SELECT count(*) FROM tasks WHERE task_id = '00000000-0000-0000-0000-000000000000'"
            ).fetchone()[0]
        )
    finally:
        conn.close()


# -- mad-cli ---------------------------------------------------------------------------

cli_text = st.one_of(
    tricky_text,
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30),
    json_values.map(json.dumps),
    arguments.map(json.dumps),
    st.sampled_from(["[" * 5000 + "]" * 5000, '{"a": "\\ud800"}', "nan", "-1", "99999"]),
)
cli_flags = st.lists(
    st.one_of(
        st.tuples(
            st.just("--url"),
            cli_text
            | st.sampled_from(
                [
                    "http://127.0.0.1:99999",
                    "http://[::1",
                    "ftp://x",
                    "http://127.0.0.1:1",
                    "http://",
                ]
            ),
        ),
        st.tuples(st.just("--timeout"), cli_text | st.sampled_from(["nan", "inf", "-1", "0"])),
        st.tuples(st.just("--token"), cli_text | st.sampled_from(["héllo", "bad token"])),
    ),
    max_size=2,
)


@pytest.mark.timeout(900)
def test_mad_cli(group: Group) -> None:
    """``mad-cli`` run in this process (the same ``main`` as the console script), against
    Fiedler: every outcome is exit 0, 1 or 2, and a failure is one line."""
    previous = {key: os.environ.get(key) for key in ("MAD_PORT", "MAD_NAME", "MAD_API_TOKEN")}
    os.environ.update(MAD_PORT=str(group.fiedler.port), MAD_NAME="fiedler")
    os.environ.pop("MAD_API_TOKEN", None)
    codes: dict[int, int] = {}

    @FUZZ
    # Each outcome at least once, whatever the generated cases: a call that succeeds, one
    # that cannot reach its MAD, and a usage error.
    @example(tool="fiedler_list_tasks", args="{}", flags=[])
    @example(tool="fiedler_list_tasks", args="{}", flags=[("--url", "http://127.0.0.1:1")])
    @example(tool="fiedler_list_tasks", args="[", flags=[])
    @given(
        tool=st.sampled_from(TOOLS) | cli_text,
        args=st.one_of(st.none(), cli_text, arguments.map(json.dumps)),
        flags=cli_flags,
    )
    def case(tool: str, args: str | None, flags: list[tuple[str, str]]) -> None:
        argv = [tool] + ([args] if args is not None else [])
        for flag, value in flags:
            argv += [flag, value]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = mad_cli.main(argv)
            except SystemExit as exc:
                code = int(exc.code or 0)
        codes[code] = codes.get(code, 0) + 1
        assert code in (0, 1, 2), (argv, err.getvalue())
        assert "Traceback" not in out.getvalue() + err.getvalue()
        if code != 0:
            assert len(err.getvalue().strip().splitlines()) == 1, (argv, err.getvalue())
            assert out.getvalue() == ""

    try:
        case()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    print(f"\nmad-cli: exit codes {codes}")
    assert codes.get(0) and codes.get(1) and codes.get(2), f"every outcome exercised: {codes}"
    check_logs_and_health(group)
    step8(group)
