"""Who may do what on the Conversation Bus: each MAD's Redis ACL user, and the check that a
received message's ``sender_id`` is one its sender could have used.

A MAD's permissions are what the core does for every MAD on the bus — watch the connection
(``PING``, ``INFO``), publish its heartbeat on ``mad.system.heartbeat.<name>``, serve its
tools over ``mad.<name>.requests`` or call other MADs' tools — plus what its contract's
:class:`~mads.core.contract.BusAccess` declares. Nothing is listed by hand anywhere else.

Channel permissions are split (an ACL selector): the user's own rules allow subscribing to
what it listens to, a selector allows ``PUBLISH`` on what it publishes, and no more. Since
each channel a MAD publishes on belongs to it (its heartbeat, its replies, its task
status...), a message naming a MAD as sender on a channel that MAD may not publish on was
sent by someone else: :class:`SenderPolicy` finds it, and the bus drops it.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mads.core import channels
from mads.core.contract import MadContract

ADMIN_USER = "default"
"""The administrator: the guide's ``REDIS_PASSWORD``, every command."""
WATCH_COMMANDS = ("ping", "info")
"""The connection watcher's: ``INFO server`` tells a Redis restart from a quiet second."""
SUBSCRIBE_COMMANDS = ("subscribe", "psubscribe", "unsubscribe", "punsubscribe")
SERVE_COMMANDS = (
    *("xgroup|create", "xreadgroup", "xautoclaim", "xack", "get", "mget", "set", "exists"),
    # replies written as one transaction per batch; acknowledged entries trimmed
    *("multi", "exec", "discard", "xlen", "xinfo|groups", "xpending", "xtrim"),
)
CALL_COMMANDS = (
    *("get", "mget", "evalsha", "script|load"),
    # inside the append script: the backlog check, then the append
    *("exists", "xlen", "xinfo|groups", "xrange", "xadd"),
)
ADMIN_COMMANDS = (
    "flushall",
    "flushdb",
    "config",
    "debug",
    "keys",
    "acl",
    "shutdown",
    "module",
    "script|flush",
    "monitor",
    "replicaof",
    "save",
    "bgsave",
    "client|kill",
)
"""What no MAD may run (a test proves each is refused for every MAD's user)."""


def registry_key(owner: str) -> str:
    """Where ``owner`` publishes its tool list: one key per owner, so only it can write it."""
    return f"mad.registry.tools.{owner}"


def password_variable(user: str) -> str:
    """The variable that holds a MAD's own bus password where one place keeps them all
    (``.env`` locally, the Redis pod's environment on Kubernetes): ``GRACE_BUS_PASSWORD``."""
    return f"{user.upper()}_BUS_PASSWORD"


def reply_cache(owner: str) -> str:
    return f"mad.{owner}.replies.*"


@dataclass(frozen=True)
class Permissions:
    """One MAD's bus user."""

    user: str
    commands: tuple[str, ...]
    """Besides PUBLISH (only in the publishing selector)."""
    keys: tuple[str, ...]
    """Read and written."""
    read_keys: tuple[str, ...]
    write_keys: tuple[str, ...]
    subscribes: tuple[str, ...]
    publishes: tuple[str, ...]

    def may_publish(self, channel: str) -> bool:
        return any(fnmatch.fnmatchcase(channel, pattern) for pattern in self.publishes)

    def acl_rule(self, password_sha256: str) -> str:
        """The ``user`` line of an ACL file (the password as its SHA-256, never itself)."""
        return f"user {self.user} on #{password_sha256} {self.rules()}"

    def rules(self) -> str:
        """What the user may do: everything on its ACL line after the password."""
        parts = ["resetkeys resetchannels -@all"]
        parts += [f"+{command}" for command in self.commands]
        parts += [f"~{key}" for key in self.keys]
        parts += [f"%R~{key}" for key in self.read_keys]
        parts += [f"%W~{key}" for key in self.write_keys]
        parts += [f"&{channel}" for channel in self.subscribes]
        if self.publishes:
            publish = " ".join(f"&{channel}" for channel in self.publishes)
            parts.append(f"(+publish resetchannels {publish})")
        return " ".join(parts)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def permissions(contract: MadContract, group: Mapping[str, MadContract]) -> Permissions | None:
    """``contract``'s bus user, given every MAD of the ``group`` (whose tools it may call,
    who calls its tools); None for a MAD that does not use the bus."""
    if not contract.uses_bus:
        return None
    access = contract.bus
    on_bus = [c for c in group.values() if c.uses_bus]
    commands = [*WATCH_COMMANDS, *access.commands]
    keys = list(access.keys)
    read_keys: list[str] = []
    write_keys: list[str] = []
    subscribes = list(access.subscribes)
    publishes = [channels.heartbeat(contract.name), *access.publishes]
    if access.serves_tools:
        commands += SERVE_COMMANDS
        keys += [channels.requests_stream(contract.name), reply_cache(contract.name)]
        keys.append(registry_key(contract.name))
        callers = [c.name for c in on_bus if c.bus.calls_tools and c.name != contract.name]
        publishes += [channels.reply(caller, "*", contract.name) for caller in callers]
    if access.calls_tools:
        commands += CALL_COMMANDS
        owners = [c.name for c in on_bus if c.bus.serves_tools and c.name != contract.name]
        keys += [channels.requests_stream(owner) for owner in owners]  # backlog, append
        read_keys += [reply_cache(owner) for owner in owners]
        read_keys += [registry_key(owner) for owner in owners]
        subscribes += [channels.reply(contract.name, "*", owner) for owner in owners]
    if subscribes:
        commands += SUBSCRIBE_COMMANDS
    return Permissions(
        user=contract.name,
        commands=_unique(commands),
        keys=_unique(keys),
        read_keys=_unique(k for k in read_keys if k not in keys),
        write_keys=_unique(k for k in write_keys if k not in keys),
        subscribes=_unique(subscribes),
        publishes=_unique(publishes),
    )


