"""Start one component as a local process: the topology's command, its environment, and the
secret substituted where only the process can read it.

Redis reads its users from a generated ACL file of hashed passwords (mode 0600 in the
state directory; the administrator is the guide's ``REDIS_PASSWORD``), never from its
command line, where ``ps`` would show them. Each MAD on the bus gets its own user
(``REDIS_USERNAME``) and password (``REDIS_PASSWORD``, from ``<MAD>_BUS_PASSWORD`` in
``.env``) and no other secret: ``.env``'s secrets are not passed on wholesale.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from madgroup import topology
from madgroup.errors import MadGroupError
from madgroup.local.certificates import ca_file, tls_files
from madgroup.local.envfile import PASSWORD_KEY
from madgroup.local.ports import HOST
from madgroup.local.state import Declared, StateDir
from mads.core.files import write_file

DELAY_ENV = "MADGROUP_DELAY_{}_S"
"""A diagnostic/test knob: seconds to wait before a component's program starts, so that it
is slow to become ready (``MADGROUP_DELAY_GRACE_S=3``)."""
LOG_ROTATE_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3


class LaunchError(MadGroupError, RuntimeError):
    pass


def bin_dir() -> Path:
    """Where this installation's console scripts (``mad-run``, ``mad-status``...) live."""
    return Path(sys.executable).parent


def address(ports: Mapping[str, int]) -> topology.Address:
    return lambda name: (HOST, ports[name])


def component_env(
    comp: topology.Component, ports: Mapping[str, int], dotenv: Mapping[str, str], state: StateDir
) -> dict[str, str]:
    """The environment ``comp`` runs with here: this shell's, then ``.env`` (like compose's
    ``env_file``), then the topology's environment with this machine's addresses, then what
    the declaration binds (values, and secrets read from ``.env`` by name)."""
    env = dict(os.environ)
    secret = secret_keys(state.declared())
    own = set(comp.contract.secrets) if comp.contract is not None else set()
    env.update({k: v for k, v in dotenv.items() if k not in secret or k in own})
    env.update(topology.environment(comp, address(ports)))
    env.update(bound(comp, dotenv, state))
    if comp.bus_user is not None:
        env[topology.BUS_USERNAME_VARIABLE] = comp.bus_user
        env[PASSWORD_KEY] = bus_password(comp.bus_user, dotenv)
    if topology.needs_internal_token(comp):
        env[topology.INTERNAL_TOKEN_VARIABLE] = internal_token(dotenv)
    ca = ca_file(state)
    if ca is not None:
        env.update(topology.tls_environment(comp, ca, tls_files(state, comp.name)))
    if comp.is_mad:
        env["MAD_HOST"] = HOST
        env["MAD_PORT"] = str(ports[comp.name])
        env["PYTHONUNBUFFERED"] = "1"
        data = comp.contract.data if comp.contract is not None else None
        if data is not None:
            env[data.variable] = str(state.data_dir(comp.name) / data.filename)
    env["PATH"] = os.pathsep.join([str(bin_dir()), env.get("PATH", "")])
    return env


def bound(comp: topology.Component, dotenv: Mapping[str, str], state: StateDir) -> dict[str, str]:
    """The declaration's bindings for ``comp``: a value as it is; a secret from the ``.env``
    variable it names (the bus password's default is ``REDIS_PASSWORD``); a file's content
    written to the state directory, the variable holding its path."""
    bindings = state.declared().bindings.get(comp.name, [])
    env = resolve_bindings(bindings, dotenv)
    for binding in bindings:
        content = binding.get("file")
        if content is not None:
            path = state.files_dir(comp.name) / str(binding["variable"])
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, str(content))
            env[str(binding["variable"])] = str(path)
    return env


