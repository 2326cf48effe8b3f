"""Fiedler replicas on PostgreSQL: does the work scale out, and what does the shared store
cost the intake? Measured in one run, printed, not asserted.

    .venv/bin/python bench/fiedler_replicas.py [--tasks 96] [--per-replica 8]
        [--intake 2000] [--callers 100]

Starts its own password-protected redis-server, Sequential Thinking, a PostgreSQL server
(Debian's, with its default durability: fsync and synchronous commits on) and an
OpenAI-compatible fake LLM on loopback, then:

1. **Scale-out.** ``--tasks`` ``fiedler_converse`` calls, spread over the replicas, to a
   fake LLM that takes 2 s an answer, with ``FIEDLER_MAX_CONCURRENCY=--per-replica`` on
   each replica: completed tasks per second (first call to last COMPLETED) with 3 replicas
   and with 1. The work is bound by the per-replica concurrency, so the ideal ratio is 3;
   goal >= 2.7.
2. **Intake.** On one replica, ``--intake`` calls from ``--callers`` at once, timed from the
   first call to the last reply (each reply means the task is stored PENDING): the
   PostgreSQL store against the SQLite one (WAL, ``synchronous=FULL``) on the same disk.
   The provider is held (one runner, a prompt the fake LLM never answers) so only the
   intake is measured. Goal: PostgreSQL / SQLite >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from tests.support.fake_llm import FakeLLM  # noqa: E402
from tests.support.group import ProcessGroup  # noqa: E402
from tests.support.mad_process import MadProcess  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.tool_calls import ToolCallClient  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def start_replicas(
    group: ProcessGroup, workdir: Path, count: int, env: dict[str, str]
) -> list[MadProcess]:
    processes = [
        MadProcess("fiedler", workdir / f"fiedler-{n}", {**group.env_for("fiedler"), **env})
        for n in range(count)
    ]
    for process in processes:
        process.start(wait_ready=False)
    for process in processes:
        process.wait_ready(timeout=60)
    return processes


def postgres_env(postgres: PostgresServer, workdir: Path) -> dict[str, str]:
    uri_file = workdir / "store-uri"
    uri_file.write_text(postgres.uri(postgres.create_database()))
    return {"FIEDLER_STORE": "postgresql", "FIEDLER_STORE_URI_FILE": str(uri_file)}


async def converse_all(urls: list[str], prompts: list[str], callers: int) -> float:
    """Send every prompt (round-robin over ``urls``) from ``callers`` at once; returns the
    time the first call went out."""
    clients = [ToolCallClient(f"{url}/mcp", connections=callers) for url in urls]
    queue = iter(enumerate(prompts))

    async def caller() -> None:
        for n, prompt in queue:
            ok, data = await clients[n % len(clients)].call(
                "fiedler_converse", {"prompt": prompt, "requester_id": "bench"}
            )
            if not ok:
                raise SystemExit(f"bench: converse failed: {data}")

    began = time.monotonic()
    try:
        await asyncio.gather(*(caller() for _ in range(callers)))
    finally:
        for client in clients:
            await client.close()
    return began


def scale_out(
    group: ProcessGroup,
    postgres: PostgresServer,
    llm: FakeLLM,
    workdir: Path,
    replicas: int,
    tasks: int,
    per_replica: int,
) -> float:
    """Completed tasks per second with ``replicas`` replicas on a fresh database."""
    env = {
        **llm.fiedler_env,
        **postgres_env(postgres, workdir),
        "FIEDLER_MAX_CONCURRENCY": str(per_replica),
        "FIEDLER_LLM_TIMEOUT_S": "60",
    }
    processes = start_replicas(group, workdir / f"scale-{replicas}", replicas, env)
    database = env["FIEDLER_STORE_URI_FILE"]
    name = Path(database).read_text().rsplit("/", 1)[1]
    try:
        prompts = [f"bench {replicas}-{n}" for n in range(tasks)]
        began = asyncio.run(converse_all([p.url for p in processes], prompts, 32))

        def all_completed() -> bool:
            with postgres.connect(name) as conn:
                row = conn.execute("SELECT count(*) FROM tasks WHERE status = 'COMPLETED'")
                return int(row.fetchone()[0]) == tasks

        wait_for(all_completed, timeout=tasks * 3, interval=0.05, what="every task COMPLETED")
        return tasks / (time.monotonic() - began)
    finally:
        for process in processes:
            process.stop()


def intake(
    group: ProcessGroup, llm: FakeLLM, workdir: Path, env: dict[str, str], calls: int, callers: int
) -> float:
    """Converse replies per second on one replica whose provider is held."""
    held = {
        **llm.fiedler_env,
        **env,
        "FIEDLER_MAX_CONCURRENCY": "1",
        "FIEDLER_LLM_TIMEOUT_S": "600",
    }
    (process,) = start_replicas(group, workdir, 1, held)
    try:
        asyncio.run(converse_all([process.url], ["hang"] * 50, 8))  # warm-up, not measured
        began = asyncio.run(converse_all([process.url], ["hang"] * calls, callers))
        return calls / (time.monotonic() - began)
    finally:
        process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=96)
    parser.add_argument("--per-replica", type=int, default=8)
    parser.add_argument("--intake", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--part", choices=("all", "scale-out", "intake"), default="all")
    args = parser.parse_args()
    one = three = on_sqlite = on_postgres = 0.0
    workdir = Path(tempfile.mkdtemp(prefix="fiedler-replicas-bench-"))
    group = ProcessGroup(workdir / "group")
    postgres = PostgresServer(fsync=True).start()
    llm = FakeLLM().start()
    llm.delay = 0.5  # "bench N-M" is answered in four chunks: 2 s an answer
    try:
        group.start("sequential_thinking")
        if args.part in ("all", "scale-out"):
            one = scale_out(group, postgres, llm, workdir, 1, args.tasks, args.per_replica)
            three = scale_out(group, postgres, llm, workdir, 3, args.tasks, args.per_replica)
        llm.delay = 0.0
        if args.part in ("all", "intake"):
            sqlite_env = {"FIEDLER_DB_PATH": str(workdir / "intake" / "fiedler_state.db")}
            on_sqlite = intake(
                group, llm, workdir / "intake-sqlite", sqlite_env, args.intake, args.callers
            )
            pg_env = postgres_env(postgres, workdir)
            on_postgres = intake(
                group, llm, workdir / "intake-postgres", pg_env, args.intake, args.callers
            )
    finally:
        # The held "hang" answers are cut short here; that is not worth a traceback.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        llm.stop()
        group.stop()
        postgres.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    if one:
        print(
            f"scale-out: {args.tasks} tasks, 2 s each, FIEDLER_MAX_CONCURRENCY="
            f"{args.per_replica} per replica, PostgreSQL store"
        )
        print(f"  1 replica:   {one:7.2f} tasks/s")
        print(f"  3 replicas:  {three:7.2f} tasks/s")
        print(f"  ratio 3 / 1: {three / one:7.2f}  (goal >= 2.7, ideal 3)")
    if on_sqlite:
        print(f"intake: {args.intake} converse -> PENDING from {args.callers} callers, one replica")
        print(f"  SQLite (WAL, synchronous=FULL):           {on_sqlite:7.0f} tasks/s")
        print(f"  PostgreSQL (fsync, synchronous commits):  {on_postgres:7.0f} tasks/s")
        print(f"  ratio PostgreSQL / SQLite: {on_postgres / on_sqlite:7.2f}  (goal >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
