"""``madgroup smoke``: the deployment guide's verification of steps 2-9, run against the
group that is up, with the guide's own commands (``redis-cli``, ``mad-status``, ``mad-cli``)
in each component's environment, and the log lines it tells an operator to look for.

One PASS/FAIL line per step; the exit code is the number of failed steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from madgroup import topology
from madgroup.errors import MadGroupError
from madgroup.local import certificates, launcher, readiness
from madgroup.local.context import Context
from madgroup.local.envfile import PASSWORD_KEY
from madgroup.local.state import GroupState
from mads.core.contract import BUS_STATUS_LABEL, STARTED_LOG, MadContract
from mads.core.registry import bus_connected_log
from mads.fiedler.contract import TASK_STATUS_CHANNEL, TaskStatus
from mads.rogers.contract import ConnectionStatus
from mads.sequential_thinking.contract import CONNECTED_LOG as THINKING_CONNECTED_LOG

T = TypeVar("T")
PROMPT = "System check, please respond with OK."
"""The guide's step 8 prompt."""


def _contract(name: str) -> MadContract:
    comp = topology.component(name).contract
    assert comp is not None, name
    return comp


def _expected_lines(contract: MadContract) -> list[str]:
    """What the guide shows after the first three lines of ``mad-status``: the bus line
    for a MAD on the bus, then the MAD's own connected/OK lines."""
    lines = [f"- {BUS_STATUS_LABEL}: True"] if contract.uses_bus else []
    for label in contract.status_labels:
        lines.append(f"- {label}: {'True' if label.endswith('Connected') else 'OK'}")
    return lines


class StepFailed(MadGroupError):
    pass


@dataclass
class Outcome:
    step: int
    title: str
    ok: bool
    detail: str = ""


