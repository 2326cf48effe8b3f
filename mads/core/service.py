"""The service app every MAD is: one HTTP port serving

- ``/mcp``     the MCP endpoint (official SDK, streamable HTTP, JSON replies, stateless),
- ``/healthz`` alive (the event loop answers),
- ``/readyz``  ready (its own dependencies are connected) — the readiness gate everywhere,
- ``/status``  what ``mad-status`` prints, as JSON,
- ``/metrics`` Prometheus.

A MAD's ``service.py`` creates a :class:`MadService`, registers tools, status lines,
readiness checks and background tasks on it, and ``mad-run`` serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import inspect
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from mads.core import invoke, registry, sdk, tracing
from mads.core.access import SenderPolicy
from mads.core.arguments import ArgumentCheck, ToolSignature, UnknownTools
from mads.core.contract import STARTED_LOG, MadContract
from mads.core.direct_calls import DirectToolCalls, ForwardedTools
from mads.core.edge import HttpEdge
from mads.core.errors import MadError
from mads.core.internal_access import InternalGuard, ScrapeCredential
from mads.core.logs import quoted
from mads.core.progress_streams import ProgressStreams, streaming_manager
from mads.core.settings import BusSettings, MadSettings
from mads.core.status import StatusLine, StatusReport, connected_line

if TYPE_CHECKING:
    from mads.core.bus import Bus

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MCP_PATH = "/mcp"
MCP_BODY_LIMIT = 4 * 1024 * 1024

StatusSource = Callable[[], StatusLine | Awaitable[StatusLine]]
ReadinessCheck = Callable[[], bool]
Hook = Callable[[], Awaitable[object]]


class PortInUseError(MadError, OSError):
    pass


def allowed_host_patterns(extra_hosts: list[str]) -> list[str]:
    """Host header values the MCP endpoint accepts: loopback and the configured names, each
    with and without a port (DNS-rebinding protection stays on)."""
    patterns: list[str] = []
    for host in (*LOOPBACK_HOSTS, *extra_hosts):
        patterns.extend((host, f"{host}:*"))
    return patterns


def allowed_origin_patterns(extra_hosts: list[str]) -> list[str]:
    origins: list[str] = []
    for host in (*LOOPBACK_HOSTS, *extra_hosts):
        for scheme in ("http", "https"):
            origins.extend((f"{scheme}://{host}", f"{scheme}://{host}:*"))
    return origins


class TraceContext:
    """ASGI middleware: an outside client's HTTP ``traceparent`` becomes the request's
    trace context (installed only while tracing)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tracing.from_headers(headers):
            await self.app(scope, receive, send)


