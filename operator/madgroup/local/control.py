"""``up``, ``stop`` and ``down``: start the supervisor and follow it, or ask it to stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from madgroup import spec, topology
from madgroup.environment import SecretConflictError
from madgroup.errors import CommandError
from madgroup.local import (
    certificates,
    declaration,
    detach,
    launcher,
    logview,
    ports,
    processes,
    watch,
)
from madgroup.local.context import Context
from madgroup.local.declaration import Declared
from madgroup.local.progress import Progress, describe
from madgroup.local.state import (
    FAILED,
    READY,
    STOPPED,
    WAITING,
    ComponentState,
    GroupState,
    SupervisorStatus,
)
from madgroup.resolved import resolve

REDRAW = 0.25
"""How often ``up``'s progress display redraws its elapsed times on a terminal."""
LOG_LINES_ON_FAILURE = 15


def check_names(names: list[str]) -> list[str]:
    try:
        return [topology.component(n).name for n in names]
    except topology.UnknownComponentError as exc:
        raise CommandError(str(exc), code=2) from None


# -- up -----------------------------------------------------------------------------------


def up(
    ctx: Context,
    names: list[str],
    offset: int | None,
    timeout: float,
    foreground: bool,
    *,
    file: Path | None = None,
    order: str | None = None,
    tls: bool | None = None,
) -> int:
    wanted = check_names(names) or list(topology.COMPONENT_NAMES)
    wanted = [c.name for c in topology.with_gates(wanted)]
    document, declared, notes = declaration.load(file)
    if order is not None:
        declared = declared.model_copy(update={"order": order})
    if tls:
        declared = declared.model_copy(update={"tls": spec.TLSSpec(enabled=True)})
    for note in notes:
        print(f"madgroup: note: {note}", file=sys.stderr)
    kept = Declared.of(resolve(declared))
    dotenv = ctx.dotenv(kept)
    try:
        launcher.check_secrets(kept, wanted, dotenv)
    except (launcher.LaunchError, SecretConflictError) as exc:
        raise CommandError(f"{exc}; nothing was started", code=2) from None
    if any(not topology.component(n).is_mad for n in wanted):
        try:
            launcher.resolve("redis-server")
        except launcher.LaunchError as exc:
            raise CommandError(str(exc)) from None
    sd = ctx.state
    sd.ensure()
    with sd.command_lock():
        state = sd.load()
        if sd.supervisor_running():
            chosen = file is not None or order is not None or tls is not None
            if chosen and sd.declared() != kept:
                raise CommandError(
                    "the group is running with another declaration: run 'madgroup down' "
                    "first, then 'madgroup up' with the new one",
                    code=2,
                )
            return _up_running(ctx, state, wanted, timeout)
        sd.save_declaration(document, kept.to_json())
        if declared.tls.enabled:
            try:
                certificates.ensure(sd, document.name)
            except OSError as exc:
                raise CommandError(f"cannot write {sd.tls_dir}: {exc.strerror}") from None
        adopted = {
            name: c for name, c in state.components.items() if processes.alive(c.pid, c.ticks)
        }
        instances = {name: kept.instances(name) for name in topology.COMPONENT_NAMES}
        try:
            if adopted:
                plan = {**ports.instance_ports(state.ports, instances), **state.ports}
            else:
                first = ports.plan(ports.offset_from(offset), list(topology.COMPONENT_NAMES))
                plan = ports.instance_ports(first, instances)
            starting = set(kept.units(wanted)) - set(adopted)
            ports.check_free({n: p for n, p in plan.items() if n in starting})
        except ports.PortError as exc:
            raise CommandError(str(exc)) from None
        # keep supervising whatever still runs
        wanted = [c.name for c in topology.with_gates([*wanted, *(c.of for c in adopted.values())])]
        if adopted:
            print(
                "adopting the components still running from an earlier supervisor: "
                + ", ".join(n for n in kept.units(wanted) if n in adopted)
            )
        fresh = GroupState(ports=plan, wanted=wanted, supervisor_status=SupervisorStatus.STARTING)
        for name, units in instances.items():
            for unit in units:
                if unit in adopted:
                    fresh.components[unit] = adopted[unit]
                    continue
                previous = state.components.get(unit)
                fresh.components[unit] = ComponentState(
                    name=unit,
                    port=plan[unit],
                    phase=WAITING if name in wanted else STOPPED,
                    restarts=previous.restarts if previous and adopted else 0,
                    component=name if unit != name else None,
                )
        sd.save(fresh)
        supervisor = _spawn_supervisor(ctx, timeout)
    units = kept.units(wanted)
    if foreground:
        return _foreground(ctx, supervisor, units)
    started = time.monotonic()
    ok = _follow(ctx, units, lambda: supervisor.poll() is None, supervisor_pid=supervisor.pid)
    if not ok:
        # The supervisor stops what it had started, then exits: wait for that.
        supervisor.wait(timeout=30)
        return _report_failure(ctx, units)
    state = sd.load()
    took = time.monotonic() - started
    print(f"The MAD group is up ({took:.1f} s); supervisor pid {state.supervisor_pid}.")
    print("Next: madgroup smoke | madgroup status | madgroup logs -f | madgroup down")
    return 0


