"""The MCP gateway: Grace offers the group's tools (``fiedler_*``, ``rogers_*`` ...) to
outside MCP clients and relays each call over the bus to the MAD that owns it.

It is an MCP server middleware: ``tools/list`` gets the tools the owners published in
``mad.registry.tools`` appended to Grace's own (read at every listing, so the list stays
current as MADs come and go); ``tools/call`` for such a tool goes through
:class:`~mads.core.relay.ToolRelayClient` — a durable request in ``mad.<owner>.requests``,
the reply matched by correlation id. A call that times out stays queued and is carried out
when the owner returns. Grace also listens to heartbeats so that a timeout can say whether
the owner is down.

Each tool goes to the owner that published it; a tool the registry lacks (a wiped Redis
before its owner published again) goes to the MAD whose contract declares it, so a tool
whose owner is alive is never "unknown". An owner heard on its heartbeat but missing from
the cached registry makes Grace read the registry again: owners publish their tools before
each heartbeat, so the listing is whole again by the first heartbeat after a wipe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.types import CallToolResult, ListToolsResult, TextContent, Tool
from pydantic import ValidationError

from mads.core import channels
from mads.core.arguments import error_result
from mads.core.bus import Bus, BusError
from mads.core.envelope import EnvelopeError
from mads.core.logs import quoted
from mads.core.registry import contracts
from mads.core.relay import DEFAULT_BACKLOG, RelayBusyError, RelayTimeoutError, ToolRelayClient

REGISTRY_CACHE_S = 1.0
BUSY_LOG_EVERY_S = 60.0

Relay = Callable[[], Awaitable[CallToolResult]]
"""Relays one call as it came and returns the owner's answer."""
Keeper = Callable[[str, dict[str, Any], Relay], Awaitable[CallToolResult]]
"""Answers a call of one tool (its owner, its arguments): with an answer the owner already
gave and that still holds, else by relaying it."""


class Liveness:
    """When each MAD was last heard on its ``mad.system.heartbeat.<name>``."""

    def __init__(self, bus: Bus, heartbeat_s: float) -> None:
        self.bus = bus
        self.heartbeat_s = heartbeat_s
        self._last: dict[str, float] = {}

    async def run(self) -> None:
        async for message in self.bus.messages(patterns=[channels.HEARTBEATS]):
            if message.envelope is not None and len(self._last) < 10_000:
                self._last[message.envelope.sender_id] = time.monotonic()

    def silent_for(self, mad_id: str) -> float | None:
        last = self._last.get(mad_id)
        return None if last is None else time.monotonic() - last

    @property
    def down_patience_s(self) -> float:
        """How long a call waits for an owner that is down: long enough for a restart
        (an owner back within it is waited for, and answers), two heartbeat periods and
        never under 5 s."""
        return max(5.0, 2 * self.heartbeat_s)

    def is_down(self, mad_id: str) -> bool:
        silent = self.silent_for(mad_id)
        return silent is None or silent > 3 * self.heartbeat_s