def resolve_bindings(
    bindings: Iterable[Mapping[str, str | None]], dotenv: Mapping[str, str]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for binding in bindings:
        variable = str(binding["variable"])
        if binding.get("file") is not None:
            continue  # a file the launcher writes (see bound)
        if binding.get("value") is not None:
            env[variable] = str(binding["value"])
            continue
        key = str(binding.get("secret") or PASSWORD_KEY)
        if key not in dotenv:
            raise LaunchError(f"{key} is not set in .env (the declaration's {variable})")
        env[variable] = dotenv[key]
    return env


def check_secrets(declared: Declared, names: Iterable[str], dotenv: Mapping[str, str]) -> None:
    """Every secret the components named need is in ``.env``: checked before anything
    starts, so a missing one stops ``up`` at once (LaunchError, one line). Redis needs
    every bus user's password (for its ACL file), a MAD its own."""
    for name in names:
        resolve_bindings(declared.bindings.get(name, []), dotenv)
        comp = topology.component(name)
        if comp.is_mad:
            users: tuple[str, ...] = (comp.bus_user,) if comp.bus_user else ()
        else:
            users = topology.bus_users()
        for user in users:
            bus_password(user, dotenv)
        if topology.needs_internal_token(comp):
            internal_token(dotenv)


def secret_keys(declared: Declared) -> set[str]:
    """The ``.env`` variables that hold secrets: a component gets one only by binding, or
    when its contract reads it (``GRACE_API_TOKENS`` for Grace)."""
    keys = {PASSWORD_KEY, *(topology.bus_password_variable(u) for u in topology.bus_users())}
    keys.add(topology.INTERNAL_TOKEN_VARIABLE)
    for comp in topology.COMPONENTS:
        if comp.contract is not None:
            keys.update(comp.contract.secrets)
    for bindings in declared.bindings.values():
        keys.update(str(b["secret"]) for b in bindings if b.get("secret"))
    return keys


def internal_token(dotenv: Mapping[str, str]) -> str:
    value = dotenv.get(topology.INTERNAL_TOKEN_VARIABLE, "")
    if not value:
        raise LaunchError(
            f"{topology.INTERNAL_TOKEN_VARIABLE} is not set in .env (the group's internal "
            "credential); add it with: madgroup init"
        )
    return value


def bus_password(user: str, dotenv: Mapping[str, str]) -> str:
    variable = topology.bus_password_variable(user)
    value = dotenv.get(variable, "")
    if not value:
        raise LaunchError(
            f"{variable} is not set in .env ({user}'s bus user); add it with: madgroup init"
        )
    return value


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def redis_config(
    comp: topology.Component,
    port: int,
    secrets: Mapping[str, str],
    data_dir: Path,
    acl_file: Path,
    tls_files: topology.TlsFiles | None = None,
) -> str:
    """The topology's ``redis-server --key value ...`` as a config file, with ``$(VAR)``
    substituted, the port and data directory of this machine, and loopback only. Redis takes
    its users (the administrator included) from ``acl_file``; with
    ``tls_files``, it serves TLS only, on the same port."""
    args = comp.command(users_file=str(acl_file), tls=tls_files)[1:]
    settings: dict[str, str] = {}
    for i in range(0, len(args) - 1, 2):
        key = args[i].removeprefix("--")
        settings[key] = topology.VARIABLE.sub(lambda m: _secret(secrets, m.group(1)), args[i + 1])
    listen = {"tls-port": str(port)} if tls_files is not None else {"port": str(port)}
    settings.update(listen, dir=str(data_dir), bind=HOST, daemonize="no", logfile="")
    lines = ["# Generated by madgroup for this run (mode 0600)."]
    lines += [f"{key} {_quote(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _secret(secrets: Mapping[str, str], name: str) -> str:
    try:
        return secrets[name]
    except KeyError:
        raise LaunchError(f"{name} is not set in .env") from None


def write_private(path: Path, text: str) -> None:
    write_file(path, text, 0o600)


def resolve(program: str) -> str:
    local = bin_dir() / program
    if local.exists():
        return str(local)
    found = shutil.which(program)
    if found is None:
        hint = " (install it: scripts/bootstrap)" if program == "redis-server" else ""
        raise LaunchError(f"{program} not found on PATH{hint}")
    return found


def command(
    comp: topology.Component, ports: Mapping[str, int], dotenv: Mapping[str, str], state: StateDir
) -> list[str]:
    if not comp.is_mad:  # the bus: its password goes into a private config file
        data_dir = state.data_dir(comp.name)
        data_dir.mkdir(parents=True, exist_ok=True)
        secrets = bound(comp, dotenv, state)
        passwords = {user: bus_password(user, dotenv) for user in topology.bus_users()}
        write_private(state.redis_acl, topology.acl_file(secrets[PASSWORD_KEY], passwords))
        config = redis_config(
            comp,
            ports[comp.name],
            secrets,
            data_dir,
            state.redis_acl,
            tls_files(state, comp.name),
        )
        write_private(state.redis_conf, config)
        return [resolve("redis-server"), str(state.redis_conf)]
    program, *rest = comp.command()
    return [resolve(program), *rest]


def start_delay(name: str, env: Mapping[str, str]) -> float:
    raw = env.get(DELAY_ENV.format(name.upper()), "").strip()
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        return 0.0


def rotate(log: Path) -> None:
    try:
        if log.stat().st_size < LOG_ROTATE_BYTES:
            return
    except FileNotFoundError:
        return
    for i in range(LOG_KEEP - 1, 0, -1):
        older = log.with_name(f"{log.name}.{i}")
        if older.exists():
            older.replace(log.with_name(f"{log.name}.{i + 1}"))
    log.replace(log.with_name(f"{log.name}.1"))


def launch(
    comp: topology.Component, ports: Mapping[str, int], dotenv: Mapping[str, str], state: StateDir
) -> subprocess.Popen[bytes]:
    """Start ``comp`` in its own session (a Ctrl-C or a dying supervisor does not take it
    down), output appended to its log file."""
    state.ensure()
    if comp.stateful:
        state.data_dir(comp.name).mkdir(parents=True, exist_ok=True)
    env = component_env(comp, ports, dotenv, state)
    argv = command(comp, ports, dotenv, state)
    delay = start_delay(comp.name, env)
    if delay:
        argv = ["/bin/sh", "-c", 'sleep "$0" && exec "$@"', f"{delay:g}", *argv]
    log_path = state.log_file(comp.name)
    rotate(log_path)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=state.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