class MadService:
    front_door = False
    """The front door guards itself; every other MAD requires the group's internal
    credential when one is set (:mod:`mads.core.internal_access`)."""

    def __init__(
        self,
        name: str,
        settings: MadSettings,
        *,
        instructions: str | None = None,
        version: str = "1",
    ) -> None:
        info = registry.contract(name)
        self.name = name
        self.banner = info.banner
        self.settings = settings
        self.port = settings.mad_port or info.port
        self.log = logging.getLogger(name)
        tracing.setup(name)
        self.arguments = ArgumentCheck(
            on_refusal=lambda tool, problem: self.log.warning(
                "Refused call to %s: %s", tool, problem
            )
        )
        self.mcp = sdk.new_server(name, instructions, version, middleware=[self.arguments])
        self.metrics = CollectorRegistry()
        self.bus: Bus | None = None
        self._status_sources: list[StatusSource] = []
        self._readiness: list[tuple[str, ReadinessCheck]] = []
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._heartbeat_duties: list[Callable[[], Awaitable[None]]] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._forwarded: ForwardedTools | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._streaming: StreamableHTTPSessionManager | None = None
        self._routes: list[Route] = []
        self._loopback_prefixes: tuple[str, ...] = ()
        Gauge("mad_up", "1 while the MAD process serves", registry=self.metrics).set(1)
        Gauge(
            "mad_ready", "1 while the MAD is ready (what /readyz says)", registry=self.metrics
        ).set_function(lambda: 1.0 if self.is_ready() else 0.0)

    # -- composition -----------------------------------------------------------------------

    def wrap_tool_calls(self, middleware: Any) -> None:
        """Add MCP server middleware just outside the argument check: it sees every request
        first, and what the check refuses comes back to it as a tool error."""
        chain = self.mcp.middleware
        chain.insert(chain.index(self.arguments), middleware)

    def tool(
        self, name: str | None = None, *, description: str, strict: bool = True
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register an MCP tool. With ``strict`` (the default), unknown argument names are
        refused with a clear error instead of being silently dropped."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            tool_name = name or fn.__name__
            self.mcp.add_tool(fn, name=tool_name, description=description)
            tool = sdk.registered_tool(self.mcp, tool_name)
            assert tool is not None
            if strict:
                sdk.forbid_unknown_arguments(tool)
            self.arguments.add(
                tool_name,
                ToolSignature.of(sdk.published_schema(tool), sdk.sdk_validation(tool)),
            )
            return fn

        return register

    def use_bus(self, settings: BusSettings) -> Bus:
        """Connect this MAD to the Conversation Bus: status line, readiness, heartbeat and
        connection metrics come with it."""
        from mads.core.bus import Bus, heartbeat_loop  # redis: only the MADs on the bus

        bus = Bus(
            host=settings.redis_host,
            port=settings.redis_port,
            username=settings.redis_username,
            password=settings.redis_password.get_secret_value(),
            sender_id=self.name,
            senders=SenderPolicy(registry.contracts()),
            logger=self.log,
            max_message_bytes=settings.mad_max_message_bytes,
            max_connections=settings.redis_max_connections,
            pool_timeout_s=settings.redis_pool_timeout_s,
            max_subscriptions=settings.redis_max_subscriptions,
            tls_ca_file=str(settings.redis_tls_ca_file) if settings.redis_tls_ca_file else None,
            connected_log=registry.bus_connected_log(),
        )
        self.bus = bus
        self.add_status(lambda: connected_line("Conversation Bus", bus.connected, bus.last_error))
        self.add_readiness("Conversation Bus", lambda: bus.connected)
        self.add_background(
            lambda: heartbeat_loop(
                bus, settings.mad_heartbeat_s, self.heartbeat_payload, self._heartbeat_duties
            )
        )
        gauge = Gauge(
            "mad_bus_connected", "1 while the Conversation Bus is reachable", registry=self.metrics
        )
        gauge.set_function(lambda: 1.0 if bus.connected else 0.0)
        reconnects = Gauge(
            "mad_bus_reconnects", "Reconnections to the Conversation Bus", registry=self.metrics
        )
        reconnects.set_function(lambda: float(bus.reconnects))
        forged = Gauge(
            "mad_bus_sender_mismatches",
            "Messages dropped because their sender_id named a MAD that could not have sent them",
            registry=self.metrics,
        )
        forged.set_function(lambda: float(bus.sender_mismatches))
        self._startup.insert(0, bus.start)
        self._shutdown.append(bus.close)
        return bus

    def heartbeat_payload(self) -> dict[str, Any]:
        return {"mad_name": self.name, "port": self.port, "ready": self.is_ready()}

    def add_routes(self, routes: list[Route], *, loopback_prefix: str | None = None) -> None:
        """HTTP routes of the MAD's own (Rogers' live view). With ``loopback_prefix``, paths
        under it are served to loopback without the internal credential, like /status."""
        self._routes.extend(routes)
        if loopback_prefix is not None:
            self._loopback_prefixes += (loopback_prefix,)

    def add_status(self, source: StatusSource) -> None:
        self._status_sources.append(source)

    def add_readiness(self, label: str, check: ReadinessCheck) -> None:
        self._readiness.append((label, check))

    def add_background(self, factory: Callable[[], Awaitable[None]]) -> None:
        """A coroutine that runs for the life of the process (restarted never: it must
        handle its own errors)."""
        self._background.append(factory)

    def before_heartbeat(self, duty: Callable[[], Awaitable[None]]) -> None:
        """Run ``duty`` before each heartbeat on the bus, so whoever hears the heartbeat
        may rely on it having been done (its bus errors are the duty's own to report)."""
        self._heartbeat_duties.append(duty)

    def forward_directly(self, tools: ForwardedTools) -> None:
        """Let the direct path answer plain calls of the tools a middleware of this MAD
        forwards (see :mod:`mads.core.direct_calls`)."""
        self._forwarded = tools

    def on_startup(self, hook: Hook) -> None:
        self._startup.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self._shutdown.append(hook)

    async def call_tool_locally(self, name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
        """Run one of this MAD's tools in-process, with the same argument checks as over
        MCP: ``(True, data)`` or ``(False, one-line error)``."""
        if name not in self.arguments.signatures:
            return False, f"unknown tool {quoted(name)} on {self.name}"
        return await invoke.run_as_data(self.mcp, self.arguments, name, arguments)

    async def tool_definitions(self) -> list[dict[str, Any]]:
        """The MCP tool list as plain data (name, description, inputSchema)."""
        return [
            {"name": t.name, "description": t.description or "", "inputSchema": t.input_schema}
            for t in await self.mcp.list_tools()
        ]

    # -- reports ---------------------------------------------------------------------------

    def not_ready(self) -> list[str]:
        return [label for label, check in self._readiness if not check()]

    def is_ready(self) -> bool:
        return not self.not_ready()

    async def status_report(self) -> StatusReport:
        lines = []
        for source in self._status_sources:
            line = source()
            if inspect.isawaitable(line):
                line = await line
            lines.append(line)
        return StatusReport.build(self.banner, self.name, lines)

    # -- HTTP ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        chain = self.mcp.middleware
        if not any(isinstance(m, UnknownTools) for m in chain):
            chain.append(UnknownTools(self.arguments.signatures))  # after any gateway
        hosts = self.settings.allowed_hosts
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=allowed_host_patterns(hosts),
            allowed_origins=allowed_origin_patterns(hosts),
        )
        mcp_app = self.mcp.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=True,
            stateless_http=True,
            max_request_body_size=MCP_BODY_LIMIT,
            transport_security=security,
        )
        routes = [
            Route("/healthz", self._healthz),
            Route("/readyz", self._readyz),
            Route("/status", self._status),
            Route("/metrics", self._metrics),
            *self._routes,
            Mount("/", app=mcp_app),
        ]
        edge = Middleware(
            HttpEdge,
            path=MCP_PATH,
            max_inflight=self.settings.admission[0],
            wait_s=self.settings.admission[1],
            body_limit=MCP_BODY_LIMIT,
            logger=self.log,
        )
        self._streaming = streaming_manager(self.mcp, security, MCP_BODY_LIMIT)
        progress = Middleware(
            ProgressStreams, path=MCP_PATH, manager=self._streaming, body_limit=MCP_BODY_LIMIT
        )
        middleware = [edge, progress]
        if self.settings.mad_direct_tool_calls:
            middleware.append(
                Middleware(
                    DirectToolCalls,
                    path=MCP_PATH,
                    server=self.mcp,
                    arguments=self.arguments,
                    security=TransportSecurityMiddleware(security),
                    body_limit=MCP_BODY_LIMIT,
                    forwarded=self._forwarded,
                )
            )
        if tracing.enabled():
            middleware.insert(0, Middleware(TraceContext))
        token = self.settings.mad_internal_token.get_secret_value()
        if token and not self.front_door:
            guard = Middleware(
                InternalGuard,
                token=token,
                logger=self.log,
                metrics=self.metrics,
                scrape=self.scrape_credential(),
                loopback_prefixes=self._loopback_prefixes,
                front_door=next((c.name for c in registry.contracts().values() if c.exposed), None),
            )
            middleware.insert(0, guard)
        return Starlette(routes=routes, middleware=middleware, lifespan=self._lifespan)

    def scrape_credential(self) -> ScrapeCredential:
        return ScrapeCredential(self.settings.mad_metrics_token.get_secret_value())

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"alive": True, "mad_name": self.name})

    async def _readyz(self, request: Request) -> Response:
        missing = self.not_ready()
        if missing:
            return JSONResponse(
                {"ready": False, "mad_name": self.name, "waiting_for": missing}, status_code=503
            )
        return JSONResponse({"ready": True, "mad_name": self.name})

    async def _status(self, request: Request) -> Response:
        report = await self.status_report()
        return JSONResponse(report.model_dump())

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for hook in self._startup:
            await hook()
        self._tasks = [
            asyncio.create_task(_guarded(factory, self.log), name=f"{self.name}-background")
            for factory in self._background
        ]
        try:
            streaming = self._streaming
            assert streaming is not None, "app() builds the streaming transport it runs"
            async with self.mcp.session_manager.run(), streaming.run():
                yield
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for hook in reversed(self._shutdown):
                with contextlib.suppress(Exception):
                    await hook()

    # -- serving ---------------------------------------------------------------------------

    def check_port_free(self) -> None:
        """Fail early, with a line an operator can act on, when the port is taken."""
        family = socket.AF_INET6 if ":" in self.settings.mad_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.settings.mad_host, self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUseError(
                        exc.errno,
                        f"port {self.port} is already in use; stop what holds it or set MAD_PORT",
                    ) from None
                raise

    async def serve(self) -> None:
        # uvicorn binds the port itself: handing it a pre-bound socket measured at less than
        # half the request rate with the same app.
        self.check_port_free()
        cert, key = self.settings.mad_tls_cert_file, self.settings.mad_tls_key_file
        config = uvicorn.Config(
            self.app(),
            host=self.settings.mad_host,
            port=self.port,
            log_level="warning",
            access_log=False,
            # The client address is the TCP peer's: no X-Forwarded-* header is believed.
            proxy_headers=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            log_config=None,
            ssl_certfile=str(cert) if cert else None,
            ssl_keyfile=str(key) if key else None,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            self.log.info(STARTED_LOG.format(port=self.port))
        reload: asyncio.Task[None] | None = None
        if server.started and config.ssl is not None and cert and key:
            from mads.core.https import certificate_reloader

            reload = asyncio.create_task(
                certificate_reloader(config.ssl, cert, key, self.log), name="tls-reload"
            )
        try:
            await task
        finally:
            if reload is not None:
                reload.cancel()


async def _guarded(factory: Callable[[], Awaitable[None]], log: logging.Logger) -> None:
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task failed; restarting it in 1 s")
            await asyncio.sleep(1)


def build(contract: MadContract) -> MadService:
    """The MAD's service, from the ``module:function`` its contract names."""
    module_name, _, function = contract.service.partition(":")
    factory: Callable[[], MadService] = getattr(importlib.import_module(module_name), function)
    return factory()
