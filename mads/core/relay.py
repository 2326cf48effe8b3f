"""Tool calls carried over the bus, so that nothing accepted is lost.

A caller (Grace's gateway) appends a request envelope to the owner's Redis Stream
``mad.<owner>.requests``; the owner (:class:`ToolRequestServer`) reads it in a consumer
group, runs the tool, publishes the reply on the ``reply_channel`` the request named
(``correlation_id`` = the request's ``message_id``) and only then acknowledges the entry.
A request appended while the owner is down waits in the stream; one read by an owner that
died before acknowledging is claimed again when it returns.

The stream is bounded without dropping anything: a caller appends only while fewer than
its backlog limit of requests wait unhandled in it (delivered or not; one Lua script
checks and appends the requests ready at that moment, in order, atomically), and is
otherwise told the owner is busy (:class:`RelayBusyError`); the owner trims what it has
acknowledged, never what it has not.

The owner works on up to ``concurrency`` requests at once (by default as many as its HTTP
edge admits, so a relayed call is never throttled below a direct one). It reads as many
entries as it has room for, looks up their cached replies in one round trip, and writes
the replies that are ready together — cache, publish and acknowledgement in one
transaction per batch. A caller that says so in its requests (``"replies": "batched"``, as
:class:`ToolRelayClient` does) gets the replies of a batch in one message on its reply
channel, ``{"replies": {request id: reply JSON}}`` — the JSON the cache holds, encoded
once; any other gets one message per reply, ``correlation_id`` = the request's id.

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
may publish on, so a reply cannot come from anyone else. A caller's waiting calls cost it
memory only: no call polls or holds a timer; one housekeeping task ends the calls whose
time is up (checked twice a second) and, after the reply subscription was (re)made and
every few seconds for calls that have waited that long, reads the replies it may have
missed from the cache, many in one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter

from mads.core import access, channels, tracing
from mads.core.bus import ENVELOPE_FIELD, Bus, BusError, BusUnavailableError, StreamEntry
from mads.core.envelope import Envelope, EnvelopeError, encode
from mads.core.errors import MadError

GROUP = "owners"
REPLY_TTL_S = 3600
DEFAULT_CONCURRENCY = 256
"""Relayed requests an owner works on at once when it is not told (``MAD_MAX_INFLIGHT``'s
default: what its HTTP edge admits)."""
DEFAULT_BACKLOG = 100_000
"""Requests that may wait unhandled in an owner's stream before callers are told it is
busy, when the caller is not told otherwise."""
READ_BATCH = 256
"""The most entries read (or claimed) in one round trip."""
REPLY_BATCH = 256
"""The most replies written in one transaction."""
CLAIM_EVERY_S = 1.0
PUBLISH_CHECK_S = 1.0
"""How often the serving loop checks the tool list is still published."""
TRIM_EVERY_S = 10.0
KEEP_HANDLED = 1_000
"""Acknowledged requests left in a stream before the owner trims them."""
CHECK_S = 0.5
"""How often a caller checks its waiting calls' deadlines."""
SWEEP_S = 5.0
"""How long a call waits for its reply on pub/sub before the reply cache is read for it."""
SWEEP_BATCH = 500

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


BATCHED = "batched"
"""What a request's ``replies`` field says when its caller takes many replies in one
message (:class:`ToolRelayClient` does); a request without it is answered alone."""
REPLIES_MARGIN = 1024
"""Room left in a message of replies for the envelope's own fields."""


@dataclass(frozen=True)
class _Answer:
    """The reply to one request, for the caller that asked: ``text`` is the reply as JSON
    (what the cache holds too)."""

    channel: str
    request: Envelope
    text: str

    @property
    def batched(self) -> bool:
        return self.request.payload.get("replies") == BATCHED

    @property
    def size(self) -> int:
        """About what it adds to a message of replies (the text escaped as a string)."""
        text = self.text
        return len(text) + text.count('"') + text.count("\\") + len(self.request.message_id) + 8


