"""Hostile input, generated: at least 2,000 seeded cases each against Grace's and Fiedler's
``/mcp``, against their task methods (``tasks/*`` and task-augmented ``tools/call``, both
protocol generations; a refused request changes no task) and against ``mad-cli`` (counted:
Hypothesis may not stop early). Whatever comes
in: no 5xx, no process exits (Sequential Thinking's included), no traceback in any MAD's
log or in the CLI's output or logging, no log line over the cap, no line a client wrote
that passes for the service's own; ``mad-cli`` refused by Grace (no token, a wrong one, a
token without the scope, a wrong path, a bad port) says why in one line; and the guide's
step 8, run with ``mad-cli`` as the guide runs it, still completes afterwards."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from mads.core.cli import call as mad_cli
from mads.core.logs import MAX_LINE
from mads.grace import tokens
from tests.support.evidence import record
from tests.support.grace import new_token
from tests.support.group import process_group
from tests.support.mad_process import MadProcess
from tests.support.waiting import wait_for

CASES = 2000
FUZZ = settings(
    max_examples=CASES,
    derandomize=True,  # the same cases on every run: a failure is reproducible
    deadline=None,
    database=None,
    # Every case generated and run: no health check may end the run early, and no phase
    # but the explicit examples, generation and (on a failure) shrinking.
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=list(HealthCheck),
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
    thinking: MadProcess
    grace: MadProcess
    fiedler: MadProcess
    token: str
    reader: str
    """A Grace token scoped to fiedler_get_task_status only."""
    db_path: Path

    def mads(self) -> list[MadProcess]:
        return [self.thinking, self.grace, self.fiedler]


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    workdir = tmp_path_factory.mktemp("fuzz")
    token, reader = new_token(), new_token()
    db_path = workdir / "fiedler_state.db"
    scoped = workdir / "grace_tokens.json"
    entry = {
        "name": "reader",
        "sha256": tokens.digest(reader),
        "scopes": {"tools": ["fiedler_get_task_status"]},
    }
    scoped.write_text(json.dumps({"tokens": [entry]}))
    with process_group(workdir) as processes:
        thinking = processes.start("sequential_thinking")
        fiedler = processes.start("fiedler", {"FIEDLER_DB_PATH": str(db_path)})
        grace = processes.start(
            "grace", {"GRACE_API_TOKENS": token, "GRACE_TOKENS_FILE": str(scoped)}
        )
        yield Group(thinking, grace, fiedler, token, reader, db_path)


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
    # Beyond Grace's 30 s relay timeout: a slow relay is answered by Grace, not cut off.
    return httpx.post(f"{url}/mcp", content=body, headers=sent, timeout=90)


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
            assert len(line) <= MAX_LINE, f"{process.name}: a {len(line)}-character line"
            assert not line.startswith(FORGED), f"{process.name}: a forged line: {line[:200]!r}"


def mad_cli_json(process: MadProcess, *args: str) -> Any:
    """``mad-cli`` run as the guide runs it in a MAD's environment; its JSON output."""
    done = process.cli("mad-cli", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def step8(group: Group) -> None:
    """The guide's step 8, Part A and Part B, with ``mad-cli`` inside Fiedler's
    environment."""
    arguments = {"prompt": PROMPT, "requester_id": "after-fuzz"}
    created = mad_cli_json(group.fiedler, "fiedler_converse", json.dumps(arguments))
    assert created["status"] == "pending", created
    query = json.dumps({"task_id": created["task_id"]})

    def finished() -> dict[str, Any] | None:
        status = mad_cli_json(group.fiedler, "fiedler_get_task_status", query)
        return status if status["status"] not in ("PENDING", "RUNNING") else None

    final = wait_for(finished, timeout=120, interval=0.5, what="step 8's task")
    assert (final["status"], final["result_payload"]) == ("COMPLETED", "OK"), final


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
    ran = sum(statuses.values())
    record("fuzz", f"Grace's /mcp: {ran} requests, statuses {statuses}")
    assert ran >= CASES, f"only {ran} cases ran"
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
    ran = sum(statuses.values())
    record("fuzz", f"Fiedler's /mcp: {ran} requests, statuses {statuses}")
    assert ran >= CASES, f"only {ran} cases ran"
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


# -- the task methods ------------------------------------------------------------------

TASK_METHODS = ["tasks/get", "tasks/result", "tasks/cancel", "tasks/list", "tasks/update"]
TASK_EXTENSION = "io.modelcontextprotocol/tasks"


def task_requests(ids: list[str]) -> st.SearchStrategy[tuple[bytes, dict[str, str]]]:
    """The task methods and task-augmented ``tools/call``, on both protocol generations:
    2025-11-25 (tasks in the core protocol) and 2026-07-28 (the tasks extension, declared
    or not in the request's ``_meta``), with ids that exist (``ids``) and anything else
    where an id, a name, a task's metadata, a cursor or the params go; each with the
    headers its generation routes by (or a wrong one)."""
    task_id = st.one_of(st.sampled_from(ids), json_values, tricky_text)
    task_params = st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "taskId": task_id,
                "cursor": json_values,
                "inputResponses": json_values,
                "ttl": json_values,
            },
        ),
        json_values,
    )
    call_params = st.one_of(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["fiedler_converse", "fiedler_get_task_status"])
                | json_values,
                "task": st.fixed_dictionaries({}, optional={"ttl": json_values}) | json_values,
            },
            optional={"arguments": arguments},
        ),
        st.fixed_dictionaries(
            {"name": st.just("fiedler_converse"), "arguments": arguments},
            optional={"task": json_values},
        ),
    )
    request = st.one_of(
        st.tuples(st.sampled_from(TASK_METHODS), task_params),
        st.tuples(st.just("tools/call"), call_params),
    )
    meta = st.sampled_from(["none", "without the extension", "with the extension", "odd"])

    def build(
        method_params: tuple[str, Any], version: str, how: str, request_id: Any
    ) -> tuple[bytes, dict[str, str]]:
        method, params = method_params
        headers = {**GOOD_HEADERS, "mcp-protocol-version": version}
        if isinstance(params, dict) and how != "none":
            extensions = {TASK_EXTENSION: {}} if how == "with the extension" else {}
            params = {
                **params,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": version,
                    "io.modelcontextprotocol/clientCapabilities": {"extensions": extensions},
                }
                if how != "odd"
                else ["not", "an", "object"],
            }
        if version == "2026-07-28":
            headers["mcp-method"] = method
            named = params.get("name", params.get("taskId")) if isinstance(params, dict) else None
            if (
                isinstance(named, str)
                and named.isprintable()
                and named.isascii()
                and named == named.strip()
            ):
                headers["mcp-name"] = named
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        return json.dumps(body).encode(), headers

    return st.builds(
        build,
        request,
        st.sampled_from(["2025-11-25", "2026-07-28"]),
        meta,
        st.integers(min_value=1, max_value=10**6),
    )


