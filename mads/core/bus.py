"""The Conversation Bus client over ``redis.asyncio``: the only code that talks to Redis.

One :class:`Bus` per MAD process. Commands share a bounded pool: when every connection is
busy a command waits for one (up to ``pool_timeout_s``) and then fails with
:class:`BusBusyError` — back-pressure, not an outage. Subscriptions made for outside
clients (``for_client``: one per client following a task's stream) share a second bounded
pool (``max_subscriptions``, a connection each; one more waits until one is free, said
once in the log); the MAD's own few subscriptions have a pool of their own, so clients can
never take the connections the MAD listens with; and the connection watcher has a
connection of its own, so a busy pool never makes the bus look down and never starves a
subscription. The bus reconnects with capped exponential
backoff when Redis goes away (``connected`` is observable the whole time and nothing raises
into the caller's task), publishes envelopes, yields subscriptions as async iterators that
survive reconnects, and wraps the hash, string, stream, pipeline and script commands the
MADs use.
Every Redis failure reaches callers as one of the :class:`BusError` kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from mads.core import channels
from mads.core.access import SenderPolicy
from mads.core.contract import BUS_CONNECTED_LOG, DEFAULT_BUS_NAME
from mads.core.envelope import Envelope, EnvelopeError, decode, encode, make_envelope
from mads.core.errors import BusBusyError, BusCommandError, BusError, BusUnavailableError
from mads.core.logs import FirstTime, quoted
from mads.core.settings import DEFAULT_MAX_MESSAGE_BYTES

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
ENVELOPE_FIELD = "envelope"
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_POOL_TIMEOUT_S = 5.0
DEFAULT_MAX_SUBSCRIPTIONS = 64
DEFAULT_CONNECTED_LOG = BUS_CONNECTED_LOG.format(bus=DEFAULT_BUS_NAME)
OWN_SUBSCRIPTIONS = 16
"""Connections for a MAD's own subscriptions (a fixed few per MAD: Grace has four)."""

__all__ = [
    "Bus",
    "BusBusyError",
    "BusCommandError",
    "BusError",
    "BusMessage",
    "BusUnavailableError",
    "StreamBacklog",
    "StreamEntry",
    "heartbeat_loop",
]


class _PoolExhaustedError(RedisError):
    """No connection came free within the pool's timeout."""


class _BoundedPool(aioredis.BlockingConnectionPool):
    """A blocking pool that tells "every connection is busy" apart from "Redis is down"
    (redis-py reports both as ConnectionError)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise _PoolExhaustedError(
                    f"all {self.max_connections} connections to Redis are busy"
                ) from None
            raise


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter."""

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0

    def delays(self) -> AsyncIterator[float]:
        async def gen() -> AsyncIterator[float]:
            delay = self.initial
            while True:
                yield delay * (0.8 + 0.4 * random.random())
                delay = min(delay * self.factor, self.maximum)

        return gen()


@dataclass(frozen=True)
class BusMessage:
    """One pub/sub delivery: the envelope, or the reason it is not a valid one."""

    channel: str
    pattern: str | None
    raw: bytes
    envelope: Envelope | None
    error: str | None


@dataclass(frozen=True)
class StreamBacklog:
    """A stream as one consumer group sees it."""

    length: int
    lag: int | None
    """Entries not yet delivered to the group (None: Redis cannot tell, after deletions)."""
    pending: int
    """Entries delivered and not yet acknowledged."""
    last_delivered: str | None
    first_pending: str | None

    @property
    def handled(self) -> int | None:
        """Acknowledged entries still in the stream, when Redis can tell."""
        return None if self.lag is None else self.length - self.lag - self.pending


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    envelope: Envelope | None
    error: str | None


