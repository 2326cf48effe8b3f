"""Start one component as a local process: the topology's command, its environment, and the
secret substituted where only the process can read it.

Redis reads its users from a generated ACL file of hashed passwords (mode 0600 in the
state directory; the administrator's is the guide's ``REDIS_PASSWORD``, or the ``.env``
variable ``spec.redis.passwordSecretRef`` names), never from its command line, where ``ps``
would show them. Each component's environment is its entries (:mod:`madgroup.environment`)
as this machine has them: a MAD on the bus gets its own user (``REDIS_USERNAME``) and
password (``REDIS_PASSWORD``, from ``<MAD>_BUS_PASSWORD`` in ``.env``) and no other secret:
``.env``'s secrets are not passed on wholesale.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from madgroup import environment, topology
from madgroup.environment import (
    Address,
    Credential,
    CredentialKind,
    DataPath,
    Entry,
    File,
    Place,
    Secret,
    TlsPath,
    Value,
    VolumeSize,
)
from madgroup.errors import MadGroupError
from madgroup.local.certificates import tls_files
from madgroup.local.declaration import Declared
from madgroup.local.ports import HOST
from madgroup.local.state import StateDir
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


def component_env(
    comp: topology.Component,
    ports: Mapping[str, int],
    dotenv: Mapping[str, str],
    state: StateDir,
    declared: Declared | None = None,
) -> dict[str, str]:
    """The environment ``comp`` runs with here: this shell's, then ``.env`` (like compose's
    ``env_file``) without the secrets it does not use, then its entries
    (:mod:`madgroup.environment`) as this machine has them, so what the declaration sets
    wins over ``.env``."""
    declared = declared or state.declared()
    env = dict(os.environ)
    own = declared.passes_through.get(comp.name, frozenset())
    env.update({k: v for k, v in dotenv.items() if k not in declared.secret_keys or k in own})
    for entry in declared.environment(comp.name):
        value = entry_value(entry, comp, ports, dotenv, state)
        if value is not None:
            env[entry.variable] = value
    if comp.is_mad:
        env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.pathsep.join([str(bin_dir()), env.get("PATH", "")])
    return env


def entry_value(
    entry: Entry,
    comp: topology.Component,
    ports: Mapping[str, int],
    dotenv: Mapping[str, str],
    state: StateDir,
) -> str | None:
    """One entry as this machine has it: secrets and credentials read from ``.env`` by
    name, a file's content written privately to the state directory, addresses on
    loopback at the chosen ports. None: an optional credential ``.env`` does not set, or a
    volume's size (local data has none)."""
    match entry:
        case Value():
            return entry.value
        case Secret() | Credential():
            return secret_value(entry, dotenv)
        case File():
            path = state.files_dir(comp.name) / entry.variable
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, entry.content)
            return str(path)
        case Address():
            return _address(entry, ports)
        case DataPath():
            return str(state.data_dir(comp.name) / entry.filename)
        case TlsPath():
            files = tls_files(state, comp.name)
            if files is None:
                raise LaunchError(f"{entry.variable}: the group has no TLS files here")
            return str(getattr(files, entry.part.value))
        case VolumeSize():  # the state directory has no size of its own
            return None


def secret_value(entry: Secret | Credential, dotenv: Mapping[str, str]) -> str | None:
    """A secret or credential from ``.env``, by the name the entry gives it (LaunchError,
    one line, when it is missing); None for an optional credential ``.env`` does not set."""
    if isinstance(entry, Secret):
        return _from_dotenv(dotenv, entry.ref.key, f"{entry.ref.source}, for {entry.variable}")
    if not entry.required and not dotenv.get(entry.dotenv_key):
        return None
    return _from_dotenv(dotenv, entry.dotenv_key, _credential_why(entry))


def _address(entry: Address, ports: Mapping[str, int]) -> str:
    port = ports[entry.component]
    match entry.place:
        case Place.HOST | Place.BIND | Place.NAMES:
            return HOST
        case Place.PORT:
            return str(port)
        case Place.MCP_URL:
            return f"http://{HOST}:{port}/mcp"


