"""The local substrate's ``madgroup`` sub-commands: init, up, stop, status, logs, down,
exec, health, smoke."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import time
import webbrowser
from pathlib import Path

from madgroup import backup as backup_format
from madgroup import bundle, rollout, spec, topology
from madgroup.errors import CommandError
from madgroup.local import (
    backup,
    certificates,
    conditions,
    control,
    declaration,
    envfile,
    launcher,
    logview,
    processes,
    readiness,
    report,
)
from madgroup.local.context import Context
from madgroup.local.smoke import smoke as run_smoke
from madgroup.local.state import STATE_ENV, Phase
from madgroup.resolved import resolve
from mads.core.status import HEALTHY

REDIS_CLI_TARGET_FLAGS = ("-p", "-h", "-u", "-s")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--project-dir",
        help="directory holding .env/.env.example (default: the nearest one from here up)",
    )
    common.add_argument(
        "--state-dir",
        help=f"state directory (default: <project>/.madgroup, or ${STATE_ENV})",
    )
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()
    names = ", ".join(topology.COMPONENT_NAMES)

    p = subparsers.add_parser(
        "init",
        parents=[common],
        help="create .env with a random REDIS_PASSWORD and each MAD's bus password",
        description="Create .env from .env.example (mode 0600) with a CSPRNG REDIS_PASSWORD "
        "(the administrator's, guide step 1) and a bus password per MAD on the bus "
        "(GRACE_BUS_PASSWORD...: each MAD connects as a Redis ACL user of its own) and the "
        "group's internal credential (MAD_INTERNAL_TOKEN: the MADs behind Grace answer MCP "
        "only to it). Missing "
        "or empty ones are filled in; an existing password is never replaced. With --tls, "
        "also the group's private CA and Redis's certificate (in the state directory's tls/; "
        "kept, and renewed when due). With -f, the administrator's password goes where the "
        "MadGroup file's spec.redis.passwordSecretRef says.",
    )
    p.add_argument(
        "-f",
        "--file",
        type=Path,
        metavar="FILE",
        help="the MadGroup file 'madgroup up -f' will take (default: the built-in group)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="also create the private CA and certificates 'madgroup up --tls' uses",
    )
    p.add_argument(
        "--renew",
        action="store_true",
        help="with --tls: issue every server certificate again (the CA stays); a running "
        "Redis picks its new one up without a restart",
    )
    p.set_defaults(handler=cmd_init)

    p = subparsers.add_parser(
        "up",
        parents=[common],
        help="start the group locally, in order, with readiness gates",
        description="Start redis, sequential_thinking, grace, rogers and fiedler as local "
        "processes, each once the ones before it are ready, and leave a supervisor that "
        "restarts a crashed component. Name components to start only those (and what they "
        "need).",
    )
    p.add_argument("components", nargs="*", metavar="component", help=f"any of: {names}")
    p.add_argument(
        "-f",
        "--file",
        type=Path,
        metavar="FILE",
        help="a MadGroup file (apiVersion madgroup.io/v1alpha1, kind MadGroup): the same one "
        "kubectl applies (default: the built-in group)",
    )
    p.add_argument(
        "--order",
        choices=topology.ORDERS,
        help="guide: each component after the one before it (the default); graph: only "
        "after what it talks to, so independent components start side by side "
        "(overrides spec.order)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="encrypt the bus: Redis serves TLS only and the MADs verify it against the "
        "group's private CA, made by 'madgroup init --tls' or here (same as spec.tls.enabled)",
    )
    p.add_argument(
        "--foreground",
        action="store_true",
        help="stay attached, stream prefixed logs; Ctrl-C stops the group",
    )
    p.add_argument(
        "--port-offset",
        type=int,
        default=None,
        metavar="N",
        help="add N to every default port (or set MADGROUP_PORT_OFFSET)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds each component may take to become ready (default 60)",
    )
    p.set_defaults(handler=cmd_up)

    p = subparsers.add_parser(
        "stop",
        parents=[common],
        help="stop components; the supervisor keeps them stopped",
        description="Stop the named components (like 'docker-compose stop'); "
        "'madgroup up <component>' starts them again.",
    )
    p.add_argument("components", nargs="+", metavar="component", help=f"any of: {names}")
    p.set_defaults(handler=cmd_stop)

    p = subparsers.add_parser("status", parents=[common], help="table of the local group")
    p.set_defaults(handler=cmd_status)

    p = subparsers.add_parser("logs", parents=[common], help="show component logs")
    p.add_argument("component", nargs="?", help=f"one of: {names} (default: all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--tail", type=int, default=None, metavar="N", help="last N lines of each")
    p.add_argument("--no-log-prefix", action="store_true", help="print lines without 'name |'")
    p.set_defaults(handler=cmd_logs)

    p = subparsers.add_parser(
        "down",
        parents=[common],
        help="stop the group in reverse order (keeps data)",
        description="Stop every component in reverse order, gracefully. Data is kept unless "
        "--volumes is given (guide 5.1).",
    )
    p.add_argument(
        "--volumes",
        "-v",
        action="store_true",
        help="also delete the data (Redis AOF, Fiedler's task history)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before deleting data")
    p.set_defaults(handler=cmd_down)

    p = subparsers.add_parser(
        "exec",
        parents=[common],
        help="run a command in a component's environment",
        description="Run a command with the component's environment (MAD_NAME, MAD_PORT, "
        "REDIS_*...), like 'docker-compose exec': e.g. 'madgroup exec fiedler mad-status', "
        "'madgroup exec redis redis-cli ping'.",
    )
    p.add_argument("component", help=f"one of: {names}")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="command ...")
    p.set_defaults(handler=cmd_exec)

    p = subparsers.add_parser(
        "health",
        parents=[common],
        help="check every MAD; exit code = number unhealthy",
        description="The guide's health check (5.2.2): each MAD's status must be HEALTHY.",
    )
    p.set_defaults(handler=cmd_health)

    p = subparsers.add_parser(
        "smoke",
        parents=[common],
        help="run the guide's verification (steps 2-9)",
        description="Verify the running group as the deployment guide does in steps 2-9; one "
        "PASS/FAIL line per step, non-zero exit on any failure.",
    )
    p.set_defaults(handler=cmd_smoke)

    p = subparsers.add_parser(
        "ui",
        parents=[common],
        help="print (or open) the URL of the live view of the bus",
        description="Print the URL of Rogers' live view (/ui: connections, traffic, the latest "
        "envelopes, tasks), served to this machine's loopback; --open also opens it in the "
        "default browser.",
    )
    p.add_argument("--open", action="store_true", help="open it in the default browser")
    p.set_defaults(handler=cmd_ui)


# -- handlers -----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    if args.renew and not args.tls:
        raise CommandError("--renew renews the TLS certificates: use it with --tls", code=2)
    ctx = Context.from_args(args)
    _document, declared, _notes = declaration.load(args.file)
    admin = resolve(declared).admin.dotenv_key
    try:
        users = {user: topology.bus_password_variable(user) for user in topology.bus_users()}
        internal = topology.INTERNAL_TOKEN_VARIABLE
        print(envfile.init(ctx.env_file, ctx.example_file, users, internal, admin_key=admin))
    except envfile.EnvFileError as exc:
        raise CommandError(str(exc), code=2) from None
    if args.tls:
        ctx.state.ensure()
        try:
            written = certificates.ensure(ctx.state, spec.default_document().name, renew=args.renew)
        except OSError as exc:
            raise CommandError(f"cannot write {ctx.state.tls_dir}: {exc.strerror}") from None
        where = ctx.state.tls_dir
        said = f"wrote {', '.join(written)}" if written else "certificates are current"
        print(f"TLS: {said} in {where} (CA: {where / 'ca.crt'}); start with: madgroup up --tls")
        if written:
            _reload_running_redis(ctx)
    return 0


def _reload_running_redis(ctx: Context) -> None:
    """A renewed certificate reaches a Redis that is running with TLS at once."""
    state = ctx.state.load()
    redis = state.components.get(topology.bus().name)
    files = certificates.tls_files(ctx.state, topology.bus().name)
    if redis is None or files is None or not processes.alive(redis.pid, redis.ticks):
        return
    # ReloadError: one line, exit 1
    certificates.reload_redis(redis.port, ctx.admin_password(), files)
    print(f"TLS: the running Redis (port {redis.port}) now serves its new certificate")


def cmd_up(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive", code=2)
    return control.up(
        Context.from_args(args),
        args.components,
        args.port_offset,
        args.timeout,
        args.foreground,
        file=args.file,
        order=args.order,
        tls=args.tls,
    )


def cmd_stop(args: argparse.Namespace) -> int:
    return control.stop(Context.from_args(args), args.components)


def cmd_down(args: argparse.Namespace) -> int:
    return control.down(Context.from_args(args), args.volumes, args.yes)


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def cmd_status(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    state = ctx.state.load()
    supervisor = (
        f"running (pid {state.supervisor_pid})" if ctx.state.supervisor_running() else "not running"
    )
    password = None
    with contextlib.suppress(envfile.EnvFileError):
        password = envfile.load(ctx.env_file).get(ctx.state.declared().admin.dotenv_key)
    rows = [("COMPONENT", "PID", "PORT", "READY", "RESTARTS", "UPTIME", "STATE")]
    now = time.time()
    observed: dict[str, rollout.Observed] = {}
    declared = ctx.state.declared()
    for comp in topology.COMPONENTS:
        seen = []
        for unit in declared.instances(comp.name):  # one row per process
            c = state.components.get(unit)
            if c is None:
                rows.append((unit, "-", "-", "-", "0", "-", "not started"))
                seen.append(conditions.observe(None, running=False, ready=False))
                continue
            up = processes.alive(c.pid, c.ticks)
            ready = "-"
            ok = False
            if up:
                ca_file = certificates.ca_file(ctx.state)
                ok = readiness.ready(comp, c.port, password or "", timeout=1.0, ca_file=ca_file)
                ready = "yes" if ok else "no"
            seen.append(conditions.observe(c.phase, running=up, ready=ok))
            rows.append(
                (
                    unit,
                    str(c.pid) if up else "-",
                    str(c.port),
                    ready,
                    str(c.restarts),
                    _uptime(now - c.started_at) if up and c.started_at else "-",
                    (c.phase if up or c.phase not in (Phase.READY, Phase.NOT_READY) else "exited")
                    + (f": {c.message}" if c.message else ""),
                )
            )
        observed[comp.name] = conditions.observe_instances(seen)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[-1])
    print(f"supervisor: {supervisor}; state: {ctx.state.root}")
    if ctx.state.supervisor_running():
        order = ctx.state.declared().order
        print("\n".join(conditions.lines(conditions.report(observed, order), order)))
    else:
        print("conditions: none while no supervisor runs the group (madgroup up)")
    if supervisor == "not running" and any(
        processes.alive(c.pid, c.ticks) for c in state.components.values()
    ):
        print("components are running unsupervised: 'madgroup up' adopts them")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    if args.component:
        wanted = control.check_names([args.component])
    else:
        wanted = list(topology.COMPONENT_NAMES)
    names = ctx.state.declared().units(wanted)  # every process of each
    out = logview.Prefixer(names, prefix=not args.no_log_prefix)
    for name in names:
        for line in logview.last_lines(ctx.state.log_file(name), args.tail):
            out.line(name, line)
    out.flush()
    if not args.follow:
        return 0
    tailer = logview.Tailer({n: ctx.state.log_file(n) for n in names}, from_end=True)
    try:
        while True:
            for name, line in tailer.poll():
                out.line(name, line)
            out.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0


def cmd_exec(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    comp = topology.component(control.check_names([args.component])[0])
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise CommandError(
            f"no command given; e.g. madgroup exec {comp.name} "
            + ("mad-status" if comp.is_mad else "redis-cli ping"),
            code=2,
        )
    state = ctx.running_state()
    c = state.components.get(comp.name)
    if c is None or not processes.alive(c.pid, c.ticks):
        raise CommandError(f"{comp.name} is not running; start it with: madgroup up {comp.name}")
    env = launcher.component_env(comp, state.ports, ctx.dotenv(), ctx.state)
    if (
        not comp.is_mad
        and argv[0] == "redis-cli"
        and not any(a in REDIS_CLI_TARGET_FLAGS for a in argv[1:])
    ):
        argv = ["redis-cli", "-p", str(state.ports[comp.name]), *argv[1:]]
    program = shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        raise CommandError(f"{argv[0]}: command not found", code=127)
    try:
        return subprocess.run([program, *argv[1:]], env=env).returncode
    except KeyboardInterrupt:
        return 130


def cmd_health(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    state = ctx.state.load()
    failures: list[str] = []
    for name in ctx.state.declared().units(topology.MAD_NAMES):  # every process of each MAD
        print(f"Checking service: {name}")
        c = state.components.get(name)
        comp = topology.component(c.of if c is not None else name)
        port = state.ports.get(name, comp.port)
        https = certificates.ca_file(ctx.state) if topology.serves_tls(comp) else None
        report = readiness.mad_status(port, timeout=10.0, ca_file=https)
        if report is not None and report.get("status") == HEALTHY:
            print(f"Service {name} is {HEALTHY}.")
        else:
            print(f"ALERT: Service {name} is NOT HEALTHY!")
            failures.append(name)
    if failures:
        print(f"unhealthy: {' '.join(failures)}")
    return len(failures)


def _local_arguments(parser: argparse.ArgumentParser) -> None:
    for action in _common()._actions:
        if action.option_strings and action.dest != "help":
            parser.add_argument(*action.option_strings, dest=action.dest, help=action.help)


def cmd_report(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    ctx.running_state()  # a one-line error when nothing runs here
    output = Path(args.output or bundle.default_name("local"))
    if output.exists():
        raise CommandError(f"{output} exists; name another file with -o", code=2)
    collected = report.collect(ctx)
    collected.write(output)
    print(bundle.summary(str(output), collected))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    state = ctx.running_state()
    pages = [
        (comp, comp.contract.ui_path)
        for comp in topology.COMPONENTS
        if comp.contract is not None and comp.contract.ui_path
    ]
    for comp, path in pages:
        c = state.components.get(comp.name)
        if c is None or not processes.alive(c.pid, c.ticks):
            raise CommandError(f"{comp.name} is not running; start it with: madgroup up")
        scheme = "https" if topology.serves_tls(comp) else "http"
        url = f"{scheme}://127.0.0.1:{state.ports[comp.name]}{path}"
        print(url)
        if args.open:
            webbrowser.open(url)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    output = Path(args.output or f"madgroup-backup-{backup_format.stamp()}.tar.gz")
    if output.exists():
        raise CommandError(f"{output} exists; name another file with -o", code=2)
    try:
        manifest = backup.take(ctx, output)
    except backup_format.BackupError as exc:
        raise CommandError(str(exc)) from None
    print(backup_format.written(output, manifest))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    ctx = Context.from_args(args)
    manifest = backup.restore(ctx, Path(args.archive))
    print(backup_format.restored(args.archive, manifest, "madgroup up"))
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    failed = run_smoke(Context.from_args(args))
    return min(failed, 1)


def _always(args: argparse.Namespace) -> bool:
    return True


SHARED = {
    "report": (_local_arguments, _always, cmd_report),
    "backup": (_local_arguments, _always, cmd_backup),
    "restore": (_local_arguments, _always, cmd_restore),
}
"""The local runner's part of the commands every substrate answers (cli.py assembles
them; these are the defaults)."""
