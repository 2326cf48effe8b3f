"""Of the operator's replicas, one reconciles: the holder of a coordination.k8s.io Lease.

The Kubernetes client's own leader election (``kubernetes.leaderelection``, the port of
client-go's) takes and renews the Lease in a thread of its own. A replica that does not
hold it waits, answering its liveness probe; once it holds it, the operator runs. A holder
that cannot renew within the renew deadline stops reconciling at once (:meth:`leading`
turns false before the Lease can expire for anyone else: the deadline is shorter than the
Lease) and the process exits, to stand by again as a fresh one. On a clean stop the
holder gives the Lease up, so a rolling update hands over without waiting for it to expire.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

logger = logging.getLogger("madgroup.leadership")


@dataclass(frozen=True)
class Timing:
    """client-go's defaults scaled down: a dead leader is replaced within ``lease_s``."""

    lease_s: int = 15
    renew_deadline_s: int = 10
    retry_s: int = 2


class Leadership:
    """The Lease ``namespace/name``, competed for as ``identity``."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing = Timing(),
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.client = client
        self.acquired = threading.Event()
        self.lost = threading.Event()
        self._on_lost: list[Callable[[], None]] = []
        self._renewed = 0.0
        self._releasing = False
        lock = LeaseLock(name, namespace, identity)
        lock.api_instance = kubernetes.client.CoordinationV1Api(client)

        def stored(write: Any) -> Any:
            """A write of the Lease (a take-over, a renewal) that also notes when it held;
            none once the Lease is being given up."""

            def wrapped(*args: Any, **kwargs: Any) -> bool:
                if self._releasing:
                    return False
                done = bool(write(*args, **kwargs))
                if done:
                    self._renewed = time.monotonic()
                return done

            return wrapped

        update, create = stored(lock.update), stored(lock.create)

        lock.update = update  # type: ignore[method-assign]
        lock.create = create  # type: ignore[method-assign]
        self._lock = lock
        self._election = leaderelection.LeaderElection(
            electionconfig.Config(
                lock,
                lease_duration=timing.lease_s,
                renew_deadline=timing.renew_deadline_s,
                retry_period=timing.retry_s,
                onstarted_leading=self.acquired.set,
                onstopped_leading=self._stopped_leading,
            )
        )
        # The client's election says "yet to finish lease_duration" at every retry.
        logging.getLogger("leaderelection").setLevel(logging.WARNING)

    def when_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the election's thread) once the Lease is lost."""
        self._on_lost.append(callback)
        if self.lost.is_set():
            callback()

    def _stopped_leading(self) -> None:
        if self.lost.is_set():
            return
        self.lost.set()
        for callback in self._on_lost:
            callback()

    def start(self) -> None:
        """Compete for the Lease in a thread (daemon: it dies with the process)."""
        threading.Thread(target=self._run, name="leader-election", daemon=True).start()

    def _run(self) -> None:
        try:
            self._election.run()
        finally:
            self._stopped_leading()

    def leading(self) -> bool:
        """Holding the Lease now: acquired, and renewed within the renew deadline."""
        return (
            self.acquired.is_set()
            and not self.lost.is_set()
            and time.monotonic() - self._renewed < self.timing.renew_deadline_s
        )

    def holder(self) -> str | None:
        """Who holds the Lease, as the API server has it."""
        try:
            lease = self._lock.api_instance.read_namespaced_lease(self.name, self.namespace)
        except kubernetes.client.ApiException:
            return None
        return getattr(lease.spec, "holder_identity", None)

    def release(self) -> None:
        """Give the Lease up (a clean stop): the next replica takes it without waiting for
        it to expire. Only while still holding it; a failure is only logged."""
        if not self.leading():
            return
        self._releasing = True
        api = self._lock.api_instance
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
            spec = lease.spec
            if spec is None or spec.holder_identity != self.identity:
                return
            spec.holder_identity = None
            spec.lease_duration_seconds = 1
            spec.renew_time = datetime.datetime.now(datetime.UTC)
            api.replace_namespaced_lease(self.name, self.namespace, lease)
            logger.info("gave up the leader lease %s/%s", self.namespace, self.name)
        except kubernetes.client.ApiException as exc:
            logger.warning("could not give up the leader lease: %s %s", exc.status, exc.reason)


async def stand_by(leadership: Leadership, liveness: str | None) -> bool:
    """Wait to hold the Lease, answering ``liveness`` (kopf's endpoint is not up yet) so a
    standby is never restarted for waiting. True once leading; False when told to stop."""
    import asyncio
    import signal
    import urllib.parse

    from aiohttp import web

    runner = None
    if liveness:
        url = urllib.parse.urlsplit(liveness)
        app = web.Application()

        async def alive(_: web.Request) -> web.Response:
            return web.json_response({"standby": True, "lease": leadership.name})

        app.router.add_get(url.path or "/", alive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, url.hostname, url.port or 80).start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    said = None
    try:
        while not stopping.is_set():
            if await asyncio.to_thread(leadership.acquired.wait, leadership.timing.retry_s):
                break
            holder = await asyncio.to_thread(leadership.holder)
            if holder != said and holder and holder != leadership.identity:
                logger.info(
                    "standing by: the leader lease %s/%s is held by %s",
                    leadership.namespace,
                    leadership.name,
                    holder,
                )
                said = holder
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
    if leadership.acquired.is_set() and not stopping.is_set():
        logger.info(
            "leading: holding the lease %s/%s as %s",
            leadership.namespace,
            leadership.name,
            leadership.identity,
        )
        return True
    return False


async def lead(leadership: Leadership, operate: Callable[[Any], Any]) -> None:
    """Run ``operate(stop_flag)`` (the operator) until it ends or the Lease is lost. The
    flag is an asyncio event set from the election's thread: a thread-blocking flag would
    keep the event loop's executor, and so the process, from ever stopping."""
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        loop.call_soon_threadsafe(stop.set)

    leadership.when_lost(stopping)
    await operate(stop)