def _credential_why(entry: Credential) -> str:
    if entry.ref is not None:
        return f"{entry.ref.source}, the administrator's Redis password"
    match entry.kind:
        case CredentialKind.BUS_PASSWORD:
            return f"{entry.user}'s bus user; add it with: madgroup init"
        case CredentialKind.INTERNAL_TOKEN:
            return "the group's internal credential; add it with: madgroup init"
        case _:
            return "add it with: madgroup init"


def _from_dotenv(dotenv: Mapping[str, str], key: str, why: str) -> str:
    value = dotenv.get(key, "")
    if not value:
        raise LaunchError(f"{key} is not set in .env ({why})")
    return value


def check_secrets(declared: Declared, names: Iterable[str], dotenv: Mapping[str, str]) -> None:
    """Every secret the components named need is in ``.env``, and ``.env`` sets none to a
    value the declaration contradicts: checked before anything starts, so a missing one
    stops ``up`` at once (LaunchError, one line). Redis also needs every bus user's
    password (for its ACL file)."""
    for name in names:
        comp = topology.component(name)
        entries = declared.environment(name)
        environment.check_dotenv(entries, dotenv)
        for entry in entries:
            if isinstance(entry, Secret | Credential):
                secret_value(entry, dotenv)
        if not comp.is_mad:
            bus_passwords(dotenv)


def bus_passwords(dotenv: Mapping[str, str]) -> dict[str, str]:
    """Every bus user's password, for Redis's ACL file."""
    found = {}
    for user in topology.bus_users():
        credential = Credential(topology.PASSWORD_VARIABLE, CredentialKind.BUS_PASSWORD, user)
        found[user] = _from_dotenv(dotenv, credential.dotenv_key, _credential_why(credential))
    return found


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def redis_config(
    comp: topology.Component,
    port: int,
    data_dir: Path,
    acl_file: Path,
    tls_files: topology.TlsFiles | None = None,
    declared: Declared | None = None,
) -> str:
    """The topology's ``redis-server --key value ...`` (with the declared options) as a
    config file, with the port and data directory of this machine, and loopback only. Redis
    takes its users (the administrator included) from ``acl_file``; with ``tls_files``, it
    serves TLS only, on the same port."""
    declared = declared or Declared.default()
    args = declared.command(comp, users_file=str(acl_file), tls=tls_files)[1:]
    settings = {args[i].removeprefix("--"): args[i + 1] for i in range(0, len(args) - 1, 2)}
    listen = {"tls-port": str(port)} if tls_files is not None else {"port": str(port)}
    settings.update(listen, dir=str(data_dir), bind=HOST, daemonize="no", logfile="")
    lines = ["# Generated by madgroup for this run (mode 0600)."]
    lines += [f"{key} {_quote(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


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
    comp: topology.Component,
    ports: Mapping[str, int],
    dotenv: Mapping[str, str],
    state: StateDir,
    declared: Declared | None = None,
) -> list[str]:
    declared = declared or state.declared()
    if not comp.is_mad:  # the bus: its users go into a private ACL file
        data_dir = state.data_dir(comp.name)
        data_dir.mkdir(parents=True, exist_ok=True)
        admin = _from_dotenv(dotenv, declared.admin.dotenv_key, _credential_why(declared.admin))
        acl = topology.acl_file(admin, bus_passwords(dotenv))
        write_private(state.redis_acl, acl)
        config = redis_config(
            comp,
            ports[comp.name],
            data_dir,
            state.redis_acl,
            tls_files(state, comp.name),
            declared,
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
    comp: topology.Component,
    ports: Mapping[str, int],
    dotenv: Mapping[str, str],
    state: StateDir,
    instance: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``comp`` in its own session (a Ctrl-C or a dying supervisor does not take it
    down), output appended to its log file. ``instance``: which of its processes this is
    (its log file; ``ports`` gives it its own port under the component's name)."""
    state.ensure()
    if comp.stateful:
        state.data_dir(comp.name).mkdir(parents=True, exist_ok=True)
    declared = state.declared()
    env = component_env(comp, ports, dotenv, state, declared)
    argv = command(comp, ports, dotenv, state, declared)
    delay = start_delay(comp.name, env)
    if delay:
        argv = ["/bin/sh", "-c", 'sleep "$0" && exec "$@"', f"{delay:g}", *argv]
    log_path = state.log_file(instance or comp.name)
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
