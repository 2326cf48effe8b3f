"""The supervisor: brings the group up in order and keeps it up, driven by the planner.

It runs detached (``madgroup up``) or under ``madgroup up --foreground``, holds
``supervisor.lock`` for its whole life and writes every change to ``state.json``. Its loop
is the operator's: **observe** each component (is its process running? does its readiness
check pass?), let :func:`madgroup.rollout.plan` decide what to start (a component whose
gates are ready and whose process is not running), **act**, and sleep until something
happens — a child exits, a request arrives (``madgroup stop/up`` signal it), or a component
that is starting is due for its next readiness check.

- bring-up: a component starts once all its gates are ready (the declaration's order:
  the guide's by default, or the dependency graph's); one that exits, or is not ready in
  time, or whose gates never become ready, fails the bring-up: what was started is stopped;
- after that: a component that dies is restarted with capped exponential backoff, and only
  once its gates are ready again (the planner never starts it before);
- ``madgroup stop <c>`` / ``madgroup up <c>`` arrive as request files; SIGTERM, SIGINT or
  SIGHUP stop everything in reverse order.

A component declared with replicas (Fiedler on PostgreSQL) runs as that many processes,
each with its own port, log and state (``fiedler``, ``fiedler-2``...): each is started,
checked and restarted on its own; the planner sees the component, ready once all are.

A new supervisor adopts components that are still running (matched by pid and start time),
so a crashed supervisor loses nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from madgroup import rollout, topology
from madgroup.local import (
    certificates,
    conditions,
    envfile,
    launcher,
    ports,
    processes,
    readiness,
)
from madgroup.local.state import (
    EXITED,
    FAILED,
    NOT_READY,
    READY,
    STARTING,
    STOPPED,
    WAITING,
    ComponentState,
    Phase,
    StateDir,
    SupervisorStatus,
)

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
"""A component ready this long has its backoff reset."""
POLL = 0.02
"""How often a starting component's readiness is checked (the bring-up's pace)."""
RECHECK = 1.0
"""How often a running component's readiness is checked again, and adopted processes are
looked at: the longest the loop sleeps when nothing happens."""


def backoff(streak: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** max(0, streak - 1)))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Wakeup:
    """Signals (a child's exit, a request, a stop) end the loop's sleep at once: their
    handlers only note them; a byte on a pipe wakes ``select``."""

    def __init__(self) -> None:
        self.read, write = os.pipe()
        os.set_blocking(self.read, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write)

    def sleep(self, seconds: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self.read], [], [], max(0.0, seconds))
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read, 4096):
                pass


class Supervisor:
    def __init__(self, state_dir: StateDir, env_file: Path, timeout: float) -> None:
        self.sd = state_dir
        declared = state_dir.declared()
        self.dotenv = envfile.load(env_file)
        self.password = envfile.require_password(self.dotenv, key=declared.admin.dotenv_key)
        self.declared = declared
        self.timeout = timeout
        self.state = state_dir.load()
        self.gates = conditions.gates(declared.order)
        self.ca_file = certificates.ca_file(state_dir)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.brought_up = False
        self.streak: dict[str, int] = {}
        self.next_try: dict[str, float] = {}
        """When a component that died may be started again (monotonic seconds)."""
        self.ready_cache: dict[str, tuple[bool, float]] = {}
        self.turn: dict[str, float] = {}
        """Since when a component has been due to start during the bring-up."""

    # -- bookkeeping -----------------------------------------------------------------------

    def cs(self, unit: str) -> ComponentState:
        """The state of one process (``unit``: a component's name, or ``<name>-<i>``)."""
        if unit not in self.state.components:
            comp = self.component_of(unit)
            self.state.components[unit] = ComponentState(
                name=unit,
                port=self.state.ports[unit],
                component=comp.name if comp.name != unit else None,
            )
        return self.state.components[unit]

    def component_of(self, unit: str) -> topology.Component:
        """The component process ``unit`` runs."""
        return next(c for c in topology.COMPONENTS if unit in self.units(c.name))

    def units(self, name: str) -> list[str]:
        """The processes that run component ``name``."""
        return self.declared.instances(name)

    def all_units(self) -> list[str]:
        return self.declared.units(self.order())

    def save(self) -> None:
        self.sd.save(self.state)

    def on_signal(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.stopping = True

    def order(self) -> list[str]:
        return [c.name for c in topology.start_order(self.state.wanted)]

    # -- observe ---------------------------------------------------------------------------

    def running(self, unit: str) -> bool:
        child = self.children.get(unit)
        if child is not None:
            return child.poll() is None
        c = self.cs(unit)
        return processes.alive(c.pid, c.ticks)

    def exit_code(self, unit: str) -> int | None:
        child = self.children.get(unit)
        return child.returncode if child is not None else None

    def ready(self, unit: str, now: float) -> bool:
        """The process's readiness check: run now for a starting one, at most every
        ``RECHECK`` seconds for one already up."""
        cached = self.ready_cache.get(unit)
        up = self.cs(unit).phase in (READY, NOT_READY)
        if cached is not None and up and now - cached[1] < RECHECK:
            return cached[0]
        comp = self.component_of(unit)
        ok = readiness.ready(
            comp, self.state.ports[unit], self.password, timeout=0.5, ca_file=self.ca_file
        )
        self.ready_cache[unit] = (ok, now)
        return ok

    def observe(self, now: float) -> dict[str, rollout.Observed]:
        """Each process as the planner's record (by process name)."""
        observed = {}
        for unit in self.all_units():
            phase = self.cs(unit).phase
            running = phase != STOPPED and self.running(unit)
            ready = running and self.ready(unit, now)
            observed[unit] = conditions.observe(phase, running=running, ready=ready)
        return observed

    def by_component(self, seen: dict[str, rollout.Observed]) -> dict[str, rollout.Observed]:
        """The processes' records as the planner's, one per component."""
        return {
            name: conditions.observe_instances([seen[u] for u in self.units(name)])
            for name in self.order()
        }

    # -- act -------------------------------------------------------------------------------

    def start(self, unit: str, restart: bool = False) -> None:
        comp = self.component_of(unit)
        c = self.cs(unit)
        c.port = self.state.ports[unit]
        own = {**self.state.ports, comp.name: c.port}  # its own port under its component's
        proc = launcher.launch(comp, own, self.dotenv, self.sd, instance=unit)
        self.children[unit] = proc
        c.pid = proc.pid
        c.ticks = processes.start_ticks(proc.pid)
        c.phase = STARTING
        c.started_at = time.time()
        c.ready_at = None
        c.message = ""
        self.ready_cache.pop(unit, None)
        if restart:
            c.restarts += 1
        self.sd.event(unit, "restarting" if restart else "starting", f"pid={proc.pid}")
        self.save()

    def try_start(self, unit: str, now: float) -> None:
        restart = self.cs(unit).phase == EXITED
        try:
            self.start(unit, restart=restart)
        except (launcher.LaunchError, OSError) as exc:
            self.fail(unit, f"could not start: {exc}", "could_not_start")
            self.next_try[unit] = now + BACKOFF_MAX

    def fail(self, name: str, message: str, event: str) -> None:
        c = self.cs(name)
        c.phase = FAILED
        c.message = message
        self.sd.event(name, "failed", event)
        self.save()

    def mark_ready(self, name: str) -> None:
        c = self.cs(name)
        again = c.phase == NOT_READY
        c.phase = READY
        c.ready_at = time.time()
        c.message = ""
        took = c.ready_at - (c.started_at or c.ready_at)
        self.sd.event(name, "ready", "again" if again else f"after={took:.3f}s")
        self.save()

    def mark_not_ready(self, name: str) -> None:
        """Up, but its readiness check fails: said, not acted on (its process is fine; what
        it waits for, e.g. a gate being restarted, comes back by itself)."""
        c = self.cs(name)
        c.phase = NOT_READY
        c.message = "its readiness check fails"
        self.sd.event(name, "not_ready", "check_fails")
        self.save()

    def stop(self, name: str, phase: Phase | None = STOPPED) -> None:
        """Stop the process; ``phase`` None leaves the phase as it is (the next pass sees
        the process gone and restarts it)."""
        c = self.cs(name)
        if c.pid:
            how = processes.terminate(c.pid, c.ticks, timeout=10.0)
            child = self.children.pop(name, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=1)
            self.sd.event(name, "stopped", how.replace(" ", "_"))
        c.pid = None
        c.ticks = None
        if phase is not None:
            c.phase = phase
        c.ready_at = None
        self.save()

    def stop_all(self) -> None:
        for comp in topology.stop_order():
            for unit in reversed(self.units(comp.name)):
                c = self.state.components.get(unit)
                if c is not None and (c.pid or c.phase not in (FAILED, WAITING)):
                    self.stop(unit, phase=c.phase if c.phase in (FAILED, WAITING) else STOPPED)
        # Redis read its config at start; the next start writes it again.
        with contextlib.suppress(FileNotFoundError):
            self.sd.redis_conf.unlink()

    def died(self, name: str, now: float) -> None:
        """A component that was up (or starting) is gone: restart it after a backoff."""
        c = self.cs(name)
        streak = self.streak.get(name, 0)
        if c.phase in (READY, NOT_READY) and c.ready_at and time.time() - c.ready_at > STABLE_AFTER:
            streak = 0
        streak += 1
        self.streak[name] = streak
        delay = backoff(streak)
        c.message = f"{describe_exit(self.exit_code(name))}; restarting in {delay:g} s"
        self.sd.event(name, "exited", c.message.split(";")[0].replace(" ", "_"))
        self.children.pop(name, None)
        c.phase = EXITED
        c.pid = None
        c.ticks = None
        c.ready_at = None
        self.next_try[name] = now + delay
        self.save()

    # -- one pass: observe, plan, act ------------------------------------------------------

    def step(self) -> float:
        """One pass; returns how long the loop may sleep before the next one."""
        now = time.monotonic()
        sleep = RECHECK
        # Processes that ended since the last pass.
        for unit in self.all_units():
            c = self.cs(unit)
            if c.phase in (READY, NOT_READY, STARTING) and not self.running(unit):
                if not self.brought_up:
                    message = f"{describe_exit(self.exit_code(unit))} before it was ready"
                    self.fail(unit, message, message.replace(" ", "_"))
                    return 0.0
                self.died(unit, now)
        seen = self.observe(now)
        for unit in self.all_units():
            c = self.cs(unit)
            if c.phase in (STARTING, NOT_READY) and seen[unit].ready:
                self.mark_ready(unit)
                self.turn.pop(unit, None)
            elif c.phase == READY and seen[unit].in_sync and not seen[unit].ready:
                self.mark_not_ready(unit)
            elif c.phase == STARTING:
                sleep = POLL
                if c.started_at and time.time() - c.started_at > self.timeout:
                    if not self.brought_up:
                        self.fail(unit, f"not ready after {self.timeout:g} s", "timeout")
                        return 0.0
                    self.sd.event(unit, "not_ready", f"after={self.timeout:g}s")
                    self.stop(unit, phase=None)
        # Plan on what was just observed and recorded: a component counts as ready for its
        # dependents only once its "ready" is in the events log.
        observed = self.by_component(seen)
        the_plan = rollout.plan(self.order(), observed, self.gates)
        for unit in self.declared.units(the_plan.apply):
            c = self.cs(unit)
            if c.phase in (STOPPED, FAILED) or self.running(unit):
                continue
            due = self.next_try.get(unit, 0.0)
            if now < due:
                sleep = min(sleep, due - now)
                continue
            self.try_start(unit, now)
            sleep = POLL
        self.note_waiting(observed, the_plan, now)
        if not self.brought_up and any(self.cs(u).phase == FAILED for u in self.all_units()):
            return 0.0
        if not self.brought_up and the_plan.done:
            self.brought_up = True
            self.state.supervisor_status = SupervisorStatus.RUNNING
            self.save()
            self.sd.event("supervisor", "all_ready")
        return sleep

    def note_waiting(
        self, observed: dict[str, rollout.Observed], the_plan: rollout.Plan, now: float
    ) -> None:
        """Say what each process not started yet is waiting for; during the bring-up, one
        whose gates never become ready fails it."""
        for name in self.order():
            if name in the_plan.apply:
                continue
            missing = [g for g in self.gates.get(name, ()) if not observed[g].ready]
            if not missing:
                continue
            for unit in self.units(name):
                c = self.cs(unit)
                if c.phase not in (WAITING, EXITED):
                    continue
                if c.phase == EXITED and now < self.next_try.get(unit, 0.0):
                    continue  # still in its backoff: the message says when it restarts
                # The bring-up's display reads "waiting" + "for ..."; later it is whole.
                waiting = f"for {', '.join(missing)}"
                if self.brought_up or c.phase == EXITED:
                    waiting = f"waiting {waiting}"
                if c.message != waiting:
                    c.message = waiting
                    self.save()
                if not self.brought_up:
                    since = self.turn.setdefault(unit, now)
                    if now - since > self.timeout:
                        self.fail(
                            unit, f"its gates never became ready: {', '.join(missing)}", "timeout"
                        )

    # -- requests --------------------------------------------------------------------------

    def handle_requests(self) -> None:
        for action, name in self.sd.take_requests():
            if name not in topology.COMPONENT_NAMES:
                continue
            if action == "stop":
                for unit in reversed(self.units(name)):
                    self.next_try.pop(unit, None)
                    self.stop(unit)
            elif action == "start":
                for comp in topology.with_gates([name]):
                    if comp.name not in self.state.wanted:
                        self.state.wanted.append(comp.name)
                        base = {comp.name: self.state.ports.get(comp.name, comp.port)}
                        planned = ports.instance_ports(base, {comp.name: self.units(comp.name)})
                        for unit, port in planned.items():
                            self.state.ports.setdefault(unit, port)
                    for unit in self.units(comp.name):
                        c = self.cs(unit)
                        if c.phase == STOPPED or (c.phase == WAITING and not self.running(unit)):
                            c.phase = WAITING
                            self.next_try[unit] = 0.0
                self.save()

    def adopt(self) -> None:
        for unit in self.all_units():
            c = self.cs(unit)
            if self.running(unit):
                self.sd.event(unit, "adopted", f"pid={c.pid}")
                c.phase = STARTING
            else:
                c.pid = None
                c.phase = WAITING
        self.save()

    # -- life ------------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, self.on_signal)
        wakeup = Wakeup()
        self.state.supervisor_pid = os.getpid()
        self.state.supervisor_status = SupervisorStatus.STARTING
        self.save()
        self.sd.event("supervisor", "started", f"pid={os.getpid()}")
        self.adopt()
        failed = False
        while not self.stopping:
            try:
                self.handle_requests()
                sleep = self.step()
            except Exception:  # a transient error (disk full...) must not end supervision
                traceback.print_exc()
                sleep = 1.0
            if not self.brought_up and any(self.cs(u).phase == FAILED for u in self.all_units()):
                failed = True
                break
            wakeup.sleep(sleep)
        self.stop_all()
        status = SupervisorStatus.FAILED if failed else SupervisorStatus.STOPPED
        self.state.supervisor_status = status
        self.state.supervisor_pid = None
        self.save()
        self.sd.event("supervisor", "exited", status)
        return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="madgroup-supervisor")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    sd = StateDir(Path(args.state_dir))
    with sd.hold_supervisor_lock() as got:
        if not got:
            print("madgroup-supervisor: another supervisor is running", file=sys.stderr)
            return 3
        try:
            supervisor = Supervisor(sd, Path(args.env_file), args.timeout)
        except (envfile.EnvFileError, launcher.LaunchError) as exc:
            print(f"madgroup-supervisor: {exc}", file=sys.stderr)
            state = sd.load()
            state.supervisor_status = SupervisorStatus.FAILED
            sd.save(state)
            return exc.exit_code
        return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