def task_rows(db_path: Path) -> tuple[int, str | None, int]:
    """What a request may change: the number of tasks, the newest change, the unfinished."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        total, newest = conn.execute("SELECT count(*), max(updated_at) FROM tasks").fetchone()
        working = conn.execute(
            "SELECT count(*) FROM tasks WHERE status IN ('PENDING', 'RUNNING')"
        ).fetchone()[0]
    finally:
        conn.close()
    return int(total), newest, int(working)


def refused(response: httpx.Response) -> bool:
    """Whether the reply refused the request (an HTTP error, a JSON-RPC error, a tool
    error): then nothing may have changed."""
    if response.status_code >= 400:
        return True
    try:
        reply = response.json()
    except ValueError:
        return "error" in response.text
    if not isinstance(reply, dict):
        return True
    result = reply.get("result")
    return "error" in reply or (isinstance(result, dict) and bool(result.get("isError")))


def fuzz_task_methods(group: Group, url: str, token: str | None, ids: list[str]) -> Counter:
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(case=task_requests(ids))
    def case(case: tuple[bytes, dict[str, str]]) -> None:
        body, headers = case
        wait_for(lambda: task_rows(group.db_path)[2] == 0, timeout=60, what="the tasks finished")
        before = task_rows(group.db_path)
        response = post(url, body, headers, token)
        statuses[response.status_code] += 1
        assert response.status_code < 500, response.text[:300]
        assert valid_error_codes(response), response.text[:300]
        if refused(response):
            assert task_rows(group.db_path) == before, f"a refused request changed tasks: {body!r}"

    case()
    return statuses


def finished_task(group: Group) -> tuple[str, str]:
    """A task run as an MCP task through Grace, to its end: (Fiedler's id, Grace's id)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "fiedler_converse",
            "arguments": {"prompt": PROMPT, "requester_id": "fuzz-tasks"},
            "task": {"ttl": 60_000},
        },
    }
    headers = {**GOOD_HEADERS, "mcp-protocol-version": "2025-11-25"}
    response = post(group.grace.url, json.dumps(body).encode(), headers, group.token)
    assert response.status_code == 200, response.text
    outer = str(response.json()["result"]["task"]["taskId"])
    wait_for(lambda: task_rows(group.db_path)[2] == 0, timeout=60, what="the task finished")
    return outer.split(":")[1], outer