def _up_running(ctx: Context, state: GroupState, wanted: list[str], timeout: float) -> int:
    missing = [
        n
        for n in wanted
        if n not in state.wanted
        or state.components.get(n) is None
        or state.components[n].phase == STOPPED
    ]
    if not missing:
        print(
            f"The MAD group is already running (supervisor pid {state.supervisor_pid}); "
            "nothing to do. See: madgroup status"
        )
        return 0
    for name in missing:
        ctx.state.request("start", name)
    deadline = time.monotonic() + timeout * len(missing) + 10
    units = ctx.state.declared().units(missing)
    if not _follow(ctx, units, ctx.state.supervisor_running, deadline):
        return _report_failure(ctx, units, bring_up=False)
    print(f"started: {', '.join(missing)}")
    return 0


def _spawn_supervisor(ctx: Context, timeout: float) -> detach.Detached:
    from madgroup.local import supervisor

    argv = [
        "--state-dir",
        str(ctx.state.root),
        "--env-file",
        str(ctx.env_file),
        "--timeout",
        f"{timeout:g}",
    ]
    return detach.spawn(lambda: supervisor.main(argv), ctx.project, ctx.state.supervisor_log)


def _follow(
    ctx: Context,
    names: list[str],
    supervisor_alive: Callable[[], bool],
    deadline: float | None = None,
    supervisor_pid: int | None = None,
) -> bool:
    """Show progress until every one of ``names`` (processes: a component's, or each of
    several that run one) is ready (True) or something failed.
    Sleeps until the supervisor saves a change (or exits); on a terminal, the elapsed times
    are redrawn a few times a second meanwhile."""
    progress = Progress(names)
    with ctx.state.follow() as follower:
        while True:
            state = ctx.state.load()
            follower.watch_process(supervisor_pid or state.supervisor_pid)
            progress.update(state)
            comps = [state.components.get(n) for n in names]
            if all(c is not None and c.phase == READY for c in comps):
                return True
            if any(c is not None and c.phase == FAILED for c in comps):
                return False
            if not supervisor_alive():
                progress.update(ctx.state.load())
                return all(c is not None and c.phase == READY for c in comps)
            now = time.monotonic()
            if deadline is not None and now > deadline:
                return False
            sleep = REDRAW if progress.tty else watch.FALLBACK
            follower.wait(sleep if deadline is None else min(sleep, deadline - now))


def _report_failure(ctx: Context, names: list[str], bring_up: bool = True) -> int:
    """Name the component that failed (or is still not ready), show its last log lines."""
    state = ctx.state.load()
    comps = [state.components.get(n) for n in names]
    culprit = next((c for c in comps if c is not None and c.phase == FAILED), None)
    culprit = culprit or next((c for c in comps if c is None or c.phase != READY), None)
    if culprit is None:
        return 0
    name = culprit.name
    lines = logview.last_lines(ctx.state.log_file(name), LOG_LINES_ON_FAILURE)
    print(f"last lines of the {name} log:", file=sys.stderr)
    for line in lines or ["(empty)"]:
        print(f"  {name} | {line}", file=sys.stderr)
    if culprit.phase == FAILED:
        what = f"{name} failed: {culprit.message}"
    elif not ctx.state.supervisor_running():
        what = f"the supervisor stopped before {name} was ready (see {ctx.state.supervisor_log})"
    else:
        what = f"{name} is still not ready: {describe(culprit)}"
    later = [
        n
        for n in names[names.index(name) + 1 :]
        if (c := state.components.get(n)) is None or c.pid is None
    ]
    not_started = f"; not started: {', '.join(later)}" if later else ""
    stopped = "; what had started was stopped" if bring_up else ""
    raise CommandError(f"{what}{not_started}{stopped}. Full log: madgroup logs {name}")


