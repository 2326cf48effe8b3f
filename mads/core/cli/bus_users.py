"""``mad-bus-users DIR``: give each MAD its bus credentials, for a substrate without a
secret store of its own (docker compose runs it as a one-shot service before Redis).

For every MAD with a bus user, ``DIR/<mad>/bus_password`` (created once from a CSPRNG, kept
across runs, mode 0400, owned by the MADs' uid); for every MAD that uses the group's
internal credential, ``DIR/<mad>/internal_token`` (one value for the group); and
``DIR/redis/users.acl``, Redis's ACL file, rewritten on every run from the administrator's
password (``$REDIS_PASSWORD``, or the ``.env`` file given with ``--env-file``; another
variable with ``--admin-key``) and the users' passwords — hashes only, mode 0444 for the
Redis user —, and
``DIR/redis/admin_password`` (0400, Redis's user) for Redis's healthcheck. Nothing secret
is printed.

With ``--tls NAME=HOSTS`` (repeatable) it also keeps the group's private CA in ``DIR/ca/``
(made once; its key never leaves that folder), server NAME's certificate for ``HOSTS`` and
its key in ``DIR/NAME/`` (owned by whoever runs that server: Redis's user for ``redis``;
issued again when due, or with ``--renew``), and the CA's certificate in each bus user's
folder (``ca.crt``, for ``REDIS_TLS_CA_FILE``).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path

from mads.core import access, tls
from mads.core.files import write_file
from mads.core.registry import contracts

OWNER_UID = 10001
"""The MAD images' user (docker/Dockerfile)."""
REDIS_UID = 999
"""The Redis image's user (redis:7.2-alpine and its local stand-in)."""
CA_DIR = "ca"
PASSWORD_FILE = "bus_password"
INTERNAL_TOKEN_FILE = "internal_token"
ACL_FILE = "users.acl"
ADMIN_PASSWORD_FILE = "admin_password"
ACL_DIR = "redis"
ADMIN_KEY = "REDIS_PASSWORD"
"""The deployment guide's ``.env`` variable for the administrator's password."""


def _new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def _read(path: Path) -> str:
    """What ``path`` holds, or "" when it is not there yet."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _kept(path: Path, mode: int, owner: int | None) -> str:
    """The secret in ``path``, created if it is not there yet."""
    value = _read(path)
    if not value:
        value = _new_secret()
        write_file(path, value, mode, owner)
    return value


def provide(out: Path, admin_password: str, owner: int | None = OWNER_UID) -> list[str]:
    """Write every file; return what it wrote or kept, as ``<dir>/<file>`` names."""
    group = contracts()
    users = access.group_permissions(group)
    internal = [c.name for c in group.values() if access.uses_internal_token(c)]
    passwords = {}
    # One credential for the group: the one a MAD already holds, else a new one.
    held = (_read(out / name / INTERNAL_TOKEN_FILE) for name in internal)
    internal_token = next((value for value in held if value), None) or _new_secret()
    done = []
    for name in sorted(set(users) | set(internal)):
        directory = out / name
        directory.mkdir(parents=True, exist_ok=True)
        if name in users:
            passwords[name] = _kept(directory / PASSWORD_FILE, 0o400, owner)
            done.append(f"{name}/{PASSWORD_FILE}")
        if name in internal:
            path = directory / INTERNAL_TOKEN_FILE
            if _read(path) != internal_token:
                write_file(path, internal_token, 0o400, owner)
            done.append(f"{name}/{INTERNAL_TOKEN_FILE}")
    acl_dir = out / ACL_DIR
    acl_dir.mkdir(parents=True, exist_ok=True)
    write_file(acl_dir / ACL_FILE, access.acl_file(admin_password, passwords, group), 0o444, None)
    done.append(f"{ACL_DIR}/{ACL_FILE}")
    # For Redis's healthcheck (REDISCLI_AUTH from a file): the administrator's password
    # stays out of every container's environment.
    write_file(acl_dir / ADMIN_PASSWORD_FILE, admin_password, 0o400, REDIS_UID)
    done.append(f"{ACL_DIR}/{ADMIN_PASSWORD_FILE}")
    return done


def env_file_values(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file as the guide reads it (the last line of a name wins,
    the value is everything after the first ``=``, like ``cut -d '=' -f2-``)."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, rest = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            values[key.strip()] = rest.strip()
    return values


def admin_password(values: dict[str, str], key: str, where: str) -> str:
    """The administrator's password under ``key``; ValueError (one line, no value) when it
    is missing, or when ``key`` is not the guide's variable and that one holds another."""
    admin = values.get(key, "")
    if not admin:
        raise ValueError(f"{key} is not set in {where} (the administrator's; guide step 1)")
    check_declared(values, {ADMIN_KEY: key}, where)
    return admin


def check_declared(values: dict[str, str], declared: dict[str, str], where: str) -> None:
    """``declared``: variable -> the variable the MadGroup reads that secret from instead.
    ValueError (one line, no value) when ``values`` sets both to different values."""
    for variable, key in declared.items():
        both = variable in values and key in values and variable != key
        if both and values[variable] != values[key]:
            raise ValueError(
                f"{where} sets {variable} and {key} (which the MadGroup declares for it) to "
                f"different values: remove {variable} or give both the same value"
            )


