"""Grace: the front door. Relays outside clients onto the bus and gives outside MCP clients
the group's tools, behind bearer tokens (or loopback only when none are configured)."""

from __future__ import annotations

from starlette.applications import Starlette

from mads.core.service import MadService
from mads.core.settings import ConfigurationError, load_settings
from mads.grace import tasks as task_gateway
from mads.grace import tokens, tools
from mads.grace.access import AccessGuard, OAuthDoor
from mads.grace.buffers import ClientBuffers
from mads.grace.gateway import Gateway, Liveness
from mads.grace.relay import FanOut
from mads.grace.settings import GraceSettings

NAME = "grace"


class GraceService(MadService):
    """A MAD whose whole HTTP app sits behind :class:`AccessGuard`."""

    front_door = True

    def __init__(self, settings: GraceSettings) -> None:
        super().__init__(
            NAME,
            settings,
            instructions="The MAD group's front door: publish and receive Conversation Bus "
            "messages (grace_*) and call the group's tools (fiedler_*, rogers_*), relayed "
            "to the MAD that owns them.",
        )
        self.principals = tokens.from_api_tokens(settings.api_tokens)
        if settings.grace_tokens_file is not None:
            try:
                named = tokens.load_file(settings.grace_tokens_file)
            except tokens.TokenFileError as exc:
                raise ConfigurationError(str(exc)) from None
            self.principals.update(named)
        self.limiter = tokens.Limiter(
            default_rate=settings.grace_default_requests_per_second,
            default_concurrency=settings.grace_default_concurrent_calls,
        )
        self.oauth: OAuthDoor | None = None
        if settings.grace_oauth_issuer:
            # only a Grace with OAuth loads the verifier's libraries (PyJWT, httpx)
            from mads.grace import oauth_setup

            self.oauth = oauth_setup.door(settings, self)
            self.add_routes(self.oauth.resource.routes())

    def app(self) -> Starlette:
        app = super().app()
        app.add_middleware(
            AccessGuard,
            principals=self.principals,
            logger=self.log,
            metrics=self.metrics,
            scrape=self.scrape_credential(),
            oauth=self.oauth,
            limiter=self.limiter,
        )
        return app


def describe_defaults(limiter: tokens.Limiter) -> str:
    parts = []
    if limiter.default_rate is not None:
        parts.append(f"{limiter.default_rate:g} requests/s")
    if limiter.default_concurrency is not None:
        parts.append(f"{limiter.default_concurrency} calls in flight")
    return " and ".join(parts)


def build() -> MadService:
    settings = load_settings(GraceSettings, mad_name=NAME)
    service = GraceService(settings)
    bus = service.use_bus(settings)

    buffers = ClientBuffers(
        bus, max_buffer=settings.grace_max_buffer, ttl_s=settings.grace_client_ttl_s
    )
    fanout = FanOut(bus, buffers, service.log)
    service.add_background(fanout.run)
    tools.register(service, settings, buffers, fanout)

    liveness = Liveness(bus, settings.mad_heartbeat_s)
    gateway = Gateway(
        bus,
        NAME,
        settings.grace_relay_timeout_s,
        liveness,
        service.log,
        backlog_limit=settings.mad_relay_backlog_limit,
    )
    service.mcp.middleware.append(gateway)
    service.forward_directly(gateway)
    # Task ids are signed with a key every replica derives from the same bus credential.
    task_gateway.serve(service, gateway, settings.redis_password.get_secret_value())
    service.add_background(liveness.run)
    service.add_background(gateway.run)

    async def announce_access() -> None:
        if service.oauth is not None:
            service.log.info(
                "Access: OAuth access tokens from %s for %s accepted on /mcp%s",
                settings.grace_oauth_issuer,
                settings.grace_oauth_resource,
                "" if settings.static_tokens else " (static tokens turned off)",
            )
        if service.limiter.default_rate or service.limiter.default_concurrency:
            service.log.info(
                "Access: every token and subject without limits of its own is held to %s",
                describe_defaults(service.limiter),
            )
        if service.principals:
            limited = sum(
                not p.unrestricted
                or p.requests_per_second is not None
                or p.concurrent_calls is not None
                for p in service.principals.values()
            )
            service.log.info(
                "Access: bearer token required on /mcp (%d token(s) configured%s)",
                len(service.principals),
                f", {limited} scoped or limited" if limited else "",
            )
        elif service.oauth is None:
            service.log.warning(
                "Access: GRACE_API_TOKENS is not set, so Grace serves loopback clients only"
            )

    service.on_startup(announce_access)
    return service