def _foreground(ctx: Context, supervisor: detach.Detached, wanted: list[str]) -> int:
    """Stream prefixed logs until Ctrl-C (or SIGTERM/SIGHUP), then stop the group."""
    files = {name: ctx.state.log_file(name) for name in wanted}
    tailer = logview.Tailer(files, from_end=True)
    out = logview.Prefixer(wanted)
    progress = Progress(wanted)
    progress.tty = False

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    def drain() -> None:
        for name, line in tailer.poll():
            out.line(name, line)
        out.flush()

    try:
        while supervisor.poll() is None:
            drain()
            progress.update(ctx.state.load())
            time.sleep(0.1)
        drain()
        progress.update(ctx.state.load())
        return _report_failure(ctx, wanted)
    except KeyboardInterrupt:
        print("Stopping the MAD group (in reverse order)...", flush=True)
        with contextlib.suppress(ProcessLookupError):
            supervisor.send_signal(signal.SIGTERM)
        with contextlib.suppress(KeyboardInterrupt):
            while supervisor.poll() is None:
                drain()
                time.sleep(0.1)
            drain()
        print("Stopped.")
        return 0


# -- stop / down --------------------------------------------------------------------------


def stop(ctx: Context, names: list[str], timeout: float = 30.0) -> int:
    names = check_names(names)
    if not ctx.state.supervisor_running():
        raise CommandError("the MAD group is not running here (no supervisor); see: madgroup up")
    for name in names:
        ctx.state.request("stop", name)
    units = ctx.state.declared().units(names)
    deadline = time.monotonic() + timeout
    with ctx.state.follow() as follower:
        while True:
            state = ctx.state.load()
            pending = [
                n
                for n in units
                if (c := state.components.get(n)) is not None and c.phase != STOPPED
            ]
            if not pending:
                break
            now = time.monotonic()
            if now > deadline:
                raise CommandError(f"still stopping after {timeout:g} s: {', '.join(pending)}")
            follower.watch_process(state.supervisor_pid)
            follower.wait(min(watch.FALLBACK, deadline - now))
    for name in names:
        print(f"{name} stopped (the supervisor keeps it stopped; start it: madgroup up {name})")
    return 0


def down(ctx: Context, volumes: bool, yes: bool, timeout: float = 60.0) -> int:
    sd = ctx.state
    if volumes and not yes:
        _confirm_volumes(ctx)
    with sd.command_lock():
        state = sd.load()
        alive = [
            c.name
            for comp in topology.stop_order()
            for c in reversed([c for c in state.components.values() if c.of == comp.name])
            if processes.alive(c.pid, c.ticks)
        ]
        if sd.supervisor_running() and state.supervisor_pid:
            _stop_supervisor(ctx, state.supervisor_pid, alive, timeout)
        else:
            for name in alive:
                c = state.components[name]
                how = processes.terminate(c.pid or 0, c.ticks)
                sd.event(name, "stopped", how.replace(" ", "_"))
                c.pid, c.ticks, c.phase = None, None, STOPPED
                sd.save(state)
                print(f"{name} {how}")
            with contextlib.suppress(FileNotFoundError):
                sd.redis_conf.unlink()
        if not alive:
            print("nothing was running")
        if volumes:
            shutil.rmtree(sd.data, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                sd.redis_conf.unlink()
            print(f"deleted the data (Redis AOF, Fiedler's task history) in {sd.data}")
    return 0


def _stop_supervisor(ctx: Context, pid: int, alive: list[str], timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    remaining = list(alive)
    deadline = time.monotonic() + timeout
    with ctx.state.follow() as follower:
        follower.watch_process(pid)
        while remaining or ctx.state.supervisor_running():
            state = ctx.state.load()
            for name in list(remaining):
                c = state.components.get(name)
                if c is None or c.pid is None:
                    print(f"{name} stopped")
                    remaining.remove(name)
            now = time.monotonic()
            if now > deadline:
                raise CommandError(
                    f"the supervisor (pid {pid}) did not stop within {timeout:g} s; "
                    f"still running: {', '.join(remaining) or 'the supervisor'}"
                )
            if remaining or ctx.state.supervisor_running():
                follower.wait(min(watch.FALLBACK, deadline - now))


def _confirm_volumes(ctx: Context) -> None:
    what = f"all data in {ctx.state.data} (Redis data and Fiedler's task history)"
    if not sys.stdin or not sys.stdin.isatty():
        raise CommandError(
            f"down --volumes deletes {what} and there is no terminal to confirm on; "
            "add --yes to confirm",
            code=2,
        )
    answer = input(f"This deletes {what}. There is no undo. Continue? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandError("cancelled; nothing was stopped or deleted", code=1)