class Bus:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        password: str,
        sender_id: str,
        username: str | None = None,
        senders: SenderPolicy | None = None,
        logger: logging.Logger | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        backoff: Backoff | None = None,
        check_interval: float = 1.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
        tls_ca_file: str | None = None,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        connected_log: str = DEFAULT_CONNECTED_LOG,
    ) -> None:
        self.sender_id = sender_id
        self.connected_log = connected_log
        """Logged on every (re)connect: the line the deployment guide looks for, in the
        group's name for its bus (:func:`mads.core.registry.bus_connected_log`)."""
        self.max_message_bytes = max_message_bytes
        self.log = logger or logging.getLogger(sender_id)
        self._backoff = backoff or Backoff()
        self._check_interval = check_interval
        self.senders = senders
        self.sender_mismatches = 0
        """Messages dropped because they named a MAD as sender that could not have sent
        them (see :class:`mads.core.access.SenderPolicy`)."""
        self._first_mismatch = FirstTime(limit=1000)
        connection: dict[str, Any] = {
            "host": host,
            "port": port,
            "username": username,
            "password": password,
            # Nothing but what the bus user is allowed: no CLIENT SETINFO, no CLIENT
            # MAINT_NOTIFICATIONS on connect (a least-privilege user may not run CLIENT).
            "driver_info": None,
            "maint_notifications_config": MaintNotificationsConfig(enabled=False),
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
            "health_check_interval": 10,
            # One immediate retry on a fresh connection (a restarted Redis leaves stale ones
            # in the pool). No backoff sleep inside redis-py: with one, a task cancelled
            # while its command was being retried could stay stuck, never finishing.
            "retry": Retry(NoBackoff(), retries=1),
        }
        if tls_ca_file is not None:
            # rediss://: the server's certificate is verified against the group's CA and
            # must name the host connected to.
            connection.update(
                ssl_ca_certs=tls_ca_file, ssl_cert_reqs="required", ssl_check_hostname=True
            )
            connection_class: type[aioredis.Connection] = aioredis.SSLConnection
        else:
            connection_class = aioredis.Connection
        self._redis = aioredis.Redis(
            connection_pool=_BoundedPool(
                max_connections=max_connections,
                timeout=pool_timeout_s,
                connection_class=connection_class,
                **connection,
            )
        )
        # The subscriptions, a connection each, never queued behind busy commands: the
        # MAD's own, and those made for outside clients (a client of Grace following a
        # task holds one while it follows), each pool bounded, neither taking the other's.
        self._subscriptions = aioredis.Redis(
            connection_pool=_BoundedPool(
                max_connections=OWN_SUBSCRIPTIONS,
                timeout=pool_timeout_s,
                connection_class=connection_class,
                **connection,
            )
        )
        self._client_subscriptions = aioredis.Redis(
            connection_pool=_BoundedPool(
                max_connections=max_subscriptions,
                timeout=pool_timeout_s,
                connection_class=connection_class,
                **connection,
            )
        )
        self._max_subscriptions = max_subscriptions
        self._first_pool_wait = FirstTime(limit=2)  # said once per pool
        # The watcher: one connection, so neither pool being full makes the bus look down.
        self._watcher = aioredis.Redis(
            connection_pool=aioredis.ConnectionPool(
                max_connections=1, connection_class=connection_class, **connection
            )
        )
        self._connected = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None
        self.reconnects = 0
        self.last_error: str | None = None

    # -- connection state ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name=f"bus-watch-{self.sender_id}")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        self._connected.clear()
        await self._redis.aclose()
        await self._subscriptions.aclose()
        await self._client_subscriptions.aclose()
        await self._watcher.aclose()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def mark_down(self, exc: BaseException) -> None:
        """Record a failed command; the watcher takes it from there."""
        if self._connected.is_set():
            self._connected.clear()
            self.last_error = _describe(exc)
            self.log.warning("Lost connection to the Conversation Bus (Redis): %s", self.last_error)

    async def _watch(self) -> None:
        """Ping forever; (re)connect with backoff; log every successful (re)connect."""
        delays = self._backoff.delays()
        first = True
        run_id: str | None = None
        while True:
            try:
                # The server's run_id tells a restart apart from a quiet second: the client
                # reconnects under the hood, so a quick restart raises nothing here.
                server_run_id = str((await self._watcher.info("server")).get("run_id", ""))
            except (*CONNECTION_ERRORS, RedisError) as exc:
                reason = _describe(exc)
                if self._connected.is_set():
                    self.mark_down(exc)
                elif first or reason != self.last_error:
                    self.log.warning(
                        "Cannot reach the Conversation Bus (Redis): %s; retrying", reason
                    )
                self.last_error = reason
                first = False
                await asyncio.sleep(await anext(delays))
                continue
            restarted = run_id is not None and server_run_id != run_id
            run_id = server_run_id
            if not self._connected.is_set() or restarted:
                if not first:
                    self.reconnects += 1
                self._connected.set()
                self.last_error = None
                self.log.info(self.connected_log)
                delays = self._backoff.delays()
            first = False
            await asyncio.sleep(self._check_interval)

    # -- pub/sub ---------------------------------------------------------------------------

    def envelope(
        self, channel: str, payload: dict[str, Any] | None = None, **fields: Any
    ) -> Envelope:
        fields.setdefault("sender_id", self.sender_id)
        return make_envelope(channel=channel, payload=payload, **fields)

    async def publish(
        self, channel: str, payload: dict[str, Any] | None = None, **fields: Any
    ) -> Envelope:
        """Publish an envelope built from the arguments; returns it.

        Raises :class:`EnvelopeError` for an invalid or oversized message and
        :class:`BusUnavailableError` while Redis is unreachable.
        """
        envelope = self.envelope(channel, payload, **fields)
        await self.publish_envelope(envelope)
        return envelope

    async def publish_envelope(self, envelope: Envelope) -> int:
        data = encode(envelope, self.max_message_bytes)
        return int(await self._call(self._redis.publish(envelope.channel, data)))

    async def messages(
        self,
        channels_: Sequence[str] = (),
        patterns: Sequence[str] = (),
        *,
        for_client: bool = False,
        subscribed: Callable[[], None] | None = None,
    ) -> AsyncIterator[BusMessage]:
        """Yield every delivery on ``channels_`` and ``patterns``, across reconnects.

        Messages published while Redis was down are gone (pub/sub is fire-and-forget); use
        streams for what must not be lost. A subscription Redis refuses (NOPERM) raises
        :class:`BusCommandError`; an outage or a busy pool is waited out. ``for_client``:
        made on an outside client's behalf, so from the pool clients share
        (``max_subscriptions``), never from the one the MAD listens with. ``subscribed`` is
        called each time the subscription is (re)made: whatever was published before that
        moment (while it was down, say) was not heard.
        """
        if not channels_ and not patterns:
            raise ValueError("subscribe to at least one channel or pattern")
        redis = self._client_subscriptions if for_client else self._subscriptions
        remade = _Remade(subscribed) if subscribed is not None else None
        while True:
            await self._connected.wait()
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                if channels_:
                    await pubsub.subscribe(*channels_)
                if patterns:
                    await pubsub.psubscribe(*patterns)
                if remade is not None:
                    remade.on_connect(pubsub.connection)
                    # redis-py subscribes again by itself on a new connection, unseen here
                    if pubsub.connection is not None:
                        pubsub.connection.register_connect_callback(remade.on_connect)
                while True:
                    self._refuse_after_swallowed_cancel()
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        received = self._to_bus_message(message)
                        if received is not None:
                            yield received
            except _PoolExhaustedError:
                self._say_pool_full(for_client)
                await asyncio.sleep(self._check_interval)  # back-pressure: subscribe again
            except CONNECTION_ERRORS as exc:
                self.mark_down(exc)
            except RedisError as exc:  # NOPERM on a channel, say: the caller's to answer
                raise BusCommandError(
                    f"Conversation Bus refused a subscription: {_describe(exc)}"
                ) from exc
            finally:
                if remade is not None and pubsub.connection is not None:
                    pubsub.connection.deregister_connect_callback(remade.on_connect)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _say_pool_full(self, for_client: bool) -> None:
        """Say once per pool that a subscription waits for a connection (it is retried)."""
        if not self._first_pool_wait(for_client):
            return
        if for_client:
            self.log.warning(
                "All %d connections for clients' subscriptions are in use "
                "(REDIS_MAX_SUBSCRIPTIONS): a further client's subscription waits for one",
                self._max_subscriptions,
            )
        else:
            self.log.warning(
                "All %d connections for this MAD's own subscriptions are in use: a further "
                "one waits for one",
                OWN_SUBSCRIPTIONS,
            )

    def _to_bus_message(self, message: dict[str, Any]) -> BusMessage | None:
        """The delivery as a message, or None when it is dropped as a forged sender."""
        raw = message.get("data") or b""
        if isinstance(raw, str):
            raw = raw.encode()
        channel = _text(message.get("channel"))
        pattern = _text(message.get("pattern")) if message.get("pattern") else None
        try:
            envelope = decode(raw, self.max_message_bytes)
        except EnvelopeError as exc:
            return BusMessage(channel, pattern, raw, None, str(exc))
        if self.senders is not None and not self.senders.allows(envelope.sender_id, channel):
            self._mismatch(envelope.sender_id, channel, "published on")
            return None
        return BusMessage(channel, pattern, raw, envelope, None)

    def _mismatch(self, sender_id: str, where: str, how: str) -> None:
        """Count a forged sender; say so once per sender and channel family."""
        self.sender_mismatches += 1
        family = where.rsplit(".", 1)[0] if where.count(".") > 2 else where
        if not self._first_mismatch((sender_id, family)):
            return
        self.log.warning(
            "Dropped a message claiming sender %s %s %s, which %s may not write: forged "
            "sender; further ones are counted (mad_bus_sender_mismatches), not logged",
            quoted(sender_id),
            how,
            quoted(where),
            quoted(sender_id),
        )

    # -- streams ---------------------------------------------------------------------------

    async def _call(self, coro: Any) -> Any:
        """Await one Redis operation; map its failure to the bus's errors."""
        try:
            return await coro
        except _PoolExhaustedError as exc:
            raise BusBusyError(f"Conversation Bus busy: {exc}; retry shortly") from None
        except CONNECTION_ERRORS as exc:
            self.mark_down(exc)
            raise BusUnavailableError(f"Conversation Bus unavailable: {_describe(exc)}") from None
        except RedisError as exc:
            raise BusCommandError(f"Conversation Bus refused a command: {_describe(exc)}") from exc

    @staticmethod
    def _refuse_after_swallowed_cancel() -> None:
        """Raise the cancellation of the current task if one was requested and lost.

        On Python 3.11, ``asyncio.wait_for`` (which redis-py uses to send a command) drops
        a cancellation that arrives as the send completes; a serving loop would then block
        in its next read forever, holding up a shutdown. Checked before every command that
        blocks on the server."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError

    # -- the server ------------------------------------------------------------------------

    # -- keys, hashes, pipelines, scripts ---------------------------------------------------

    async def info(self, section: str) -> dict[str, Any]:
        """One section of the server's ``INFO`` (every MAD's user may run it)."""
        return dict(await self._call(self._redis.info(section)))

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await self._call(self._redis.mget(list(keys))))

    async def exists(self, key: str) -> bool:
        return bool(await self._call(self._redis.exists(key)))

    async def get(self, key: str) -> bytes | None:
        return await self._call(self._redis.get(key))  # type: ignore[no-any-return]

    async def set(self, key: str, value: bytes | str, *, ex: int | None = None) -> None:
        await self._call(self._redis.set(key, value, ex=ex))

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self._call(self._redis.hget(key, field))  # type: ignore[no-any-return]

    async def hset(self, key: str, field: str, value: bytes | str) -> None:
        await self._call(self._redis.hset(key, field, value))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        raw = await self._call(self._redis.hgetall(key))
        return {_text(k): v for k, v in raw.items()}

    async def hdel(self, key: str, *fields: str) -> int:
        return int(await self._call(self._redis.hdel(key, *fields))) if fields else 0

    async def pipeline(
        self, commands: Sequence[tuple[Any, ...]], *, transaction: bool = False
    ) -> list[Any]:
        """Run ``commands`` (``("HSET", key, field, value)``, ...) in one round trip;
        ``transaction`` makes it MULTI/EXEC."""

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

        return list(await self._call(run()))

    def script(self, source: str) -> BusScript:
        """A Lua script, run atomically by Redis (EVALSHA, loaded on first use)."""
        return BusScript(self, self._redis.register_script(source))

    async def stream_append(
        self, stream: str, envelope: Envelope, *, maxlen: int | None = None
    ) -> str:
        data = encode(envelope, self.max_message_bytes)
        entry_id = await self._call(
            self._redis.xadd(stream, {ENVELOPE_FIELD: data}, maxlen=maxlen, approximate=True)
        )
        return _text(entry_id)

    async def stream_backlog(self, stream: str, group: str) -> StreamBacklog:
        """How much of ``stream`` ``group`` has yet to handle (``XINFO GROUPS``, ``XLEN``,
        ``XPENDING``). A stream or group that does not exist has handled nothing."""

        async def read() -> StreamBacklog:
            length = int(await self._redis.xlen(stream))
            try:
                groups = await self._redis.xinfo_groups(stream)
            except RedisError as exc:
                if "no such key" not in str(exc).lower():
                    raise
                groups = []
            found = next((g for g in groups if _text(g.get("name")) == group), None)
            if found is None:
                return StreamBacklog(length, length, 0, None, None)
            pending = int(found.get("pending") or 0)
            lag = found.get("lag")
            first = None
            if pending:
                summary = await self._redis.xpending(stream, group)
                first = _text(summary.get("min")) or None
            return StreamBacklog(
                length,
                None if lag is None else int(lag),
                pending,
                _text(found.get("last-delivered-id")) or None,
                first,
            )

        return await self._call(read())  # type: ignore[no-any-return]

    async def trim_before(self, stream: str, min_id: str) -> int:
        """Drop the entries of ``stream`` older than ``min_id`` (whole internal nodes only:
        cheap, and a few older ones may stay); returns how many went."""
        return int(await self._call(self._redis.xtrim(stream, minid=min_id, approximate=True)))

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            await self._call(self._redis.xgroup_create(stream, group, id="0", mkstream=True))
        except BusCommandError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 10,
        block_ms: int = 1000,
    ) -> list[StreamEntry]:
        """Entries not yet delivered to any consumer of ``group`` (claim the others)."""
        try:
            self._refuse_after_swallowed_cancel()
            reply = await self._call(
                self._redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
            )
        except BusCommandError as exc:
            if "NOGROUP" in str(exc):
                await self.ensure_group(stream, group)
                return []
            raise
        entries: list[StreamEntry] = []
        for _name, items in reply or []:
            entries.extend(self._to_entry(stream, entry_id, fields) for entry_id, fields in items)
        return entries

    async def ack(self, stream: str, group: str, *entry_ids: str) -> int:
        if not entry_ids:
            return 0
        return int(await self._call(self._redis.xack(stream, group, *entry_ids)))

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[StreamEntry]:
        """Take over entries another consumer read but never acknowledged."""
        reply = await self._call(
            self._redis.xautoclaim(
                stream, group, consumer, min_idle_ms, start_id="0-0", count=count
            )
        )
        items = reply[1] if reply else []
        return [self._to_entry(stream, entry_id, fields) for entry_id, fields in items if fields]

    def _to_entry(self, stream: str, entry_id: Any, fields: dict[Any, Any] | None) -> StreamEntry:
        """An entry; a forged sender comes back without its envelope, with the reason (the
        reader acknowledges it like any entry it cannot use)."""
        raw = (fields or {}).get(ENVELOPE_FIELD.encode()) or (fields or {}).get(ENVELOPE_FIELD)
        if raw is None:
            return StreamEntry(_text(entry_id), None, "stream entry has no envelope field")
        try:
            envelope = decode(raw, self.max_message_bytes)
        except EnvelopeError as exc:
            return StreamEntry(_text(entry_id), None, str(exc))
        if self.senders is not None and not self.senders.may_write(envelope.sender_id, stream):
            self._mismatch(envelope.sender_id, stream, "appended to")
            return StreamEntry(_text(entry_id), None, "forged sender")
        return StreamEntry(_text(entry_id), envelope, None)


class _Remade:
    """Says a subscription was (re)made: by :meth:`Bus.messages`, or by redis-py on a new
    connection (a connect callback, which redis-py keeps as a weak method)."""

    def __init__(self, subscribed: Callable[[], None]) -> None:
        self.subscribed = subscribed

    def on_connect(self, _connection: Any) -> None:
        self.subscribed()


class BusScript:
    def __init__(self, bus: Bus, script: Any) -> None:
        self._bus = bus
        self._script = script

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._bus._call(self._script(keys=list(keys), args=list(args)))

    async def many(self, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run the script once per ``(keys, args)`` in one round trip (each run atomic on its
        own). Returns each run's result, or the :class:`BusCommandError` Redis answered it
        with; an unreachable or busy bus raises for the whole batch."""
        redis = self._bus._redis
        sha, source = self._script.sha, self._script.script

        async def run(todo: list[int]) -> dict[int, Any]:
            async with redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    keys, args = calls[i]
                    pipe.evalsha(sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            return dict(zip(todo, replies, strict=True))

        async def all_runs() -> list[Any]:
            done = await run(list(range(len(calls))))
            unloaded = [i for i, reply in done.items() if isinstance(reply, NoScriptError)]
            if unloaded:  # a Redis that restarted, or a SCRIPT FLUSH: load it, then again
                await redis.script_load(source)
                done.update(await run(unloaded))
            return [
                BusCommandError(f"Conversation Bus refused a command: {_describe(reply)}")
                if isinstance(reply, RedisError)
                else reply
                for _i, reply in sorted(done.items())
            ]

        if not calls:
            return []
        return list(await self._bus._call(all_runs()))


async def heartbeat_loop(
    bus: Bus,
    period: float,
    payload: Callable[[], dict[str, Any]] | None = None,
    duties: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Publish on ``mad.system.heartbeat.<sender>`` every ``period`` seconds while
    connected, each beat after the ``duties`` (keeping the MAD's tool list in the registry,
    say): a heartbeat heard means they were done just before it."""
    channel = channels.heartbeat(bus.sender_id)
    while True:
        if bus.connected:
            for duty in duties:
                with contextlib.suppress(BusError):
                    await duty()
            with contextlib.suppress(BusError):
                await bus.publish(channel, payload() if payload else {})
        await asyncio.sleep(period)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
