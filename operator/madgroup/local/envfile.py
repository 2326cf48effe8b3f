"""``.env``: read it (the compose ``env_file`` syntax), and create it (``madgroup init``).

Errors never quote a line's value: ``.env`` holds the Redis password.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from madgroup.errors import UsageError

PASSWORD_KEY = "REDIS_PASSWORD"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class EnvFileError(UsageError, ValueError):
    """A problem with ``.env``, as one line that never contains a secret."""


def parse(text: str, source: str = ".env") -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped; an optional ``export``;
    values may be single- or double-quoted; unquoted values end at `` #``. Last one wins."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise EnvFileError(f"{source} line {number} is not KEY=VALUE (fix or remove that line)")
        values[key] = _value(value.strip(), source, number)
    return values


def _value(value: str, source: str, number: int) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if end < 0:
            raise EnvFileError(f"{source} line {number} has an unterminated {quote} quote")
        return value[1:end]
    comment = value.find(" #")
    if comment >= 0:
        value = value[:comment]
    return value.rstrip()


def load(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EnvFileError(f"{path} does not exist; create it with: madgroup init") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"{path} is not a UTF-8 text file") from None
    return parse(text, source=path.name)


def require_password(values: dict[str, str], source: str = ".env", key: str = PASSWORD_KEY) -> str:
    """The administrator's password, kept under ``key``: the guide's ``REDIS_PASSWORD``, or
    the variable a MadGroup's ``spec.redis.passwordSecretRef`` names."""
    fix = (
        "with: madgroup init"
        if key == PASSWORD_KEY
        else "to the administrator's password (spec.redis.passwordSecretRef names it)"
    )
    if key not in values:
        raise EnvFileError(f"{key} is not set in {source}; add it {fix}")
    password = values[key]
    if not password:
        raise EnvFileError(f"{key} in {source} is empty; fill it in {fix}")
    if any(ch.isspace() for ch in password):
        raise EnvFileError(f"{key} in {source} contains whitespace; use another one")
    return password


def new_password() -> str:
    """Like the guide's ``openssl rand -base64 24``: 24 CSPRNG bytes, base64 (no ``=``)."""
    return base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def init(
    env_path: Path,
    example_path: Path,
    bus_passwords: Mapping[str, str] | None = None,
    internal_token: str | None = None,
    admin_key: str = PASSWORD_KEY,
) -> str:
    """Create or complete ``.env``; return what was done (never a password).

    Fills in ``REDIS_PASSWORD`` (the administrator's; ``admin_key`` when a declaration
    keeps it under another name) and each MAD's bus password
    (``bus_passwords``: each bus user's ``.env`` variable, ``GRACE_BUS_PASSWORD``...)
    and the group's internal credential (``internal_token``, the variable) where missing or
    empty; an existing
    non-empty one is never replaced.
    """
    created = False
    if env_path.exists():
        text = env_path.read_text()
        parse(text, source=env_path.name)
    else:
        if not example_path.exists():
            raise EnvFileError(
                f"neither {env_path.name} nor {example_path.name} exists in {env_path.parent}"
            )
        text = example_path.read_text()
        parse(text, source=example_path.name)
        created = True
    lines = text.splitlines()
    added: list[str] = []
    users = dict(bus_passwords or {})
    extra = (internal_token,) if internal_token else ()
    for key in (admin_key, *users.values(), *extra):
        if _fill(lines, key):
            added.append(key)
    origin = f"created {env_path.name} from {example_path.name}" if created else None
    if not added:
        if created:
            _write_private(env_path, text)
            return f"{origin} (mode 0600)"
        tightened = _tighten(env_path)
        note = "; permissions tightened to 0600" if tightened else ""
        has = f"{admin_key} and the other secrets" if users else f"a {admin_key}"
        return f"{env_path.name} already has {has}; left unchanged{note}"
    _write_private(env_path, "\n".join(lines) + "\n")
    what = _describe(added, users, admin_key)
    return f"{origin or f'updated {env_path.name}'} with {what} (mode 0600)"


def _fill(lines: list[str], key: str) -> bool:
    """Give ``key`` a new random value if it is missing or empty; whether it did."""
    line = f"{key}={new_password()}"
    pattern = re.compile(rf"\s*(export\s+)?{key}\s*=(.*)\Z")
    found = False
    for i, existing in enumerate(lines):
        match = pattern.match(existing)
        if match is None:
            continue
        found = True
        if _value(match.group(2).strip(), "", 0):
            return False
        lines[i] = line
        return True
    if not found:
        lines.append(line)
    return True


def _describe(added: list[str], users: Mapping[str, str], admin_key: str) -> str:
    parts = []
    if admin_key in added:
        parts.append(f"a new random {admin_key}")
    new_users = [user for user, key in users.items() if key in added]
    if new_users:
        parts.append(f"new bus passwords for {', '.join(new_users)}")
    others = [key for key in added if key != admin_key and key not in users.values()]
    if others:
        parts.append(f"a new {', '.join(others)}")
    return " and ".join(parts)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _tighten(path: Path) -> bool:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(0o600)
        return True
    return False
