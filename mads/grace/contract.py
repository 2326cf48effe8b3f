"""Grace's contract: the front door, the one service outside clients reach. It relays them
onto the bus and offers them the group's tools, behind bearer tokens."""

from __future__ import annotations

from mads.core import channels
from mads.core.contract import BusAccess, MadContract

NAME = "grace"
TOKENS_VARIABLE = "GRACE_API_TOKENS"
TOKENS_FILE_VARIABLE = "GRACE_TOKENS_FILE"
"""Where Grace reads its named, scoped tokens (hashes only; see mads.grace.tokens)."""
OAUTH_VARIABLES = {
    "issuer": "GRACE_OAUTH_ISSUER",
    "resource": "GRACE_OAUTH_RESOURCE",
    "audience": "GRACE_OAUTH_AUDIENCE",
    "scopes_file": "GRACE_OAUTH_SCOPES_FILE",
    "static_tokens": "GRACE_STATIC_TOKENS",
    "introspection_url": "GRACE_OAUTH_INTROSPECTION_URL",
    "introspection_client_id": "GRACE_OAUTH_INTROSPECTION_CLIENT_ID",
    "introspection_client_secret": "GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET",
}
"""What makes Grace an OAuth 2.1 resource server (the scopes file maps OAuth scopes onto
Grace's own: :mod:`mads.grace.scope_file`; the introspection client secret is a secret)."""

CONTRACT = MadContract(
    name=NAME,
    port=8001,
    banner="GraceV0",
    service="mads.grace.service:build",
    description="The front door: relays outside clients onto the bus.",
    tools=("grace_send_message", "grace_subscribe", "grace_poll_messages"),
    bus=BusAccess(
        # Outside clients' messages, always sent as grace.
        publishes=(channels.TOPICS, channels.DIRECT),
        # Liveness of the MADs it routes to; the fan-out to outside clients (one pattern,
        # matched against each client's topics here).
        subscribes=(channels.HEARTBEATS, channels.ALL),
        # Outside clients' subscriptions and buffers, the fan-out lease.
        keys=("mad.grace.*",),
        commands=(
            *("get", "set", "hget", "hset", "hgetall", "hdel", "multi", "exec", "discard"),
            *("evalsha", "script|load"),
            # inside its Lua scripts (buffers, the lease)
            *("rpush", "ltrim", "lrange", "llen", "incrby", "getdel", "expire", "pexpire"),
        ),
        calls_tools=True,
    ),
    secrets=(TOKENS_VARIABLE, OAUTH_VARIABLES["introspection_client_secret"]),
    client_token_variable=TOKENS_VARIABLE,
    exposed=True,
)