def _declared(specs: list[str]) -> dict[str, str]:
    """``VARIABLE=KEY`` -> {VARIABLE: KEY}; ValueError names a malformed one."""
    found = {}
    for spec in specs:
        variable, sep, key = spec.partition("=")
        if not sep or not variable.isidentifier() or not key.isidentifier():
            raise ValueError(f"--declared {spec!r} is not VARIABLE=KEY")
        found[variable] = key
    return found


def server_owner(server: str) -> int:
    """Who reads a TLS server's key: Redis's user for the bus, the MADs' for a MAD."""
    return REDIS_UID if server == ACL_DIR else OWNER_UID


def provide_tls(out: Path, servers: dict[str, list[str]], *, renew: bool = False) -> list[str]:
    """The CA (``DIR/ca``), each server's certificate in its own folder, and each bus
    user's copy of the CA's certificate."""
    done = tls.ensure(
        out / CA_DIR,
        "madgroup",
        servers,
        renew=renew,
        server_dirs={name: out / name for name in servers},
        owners={name: server_owner(name) for name in servers},
    )
    places = {tls.CA_CERT: CA_DIR, tls.CA_KEY: CA_DIR}
    for name in servers:
        places[tls.cert_file(name)] = places[tls.key_file(name)] = name
    done = [name if "/" in name else f"{places[name]}/{name}" for name in done]
    for user in access.group_permissions(contracts()):
        if tls.copy_ca(out / CA_DIR, out / user, OWNER_UID):
            done.append(f"{user}/{tls.CA_CERT}")
    return done


def _servers(specs: list[str]) -> dict[str, list[str]]:
    """``NAME=HOST,HOST`` -> {NAME: [HOST, HOST]}; ValueError names a malformed one."""
    found = {}
    for spec in specs:
        name, sep, hosts = spec.partition("=")
        listed = [h.strip() for h in hosts.split(",") if h.strip()]
        if not sep or not name.isidentifier() or not listed:
            raise ValueError(f"--tls {spec!r} is not NAME=HOST[,HOST...]")
        found[name] = listed
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mad-bus-users",
        description="Write each MAD's bus password and the group's internal credential "
        "(kept once made) and Redis's ACL file (hashes only) under DIR. The "
        "administrator's password is read from $REDIS_PASSWORD or --env-file.",
    )
    parser.add_argument("dir", type=Path, help="where the files go (one folder per MAD)")
    parser.add_argument(
        "--tls",
        metavar="NAME=HOSTS",
        action="append",
        default=[],
        help="also the group's CA and a TLS certificate for server NAME (its folder) naming "
        "these comma-separated hosts, e.g. redis=redis,localhost,127.0.0.1 (repeatable)",
    )
    parser.add_argument(
        "--renew",
        action="store_true",
        default=os.environ.get("MAD_TLS_RENEW", "").strip() in ("1", "true", "yes"),
        help="with --tls: issue every certificate again (or MAD_TLS_RENEW=1, so the "
        "rendered command stays as it is: docker-compose run -e MAD_TLS_RENEW=1 bus_users)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="read the administrator's REDIS_PASSWORD from this .env file (mounted "
        "read-only) instead of the environment, so no container's environment holds it",
    )
    parser.add_argument(
        "--declared",
        metavar="VARIABLE=KEY",
        action="append",
        default=[],
        help="a secret the MadGroup reads from KEY for VARIABLE: refuse a .env that also "
        "sets VARIABLE to another value (repeatable)",
    )
    parser.add_argument(
        "--admin-key",
        default=ADMIN_KEY,
        metavar="NAME",
        help="the variable holding the administrator's password (default: REDIS_PASSWORD; "
        "a MadGroup's spec.redis.passwordSecretRef names another)",
    )
    args = parser.parse_args(argv)
    if args.renew and not args.tls and "--renew" in (sys.argv[1:] if argv is None else argv):
        print("mad-bus-users: --renew needs --tls", file=sys.stderr)
        return 2
    try:
        servers = _servers(args.tls)
        declared = _declared(args.declared)
    except ValueError as exc:
        print(f"mad-bus-users: {exc}", file=sys.stderr)
        return 2
    values: dict[str, str] = dict(os.environ)
    where = "the environment"
    if args.env_file is not None:
        where = str(args.env_file)
        try:
            values = env_file_values(args.env_file)
        except OSError as exc:
            print(f"mad-bus-users: cannot read {where}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        admin = admin_password(values, args.admin_key, where)
        check_declared(values, declared, where)
    except ValueError as exc:
        print(f"mad-bus-users: {exc}", file=sys.stderr)
        return 2
    try:
        done = provide(args.dir, admin)
        if servers:
            done += provide_tls(args.dir, servers, renew=args.renew)
    except OSError as exc:
        print(f"mad-bus-users: cannot write under {args.dir}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"mad-bus-users: {len(done)} file(s) in place: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