@pytest.mark.timeout(900)
def test_grace_task_methods(group: Group) -> None:
    inner, outer = finished_task(group)
    mac = outer.rsplit(":", 1)[1]
    ids = [outer, inner, f"fiedler:{inner}:{'0' * 24}", f"rogers:{inner}:{mac}"]
    statuses = fuzz_task_methods(group, group.grace.url, group.token, ids)
    ran = sum(statuses.values())
    record("fuzz", f"Grace's task methods: {ran} requests, statuses {dict(statuses)}")
    assert ran >= CASES, f"only {ran} cases ran"
    check_logs_and_health(group)
    step8(group)


@pytest.mark.timeout(900)
def test_fiedler_task_methods(group: Group) -> None:
    inner, _outer = finished_task(group)
    ids = [inner, "00000000-0000-0000-0000-000000000000"]
    statuses = fuzz_task_methods(group, group.fiedler.url, None, ids)
    ran = sum(statuses.values())
    record("fuzz", f"Fiedler's task methods: {ran} requests, statuses {dict(statuses)}")
    assert ran >= CASES, f"only {ran} cases ran"
    check_logs_and_health(group)
    assert _forged_tasks(group.db_path) == 0
    step8(group)


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


class Records(logging.Handler):
    """Every log record emitted in this process, for what must never be among them: a
    traceback (``exc_info``, a stack, or one written into the message)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen = 0
        self.tracebacks: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        message = record.getMessage()
        if record.exc_info or record.stack_info or "Traceback" in message:
            self.tracebacks.append(f"{record.name}: {message[:300]}")
        elif record.levelno >= logging.WARNING and len(self.warnings) < 20:
            self.warnings.append(f"{record.levelname}:{record.name}: {message[:300]}")


@contextlib.contextmanager
def captured_logging() -> Iterator[Records]:
    """All of this process's logging, at every level, into :class:`Records`."""
    root = logging.getLogger()
    records = Records()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(records)
        root.setLevel(level)


CLI_ENVIRONMENT = (
    "MAD_PORT",
    "MAD_NAME",
    "MAD_API_TOKEN",
    "GRACE_API_TOKENS",
    "MAD_INTERNAL_TOKEN",
    "MAD_INTERNAL_TOKEN_FILE",
)


@contextlib.contextmanager
def cli_environment(**values: str) -> Iterator[None]:
    """``mad-cli``'s environment for an in-process run: ``values``, and nothing else of
    what it reads (restored afterwards)."""
    previous = {key: os.environ.get(key) for key in CLI_ENVIRONMENT}
    for key in CLI_ENVIRONMENT:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``mad-cli``'s ``main`` in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = mad_cli.main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.timeout(900)
def test_mad_cli(group: Group) -> None:
    """``mad-cli`` run in this process (the same ``main`` as the console script), against
    Fiedler: every outcome is exit 0, 1 or 2, a failure is one line, and nothing in this
    process logs a traceback."""
    codes: dict[int, int] = {}

    @FUZZ
    # Each outcome at least once, whatever the generated cases: a call that succeeds, one
    # that cannot reach its MAD, and a usage error.
    @example(tool="fiedler_list_tasks", args="{}", flags=[])
    @example(tool="fiedler_list_tasks", args="{}", flags=[("--url", "http://127.0.0.1:1")])
    @example(tool="fiedler_list_tasks", args="[", flags=[])
    # Half the cases reach Fiedler (a known tool, arguments that are JSON, no odd flag).
    @given(
        tool=st.one_of(st.sampled_from(TOOLS), st.sampled_from(TOOLS), cli_text),
        args=st.one_of(st.none(), arguments.map(json.dumps), arguments.map(json.dumps), cli_text),
        flags=st.one_of(st.just([]), st.just([]), cli_flags),
    )
    def case(tool: str, args: str | None, flags: list[tuple[str, str]]) -> None:
        argv = [tool] + ([args] if args is not None else [])
        for flag, value in flags:
            argv += [flag, value]
        code, out, err = run_cli(argv)
        codes[code] = codes.get(code, 0) + 1
        assert code in (0, 1, 2), (argv, err)
        assert "Traceback" not in out + err
        assert not records.tracebacks, (argv, records.tracebacks)
        if code != 0:
            assert len(err.strip().splitlines()) == 1, (argv, err)
            assert out == ""

    environment = cli_environment(MAD_PORT=str(group.fiedler.port), MAD_NAME="fiedler")
    with environment, captured_logging() as records:
        case()
    ran = sum(codes.values())
    record("fuzz", f"mad-cli: {ran} runs, exit codes {codes}; {records.seen} log records")
    for warning in records.warnings:
        print(f"  logged: {warning}")
    assert ran >= CASES, f"only {ran} cases ran"
    assert records.seen > 0, "the handler saw this process's logging"
    assert codes.get(0) and codes.get(1) and codes.get(2), f"every outcome exercised: {codes}"
    check_logs_and_health(group)
    step8(group)


