"""Grace as an OAuth protected resource: its Protected Resource Metadata (RFC 9728) and the
``WWW-Authenticate`` challenges that point clients to it (RFC 6750, RFC 9728 section 5.1,
the MCP authorization spec).

The metadata document is served, open to anyone, at the path-inserted well-known URL of
Grace's resource (``/.well-known/oauth-protected-resource/mcp`` for ``…/mcp``, RFC 9728
section 3.1) and at the root form, which MCP clients try next. It is built and served by
the official MCP SDK (its RFC 9728 model and handler).
"""

from __future__ import annotations

import re

from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.routing import Route

WELL_KNOWN = "/.well-known/oauth-protected-resource"
RESOURCE_NAME = "MAD Group (Grace, the front door)"
_NOT_IN_QUOTED = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
"""What RFC 6750 section 3 does not allow inside ``error_description`` (and ``"``, ``\\``)."""


class ProtectedResource:
    """Grace's resource identifier, its issuer and scopes: the metadata and challenges."""

    def __init__(self, resource: str, issuer: str, scopes: list[str]) -> None:
        # Validated from strings, so the model keeps URLs as given (an issuer without a
        # path gets no trailing slash: clients compare it with the issuer's metadata).
        self.metadata = ProtectedResourceMetadata.model_validate(
            {
                "resource": resource,
                "authorization_servers": [issuer],
                "scopes_supported": scopes or None,
                "bearer_methods_supported": ["header"],
                "resource_name": RESOURCE_NAME,
            }
        )
        self.metadata_url = str(build_resource_metadata_url(AnyHttpUrl(resource)))

    def routes(self) -> list[Route]:
        handler = cors_middleware(
            ProtectedResourceMetadataHandler(self.metadata).handle, ["GET", "OPTIONS"]
        )
        suffixed = self.metadata_url.split("://", 1)[1]
        suffixed = suffixed[suffixed.index("/") :]
        paths = dict.fromkeys([suffixed, WELL_KNOWN])
        return [Route(path, endpoint=handler, methods=["GET", "OPTIONS"]) for path in paths]

    def challenge(
        self, *, error: str | None = None, description: str | None = None, scope: str | None = None
    ) -> str:
        """A ``WWW-Authenticate`` value: ``Bearer realm="grace", resource_metadata="…"``,
        with ``scope`` (what the request needs), and ``error`` and ``error_description``
        when a token was presented (RFC 6750 section 3: none without one)."""
        params = [("realm", "grace"), ("resource_metadata", self.metadata_url)]
        if scope:
            params.append(("scope", scope))
        if error:
            params.append(("error", error))
        if description:
            params.append(("error_description", description))
        return "Bearer " + ", ".join(f'{name}="{quoted_value(value)}"' for name, value in params)


def is_metadata_path(path: str) -> bool:
    return path == WELL_KNOWN or path.startswith(WELL_KNOWN + "/")


def quoted_value(value: str) -> str:
    """``value`` as RFC 6750 allows it inside quotes: other characters become ``'``."""
    return _NOT_IN_QUOTED.sub("'", value)