class Smoke:
    def __init__(self, ctx: Context, state: GroupState, out: TextIO) -> None:
        self.ctx = ctx
        self.state = state
        self.ports = state.ports
        self.dotenv = ctx.dotenv()
        self.out = out
        self.task_id: str | None = None

    # -- helpers ---------------------------------------------------------------------------

    def run(
        self,
        name: str,
        argv: list[str],
        extra: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command the way ``madgroup exec <name>`` does."""
        env = launcher.component_env(
            topology.component(name), self.ports, self.dotenv, self.ctx.state
        )
        for key in drop:
            env.pop(key, None)
        env.update(extra or {})
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)

    def log(self, name: str) -> str:
        try:
            return self.ctx.state.log_file(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, name: str, needles: list[str], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log(name)
            missing = [n for n in needles if n not in text]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise StepFailed(f"{name} log lacks: " + "; ".join(repr(m) for m in missing))
            time.sleep(0.2)

    def poll(self, what: str, attempt: Callable[[], T], timeout: float) -> T:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                return attempt()
            except StepFailed as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise StepFailed(f"{what} (after {timeout:g} s): {last}")
            time.sleep(0.5)

    def mad_cli(self, name: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.run(name, ["mad-cli", tool, json.dumps(arguments)])
        if result.returncode != 0:
            raise StepFailed(
                f"mad-cli {tool} exited {result.returncode}: {result.stderr.strip()[-300:]}"
            )
        try:
            data = json.loads(result.stdout)
        except ValueError:
            raise StepFailed(f"mad-cli {tool} printed no JSON: {result.stdout[:200]!r}") from None
        if not isinstance(data, dict):
            raise StepFailed(f"mad-cli {tool} printed {result.stdout[:200]!r}, not an object")
        return data

    # -- the guide's steps -----------------------------------------------------------------

    def step2(self) -> str:
        port = str(self.ports[topology.REDIS])
        ca = certificates.ca_file(self.ctx.state)
        # With TLS on, the guide's redis-cli needs --tls and the group's CA; a plaintext
        # client must be refused first.
        tls = ["--tls", "--cacert", ca] if ca is not None else []
        plain = ""
        if ca is not None:
            refused = self.run(
                topology.REDIS,
                ["redis-cli", "-p", port, "ping"],
                extra={"REDISCLI_AUTH": self.dotenv[PASSWORD_KEY]},
            )
            if refused.stdout.strip() == "PONG":
                raise StepFailed("a plaintext redis-cli got PONG although TLS is on")
            plain = "; plaintext refused (TLS only)"
        no_pass = self.run(
            topology.REDIS, ["redis-cli", *tls, "-p", port, "ping"], drop=("REDISCLI_AUTH",)
        )
        said = (no_pass.stdout + no_pass.stderr).strip()
        if "NOAUTH Authentication required" not in said:
            raise StepFailed(f"redis-cli ping without the password said {said!r}, not NOAUTH")
        with_pass = self.run(
            topology.REDIS,
            ["redis-cli", *tls, "-p", port, "ping"],
            extra={"REDISCLI_AUTH": self.dotenv[PASSWORD_KEY]},
        )
        if with_pass.stdout.strip() != "PONG":
            raise StepFailed(f"redis-cli ping with the password said {with_pass.stdout!r}")
        self.wait_log(topology.REDIS, ["Ready to accept connections"])
        return f"NOAUTH without the password, PONG with it; 'Ready to accept connections'{plain}"

    def step3(self) -> str:
        port = self.ports[topology.SEQUENTIAL_THINKING]
        started = STARTED_LOG.format(port=port)
        self.wait_log(topology.SEQUENTIAL_THINKING, [started])
        if not readiness.http_ready(port):
            raise StepFailed("sequential_thinking is not ready (/readyz)")
        return f"{started!r}; running (healthy)"

    def mad_step(self, name: str) -> str:
        contract = _contract(name)
        needles = [bus_connected_log()] if contract.uses_bus else []
        if contract.peers:
            needles.append(THINKING_CONNECTED_LOG)
        if "database" in contract.log_lines:
            needles.append(contract.log_line("database", path="").removesuffix("..."))
        self.wait_log(name, needles)
        result = self.run(name, ["mad-status"])
        lines = result.stdout.splitlines()
        expected = [f"[{contract.banner} Status]", f"- MAD Name: {name}", "- Status: HEALTHY"]
        if lines[:3] != expected or result.returncode != 0:
            raise StepFailed(
                f"mad-status exited {result.returncode} and printed {result.stdout.strip()!r}"
            )
        wanted = _expected_lines(contract)
        absent = [line for line in wanted if line not in lines]
        if absent:
            raise StepFailed(f"mad-status lacks {absent}: {result.stdout.strip()!r}")
        return f"log lines found; mad-status: {contract.banner} HEALTHY, " + ", ".join(
            line.removeprefix("- ") for line in wanted
        )

    def step7(self) -> str:
        healthy = ConnectionStatus.HEALTHY

        def attempt() -> str:
            data = self.mad_cli(topology.ROGERS, "rogers_get_connections", {})
            seen = {c.get("mad_id"): c.get("status") for c in data.get("connections", [])}
            if data.get("status") != "success" or any(
                seen.get(n) != healthy for n in (topology.GRACE, topology.FIEDLER)
            ):
                raise StepFailed(f"connections: {seen or data}")
            return ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))

        return "rogers_get_connections: " + self.poll(
            "grace and fiedler are not both HEALTHY", attempt, 30.0
        )

    def step8(self) -> str:
        created = self.mad_cli(
            topology.FIEDLER, "fiedler_converse", {"prompt": PROMPT, "requester_id": "ops-team"}
        )
        task_id = created.get("task_id")
        if created.get("status") != TaskStatus.PENDING.lower() or not task_id:
            raise StepFailed(f"fiedler_converse answered {created}")
        if created.get("stream_topic") != f"mad.stream.{task_id}":
            raise StepFailed(f"stream_topic is {created.get('stream_topic')!r}")
        self.task_id = task_id

        def attempt() -> dict[str, Any]:
            data = self.mad_cli(topology.FIEDLER, "fiedler_get_task_status", {"task_id": task_id})
            status = str(data.get("status"))
            if status not in set(TaskStatus) or not TaskStatus(status).terminal:
                raise StepFailed(f"still {status}")
            return data

        final = self.poll(f"task {task_id} did not finish", attempt, 30.0)
        if final.get("status") != TaskStatus.COMPLETED or final.get("result_payload") != "OK":
            raise StepFailed(
                f"task {task_id} ended {final.get('status')} with "
                f"result_payload={final.get('result_payload')!r} "
                f"error_details={final.get('error_details')!r}"
            )
        return f"task {task_id} COMPLETED, result_payload 'OK'"

    def step9(self) -> str:
        if not self.task_id:
            raise StepFailed("no task from step 8 to look for")
        fiedler, rogers = _contract(topology.FIEDLER), _contract(topology.ROGERS)
        level = f"INFO:{topology.FIEDLER}:"
        self.wait_log(
            topology.FIEDLER,
            [
                level + fiedler.log_line("received", task_id=self.task_id),
                level + fiedler.log_line("status", task_id=self.task_id, status="RUNNING"),
                level + fiedler.log_line("status", task_id=self.task_id, status="COMPLETED"),
            ],
        )
        metrics = rogers.log_line("metrics", sender=topology.FIEDLER, channel=TASK_STATUS_CHANNEL)
        self.wait_log(topology.ROGERS, [f"INFO:{topology.ROGERS}:{metrics}"])
        return "fiedler: received / RUNNING / COMPLETED; rogers: [Metrics] line for fiedler"

    def steps(self) -> list[tuple[int, str, Callable[[], str]]]:
        return [
            (2, "Redis requires its password", self.step2),
            (3, "Sequential Thinking started", self.step3),
            (4, "Grace connected and HEALTHY", lambda: self.mad_step(topology.GRACE)),
            (5, "Rogers connected and HEALTHY", lambda: self.mad_step(topology.ROGERS)),
            (6, "Fiedler connected, database OK", lambda: self.mad_step(topology.FIEDLER)),
            (7, "Rogers sees grace and fiedler", self.step7),
            (8, "End-to-end task", self.step8),
            (9, "Log verification", self.step9),
        ]

    def run_all(self) -> list[Outcome]:
        outcomes = []
        for number, title, check in self.steps():
            try:
                outcome = Outcome(number, title, True, check())
            except StepFailed as exc:
                outcome = Outcome(number, title, False, str(exc))
            except (subprocess.TimeoutExpired, OSError) as exc:
                outcome = Outcome(number, title, False, f"{type(exc).__name__}: {exc}")
            mark = "PASS" if outcome.ok else "FAIL"
            self.out.write(f"{mark}  step {number}  {title}: {outcome.detail}\n")
            self.out.flush()
            outcomes.append(outcome)
        return outcomes


def smoke(ctx: Context, out: TextIO | None = None) -> int:
    state = ctx.running_state()
    stream = out or sys.stdout
    outcomes = Smoke(ctx, state, stream).run_all()
    failed = [o for o in outcomes if not o.ok]
    if failed:
        stream.write(
            f"smoke: {len(failed)} of {len(outcomes)} steps failed "
            f"(steps {', '.join(str(o.step) for o in failed)}); see: madgroup logs\n"
        )
    else:
        stream.write(f"smoke: all {len(outcomes)} steps of the guide passed (2-9)\n")
    return len(failed)
