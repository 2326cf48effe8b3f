"""Wiring Grace's OAuth resource server from its settings (``GRACE_OAUTH_*``)."""

from __future__ import annotations

import contextlib
import ssl

import httpx

from mads.core.service import MadService
from mads.core.settings import ConfigurationError
from mads.grace import scope_map
from mads.grace.access import OAuthDoor
from mads.grace.introspection import Introspection
from mads.grace.issuer import FETCH_TIMEOUT_S, IssuerKeys, IssuerUnavailable
from mads.grace.oauth import OAuthVerifier
from mads.grace.resource_metadata import ProtectedResource
from mads.grace.settings import GraceSettings


def door(settings: GraceSettings, service: MadService) -> OAuthDoor:
    """The verifier and protected resource for ``settings`` (ConfigurationError, one line,
    when the scopes file cannot be used), with the HTTP client they share closed at
    shutdown and the issuer's keys fetched once at start (a failure is only logged: the
    next token tries again)."""
    assert settings.grace_oauth_scopes_file is not None  # the settings require it
    try:
        scopes = scope_map.load(settings.grace_oauth_scopes_file)
    except scope_map.ScopeMapError as exc:
        raise ConfigurationError(str(exc)) from None
    http = httpx.AsyncClient(
        timeout=FETCH_TIMEOUT_S, verify=_verify(settings), follow_redirects=False
    )
    keys = IssuerKeys(
        settings.grace_oauth_issuer,
        http,
        refresh_min_s=settings.grace_oauth_jwks_refresh_min_s,
        max_age_s=settings.grace_oauth_jwks_max_age_s,
        logger=service.log,
        metrics=service.metrics,
    )
    introspection = None
    if settings.grace_oauth_introspection_url:
        introspection = Introspection(
            settings.grace_oauth_introspection_url,
            http,
            client_id=settings.grace_oauth_introspection_client_id,
            client_secret=settings.grace_oauth_introspection_client_secret.get_secret_value(),
            cache_s=settings.grace_oauth_introspection_cache_s,
            metrics=service.metrics,
        )
    verifier = OAuthVerifier(
        keys,
        scopes,
        audiences=settings.oauth_audiences,
        algorithms=settings.oauth_algorithms,
        leeway_s=settings.grace_oauth_leeway_s,
        introspection=introspection,
    )
    resource = ProtectedResource(
        settings.grace_oauth_resource, settings.grace_oauth_issuer, scopes.names
    )

    async def fetch_keys_once() -> None:
        with contextlib.suppress(IssuerUnavailable):  # logged; the first token tries again
            await keys.key(None)

    service.add_background(fetch_keys_once)
    service.on_shutdown(http.aclose)
    return OAuthDoor(verifier, resource)


def _verify(settings: GraceSettings) -> ssl.SSLContext | bool:
    ca = settings.grace_oauth_ca_file
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"GRACE_OAUTH_CA_FILE {ca} cannot be used ({exc})") from None