def grace_cases(group: Group) -> list[tuple[str, dict[str, str], list[str], int, str]]:
    """``(case, environment, argv, exit code, what stderr says)`` for mad-cli against
    Grace, which requires a bearer token."""
    url, port = group.grace.url, str(group.grace.port)
    send = ["grace_send_message", json.dumps({"channel": "mad.topic.fuzz", "payload": {}})]
    return [
        ("the right token", {}, [*send, "--url", url, "--token", group.token], 0, ""),
        (
            "no token",
            {},
            [*send, "--url", url],
            1,
            f"mad-cli: the MAD at {url} refused the call: missing bearer token (HTTP 401): "
            "pass --token or set $MAD_API_TOKEN",
        ),
        (
            "no token, in Grace's environment without its tokens",
            {"MAD_NAME": "grace", "MAD_PORT": port},
            send,
            1,
            "mad-cli: Grace refused the call: missing bearer token (HTTP 401): pass --token "
            "or set $MAD_API_TOKEN",
        ),
        (
            "a wrong token",
            {"MAD_NAME": "grace", "MAD_PORT": port},
            [*send, "--token", "wrong-wrong-wrong-wrong"],
            1,
            "mad-cli: Grace refused the call: wrong bearer token (HTTP 401): check --token",
        ),
        (
            "a wrong token in $MAD_API_TOKEN",
            {"MAD_API_TOKEN": "wrong-wrong-wrong-wrong"},
            [*send, "--url", url],
            1,
            f"mad-cli: the MAD at {url} refused the call: wrong bearer token (HTTP 401): "
            "check --token",
        ),
        (
            "a token without the tool in its scope",
            {"MAD_NAME": "grace", "MAD_PORT": port},
            [*send, "--token", group.reader],
            1,
            "mad-cli: Grace refused the call (HTTP 403): token 'reader' lacks the scope for "
            "tool 'grace_send_message'",
        ),
        (
            "a non-ASCII token",
            {"MAD_NAME": "grace", "MAD_PORT": port},
            [*send, "--token", "héllo-wörld"],
            2,
            "mad-cli: the bearer token has characters a token cannot have",
        ),
        (
            "a non-ASCII token in $MAD_API_TOKEN",
            {"MAD_API_TOKEN": "tøken", "MAD_PORT": port},
            send,
            2,
            "mad-cli: the bearer token has characters a token cannot have",
        ),
        (
            "a wrong path on the live server",
            {},
            [*send, "--url", f"{url}/nope", "--token", group.token],
            1,
            f"mad-cli: no MCP endpoint at {url}/nope/mcp (HTTP 404): a MAD serves MCP at /mcp "
            "on its port",
        ),
        *(
            (
                f"port {bad} in --url",
                {},
                [*send, "--url", f"http://127.0.0.1:{bad}", "--token", group.token],
                2,
                f"mad-cli: --url 'http://127.0.0.1:{bad}': the port is not a port number (1-65535)",
            )
            for bad in ("-1", "99999", "8x01")
        ),
        *(
            (
                f"port {bad} in $MAD_PORT",
                {"MAD_PORT": bad},
                [*send, "--token", group.token],
                2,
                f"mad-cli: MAD_PORT='{bad}' is not a port number (1-65535)",
            )
            for bad in ("-1", "99999", "8x01", "0")
        ),
    ]


@pytest.mark.timeout(300)
def test_mad_cli_against_grace(group: Group) -> None:
    """Each refusal is one line saying which, and why: exit 1 for a call refused, 2 for a
    usage error found before calling; nothing in this process logs a traceback."""
    with captured_logging() as records:
        for name, environment, argv, expected_code, expected in grace_cases(group):
            with cli_environment(**environment):
                code, out, err = run_cli(argv)
            assert code == expected_code, (name, code, err)
            assert "Traceback" not in out + err, name
            if code == 0:
                assert json.loads(out)["status"] == "success", name
                continue
            assert out == "" and err.endswith("\n") and err.count("\n") == 1, (name, err)
            assert err.startswith(expected), (name, err)
            assert "Server returned an error response" not in err, (name, err)
    assert not records.tracebacks, records.tracebacks
    # And as the console script in Grace's own environment, as a substrate gives it (its
    # name, its port, its tokens): ``docker-compose exec grace mad-cli ...``.
    send = ["grace_send_message", json.dumps({"channel": "mad.topic.fuzz", "payload": {}})]
    done = console_cli(group.grace, *send, "--token", "wrong-wrong-wrong-wrong")
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr == (
        "mad-cli: Grace refused the call: wrong bearer token (HTTP 401): check --token\n"
    )
    done = console_cli(group.grace, *send)
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "success", done.stderr
    check_logs_and_health(group)


def console_cli(process: MadProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``mad-cli`` as a process of its own, in ``process``'s environment with its name."""
    return subprocess.run(
        [sys.executable, "-m", "mads.core.cli.call", *args],
        env={**process.env, "MAD_NAME": process.name},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