def group_permissions(group: Mapping[str, MadContract]) -> dict[str, Permissions]:
    """Every bus user of the group, by MAD name."""
    found = {}
    for name, contract in group.items():
        perms = permissions(contract, group)
        if perms is not None:
            found[name] = perms
    return found


def uses_internal_token(contract: MadContract) -> bool:
    """Whether a MAD holds the group's internal credential: every MAD behind the front door
    (it requires it) and every MAD that calls a peer over MCP (it presents it)."""
    return not contract.exposed or bool(contract.peers)


def password_sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def admin_rule(password: str) -> str:
    return f"user {ADMIN_USER} on #{password_sha256(password)} ~* &* +@all"


def acl_file(
    admin_password: str,
    passwords: Mapping[str, str],
    group: Mapping[str, MadContract],
) -> str:
    """The whole ACL file: the administrator, then one user per MAD on the bus (every one
    of them needs its password in ``passwords``). Passwords appear hashed only."""
    lines = [admin_rule(admin_password)]
    for name, perms in group_permissions(group).items():
        lines.append(perms.acl_rule(password_sha256(passwords[name])))
    return "\n".join(lines) + "\n"


def acl_script(group: Mapping[str, MadContract], path: str) -> str:
    """A POSIX ``sh`` script that writes :func:`acl_file` to ``path`` from the passwords in
    its environment (``$REDIS_PASSWORD``, each ``$<MAD>_BUS_PASSWORD``), for a Redis
    container, which has a shell and ``sha256sum`` but no Python. A password reaches
    ``sha256sum`` on its standard input, never on a command line."""

    def line(user: str, variable: str, rules: str) -> str:
        assert "'" not in rules
        return f"""printf '%s #%s %s\\n' 'user {user} on' "$(sha "${variable}")" '{rules}'"""

    script = [
        "set -eu",
        "umask 077",
        """sha() { printf '%s' "$1" | sha256sum | cut -d ' ' -f 1; }""",
    ]
    users = group_permissions(group)
    variables = ["REDIS_PASSWORD", *(password_variable(u) for u in users)]
    script += [f': "${{{v}:?{v} is not set}}"' for v in variables]
    body = [line(ADMIN_USER, "REDIS_PASSWORD", "~* &* +@all")]
    body += [line(u, password_variable(u), perms.rules()) for u, perms in users.items()]
    script.append("{")
    script += [f"  {b}" for b in body]
    script.append(f"}} > '{path}.tmp'")
    script.append(f"mv '{path}.tmp' '{path}'")
    return "\n".join(script) + "\n"


class SenderPolicy:
    """Whether a message naming ``sender_id`` could have come from that MAD's bus user.

    Only MADs' names are protected: a sender that names no MAD of the group (a test client,
    the administrator) cannot be impersonating one."""

    def __init__(self, group: Mapping[str, MadContract]) -> None:
        self._perms = group_permissions(group)

    def allows(self, sender_id: str, channel: str) -> bool:
        perms = self._perms.get(sender_id)
        return perms is None or perms.may_publish(channel)

    def may_write(self, sender_id: str, stream: str) -> bool:
        """For a stream entry: whether ``sender_id``'s user may append to ``stream``."""
        perms = self._perms.get(sender_id)
        if perms is None:
            return True
        writable = (*perms.keys, *perms.write_keys)
        return any(fnmatch.fnmatchcase(stream, pattern) for pattern in writable)
