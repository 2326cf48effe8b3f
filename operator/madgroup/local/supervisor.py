"""The supervisor: brings the group up in order and keeps it up.

It runs detached (``madgroup up``) or under ``madgroup up --foreground``, holds
``supervisor.lock`` for its whole life and writes every change to ``state.json``:

- bring-up: each component starts only when all its gates (``topology.gates``) are ready,
  and is waited on until its own readiness check passes; a component that exits or is not
  ready in time fails the bring-up: nothing later is started and what was started is stopped;
- then it watches: a component that dies is restarted with capped exponential backoff, and
  only once its gates are ready again (the order holds on restart too);
- ``madgroup stop <c>`` / ``madgroup up <c>`` arrive as request files; SIGTERM, SIGINT or
  SIGHUP stop everything in reverse order.

A new supervisor adopts components that are still running (matched by pid and start time),
so a crashed supervisor loses nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from madgroup import topology
from madgroup.local import envfile, launcher, processes, readiness
from madgroup.local.state import (
    EXITED,
    FAILED,
    READY,
    STARTING,
    STOPPED,
    WAITING,
    ComponentState,
    StateDir,
)

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
"""A component ready this long has its backoff reset."""
POLL = 0.02
WATCH = 0.1


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


class Supervisor:
    def __init__(self, state_dir: StateDir, env_file: Path, timeout: float) -> None:
        self.sd = state_dir
        self.dotenv = envfile.load(env_file)
        self.password = envfile.require_password(self.dotenv)
        self.timeout = timeout
        self.state = state_dir.load()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.streak: dict[str, int] = {}
        self.next_try: dict[str, float] = {}
        self.pending: dict[str, bool] = {}
        """Components to (re)start when their gates are ready; the value: is it a restart."""

    # -- bookkeeping -----------------------------------------------------------------------

    def cs(self, name: str) -> ComponentState:
        if name not in self.state.components:
            self.state.components[name] = ComponentState(name=name, port=self.state.ports[name])
        return self.state.components[name]

    def save(self) -> None:
        self.sd.save(self.state)

    def on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def wanted(self) -> list[topology.Component]:
        return topology.start_order(self.state.wanted)

    # -- probes ----------------------------------------------------------------------------

    def running(self, name: str) -> bool:
        child = self.children.get(name)
        if child is not None:
            return child.poll() is None
        c = self.cs(name)
        return processes.alive(c.pid, c.ticks)

    def exit_code(self, name: str) -> int | None:
        child = self.children.get(name)
        return child.returncode if child is not None else None

    def ready(self, name: str) -> bool:
        comp = topology.component(name)
        return readiness.ready(comp, self.state.ports[name], self.password, timeout=0.5)

    def gate_ok(self, name: str) -> bool:
        """A gate passes when its process runs and its probe passes now (a gate still marked
        starting is marked ready first, so the events log never shows a dependent starting
        before its gate's ``ready``)."""
        if not (self.running(name) and self.ready(name)):
            return False
        if self.cs(name).phase == STARTING:
            self.mark_ready(name)
        return True

    def gates_ready(self, comp: topology.Component) -> list[str]:
        """The gates of ``comp`` that are not ready yet."""
        return [g for g in topology.gates(comp) if not self.gate_ok(g)]

    # -- actions ---------------------------------------------------------------------------

    def start(self, comp: topology.Component, restart: bool = False) -> None:
        c = self.cs(comp.name)
        c.port = self.state.ports[comp.name]
        proc = launcher.launch(comp, self.state.ports, self.dotenv, self.sd)
        self.children[comp.name] = proc
        c.pid = proc.pid
        c.ticks = processes.start_ticks(proc.pid)
        c.phase = STARTING
        c.started_at = time.time()
        c.ready_at = None
        c.message = ""
        if restart:
            c.restarts += 1
        self.sd.event(comp.name, "restarting" if restart else "starting", f"pid={proc.pid}")
        self.save()

    def try_start(self, comp: topology.Component, restart: bool = False) -> bool:
        try:
            self.start(comp, restart=restart)
        except (launcher.LaunchError, OSError) as exc:
            c = self.cs(comp.name)
            c.phase = FAILED
            c.message = f"could not start: {exc}"
            self.sd.event(comp.name, "failed", "could_not_start")
            self.save()
            return False
        return True

    def mark_ready(self, name: str) -> None:
        c = self.cs(name)
        c.phase = READY
        c.ready_at = time.time()
        c.message = ""
        took = c.ready_at - (c.started_at or c.ready_at)
        self.sd.event(name, "ready", f"after={took:.3f}s")
        self.save()

    def stop(self, name: str, phase: str = STOPPED) -> None:
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
        c.phase = phase
        c.ready_at = None
        self.save()

    def stop_all(self) -> None:
        for comp in topology.stop_order():
            c = self.state.components.get(comp.name)
            if c is not None and (c.pid or c.phase not in (FAILED, WAITING)):
                self.stop(comp.name, phase=c.phase if c.phase in (FAILED, WAITING) else STOPPED)
        # Redis read its config at start; the next start writes it again.
        with contextlib.suppress(FileNotFoundError):
            self.sd.redis_conf.unlink()

    # -- bring-up --------------------------------------------------------------------------

    def wait_ready(self, comp: topology.Component) -> bool:
        c = self.cs(comp.name)
        deadline = time.monotonic() + self.timeout
        while not self.stopping:
            if not self.running(comp.name):
                c.phase = FAILED
                c.message = f"{describe_exit(self.exit_code(comp.name))} before it was ready"
                self.sd.event(comp.name, "failed", c.message.replace(" ", "_"))
                self.save()
                return False
            if self.ready(comp.name):
                self.mark_ready(comp.name)
                return True
            if time.monotonic() > deadline:
                c.phase = FAILED
                c.message = f"not ready after {self.timeout:g} s"
                self.sd.event(comp.name, "failed", "timeout")
                self.save()
                return False
            time.sleep(POLL)
        return False

    def wait_gates(self, comp: topology.Component) -> bool:
        deadline = time.monotonic() + self.timeout
        c = self.cs(comp.name)
        while not self.stopping:
            missing = self.gates_ready(comp)
            if not missing:
                c.message = ""
                return True
            waiting = f"for {', '.join(missing)}"
            if c.message != waiting:
                c.message = waiting
                self.save()
            if time.monotonic() > deadline:
                c.phase = FAILED
                c.message = f"its gates never became ready: {', '.join(missing)}"
                self.save()
                return False
            time.sleep(POLL)
        return False

    def bring_up(self) -> bool:
        for comp in self.wanted():
            c = self.cs(comp.name)
            if c.phase == STOPPED and c.pid is None and comp.name not in self.pending:
                c.phase = WAITING
            if self.running(comp.name):
                self.sd.event(comp.name, "adopted", f"pid={c.pid}")
                c.phase = STARTING
                self.save()
            else:
                c.pid = None
                c.phase = WAITING
                self.save()
                if not self.wait_gates(comp) or not self.try_start(comp):
                    return False
            if not self.wait_ready(comp):
                return False
        return not self.stopping

    # -- watching --------------------------------------------------------------------------

    def handle_requests(self) -> None:
        for action, name in self.sd.take_requests():
            if name not in topology.COMPONENT_NAMES:
                continue
            if action == "stop":
                self.pending.pop(name, None)
                self.stop(name)
            elif action == "start":
                for comp in topology.with_gates([name]):
                    if comp.name not in self.state.wanted:
                        self.state.wanted.append(comp.name)
                        self.state.ports.setdefault(comp.name, comp.port)
                    c = self.cs(comp.name)
                    if c.phase == STOPPED or (c.phase == WAITING and not self.running(comp.name)):
                        c.phase = WAITING
                        self.pending[comp.name] = False
                        self.next_try[comp.name] = 0.0
                self.save()

    def watch_once(self) -> None:
        now = time.monotonic()
        for comp in self.wanted():
            name = comp.name
            c = self.cs(name)
            if c.phase in (READY, STARTING) and not self.running(name):
                streak = self.streak.get(name, 0)
                if c.phase == READY and c.ready_at and time.time() - c.ready_at > STABLE_AFTER:
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
                self.pending[name] = True
                self.next_try[name] = now + delay
                self.save()
            elif c.phase == STARTING:
                if self.ready(name):
                    self.mark_ready(name)
                elif c.started_at and time.time() - c.started_at > self.timeout:
                    self.sd.event(name, "not_ready", f"after={self.timeout:g}s")
                    self.stop(name, phase=STARTING)
            if name in self.pending and now >= self.next_try.get(name, 0.0):
                missing = self.gates_ready(comp)
                if missing:
                    waiting = f"waiting for {', '.join(missing)}"
                    if c.message != waiting:
                        c.message = waiting
                        self.save()
                    continue
                restart = self.pending.pop(name)
                if not self.try_start(comp, restart=restart):
                    self.pending[name] = restart
                    self.next_try[name] = now + BACKOFF_MAX

    # -- life ------------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        self.state.supervisor_pid = os.getpid()
        self.state.supervisor_status = "starting"
        self.save()
        self.sd.event("supervisor", "started", f"pid={os.getpid()}")
        if not self.bring_up():
            failed = not self.stopping
            self.stop_all()
            self.state.supervisor_status = "failed" if failed else "stopped"
            self.state.supervisor_pid = None
            self.save()
            self.sd.event("supervisor", "exited", self.state.supervisor_status)
            return 1 if failed else 0
        self.state.supervisor_status = "running"
        self.save()
        self.sd.event("supervisor", "all_ready")
        while not self.stopping:
            try:
                self.handle_requests()
                self.watch_once()
            except Exception:  # a transient error (disk full...) must not end supervision
                traceback.print_exc()
                time.sleep(1.0)
            time.sleep(WATCH)
        self.stop_all()
        self.state.supervisor_status = "stopped"
        self.state.supervisor_pid = None
        self.save()
        self.sd.event("supervisor", "exited", "stopped")
        return 0


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
            state.supervisor_status = "failed"
            sd.save(state)
            return 2
        return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
