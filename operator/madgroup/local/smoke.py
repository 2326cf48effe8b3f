"""``madgroup smoke``: the deployment guide's verification of steps 2-9, run against the
group that is up, with the guide's own commands (``redis-cli``, ``mad-status``, ``mad-cli``)
in each component's environment, and the log lines it tells an operator to look for.

One PASS/FAIL line per step; the exit code is the number of failed steps.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from madgroup import topology
from madgroup.environment import DataPath
from madgroup.errors import MadGroupError
from madgroup.local import certificates, launcher, readiness
from madgroup.local.context import Context
from madgroup.local.state import GroupState
from mads.core.contract import BUS_STATUS_LABEL, STARTED_LOG, MadContract, TaskTools
from mads.core.registry import bus_connected_log, contracts
from mads.core.status import HEALTHY, header_lines, healthy_value, render_line
from mads.fiedler.contract import NAME as FIEDLER
from mads.fiedler.contract import TASK_STATUS_CHANNEL, TaskStatus
from mads.grace.contract import NAME as GRACE
from mads.rogers.contract import CONNECTIONS_TOOL, ConnectionStatus
from mads.rogers.contract import NAME as ROGERS
from mads.sequential_thinking.contract import NAME as SEQUENTIAL_THINKING

T = TypeVar("T")
PROMPT = "System check, please respond with OK."
"""The guide's step 8 prompt."""


def _contract(name: str) -> MadContract:
    comp = topology.component(name).contract
    assert comp is not None, name
    return comp


def _tasks(name: str) -> TaskTools:
    tasks = _contract(name).tasks
    assert tasks is not None, name
    return tasks


def _expected_lines(contract: MadContract) -> list[str]:
    """What the guide shows after the first three lines of ``mad-status``: the bus line
    for a MAD on the bus, then the MAD's own connected/OK lines."""
    labels = [BUS_STATUS_LABEL] if contract.uses_bus else []
    labels += contract.status_labels
    return [render_line(label, healthy_value(label)) for label in labels]


def _logged(level: int, name: str, message: str) -> str:
    """A line as a MAD's text log writes it (:mod:`mads.core.logs` uses the standard
    library's basic format)."""
    return logging.BASIC_FORMAT % {
        "levelname": logging.getLevelName(level),
        "name": name,
        "message": message,
    }


