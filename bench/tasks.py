"""Fiedler task throughput and latency, against raw SQLite on the same disk, and task status
read through Grace against straight from Fiedler, in one run; and, with ``--slow-llm``, how
close Fiedler's concurrency comes to its ideal on a slow LLM.

    .venv/bin/python bench/tasks.py [--tasks 2000] [--concurrency 100] [--dir DIR]
                                    [--part store|status|all] [--seconds 5] [--rounds 2]
    .venv/bin/python bench/tasks.py --slow-llm [--tasks 1000] [--levels 4,64,256]

Starts its own password-protected redis-server, Sequential Thinking and Fiedler (built-in
provider, database under DIR), then measures:

1. raw SQLite: one INSERT (PENDING) and one UPDATE (COMPLETED) per task, each its own
   transaction, WAL with ``synchronous=FULL`` (the durability Fiedler gives: a task is on
   disk before ``fiedler_converse`` answers) — and, for reference, ``synchronous=NORMAL``;
2. Fiedler: ``--tasks`` ``fiedler_converse`` calls over MCP from ``--concurrency`` callers
   at once, until every task is COMPLETED (read from Fiedler's own database). The calls are
   plain JSON-RPC posts (``--client sdk`` uses the official MCP client instead, whose own
   CPU cost then shares the machine with Fiedler).

Prints tasks/s for both, the ratio Fiedler / raw SQLite (FULL) — goal >= 0.3 — and p50/p99
of the converse reply and of converse -> COMPLETED.

``--slow-llm``: for each ``FIEDLER_MAX_CONCURRENCY`` of ``--levels``, a fresh Fiedler (its
own database) answering from an OpenAI-compatible fake LLM on loopback that takes
``--answer-s`` (2 s) before each answer; ``--tasks`` converse calls from 64 callers at once,
timed from the first call to the last task COMPLETED. Prints that wall time over the ideal,
``tasks x answer-s / concurrency`` (goal <= 1.3 at every level), the most requests the fake
LLM answered at once (it should be the level), how long the calls themselves took, and the
CPU seconds Fiedler spent.

Then (``status``) Sequential Thinking, Fiedler and Grace: ``fiedler_get_task_status`` from
the same client at the same concurrency (``--concurrency``), straight to Fiedler and through
Grace, alternately, ``--rounds`` times of ``--seconds``; prints calls/s each way, how many
of the calls through Grace reached Fiedler, and the ratio through Grace / direct (goal >=
0.7) — twice: for a finished task (Grace answers from the owner's answer it keeps, as a
client polling a task is answered) and for task ids Fiedler does not have, a new one each
call (never kept: every call is relayed, which measures the relay itself).

Not a test: numbers depend on the host.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from bench.doors import compare  # noqa: E402
from bench.proc import cpu_seconds  # noqa: E402
from mads.core.mcp_client import session  # noqa: E402
from tests.support.fake_llm import FakeLLM  # noqa: E402
from tests.support.mad_process import MadProcess  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.tool_calls import ToolCallClient  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

PROMPT = "System check, please respond with OK."


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- raw SQLite ----------------------------------------------------------------------------


def raw_sqlite(path: Path, tasks: int, synchronous: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, status TEXT NOT NULL, prompt TEXT NOT NULL,"
        " requester_id TEXT NOT NULL, result_payload TEXT, created_at TEXT, updated_at TEXT)"
    )
    start = time.perf_counter()
    for _ in range(tasks):
        task_id = str(uuid.uuid4())
        stamp = datetime.now().isoformat()
        conn.execute(
            "INSERT INTO tasks VALUES (?, 'PENDING', ?, 'bench', NULL, ?, ?)",
            (task_id, PROMPT, stamp, stamp),
        )
        conn.execute(
            "UPDATE tasks SET status = 'COMPLETED', result_payload = 'OK', updated_at = ? "
            "WHERE task_id = ?",
            (datetime.now().isoformat(), task_id),
        )
    elapsed = time.perf_counter() - start
    conn.close()
    return tasks / elapsed


# -- the group -----------------------------------------------------------------------------


class Group:
    def __init__(
        self,
        workdir: Path,
        fiedler_concurrency: int | None,
        fiedler_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.fiedler_concurrency = fiedler_concurrency
        self.fiedler_env = fiedler_env or {}
        self.password = secrets.token_urlsafe(24)
        self.redis_port, self.thinking_port, self.fiedler_port = (free_port() for _ in range(3))
        self.db_path = workdir / "fiedler" / "fiedler_state.db"
        self.processes: list[subprocess.Popen[bytes]] = []

    def _mad(self, name: str, port: int, extra: dict[str, str]) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "operator")]),
            "MAD_HOST": "127.0.0.1",
            "MAD_PORT": str(port),
            **extra,
        }
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "mads.core.cli.run", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def start(self) -> None:
        self.processes.append(
            subprocess.Popen(
                ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                 "--requirepass", self.password, "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir)],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        self._mad("sequential_thinking", self.thinking_port, {})
        self._mad(
            "fiedler",
            self.fiedler_port,
            {
                "REDIS_HOST": "127.0.0.1",
                "REDIS_PORT": str(self.redis_port),
                "REDIS_PASSWORD": self.password,
                "SEQUENTIAL_THINKING_URL": f"http://127.0.0.1:{self.thinking_port}/mcp",
                "FIEDLER_DB_PATH": str(self.db_path),
                **(
                    {"FIEDLER_MAX_CONCURRENCY": str(self.fiedler_concurrency)}
                    if self.fiedler_concurrency
                    else {}
                ),
                **self.fiedler_env,
            },
        )
        wait_for(self._ready, timeout=60, what="Fiedler /readyz")

    def _ready(self) -> bool:
        for process in self.processes:
            if process.poll() is not None:
                raise SystemExit(f"bench: a process exited early; see logs in {self.workdir}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.fiedler_port}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()

    def completed(self) -> dict[str, float]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        rows = conn.execute(
            "SELECT task_id, updated_at FROM tasks WHERE status = 'COMPLETED'"
        ).fetchall()
        conn.close()
        return {
            task_id: datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            for task_id, stamp in rows
        }

    def count(self, where: str = "1") -> int:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        n = int(conn.execute(f"SELECT count(*) FROM tasks WHERE {where}").fetchone()[0])
        conn.close()
        return n


# -- Fiedler -------------------------------------------------------------------------------


async def drive(
    url: str, tasks: int, concurrency: int, client_kind: str
) -> tuple[dict[str, float], list[float]]:
    """Send ``tasks`` converse calls from ``concurrency`` callers at once; returns send times
    by task id and the reply latencies."""
    sent: dict[str, float] = {}
    replies: list[float] = []
    remaining = iter(range(tasks))
    arguments = {"prompt": PROMPT, "requester_id": "bench"}

    async def sdk_caller() -> None:
        async with session(url, timeout=60) as s:
            for _ in remaining:
                began = time.time()
                result = await s.call_tool("fiedler_converse", arguments)
                if result.is_error:
                    raise SystemExit(f"bench: converse failed: {result.content}")
                replies.append(time.time() - began)
                sent[result.structured_content["task_id"]] = began

    async def jsonrpc_caller(client: ToolCallClient) -> None:
        for _ in remaining:
            began = time.time()
            ok, data = await client.call("fiedler_converse", arguments)
            if not ok:
                raise SystemExit(f"bench: converse failed: {data}")
            replies.append(time.time() - began)
            sent[data["task_id"]] = began

    if client_kind == "sdk":
        await asyncio.gather(*(sdk_caller() for _ in range(concurrency)))
    else:
        client = ToolCallClient(url, connections=concurrency)
        try:
            await asyncio.gather(*(jsonrpc_caller(client) for _ in range(concurrency)))
        finally:
            await client.close()
    return sent, replies


# -- task status, relayed -----------------------------------------------------------------


def relayed_status(workdir: Path, seconds: float, rounds: int, concurrency: int) -> None:
    """``fiedler_get_task_status`` through Grace against direct: of a finished task (Grace
    answers from the answer it keeps, Fiedler is asked once), then of a task Fiedler does
    not have, a new one each call (never kept: every call is relayed, and refused by
    Fiedler)."""

    def finished_task(fiedler: MadProcess) -> dict[str, Any]:
        async def converse() -> str:
            client = ToolCallClient(f"{fiedler.url}/mcp")
            try:
                ok, data = await client.call(
                    "fiedler_converse", {"prompt": PROMPT, "requester_id": "bench"}
                )
            finally:
                await client.close()
            if not ok:
                raise SystemExit(f"bench: converse refused: {data}")
            return str(data["task_id"])

        return {"task_id": asyncio.run(converse())}

    print("fiedler_get_task_status of a finished task (Grace keeps the answer):")
    compare(
        workdir / "finished",
        "fiedler_get_task_status",
        finished_task,
        lambda arguments, ok, data: (
            ok and isinstance(data, dict) and data.get("task_id") == arguments["task_id"]
        ),
        seconds=seconds,
        rounds=rounds,
        concurrency=concurrency,
    )
    print(
        "fiedler_get_task_status of task ids Fiedler does not have, a new one each call "
        "(nothing to keep: every call is relayed):"
    )
    unknown = itertools.count()
    compare(
        workdir / "unknown",
        "fiedler_get_task_status",
        lambda _fiedler: lambda: {"task_id": f"no-such-task-{next(unknown)}"},
        lambda _arguments, ok, data: not ok and "unknown task_id" in str(data),
        seconds=seconds,
        rounds=rounds,
        concurrency=concurrency,
    )


# -- Fiedler on a slow LLM ------------------------------------------------------------------

SLOW_CALLERS = 64


def slow_llm_level(
    workdir: Path, tasks: int, concurrency: int, answer_s: float
) -> tuple[float, int, float, float]:
    """One level: wall time from the first call to the last COMPLETED, the fake LLM's peak
    of requests at once, the time to the last converse reply, and Fiedler's CPU seconds."""
    llm = FakeLLM()
    llm.answer_delay = answer_s
    llm.start()
    level_dir = Path(tempfile.mkdtemp(prefix=f"c{concurrency}-", dir=workdir))
    group = Group(level_dir, concurrency, llm.fiedler_env)
    try:
        group.start()
        url = f"http://127.0.0.1:{group.fiedler_port}/mcp"
        fiedler = group.processes[-1].pid
        cpu_before = cpu_seconds(fiedler)
        began = time.time()
        sent, _replies = asyncio.run(drive(url, tasks, SLOW_CALLERS, "jsonrpc"))
        intake = time.time() - began
        rounds = -(-tasks // concurrency)
        wait_for(
            lambda: group.count("status = 'COMPLETED'") == tasks,
            timeout=120 + 3 * rounds * answer_s,
            interval=0.5,
            what="every task COMPLETED",
        )
        failed = group.count("status != 'COMPLETED'")
        if failed or len(sent) != tasks:
            raise SystemExit(f"bench: {failed} task(s) not COMPLETED; logs in {group.workdir}")
        wall = max(group.completed().values()) - began
        cpu = cpu_seconds(fiedler) - cpu_before
    finally:
        group.stop()
        llm.stop()
    return wall, llm.peak, intake, cpu


def slow_llm(args: argparse.Namespace) -> int:
    levels = [int(level) for level in args.levels.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="fiedler-bench-", dir=args.dir))
    tasks = args.tasks or 1000
    print(
        f"{tasks} fiedler_converse calls from {SLOW_CALLERS} callers; the fake LLM answers "
        f"after {args.answer_s:g} s; ideal wall time = {tasks} x {args.answer_s:g} s / "
        f"concurrency; load average at the start {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    print(
        "FIEDLER_MAX_CONCURRENCY   wall (s)   ideal (s)   ratio   peak at the LLM   "
        "intake (s)   Fiedler CPU (s)"
    )
    try:
        for level in levels:
            wall, peak, intake, cpu = slow_llm_level(workdir, tasks, level, args.answer_s)
            ideal = tasks * args.answer_s / level
            print(
                f"{level:>23}   {wall:8.1f}   {ideal:9.1f}   {wall / ideal:5.2f}   "
                f"{peak:>15}   {intake:10.1f}   {cpu:15.1f}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("goal: ratio <= 1.3 at every level; the peak is the level")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=None, help="2000; 1000 with --slow-llm")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None, help="where databases live")
    parser.add_argument(
        "--fiedler-concurrency",
        type=int,
        default=None,
        help="FIEDLER_MAX_CONCURRENCY (default: Fiedler's own, 32 for the builtin provider)",
    )
    parser.add_argument(
        "--client",
        choices=("jsonrpc", "sdk"),
        default="jsonrpc",
        help="jsonrpc: lean JSON-RPC posts (measures Fiedler); sdk: the official MCP client "
        "(about 2 ms of client CPU per call, which shares the machine)",
    )
    parser.add_argument(
        "--slow-llm",
        action="store_true",
        help="measure Fiedler's concurrency on a slow fake LLM instead",
    )
    parser.add_argument("--levels", default="4,64,256", help="with --slow-llm: concurrencies")
    parser.add_argument(
        "--answer-s", type=float, default=2.0, help="with --slow-llm: seconds per answer"
    )
    parser.add_argument(
        "--part", choices=("store", "status", "all"), default="all", help="which comparison"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a status run")
    parser.add_argument("--rounds", type=int, default=2, help="alternations (status)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("bench: redis-server is not installed", file=sys.stderr)
        return 1
    if args.slow_llm:
        return slow_llm(args)
    args.tasks = args.tasks or 2000
    if args.part in ("store", "all"):
        store(args)
    if args.part in ("status", "all"):
        workdir = Path(tempfile.mkdtemp(prefix="fiedler-bench-", dir=args.dir))
        try:
            relayed_status(workdir, args.seconds, args.rounds, args.concurrency)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def store(args: argparse.Namespace) -> None:
    """Fiedler's tasks/s against raw SQLite."""
    workdir = Path(tempfile.mkdtemp(prefix="fiedler-bench-", dir=args.dir))
    group = Group(workdir, args.fiedler_concurrency)
    try:
        raw_full = raw_sqlite(workdir / "raw_full.db", args.tasks, "FULL")
        raw_normal = raw_sqlite(workdir / "raw_normal.db", args.tasks, "NORMAL")
        group.start()
        url = f"http://127.0.0.1:{group.fiedler_port}/mcp"
        asyncio.run(drive(url, 20, 4, args.client))  # warm-up, not measured
        wait_for(
            lambda: group.count("status = 'COMPLETED'") == 20, timeout=30, what="warm-up tasks"
        )
        warm = set(group.completed())
        began = time.time()
        sent, replies = asyncio.run(drive(url, args.tasks, args.concurrency, args.client))
        wait_for(
            lambda: group.count("status = 'COMPLETED'") == args.tasks + 20,
            timeout=120,
            what="every task COMPLETED",
        )
        done = {k: v for k, v in group.completed().items() if k not in warm}
        fiedler_rate = args.tasks / (max(done.values()) - began)
        to_completed = [done[task_id] - at for task_id, at in sent.items()]
    finally:
        group.stop()
    ms = 1000.0
    print(
        f"tasks: {args.tasks}, concurrent clients: {args.concurrency}, "
        f"FIEDLER_MAX_CONCURRENCY: {args.fiedler_concurrency or 'default'}, disk: {workdir}"
    )
    print(f"raw SQLite WAL insert+update, synchronous=FULL:   {raw_full:9.0f} tasks/s")
    print(f"raw SQLite WAL insert+update, synchronous=NORMAL: {raw_normal:9.0f} tasks/s")
    print(f"Fiedler converse -> COMPLETED (builtin, MCP):     {fiedler_rate:9.0f} tasks/s")
    print(f"ratio Fiedler / raw SQLite (FULL):   {fiedler_rate / raw_full:.2f}  (goal >= 0.3)")
    print(f"ratio Fiedler / raw SQLite (NORMAL): {fiedler_rate / raw_normal:.2f}")
    print(
        f"converse reply latency:        p50 {percentile(replies, 50) * ms:7.1f} ms   "
        f"p99 {percentile(replies, 99) * ms:7.1f} ms"
    )
    print(
        f"converse -> COMPLETED latency: p50 {percentile(to_completed, 50) * ms:7.1f} ms   "
        f"p99 {percentile(to_completed, 99) * ms:7.1f} ms"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
