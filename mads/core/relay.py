"""Tool calls carried over the bus, so that nothing accepted is lost.

A caller (Grace's gateway) appends a request envelope to the owner's Redis Stream
``mad.<owner>.requests``; the owner (:class:`ToolRequestServer`) reads it in a consumer
group, runs the tool, publishes the reply on the ``reply_channel`` the request named
(``correlation_id`` = the request's ``message_id``) and only then acknowledges the entry.
A request appended while the owner is down waits in the stream; one read by an owner that
died before acknowledging is claimed again when it returns.

An owner whose own dependency is down (Fiedler's task store, say) neither reads nor
answers: its ``gate`` holds the reading, and a tool runner that raises :class:`Deferred`
leaves the request unacknowledged in the stream, to be claimed again once it can be
carried out.

Replies are cached for a while under ``mad.<owner>.replies.<message_id>`` so that a request
delivered twice is answered twice but executed once. Tools that must be idempotent across a
crash between running and caching (a call that stores a task, say) read
:data:`current_request_id` and use it as their idempotency key.

The owner also publishes its tool list under ``mad.registry.tools.<owner>`` (a key only its
bus user may write) so a gateway can list the group's tools without calling each MAD.
Replies travel on ``mad.direct.<caller>.<instance>.<owner>``: a channel only that owner
may publish on, so a reply cannot come from anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry.trace import SpanKind

from mads.core import access, channels, tracing
from mads.core.bus import Bus, BusError
from mads.core.envelope import Envelope, EnvelopeError
from mads.core.errors import MadError

GROUP = "owners"
REPLY_TTL_S = 3600

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_request_id", default=None
)

ToolRunner = Callable[[str, dict[str, Any]], Awaitable[tuple[bool, Any]]]
"""Runs a tool by name: returns ``(True, result)`` or ``(False, error message)``, or raises
:class:`Deferred`."""
Gate = Callable[[], Awaitable[None]]
"""Returns once the owner can carry out requests."""


class Deferred(MadError):
    """Raised by a tool runner: the request cannot be carried out now (a dependency of the
    owner is down). It is neither answered nor acknowledged: it stays in the stream and is
    claimed again (``claim_idle_ms``) when the owner can carry it out."""


def reply_cache_key(owner: str, message_id: str) -> str:
    return f"mad.{owner}.replies.{message_id}"


class ToolRequestServer:
    """The owner side: serve ``mad.<owner>.requests``."""

    def __init__(
        self,
        bus: Bus,
        owner: str,
        run_tool: ToolRunner,
        *,
        logger: logging.Logger | None = None,
        concurrency: int = 8,
        claim_idle_ms: int = 30_000,
        gate: Gate | None = None,
    ) -> None:
        self.bus = bus
        self.owner = owner
        self.stream = channels.requests_stream(owner)
        self.run_tool = run_tool
        self.log = logger or logging.getLogger(owner)
        self.consumer = f"{owner}-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle_ms = claim_idle_ms
        self.gate = gate
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._published: tuple[int, bytes] | None = None
        """The tool list as the registry holds it (count, JSON), once :meth:`run` has it."""

    async def keep_tools_published(self) -> None:
        """Publish the tool list when the registry lacks it or holds something else: at
        start, after a Redis that came back without its data, after a FLUSHALL or a stray
        write. Checked before every heartbeat (the owner registers this with
        :meth:`MadService.before_heartbeat`) and on every pass of the serving loop, so an
        owner's heartbeat heard after a wipe means its tools are back. Raises
        :class:`BusError`."""
        if self._published is None:
            return
        count, published = self._published
        key = access.registry_key(self.owner)
        if await self.bus.get(key) != published:
            await self.bus.set(key, published)
            self.log.info("Published %d tool(s) in %s", count, key)

    async def run(self, tools: list[dict[str, Any]] | None = None) -> None:
        """Serve for the life of the process, across bus outages and a wiped Redis."""
        if tools is not None:
            self._published = (len(tools), json.dumps(tools).encode())
        while True:
            await self.bus.wait_connected()
            if self.gate is not None:
                await self.gate()
            try:
                await self.keep_tools_published()
                await self.bus.ensure_group(self.stream, GROUP)
                # What an earlier incarnation read but never acknowledged comes first; an
                # entry this process is still working on is not taken a second time.
                for entry in await self.bus.claim_stale(
                    self.stream, GROUP, self.consumer, min_idle_ms=self.claim_idle_ms, count=100
                ):
                    if entry.entry_id not in self._inflight:
                        await self._dispatch(entry.entry_id, entry.envelope, entry.error)
                for entry in await self.bus.read_group(
                    self.stream, GROUP, self.consumer, count=32, block_ms=1000
                ):
                    await self._dispatch(entry.entry_id, entry.envelope, entry.error)
            except BusError:
                await asyncio.sleep(0.2)
            except Exception:
                self.log.exception("tool request loop failed; retrying")
                await asyncio.sleep(1)

    async def _dispatch(self, entry_id: str, envelope: Envelope | None, error: str | None) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(entry_id, envelope, error))
        self._inflight[entry_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(entry_id, None)
            self._slots.release()

        task.add_done_callback(done)

    async def _handle(self, entry_id: str, envelope: Envelope | None, error: str | None) -> None:
        if envelope is None:
            self.log.warning(
                "Dropping malformed request %s on %s: %s", entry_id, self.stream, error
            )
            await self._ack(entry_id)
            return
        payload = envelope.payload
        tool = payload.get("tool")
        arguments = payload.get("arguments") or {}
        reply_channel = self._reply_channel(envelope)
        cache_key = reply_cache_key(self.owner, envelope.message_id)
        try:
            cached = await self.bus.get(cache_key)
        except BusError:
            return  # the bus went away: the entry stays pending and is claimed again
        if cached is not None:
            reply = json.loads(cached)
        elif not isinstance(tool, str) or not isinstance(arguments, dict):
            reply = {"ok": False, "error": "request needs 'tool' (string) and 'arguments' (object)"}
        else:
            token = current_request_id.set(envelope.message_id)
            try:
                with tracing.continued(envelope.traceparent, f"relay {tool}", SpanKind.CONSUMER):
                    ok, result = await self.run_tool(tool, arguments)
            except Deferred:
                return  # left pending: claimed again once it can be carried out
            finally:
                current_request_id.reset(token)
            reply = {"ok": ok, "result": result if ok else None, "error": None if ok else result}
            try:
                await self.bus.set(cache_key, json.dumps(reply), ex=REPLY_TTL_S)
            except BusError:
                return
        if isinstance(reply_channel, str):
            with contextlib.suppress(BusError, EnvelopeError):
                await self.bus.publish(
                    reply_channel,
                    reply,
                    correlation_id=envelope.message_id,
                    conversation_id=envelope.conversation_id,
                    recipient_id=envelope.sender_id,
                )
        await self._ack(entry_id)

    def _reply_channel(self, envelope: Envelope) -> str | None:
        """Where the caller asked for the reply, if it is one of this owner's reply
        channels for that caller (``mad.direct.<caller>.<instance>.<owner>``)."""
        channel = envelope.payload.get("reply_channel")
        if not isinstance(channel, str):
            return None
        prefix = channels.reply(envelope.sender_id, "", self.owner).removesuffix(f".{self.owner}")
        if channel.startswith(prefix) and channel.endswith(f".{self.owner}"):
            return channel
        self.log.warning(
            "Not answering request %s on %s: its reply channel is not one of %s's",
            envelope.message_id,
            self.stream,
            self.owner,
        )
        return None

    async def _ack(self, entry_id: str) -> None:
        with contextlib.suppress(BusError):
            await self.bus.ack(self.stream, GROUP, entry_id)


class RelayError(MadError):
    pass


class RelayTimeoutError(RelayError, TimeoutError):
    pass


class ToolRelayClient:
    """The caller side: ``await client.call(owner, tool, arguments)``.

    Replies from each of ``owners`` arrive on a channel of their own for this process,
    ``mad.direct.<sender>.<instance>.<owner>``; start :meth:`run` as a background task
    before calling.
    """

    def __init__(self, bus: Bus, owners: Sequence[str], *, request_maxlen: int = 100_000) -> None:
        self.bus = bus
        self.owners = tuple(owners)
        self.instance = uuid.uuid4().hex[:12]
        self.request_maxlen = request_maxlen
        self._waiting: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}

    def reply_channel(self, owner: str) -> str:
        return channels.reply(self.bus.sender_id, self.instance, owner)

    async def run(self) -> None:
        replies = [self.reply_channel(owner) for owner in self.owners]
        async for message in self.bus.messages(channels_=replies):
            envelope = message.envelope
            if envelope is None or envelope.correlation_id is None:
                continue
            waiting = self._waiting.get(envelope.correlation_id)
            if waiting is None or envelope.sender_id != waiting[0]:
                continue  # not ours, or not from the owner it was asked of
            if not waiting[1].done():
                waiting[1].set_result(envelope.payload)

    async def registered_tools(self) -> dict[str, list[dict[str, Any]]]:
        """Each owner's published tool list (an owner that has published none is absent)."""
        if not self.owners:
            return {}
        values = await self.bus.mget([access.registry_key(owner) for owner in self.owners])
        tools: dict[str, list[dict[str, Any]]] = {}
        for owner, value in zip(self.owners, values, strict=True):
            if value is not None:
                with contextlib.suppress(ValueError):
                    tools[owner] = json.loads(value)
        return tools

    async def call(
        self,
        owner: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout: float = 30.0,
        conversation_id: str | None = None,
        give_up: Callable[[float], bool] | None = None,
    ) -> dict[str, Any]:
        """Hand the call to ``owner`` durably and wait for the reply.

        Returns the reply payload ``{"ok", "result", "error"}``. The wait ends at
        ``timeout``, or earlier once ``give_up(seconds waited)`` says so (checked about
        twice a second: an owner known to be down, say). Either way the request stays in
        the owner's stream and is still carried out when the owner returns.
        """
        fields: dict[str, Any] = {}
        if conversation_id:
            fields["conversation_id"] = conversation_id
        traceparent = tracing.current_traceparent()
        if traceparent:
            fields["traceparent"] = traceparent
        if owner not in self.owners:
            raise RelayError(f"{owner} serves no tools over the bus here")
        envelope = self.bus.envelope(
            channels.requests_stream(owner),
            {"tool": tool, "arguments": arguments, "reply_channel": self.reply_channel(owner)},
            recipient_id=owner,
            **fields,
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[envelope.message_id] = (owner, future)
        started = loop.time()
        try:
            await self.bus.stream_append(
                channels.requests_stream(owner), envelope, maxlen=self.request_maxlen
            )
            return await self._reply(owner, envelope.message_id, future, timeout, give_up)
        except TimeoutError:
            waited = min(timeout, loop.time() - started)
            raise RelayTimeoutError(
                f"{owner} did not answer {tool} within {waited:.0f} s; the request is "
                f"queued and will be carried out when {owner} is back"
            ) from None
        finally:
            self._waiting.pop(envelope.message_id, None)

    async def _reply(
        self,
        owner: str,
        message_id: str,
        future: asyncio.Future[dict[str, Any]],
        timeout: float,
        give_up: Callable[[float], bool] | None,
    ) -> dict[str, Any]:
        """The reply from pub/sub, or from the owner's reply cache should the pub/sub
        delivery have been missed (e.g. during a reconnect)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or (give_up is not None and give_up(loop.time() - started)):
                raise TimeoutError
            try:
                return await asyncio.wait_for(asyncio.shield(future), min(0.5, remaining))
            except TimeoutError:
                with contextlib.suppress(BusError, ValueError):
                    cached = await self.bus.get(reply_cache_key(owner, message_id))
                    if cached is not None:
                        return dict(json.loads(cached))