def _heard_on_the_bus() -> list[str]:
    """The MADs the guide's step 7 expects the bus monitor to list: every other MAD on the
    bus (the monitor being the one that owns the connections tool)."""
    return [c.name for c in contracts().values() if c.uses_bus and CONNECTIONS_TOOL not in c.tools]


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
        self.declared = ctx.state.declared()
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
        """What component ``name`` logged, in every process that runs it."""
        found = []
        for unit in self.declared.instances(name):
            try:
                found.append(self.ctx.state.log_file(unit).read_text(errors="replace"))
            except FileNotFoundError:
                continue
        return "".join(found)

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
        port = str(self.ports[topology.bus().name])
        ca = certificates.ca_file(self.ctx.state)
        # With TLS on, the guide's redis-cli needs --tls and the group's CA; a plaintext
        # client must be refused first.
        tls = ["--tls", "--cacert", ca] if ca is not None else []
        plain = ""
        if ca is not None:
            refused = self.run(
                topology.bus().name,
                ["redis-cli", "-p", port, "ping"],
                extra={"REDISCLI_AUTH": self.ctx.admin_password(self.dotenv)},
            )
            if refused.stdout.strip() == "PONG":
                raise StepFailed("a plaintext redis-cli got PONG although TLS is on")
            plain = "; plaintext refused (TLS only)"
        no_pass = self.run(
            topology.bus().name, ["redis-cli", *tls, "-p", port, "ping"], drop=("REDISCLI_AUTH",)
        )
        said = (no_pass.stdout + no_pass.stderr).strip()
        if "NOAUTH Authentication required" not in said:
            raise StepFailed(f"redis-cli ping without the password said {said!r}, not NOAUTH")
        with_pass = self.run(
            topology.bus().name,
            ["redis-cli", *tls, "-p", port, "ping"],
            extra={"REDISCLI_AUTH": self.ctx.admin_password(self.dotenv)},
        )
        if with_pass.stdout.strip() != "PONG":
            raise StepFailed(f"redis-cli ping with the password said {with_pass.stdout!r}")
        self.wait_log(topology.bus().name, ["Ready to accept connections"])
        return f"NOAUTH without the password, PONG with it; 'Ready to accept connections'{plain}"

    def step3(self) -> str:
        port = self.ports[SEQUENTIAL_THINKING]
        started = STARTED_LOG.format(port=port)
        self.wait_log(SEQUENTIAL_THINKING, [started])
        if not readiness.http_ready(port):
            raise StepFailed("sequential_thinking is not ready (/readyz)")
        return f"{started!r}; running (healthy)"

    def mad_step(self, name: str) -> str:
        contract = _contract(name)
        needles = [bus_connected_log()] if contract.uses_bus else []
        for peer in contract.peers:
            connected = _contract(peer).log_lines.get("caller_connected")
            if connected is not None:
                needles.append(connected)
        keeps_file = any(isinstance(e, DataPath) for e in self.declared.environment(name))
        if keeps_file and "database" in contract.log_lines:
            needles.append(contract.log_line("database", path="").removesuffix("..."))
        elif not keeps_file and "database_shared" in contract.log_lines:
            needles.append(contract.log_line("database_shared", location="").removesuffix("..."))
        self.wait_log(name, needles)
        result = self.run(name, ["mad-status"])
        lines = result.stdout.splitlines()
        expected = header_lines(contract.banner, name, HEALTHY)
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
        expected = _heard_on_the_bus()

        def attempt() -> str:
            data = self.mad_cli(ROGERS, CONNECTIONS_TOOL, {})
            seen = {c.get("mad_id"): c.get("status") for c in data.get("connections", [])}
            if data.get("status") != "success" or any(seen.get(n) != healthy for n in expected):
                raise StepFailed(f"connections: {seen or data}")
            return ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))

        return f"{CONNECTIONS_TOOL}: " + self.poll(
            f"{' and '.join(expected)} are not all {healthy}", attempt, 30.0
        )

    def step8(self) -> str:
        tasks = _tasks(FIEDLER)
        created = self.mad_cli(FIEDLER, tasks.start, {"prompt": PROMPT, "requester_id": "ops-team"})
        task_id = created.get(tasks.id_field)
        if created.get("status") != TaskStatus.PENDING.lower() or not task_id:
            raise StepFailed(f"{tasks.start} answered {created}")
        if created.get("stream_topic") != f"{tasks.stream_prefix}{task_id}":
            raise StepFailed(f"stream_topic is {created.get('stream_topic')!r}")
        self.task_id = task_id

        def attempt() -> dict[str, Any]:
            data = self.mad_cli(FIEDLER, tasks.status, {tasks.id_field: task_id})
            status = str(data.get("status"))
            if status not in set(TaskStatus) or not TaskStatus(status).terminal:
                raise StepFailed(f"still {status}")
            return data

        final = self.poll(f"task {task_id} did not finish", attempt, 30.0)
        result = final.get(tasks.result_field)
        if final.get("status") != TaskStatus.COMPLETED or result != "OK":
            raise StepFailed(
                f"task {task_id} ended {final.get('status')} with "
                f"{tasks.result_field}={result!r} "
                f"{tasks.error_field}={final.get(tasks.error_field)!r}"
            )
        return f"task {task_id} {TaskStatus.COMPLETED}, {tasks.result_field} 'OK'"

    def step9(self) -> str:
        if not self.task_id:
            raise StepFailed("no task from step 8 to look for")
        fiedler, rogers = _contract(FIEDLER), _contract(ROGERS)
        task = self.task_id
        self.wait_log(
            FIEDLER,
            [
                _logged(logging.INFO, fiedler.name, line)
                for line in (
                    fiedler.log_line("received", task_id=task),
                    fiedler.log_line("status", task_id=task, status=TaskStatus.RUNNING),
                    fiedler.log_line("status", task_id=task, status=TaskStatus.COMPLETED),
                )
            ],
        )
        metrics = rogers.log_line("metrics", sender=fiedler.name, channel=TASK_STATUS_CHANNEL)
        self.wait_log(ROGERS, [_logged(logging.INFO, rogers.name, metrics)])
        return "fiedler: received / RUNNING / COMPLETED; rogers: [Metrics] line for fiedler"

    def steps(self) -> list[tuple[int, str, Callable[[], str]]]:
        return [
            (2, "Redis requires its password", self.step2),
            (3, "Sequential Thinking started", self.step3),
            (4, "Grace connected and HEALTHY", lambda: self.mad_step(GRACE)),
            (5, "Rogers connected and HEALTHY", lambda: self.mad_step(ROGERS)),
            (6, "Fiedler connected, database OK", lambda: self.mad_step(FIEDLER)),
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
