"""What one MCP ``tools/call`` costs a MAD: the direct path against the SDK's stateless path,
an OAuth access token (a JWT) against a static token, and a call relayed through Grace
against the same call made to its owner directly, in one run on one machine.

    .venv/bin/python bench/calls.py [--seconds 5] [--concurrency 16]
                                    [--part paths|auth|relay|all] [--rounds 2]

Starts a password-protected redis-server and two Grace processes that differ only in
``MAD_DIRECT_TOOL_CALLS``, then drives each with ``grace_send_message`` calls (JSON-RPC
over keep-alive connections, ``--concurrency`` outstanding) for ``--seconds``. Prints, for
each, calls/s and Grace's own CPU time per call (from /proc), and the ratios direct / SDK.

Then (``auth``) Ory Hydra (built by ``tests/support/gotools``, cached) and one Grace accepting
both a static token and Hydra's JWT access tokens, both allowed everything (so the same
work follows the check); each credential drives it in turn, ``--rounds`` times, and the
ratios JWT / static token (calls/s over all rounds, Grace's CPU per call) are printed
(goal for calls/s: at least 0.9, since a JWT is verified once and its verdict kept until it
expires).

Then (``relay``) Sequential Thinking, Fiedler and Grace: ``fiedler_converse`` (the guide's
check prompt, the built-in provider) from the same client at the same concurrency, straight
to Fiedler and through Grace (relayed over the bus), alternately, ``--rounds`` times. Prints
calls/s each way, each process's CPU per call, and the ratio through Grace / direct (goal:
at least 0.7).

Not a test: the numbers depend on the machine; the ratios are what compare across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from bench.doors import compare  # noqa: E402
from bench.proc import cpu_seconds  # noqa: E402
from tests.grace.load import SendClient  # noqa: E402
from tests.support.gotools import build  # noqa: E402
from tests.support.gotools.tools import HYDRA_TOOL  # noqa: E402
from tests.support.grace import new_token  # noqa: E402
from tests.support.hydra_server import HydraServer  # noqa: E402
from tests.support.mad_process import MadProcess  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

CHANNEL = "mad.topic.bench"
CONVERSE = {"prompt": "System check, please respond with OK.", "requester_id": "bench"}


async def closed_loop(url: str, token: str, seconds: float, concurrency: int) -> int:
    """Calls completed in ``seconds`` with ``concurrency`` callers each waiting for its
    reply before the next call; stops at the first refused call."""
    client = SendClient(url, token, concurrency)
    deadline = time.monotonic() + seconds
    done = 0

    async def caller(k: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            problem = await client.send(CHANNEL, {"caller": k, "n": done})
            if problem is not None:
                raise SystemExit(f"bench: call refused: {problem}")
            done += 1

    try:
        await asyncio.gather(*(caller(k) for k in range(concurrency)))
    finally:
        await client.close()
    return done


def measure(grace: MadProcess, token: str, seconds: float, concurrency: int) -> tuple:
    asyncio.run(closed_loop(grace.url, token, 1.0, concurrency))  # warm up
    pid = grace.process.pid if grace.process else 0
    cpu_before, start = cpu_seconds(pid), time.monotonic()
    calls = asyncio.run(closed_loop(grace.url, token, seconds, concurrency))
    elapsed, cpu_after = time.monotonic() - start, cpu_seconds(pid)
    cpu_ms = (cpu_after - cpu_before) * 1000 / calls if calls else None
    return calls / elapsed, cpu_ms


def paths(tmp: Path, redis_server: RedisServer, seconds: float, concurrency: int) -> None:
    """The direct path against the SDK path."""
    token = new_token()
    results = {}
    for label, direct in (("direct path", "true"), ("SDK path", "false")):
        grace = MadProcess(
            "grace",
            tmp / label.replace(" ", "-"),
            {
                **redis_server.env,
                "GRACE_API_TOKENS": token,
                "MAD_DIRECT_TOOL_CALLS": direct,
                "MAD_HEARTBEAT_S": "5",
            },
        ).start()
        try:
            results[label] = measure(grace, token, seconds, concurrency)
        finally:
            grace.stop()
        rate, cpu_ms = results[label]
        cpu = f"{cpu_ms:.2f} ms of Grace CPU per call" if cpu_ms else "CPU n/a"
        print(f"{label:>12}: {rate:,.0f} grace_send_message calls/s, {cpu}")
    (direct_rate, direct_cpu), (sdk_rate, sdk_cpu) = results["direct path"], results["SDK path"]
    print(f"ratio calls/s, direct / SDK: {direct_rate / sdk_rate:.2f}")
    if direct_cpu and sdk_cpu:
        print(f"ratio CPU per call, direct / SDK: {direct_cpu / sdk_cpu:.2f}")


def hydra_binary() -> Path | None:
    try:
        build.ensure([HYDRA_TOOL])
        return build.binaries([HYDRA_TOOL])["hydra"]
    except build.BuildError as exc:
        print(f"bench: Ory Hydra could not be built, so no JWT run: {exc}")
        return None


def auth(
    tmp: Path, redis_server: RedisServer, seconds: float, concurrency: int, rounds: int
) -> None:
    """A JWT access token from Hydra against a static token, on one Grace."""
    binary = hydra_binary()
    if binary is None:
        return
    hydra = HydraServer(tmp / "hydra", binary).start()
    try:
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        scopes = tmp / "scopes.json"
        scopes.write_text(json.dumps({"scopes": {"mad.all": {"tools": ["*"], "topics": ["*"]}}}))
        static = new_token()
        grace = MadProcess(
            "grace",
            tmp / "grace-oauth",
            {
                **redis_server.env,
                "GRACE_API_TOKENS": static,
                "GRACE_OAUTH_ISSUER": hydra.issuer,
                "GRACE_OAUTH_RESOURCE": resource,
                "GRACE_OAUTH_SCOPES_FILE": str(scopes),
                "MAD_HEARTBEAT_S": "5",
            },
            port=port,
        ).start()
        try:
            client = hydra.client(["mad.all"], [resource])
            jwt = hydra.token(client, ["mad.all"], resource)
            totals = {"static token": 0.0, "JWT": 0.0}
            cpu_totals = {"static token": 0.0, "JWT": 0.0}
            for _ in range(rounds):
                for label, token in (("static token", static), ("JWT", jwt)):
                    rate, cpu_ms = measure(grace, token, seconds, concurrency)
                    totals[label] += rate
                    cpu_totals[label] += cpu_ms or 0.0
                    cpu = f"{cpu_ms:.2f} ms of Grace CPU per call" if cpu_ms else "CPU n/a"
                    print(f"{label:>12}: {rate:,.0f} grace_send_message calls/s, {cpu}")
        finally:
            grace.stop()
    finally:
        hydra.stop()
    ratio = totals["JWT"] / totals["static token"]
    print(f"ratio calls/s, JWT / static token: {ratio:.2f} (goal: at least 0.9)")
    if cpu_totals["JWT"] and cpu_totals["static token"]:
        cpu_ratio = cpu_totals["JWT"] / cpu_totals["static token"]
        print(f"ratio Grace CPU per call, JWT / static token: {cpu_ratio:.2f}")


def relay(tmp: Path, seconds: float, concurrency: int, rounds: int) -> None:
    """``fiedler_converse`` through Grace against straight to Fiedler."""
    compare(
        tmp,
        "fiedler_converse",
        lambda _fiedler: CONVERSE,
        lambda _arguments, ok, data: ok and isinstance(data, dict) and data["status"] == "pending",
        seconds=seconds,
        rounds=rounds,
        concurrency=concurrency,
        makes_task=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--concurrency", type=int, default=16, help="calls outstanding")
    parser.add_argument(
        "--part",
        choices=("paths", "auth", "relay", "all"),
        default="all",
        help="which comparison",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations (auth, relay)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp) / "redis", appendonly=False).start()
        try:
            if args.part in ("paths", "all"):
                paths(Path(tmp), redis_server, args.seconds, args.concurrency)
            if args.part in ("auth", "all"):
                auth(Path(tmp), redis_server, args.seconds, args.concurrency, args.rounds)
            if args.part in ("relay", "all"):
                relay(Path(tmp), args.seconds, args.concurrency, args.rounds)
        finally:
            redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
