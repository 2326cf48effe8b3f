"""The kopf wiring: which watch events drive which reconcile passes.

Each MadGroup gets one daemon that runs reconcile passes one after another (so passes of one
group never overlap). A pass runs when something relevant changed — the group itself, or
one of its Deployments/StatefulSets (watched by label) — and at least every
``repair_interval`` seconds, which repairs drift nothing announced (a deleted Service, an
edited NetworkPolicy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kopf

from madgroup.kube import crd, naming, reconcile
from madgroup.kube.api import ApiError, KubeApi

FINALIZER = "madgroup.io/teardown"
DEFAULT_REPAIR_INTERVAL = 30.0
RETRY_DELAY = 5.0

LoginFn = Callable[..., Any]


class Nudges:
    """Per MadGroup: a wake-up flag set by watch events and awaited by the group's daemon,
    and a lock so that a reconcile pass and the teardown never run at the same time."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def get(self, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def nudge(self, namespace: str | None, name: str | None) -> None:
        if namespace and name:
            self.get(namespace, name).set()

    def forget(self, namespace: str, name: str) -> None:
        self._events.pop((namespace, name), None)


async def _until_stopped(stopped: Any) -> None:
    await stopped.wait()


async def _wait_any(event: asyncio.Event, stopped: Any, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(_until_stopped(stopped))]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking ``fn`` in a thread. If the caller is cancelled, still wait for the thread
    to finish (while the caller holds the group's lock): a half-finished pass must not race
    the teardown."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


async def _acquire(lock: asyncio.Lock, stopped: Any) -> bool:
    """Take ``lock`` unless the daemon is told to stop first (the teardown holds the lock
    while kopf waits for the daemon to exit)."""
    acquiring = asyncio.ensure_future(lock.acquire())
    stopping = asyncio.ensure_future(_until_stopped(stopped))
    await asyncio.wait([acquiring, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if acquiring.done() and not acquiring.cancelled():
        if stopped:
            lock.release()
            return False
        return True
    acquiring.cancel()
    return False


def _post(body: kopf.Body, event: reconcile.Event, logger: kopf.Logger) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    logger.info("%s: %s", event.reason, event.message)


def build_registry(
    api: KubeApi,
    *,
    login: LoginFn | None = kopf.login_via_client,
    repair_interval: float = DEFAULT_REPAIR_INTERVAL,
    nudges: Nudges | None = None,
    guard: Callable[[], bool] | None = None,
) -> kopf.OperatorRegistry:
    """A fresh registry with the operator's handlers (tests build one per operator run).

    ``guard``: whether this replica may write now (it holds the leader Lease); checked
    before every pass and teardown, so a replica that stopped holding it writes nothing
    even before it has stopped."""
    allowed = guard or (lambda: True)
    registry = kopf.OperatorRegistry()
    nudges = nudges or Nudges()
    managed = {naming.LABEL_MANAGED_BY: naming.MANAGER}

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 30
        settings.networking.request_timeout = 60
        settings.execution.max_workers = 16
        # A daemon leaves at its next await once told to stop; let deletion see that at once.
        settings.background.instant_exit_timeout = 1.0

    if login is not None:
        kopf.on.login(registry=registry)(login)

    @kopf.on.event(crd.GROUP, crd.VERSION, crd.PLURAL, registry=registry)
    async def group_changed(namespace: str | None, name: str | None, **_: Any) -> None:
        nudges.nudge(namespace, name)

    async def child_changed(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
        nudges.nudge(namespace, labels.get(naming.LABEL_INSTANCE))

    for plural in ("deployments", "statefulsets"):
        kopf.on.event("apps", "v1", plural, labels=managed, registry=registry)(child_changed)

    @kopf.daemon(
        crd.GROUP,
        crd.VERSION,
        crd.PLURAL,
        registry=registry,
        cancellation_backoff=5.0,
        cancellation_timeout=10.0,
        cancellation_polling=0.5,
    )
    async def keep(
        stopped: Any,
        body: kopf.Body,
        name: str,
        namespace: str | None,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        namespace = _namespace_of(namespace)
        wake = nudges.get(namespace, name)
        try:
            while not stopped:
                wake.clear()
                delay = repair_interval
                if not allowed():
                    await _wait_any(wake, stopped, RETRY_DELAY)
                    continue
                lock = nudges.lock(namespace, name)
                if not await _acquire(lock, stopped):
                    break
                try:
                    outcome = await _in_thread(reconcile.reconcile, api, namespace, name)
                except ApiError as exc:
                    logger.warning("reconcile failed, retrying in %.0fs: %s", RETRY_DELAY, exc)
                    delay = RETRY_DELAY
                else:
                    for event in outcome.events:
                        _post(body, event, logger)
                finally:
                    lock.release()
                await _wait_any(wake, stopped, delay)
        finally:
            nudges.forget(namespace, name)

    @kopf.on.delete(crd.GROUP, crd.VERSION, crd.PLURAL, registry=registry)
    async def teardown(
        body: kopf.Body, name: str, namespace: str | None, logger: kopf.Logger, **_: Any
    ) -> None:
        namespace = _namespace_of(namespace)
        if not allowed():
            raise kopf.TemporaryError("not holding the leader lease", delay=RETRY_DELAY)
        events: list[reconcile.Event] = []
        try:
            async with nudges.lock(namespace, name):
                await _in_thread(reconcile.teardown, api, dict(body), events.append)
        except reconcile.StillDeleting as exc:
            raise kopf.TemporaryError(str(exc), delay=2) from None
        finally:
            for event in events:
                _post(body, event, logger)

    return registry


def _namespace_of(namespace: str | None) -> str:
    """MadGroups are namespaced (the CRD says so): kopf always passes one."""
    if namespace is None:
        raise kopf.PermanentError("a MadGroup must live in a namespace")
    return namespace