@dataclass
class _Reply:
    """What the owner writes for one handled entry: the reply to cache (None when it came
    from the cache), the answer to publish (None when there is no one to answer), and the
    acknowledgement."""

    entry_id: str
    cache: tuple[str, str] | None
    answer: _Answer | None
    written: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ToolRequestServer:
    """The owner side: serve ``mad.<owner>.requests``."""

    def __init__(
        self,
        bus: Bus,
        owner: str,
        run_tool: ToolRunner,
        *,
        logger: logging.Logger | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        claim_idle_ms: int = 30_000,
        gate: Gate | None = None,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.bus = bus
        self.owner = owner
        self.stream = channels.requests_stream(owner)
        self.run_tool = run_tool
        self.log = logger or logging.getLogger(owner)
        self.consumer = f"{owner}-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle_ms = claim_idle_ms
        self.gate = gate
        self.concurrency = concurrency
        self._free = concurrency
        self._freed = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._replies: asyncio.Queue[_Reply] = asyncio.Queue()
        self._group_ready = False
        self._next_claim = 0.0
        self._next_trim = 0.0
        self._next_publish_check = 0.0
        self._published: tuple[int, bytes] | None = None
        """The tool list as the registry holds it (count, JSON), once :meth:`run` has it."""
        self._tool_names: frozenset[str] = frozenset()
        self.calls = Counter(
            "mad_relayed_calls",
            "Tool calls relayed to this MAD over the bus and carried out, by tool (a repeat "
            "answered from the reply cache is not counted)",
            ["tool"],
            registry=metrics if metrics is not None else CollectorRegistry(),
        )

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
            self._tool_names = frozenset(str(t.get("name")) for t in tools)
        writer = asyncio.create_task(self._write_replies(), name=f"{self.owner}-relay-replies")
        try:
            while True:
                await self._serve_once()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _serve_once(self) -> None:
        await self.bus.wait_connected()
        if self.gate is not None:
            await self.gate()
        try:
            now = asyncio.get_running_loop().time()
            if now >= self._next_publish_check:
                self._next_publish_check = now + PUBLISH_CHECK_S
                await self.keep_tools_published()
            if not self._group_ready:
                await self.bus.ensure_group(self.stream, GROUP)
                self._group_ready = True
            now = asyncio.get_running_loop().time()
            if now >= self._next_claim:
                # What an earlier incarnation (or another replica) read but never
                # acknowledged; an entry this process is still working on is not taken
                # a second time.
                self._next_claim = now + CLAIM_EVERY_S
                await self._room()
                stale = await self.bus.claim_stale(
                    self.stream,
                    GROUP,
                    self.consumer,
                    min_idle_ms=self.claim_idle_ms,
                    count=min(self._free, READ_BATCH),
                )
                self._start(e for e in stale if e.entry_id not in self._inflight)
            if now >= self._next_trim:
                self._next_trim = now + TRIM_EVERY_S
                await self._trim_handled()
            await self._room()
            self._start(
                await self.bus.read_group(
                    self.stream, GROUP, self.consumer, count=min(self._free, READ_BATCH)
                )
            )
        except BusError:
            self._group_ready = False
            await asyncio.sleep(0.2)
        except Exception:
            self.log.exception("tool request loop failed; retrying")
            await asyncio.sleep(1)

    async def _room(self) -> None:
        """Until at least one more request can be worked on."""
        while self._free <= 0:
            self._freed.clear()
            await self._freed.wait()

    def _start(self, entries: Iterable[StreamEntry]) -> None:
        """Start working on ``entries``; their cached replies are read in one round trip
        while the next entries are read (a request delivered again is answered from
        there)."""
        batch = list(entries)
        if not batch:
            return
        lookup = asyncio.ensure_future(self._cached_replies(batch))
        for entry in batch:
            task = asyncio.create_task(self._handle(entry, lookup))
            self._free -= 1
            self._inflight[entry.entry_id] = task
            task.add_done_callback(functools.partial(self._done, entry.entry_id))

    async def _cached_replies(self, batch: list[StreamEntry]) -> dict[str, bytes | None]:
        ids = [e.envelope.message_id for e in batch if e.envelope is not None]
        found = await self.bus.mget([reply_cache_key(self.owner, i) for i in ids]) if ids else []
        return dict(zip(ids, found, strict=True))

    def _done(self, entry_id: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(entry_id, None)
        if not task.cancelled() and task.exception() is not None:
            self.log.error(
                "Relayed request %s failed; it stays pending and is taken up again",
                entry_id,
                exc_info=task.exception(),
            )
        self._free += 1
        self._freed.set()

    async def _handle(
        self, entry: StreamEntry, lookup: asyncio.Future[dict[str, bytes | None]]
    ) -> None:
        envelope = entry.envelope
        try:
            cached = (await lookup).get(envelope.message_id) if envelope is not None else None
        except BusError:
            return  # left pending: claimed again, and its cached reply looked for then
        if envelope is None:
            self.log.warning(
                "Dropping malformed request %s on %s: %s", entry.entry_id, self.stream, entry.error
            )
            await self._write(_Reply(entry.entry_id, None, None))
            return
        payload = envelope.payload
        tool = payload.get("tool")
        arguments = payload.get("arguments") or {}
        cache_key = reply_cache_key(self.owner, envelope.message_id)
        to_cache: tuple[str, str] | None = None
        if cached is not None:
            text = cached.decode()
        elif not isinstance(tool, str) or not isinstance(arguments, dict):
            text = json.dumps(
                {"ok": False, "error": "request needs 'tool' (string) and 'arguments' (object)"}
            )
            to_cache = (cache_key, text)
        else:
            token = current_request_id.set(envelope.message_id)
            try:
                with tracing.continued(envelope.traceparent, f"relay {tool}", SpanKind.CONSUMER):
                    ok, result = await self.run_tool(tool, arguments)
            except Deferred:
                return  # left pending: claimed again once it can be carried out
            finally:
                current_request_id.reset(token)
            self.calls.labels(tool=tool if tool in self._tool_names else "other").inc()
            text = json.dumps(
                {"ok": ok, "result": result if ok else None, "error": None if ok else result}
            )
            to_cache = (cache_key, text)
        channel = self._reply_channel(envelope)
        answer = _Answer(channel, envelope, text) if channel is not None else None
        await self._write(_Reply(entry.entry_id, to_cache, answer))

    def _messages(self, answers: list[_Answer]) -> list[tuple[str, bytes]]:
        """The messages that carry ``answers``: one per reply channel for callers that take
        replies together (split to stay under the bus's message limit), one per reply for
        the others. A reply over the limit is not published: its caller reads it from the
        cache."""
        messages: list[tuple[str, bytes]] = []
        together: dict[str, list[_Answer]] = {}
        for answer in answers:
            if answer.batched:
                together.setdefault(answer.channel, []).append(answer)
            else:
                messages += self._encoded(answer.channel, [answer])
        room = self.bus.max_message_bytes - REPLIES_MARGIN
        for channel, waiting in together.items():
            chunk: list[_Answer] = []
            used = 0
            for answer in waiting:
                if chunk and used + answer.size > room:
                    messages += self._encoded(channel, chunk)
                    chunk, used = [], 0
                chunk.append(answer)
                used += answer.size
            messages += self._encoded(channel, chunk)
        return messages

    def _encoded(self, channel: str, answers: list[_Answer]) -> list[tuple[str, bytes]]:
        """``answers`` (all for one caller) in one message: ``{"replies": {request id:
        reply JSON}}``, or for one that did not ask for that, the reply itself as the
        payload with ``correlation_id`` = the request's id. Split when over the limit."""
        first = answers[0].request
        try:
            if answers[0].batched:
                payload = {"replies": {a.request.message_id: a.text for a in answers}}
                message = self.bus.envelope(channel, payload, recipient_id=first.sender_id)
            else:
                message = self.bus.envelope(
                    channel,
                    json.loads(answers[0].text),
                    correlation_id=first.message_id,
                    conversation_id=first.conversation_id,
                    recipient_id=first.sender_id,
                )
            return [(channel, encode(message, self.bus.max_message_bytes))]
        except EnvelopeError:
            if len(answers) == 1:
                return []
            half = len(answers) // 2
            return self._encoded(channel, answers[:half]) + self._encoded(channel, answers[half:])

    async def _write(self, reply: _Reply) -> None:
        """Hand ``reply`` to the writer and wait until it is written (or could not be: the
        entry then stays pending and is claimed again)."""
        self._replies.put_nowait(reply)
        await reply.written

    async def _write_replies(self) -> None:
        """Write the replies that are ready, a batch per transaction: each cached, then
        published (a message per caller), then every entry acknowledged — never
        acknowledged unless cached."""
        while True:
            batch = [await self._replies.get()]
            await asyncio.sleep(0)  # the replies made in this same turn of the loop come along
            while len(batch) < REPLY_BATCH and not self._replies.empty():
                batch.append(self._replies.get_nowait())
            commands: list[tuple[Any, ...]] = [
                ("SET", key, value, "EX", REPLY_TTL_S)
                for key, value in (r.cache for r in batch if r.cache is not None)
            ]
            commands += [
                ("PUBLISH", channel, data)
                for channel, data in self._messages([r.answer for r in batch if r.answer])
            ]
            commands.append(("XACK", self.stream, GROUP, *(r.entry_id for r in batch)))
            try:
                await self.bus.pipeline(commands, transaction=True)
                written = True
            except BusError as exc:
                written = False
                self.log.warning(
                    "Could not write %d relay repl%s (%s); the requests stay pending and are "
                    "taken up again",
                    len(batch),
                    "y" if len(batch) == 1 else "ies",
                    exc,
                )
            for reply in batch:
                if not reply.written.done():
                    reply.written.set_result(written)

    async def _trim_handled(self) -> None:
        """Drop acknowledged entries once more than :data:`KEEP_HANDLED` have gathered:
        everything older than the oldest entry not yet acknowledged (or not yet read)."""
        backlog = await self.bus.stream_backlog(self.stream, GROUP)
        handled = backlog.handled
        if handled is None or handled <= KEEP_HANDLED or backlog.last_delivered is None:
            return
        oldest = backlog.first_pending or backlog.last_delivered
        trimmed = await self.bus.trim_before(self.stream, oldest)
        if trimmed:
            self.log.debug("Trimmed %d handled request(s) from %s", trimmed, self.stream)

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


class RelayError(MadError):
    pass


class RelayTimeoutError(RelayError, TimeoutError):
    pass


class RelayBusyError(RelayError):
    """The owner's stream holds its backlog limit of unhandled requests: this one was not
    queued. Retry later."""

    retry_after_s = 5.0


APPEND = """
local limit = tonumber(ARGV[1])
local backlog = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  backlog = redis.call('XLEN', KEYS[1])
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == ARGV[2] then
      if info['lag'] then
        backlog = info['lag'] + info['pending']
      else
        local unread = redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+',
          'COUNT', limit)
        backlog = #unread + info['pending']
      end
    end
  end
end
local appended = {backlog}
for i = 4, #ARGV do
  if backlog >= limit then break end
  appended[#appended + 1] = redis.call('XADD', KEYS[1], '*', ARGV[3], ARGV[i])
  backlog = backlog + 1
end
appended[1] = backlog
return appended
"""
"""Append ARGV[4], ARGV[5], ... (encoded envelopes, field ARGV[3]) to stream KEYS[1] in
order while fewer than ARGV[1] requests wait unhandled in it for consumer group ARGV[2]:
entries not yet delivered (the group's lag, or counted past its last delivered id when
Redis cannot tell) plus entries delivered and not acknowledged; with no group yet, every
entry. Returns ``{backlog after, id of each appended}``: those past the ids were refused."""
APPEND_BYTES = 4 * 1024 * 1024
"""The most request bytes handed to one run of :data:`APPEND` (the rest go in the next run
of the same round trip)."""


@dataclass
class _Waiting:
    owner: str
    future: asyncio.Future[dict[str, Any]]
    started: float
    deadline: float
    give_up: Callable[[float], bool] | None

    def over(self, now: float) -> bool:
        """Whether the call stops waiting: its time is up, or its owner is given up on."""
        return now >= self.deadline or (
            self.give_up is not None and self.give_up(now - self.started)
        )


@dataclass
class _Append:
    owner: str
    data: bytes
    done: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ToolRelayClient:
    """The caller side: ``await client.call(owner, tool, arguments)``.

    Replies from each of ``owners`` arrive on a channel of their own for this process,
    ``mad.direct.<sender>.<instance>.<owner>``; start :meth:`run` as a background task
    before calling. At most ``backlog_limit`` requests wait unhandled in an owner's stream;
    past that a call is refused with :class:`RelayBusyError` and nothing is queued.
    """

    def __init__(
        self, bus: Bus, owners: Sequence[str], *, backlog_limit: int = DEFAULT_BACKLOG
    ) -> None:
        self.bus = bus
        self.owners = tuple(owners)
        self.instance = uuid.uuid4().hex[:12]
        self.backlog_limit = backlog_limit
        self._waiting: dict[str, _Waiting] = {}
        self._appends: asyncio.Queue[_Append] = asyncio.Queue()
        self._append_script = bus.script(APPEND)
        self._sweep_all = asyncio.Event()

    def reply_channel(self, owner: str) -> str:
        return channels.reply(self.bus.sender_id, self.instance, owner)

    @property
    def waiting(self) -> int:
        """Calls waiting for their reply."""
        return len(self._waiting)

    async def run(self) -> None:
        """Take replies, append requests, keep the waiting calls' deadlines."""
        helpers = [
            asyncio.create_task(self._append_requests(), name="relay-appends"),
            asyncio.create_task(self._keep_waiting(), name="relay-waiting"),
        ]
        try:
            await self._take_replies()
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            while not self._appends.empty():  # no one will append them now
                append = self._appends.get_nowait()
                if not append.done.done():
                    append.done.set_exception(BusUnavailableError("the relay has stopped"))

    async def _take_replies(self) -> None:
        replies = [self.reply_channel(owner) for owner in self.owners]
        async for message in self.bus.messages(channels_=replies, subscribed=self._sweep_all.set):
            envelope = message.envelope
            if envelope is None:
                continue
            if envelope.correlation_id is not None:  # one reply, from an owner of old
                self._answered(envelope.correlation_id, envelope.sender_id, envelope.payload)
                continue
            together = envelope.payload.get("replies")
            if isinstance(together, dict):
                for request_id, text in together.items():
                    self._answered(request_id, envelope.sender_id, text)

    def _answered(self, request_id: str, sender: str, reply: dict[str, Any] | Any) -> None:
        """Hand ``reply`` (a payload, or its JSON text) to the call waiting for it, if it
        came from the owner that call asked."""
        waiting = self._waiting.get(request_id)
        if waiting is None or sender != waiting.owner or waiting.future.done():
            return  # not ours, or not from the owner it was asked of
        if isinstance(reply, str):
            try:
                reply = json.loads(reply)
            except ValueError:
                return
        if isinstance(reply, dict):
            waiting.future.set_result(reply)

    async def _keep_waiting(self) -> None:
        """End the calls whose owner is given up on; read from the reply cache what may
        have been missed: every call's after the reply subscription was (re)made, and the
        reply of each call that has waited :data:`SWEEP_S` since it was last looked for."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + SWEEP_S
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_S):
                    await self._sweep_all.wait()
            now = loop.time()
            for waiting in list(self._waiting.values()):
                if not waiting.future.done() and waiting.over(now):
                    waiting.future.set_exception(TimeoutError())
            if self._sweep_all.is_set():
                self._sweep_all.clear()
                await self._sweep(list(self._waiting.items()))
            elif now >= next_sweep:
                next_sweep = now + SWEEP_S
                await self._sweep(
                    [(i, w) for i, w in self._waiting.items() if now - w.started >= SWEEP_S]
                )

    async def _sweep(self, calls: list[tuple[str, _Waiting]]) -> None:
        for start in range(0, len(calls), SWEEP_BATCH):
            batch = [(i, w) for i, w in calls[start : start + SWEEP_BATCH] if not w.future.done()]
            if not batch:
                continue
            try:
                found = await self.bus.mget([reply_cache_key(w.owner, i) for i, w in batch])
            except BusError:
                return
            for (_i, waiting), cached in zip(batch, found, strict=True):
                if cached is None or waiting.future.done():
                    continue
                with contextlib.suppress(ValueError):
                    waiting.future.set_result(dict(json.loads(cached)))

    async def _append_requests(self) -> None:
        """Append the requests that are ready, many per round trip: one run of the backlog
        check per owner and chunk, appending in order until the owner's limit."""
        while True:
            batch = [await self._appends.get()]
            try:
                await asyncio.sleep(0)  # the calls made in this same turn of the loop come along
                while len(batch) < READ_BATCH and not self._appends.empty():
                    batch.append(self._appends.get_nowait())
                runs = _runs(batch)
                calls = [
                    (
                        [channels.requests_stream(run[0].owner)],
                        [self.backlog_limit, GROUP, ENVELOPE_FIELD, *(a.data for a in run)],
                    )
                    for run in runs
                ]
                outcomes = await self._append_script.many(calls)
            except BusError as exc:
                for append in batch:
                    if not append.done.done():
                        append.done.set_exception(exc)
                continue
            except BaseException:  # stopped mid-way: the callers must not wait forever
                for append in batch:
                    if not append.done.done():
                        append.done.set_exception(
                            BusUnavailableError("the relay stopped while handing the call over")
                        )
                raise
            for run, outcome in zip(runs, outcomes, strict=True):
                self._appended(run, outcome)

    @staticmethod
    def _appended(run: list[_Append], outcome: Any) -> None:
        """Tell each call of ``run`` whether its request was queued (its entry id), refused
        as busy, or not handed over (``outcome`` is Redis's error)."""
        if isinstance(outcome, BusError):
            for append in run:
                if not append.done.done():
                    append.done.set_exception(outcome)
            return
        backlog, ids = int(outcome[0]), list(outcome[1:])
        for i, append in enumerate(run):
            if append.done.done():
                continue
            if i < len(ids):
                append.done.set_result(_text(ids[i]))
            else:
                append.done.set_exception(
                    RelayBusyError(
                        f"busy: {backlog:,} requests wait for {append.owner}, the most its "
                        f"queue holds; this call was not queued: retry after "
                        f"{RelayBusyError.retry_after_s:.0f} s"
                    )
                )

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
        ``timeout``, or earlier once ``give_up(seconds waited)`` says so (both checked about
        twice a second: an owner known to be down, say). Either way the request stays in
        the owner's stream and is still carried out when the owner returns. Raises
        :class:`RelayBusyError` when the owner's stream is full (nothing was queued),
        :class:`EnvelopeError` for a request over the bus's message limit and
        :class:`BusError` when it could not be handed over.
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
            {
                "tool": tool,
                "arguments": arguments,
                "reply_channel": self.reply_channel(owner),
                "replies": BATCHED,
            },
            recipient_id=owner,
            **fields,
        )
        append = _Append(owner, encode(envelope, self.bus.max_message_bytes))
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiting = _Waiting(owner, loop.create_future(), started, started + timeout, give_up)
        self._waiting[envelope.message_id] = waiting
        try:
            self._appends.put_nowait(append)
            # Shielded: an append under way is never half taken back. The bus's own
            # timeouts bound it; the wait for the reply is ended by the housekeeping task
            # (no timer per call).
            await asyncio.shield(append.done)
            return await waiting.future
        except TimeoutError:
            waited = min(timeout, loop.time() - started)
            raise RelayTimeoutError(
                f"{owner} did not answer {tool} within {waited:.0f} s; the request is "
                f"queued and will be carried out when {owner} is back"
            ) from None
        finally:
            self._waiting.pop(envelope.message_id, None)
            if not waiting.future.done():
                waiting.future.cancel()


def _runs(batch: list[_Append]) -> list[list[_Append]]:
    """``batch`` grouped by owner, in order, each group cut at :data:`APPEND_BYTES`."""
    runs: list[list[_Append]] = []
    open_runs: dict[str, tuple[list[_Append], int]] = {}
    for append in batch:
        run, size = open_runs.get(append.owner, ([], 0))
        if run and size + len(append.data) > APPEND_BYTES:
            run, size = [], 0
        if not run:
            runs.append(run)
        run.append(append)
        open_runs[append.owner] = (run, size + len(append.data))
    return runs


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