class Gateway:
    def __init__(
        self,
        bus: Bus,
        own_name: str,
        timeout_s: float,
        liveness: Liveness,
        logger: logging.Logger,
        *,
        backlog_limit: int = DEFAULT_BACKLOG,
    ) -> None:
        self.bus = bus
        self.own_name = own_name
        self.timeout_s = timeout_s
        self.liveness = liveness
        self.log = logger
        installed = contracts()
        serving = [c for c in installed.values() if c.bus.serves_tools and c.name != own_name]
        self.own_tools = frozenset(installed[own_name].tools) if own_name in installed else None
        self.declared = {tool: c.name for c in serving for tool in c.tools}
        """Tool name -> the owner whose contract declares it."""
        self.client = ToolRelayClient(bus, [c.name for c in serving], backlog_limit=backlog_limit)
        self._cache: dict[str, tuple[str, Tool]] = {}
        self._listed: set[str] = set()
        """The owners in :attr:`_cache`."""
        self._owners = frozenset(self.declared.values())
        self._busy_logged: dict[str, float] = {}
        self._keepers: dict[str, Keeper] = {}
        self._cached_at = float("-inf")

    async def run(self) -> None:
        await self.client.run()

    async def remote_tools(self, fresh: bool = False) -> dict[str, tuple[str, Tool]]:
        """``tool name -> (owner, definition)`` for every tool another MAD published under
        its own name (entries that are not valid tool definitions are skipped; a name two
        owners claim goes to the first in name order). Raises :class:`BusError`."""
        if fresh or time.monotonic() - self._cached_at > REGISTRY_CACHE_S or self._missing():
            tools: dict[str, tuple[str, Tool]] = {}
            registered = await self.client.registered_tools()
            for owner, definitions in sorted(registered.items()):
                if owner == self.own_name or not isinstance(definitions, list):
                    continue
                for definition in definitions:
                    name = definition.get("name") if isinstance(definition, dict) else None
                    if isinstance(name, str) and name not in tools:
                        with contextlib.suppress(ValidationError):
                            tools[name] = (owner, Tool.model_validate(definition))
            self._cache = tools
            self._listed = {owner for owner, _tool in tools.values()}
            self._cached_at = time.monotonic()
        return self._cache

    def _missing(self) -> bool:
        """Whether an owner heard on its heartbeat has tools the cached registry lacks."""
        if self._owners <= self._listed:
            return False
        return any(
            owner not in self._listed and not self.liveness.is_down(owner) for owner in self._owners
        )

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Server middleware on Grace's MCP server."""
        if ctx.method == "tools/list":
            result = await call_next(ctx)
            return await self._extend_listing(result)
        if ctx.method == "tools/call" and isinstance(ctx.params, dict):
            name = ctx.params.get("name")
            if isinstance(name, str) and not self._is_own(name):
                try:
                    owner = await self._owner_of(name)
                except BusError as exc:
                    # Never "Unknown tool" because the registry could not be read.
                    return error_result(f"cannot look up {name}: {exc}")
                if owner is not None:
                    arguments = ctx.params.get("arguments")
                    return await self.answer(owner, name, {} if arguments is None else arguments)
        return await call_next(ctx)

    def forwards(self, name: str) -> bool:
        """Whether a plain ``tools/call`` of ``name`` is relayed: a tool another MAD's
        contract declares (so it always has an owner to go to)."""
        return name in self.declared and not self._is_own(name)

    async def forward(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """What :meth:`__call__` answers for a plain call of a tool :meth:`forwards`."""
        try:
            owner = await self._owner_of(name)
        except BusError as exc:
            return error_result(f"cannot look up {name}: {exc}")
        return await self.answer(owner or self.declared[name], name, arguments)

    def keep_answers(self, tool: str, keeper: Keeper) -> None:
        """Let ``keeper`` answer the calls of ``tool`` (an owner's task status tool, whose
        answers hold until the owner publishes a change)."""
        self._keepers[tool] = keeper

    async def answer(self, owner: str, name: str, arguments: Any) -> CallToolResult:
        """An outside client's call of another MAD's tool: relayed, or for a tool whose
        answers are kept, given again while the owner's last answer holds."""
        keeper = self._keepers.get(name)
        if keeper is None or not isinstance(arguments, dict):
            return await self.relay(owner, name, arguments)
        return await keeper(owner, arguments, lambda: self.relay(owner, name, arguments))

    def _is_own(self, name: str) -> bool:
        if self.own_tools is None:  # no contract installed for this gateway: by its prefix
            return name.startswith(f"{self.own_name}_")
        return name in self.own_tools

    async def _owner_of(self, name: str) -> str | None:
        """Who published ``name`` in the registry, else whose contract declares it."""
        if time.monotonic() - self._cached_at <= REGISTRY_CACHE_S and name in self._cache:
            return self._cache[name][0]  # listed a moment ago: no need to look further
        found = (await self.remote_tools()).get(name)
        if found is None:
            found = (await self.remote_tools(fresh=True)).get(name)
        return found[0] if found else self.declared.get(name)

    async def _extend_listing(self, result: Any) -> Any:
        """Append the remote tools to a ``tools/list`` result (a model or, as the SDK hands
        it to middleware, its wire dict)."""
        try:
            remote = {name: tool for name, (_owner, tool) in (await self.remote_tools()).items()}
        except BusError:
            return result
        if isinstance(result, ListToolsResult):
            own = {tool.name for tool in result.tools}
            extra = [tool for name, tool in sorted(remote.items()) if name not in own]
            return result.model_copy(update={"tools": [*result.tools, *extra]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            names = {tool.get("name") for tool in result["tools"] if isinstance(tool, dict)}
            listed = [
                tool.model_dump(by_alias=True, exclude_none=True, mode="json")
                for name, tool in sorted(remote.items())
                if name not in names
            ]
            return {**result, "tools": [*result["tools"], *listed]}
        return result

    async def relay(self, owner: str, name: str, arguments: Any) -> CallToolResult:
        if not isinstance(arguments, dict):
            return error_result(f"invalid arguments for {name}: arguments must be a JSON object")
        try:
            reply = await self.client.call(
                owner, name, arguments, timeout=self.timeout_s, give_up=self._owner_gone(owner)
            )
        except EnvelopeError as exc:  # over the bus's message limit, say: said once, here
            self.log.warning("Refused to relay %s to %s: %s", quoted(name), owner, exc)
            return error_result(f"cannot relay {name}: {exc}")
        except RelayBusyError as exc:  # nothing queued: the caller is to come back
            self._log_busy(owner, exc)
            return error_result(f"cannot relay {name}: {exc}")
        except RelayTimeoutError as exc:
            message = str(exc)
            silent = self.liveness.silent_for(owner)
            if self.liveness.is_down(owner):
                heard = "never heard" if silent is None else f"no heartbeat for {silent:.0f} s"
                message = f"{owner} is down ({heard}); {message}"
            self.log.warning("Relay of %s to %s timed out", name, owner)
            return error_result(message)
        except BusError as exc:  # busy (retry shortly) or unavailable: never "unknown tool"
            return error_result(f"cannot relay {name}: {exc}")
        if not reply.get("ok"):
            return error_result(str(reply.get("error") or f"{name} failed on {owner}"))
        return success_result(reply.get("result"))

    def _log_busy(self, owner: str, exc: RelayBusyError) -> None:
        """Say once a minute per owner that calls are refused as busy, not once a call."""
        now = time.monotonic()
        if now - self._busy_logged.get(owner, float("-inf")) >= BUSY_LOG_EVERY_S:
            self._busy_logged[owner] = now
            self.log.warning("Refusing calls to %s until its queue drains: %s", owner, exc)

    def _owner_gone(self, owner: str) -> Callable[[float], bool]:
        """When a relayed call stops waiting before the timeout: once it has waited
        :attr:`Liveness.down_patience_s` for an owner that is still down (not heard for
        three heartbeat periods), rather than the whole timeout for an answer that cannot
        come. An owner heard again in the meantime is waited for to the end."""
        patience = min(self.timeout_s, self.liveness.down_patience_s)
        return lambda waited: waited >= patience and self.liveness.is_down(owner)


def success_result(result: Any) -> CallToolResult:
    """A relayed tool's result as Grace answers it: the owner's result as text, and as
    structured content when it is an object."""
    text = result if isinstance(result, str) else json.dumps(result)
    structured = result if isinstance(result, dict) else None
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured
    )
