"""Grace's configuration: the bus settings and its own ``GRACE_*`` knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from mads.core.settings import BusSettings

MIN_TOKEN_CHARS = 16
SIGNATURE_ALGORITHMS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512", "EdDSA"),
)
"""Asymmetric JWS algorithms Grace verifies access tokens with: never ``none``, never an HMAC
(whose "key" would be the issuer's public key, known to anyone)."""


class GraceSettings(BusSettings):
    grace_api_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated bearer tokens accepted from outside clients. "
        "Unset: loopback clients only.",
    )
    grace_tokens_file: Path | None = Field(
        default=None,
        description="JSON file of named tokens (stored as SHA-256) with scopes and limits; "
        "see mads.grace.tokens. Used together with GRACE_API_TOKENS.",
    )
    grace_max_buffer: int = Field(default=1000, ge=1, le=1_000_000)
    grace_max_payload_bytes: int = Field(default=64 * 1024, ge=64, le=1024 * 1024)
    grace_relay_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    grace_max_inflight: int = Field(
        default=4096,
        ge=1,
        le=100_000,
        description="MCP requests Grace works on at once (its MAD_MAX_INFLIGHT). A relayed "
        "call waiting for its owner costs Grace memory only, so the default admits a burst "
        "of thousands, which waits in the owner's stream (up to MAD_RELAY_BACKLOG_LIMIT) "
        "instead of being refused here; one more waits GRACE_INFLIGHT_WAIT_S, then gets 503 "
        "with Retry-After.",
    )
    grace_inflight_wait_s: float = Field(default=10.0, ge=0, le=60)
    grace_client_ttl_s: float = Field(default=3600.0, ge=1, le=30 * 24 * 3600)
    grace_max_topics: int = Field(default=32, ge=1, le=1000)
    grace_default_requests_per_second: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="The request rate of every token and OAuth subject that sets none of its "
        "own (unset: no limit).",
    )
    grace_default_concurrent_calls: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Calls in flight of every token and OAuth subject that sets no such "
        "limit of its own (unset: no limit).",
    )

    grace_static_tokens: Literal["on", "off"] = Field(
        default="on",
        description="off: GRACE_API_TOKENS and GRACE_TOKENS_FILE are not accepted (OAuth "
        "access tokens only); they must then be unset.",
    )
    grace_oauth_issuer: str = Field(
        default="",
        description="The authorization server's issuer identifier (URL). Set: Grace is an "
        "OAuth 2.1 resource server and accepts the access tokens it issues for Grace.",
    )
    grace_oauth_resource: str = Field(
        default="",
        description="Grace's resource identifier: the public URL of its MCP endpoint "
        "(https://grace.example.com/mcp). Published as Protected Resource Metadata.",
    )
    grace_oauth_audience: str = Field(
        default="",
        description="Audiences accepted in a token's aud (comma-separated); unset: "
        "GRACE_OAUTH_RESOURCE.",
    )
    grace_oauth_scopes_file: Path | None = Field(
        default=None,
        description="JSON file mapping OAuth scopes onto Grace's tool and topic scopes, with "
        "the limits per subject (see mads.grace.scope_map). Required with GRACE_OAUTH_ISSUER.",
    )
    grace_oauth_algorithms: str = Field(
        default=",".join(SIGNATURE_ALGORITHMS),
        description="JWS algorithms accepted on access tokens (comma-separated, asymmetric).",
    )
    grace_oauth_leeway_s: float = Field(
        default=30.0, ge=0, le=300, description="Clock skew allowed on exp, nbf and iat."
    )
    grace_oauth_jwks_refresh_min_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="An unknown key id re-reads the issuer's JWKS at most this often.",
    )
    grace_oauth_jwks_max_age_s: float = Field(
        default=3600.0,
        ge=1,
        le=7 * 24 * 3600,
        description="The JWKS is re-read when older than this (withdrawn keys drop out).",
    )
    grace_oauth_ca_file: Path | None = Field(
        default=None,
        description="CA bundle to verify the authorization server's HTTPS with (default: "
        "the system's).",
    )
    grace_oauth_introspection_url: str = Field(
        default="",
        description="RFC 7662 introspection endpoint. Set: a bearer token that is not a JWT "
        "is introspected there; unset: such tokens are refused.",
    )
    grace_oauth_introspection_client_id: str = Field(
        default="", description="Grace's client id at the introspection endpoint."
    )
    grace_oauth_introspection_client_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Its client secret (client_secret_basic); give it as "
        "GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET_FILE.",
    )
    grace_oauth_introspection_client_secret_file: Path | None = Field(
        default=None, description="A file holding GRACE_OAUTH_INTROSPECTION_CLIENT_SECRET."
    )
    grace_oauth_introspection_cache_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long an introspection answer is reused (never past the token's exp).",
    )

    @field_validator("grace_api_tokens")
    @classmethod
    def _token_length(cls, value: SecretStr) -> SecretStr:
        tokens = [t.strip() for t in value.get_secret_value().split(",") if t.strip()]
        if any(len(t) < MIN_TOKEN_CHARS for t in tokens):
            raise ValueError(f"every token must be at least {MIN_TOKEN_CHARS} characters")
        return value

    @field_validator("grace_oauth_issuer", "grace_oauth_resource", "grace_oauth_introspection_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r} must have no query or fragment")
        return value

    @field_validator("grace_oauth_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        refused = [n for n in names if n not in SIGNATURE_ALGORITHMS]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} not accepted; choose among {', '.join(SIGNATURE_ALGORITHMS)}"
            )
        if not names:
            raise ValueError("name at least one algorithm")
        return ",".join(names)

    @model_validator(mode="after")
    def _oauth_complete(self) -> GraceSettings:
        if self.grace_oauth_issuer:
            if not self.grace_oauth_resource:
                raise ValueError("GRACE_OAUTH_RESOURCE is required with GRACE_OAUTH_ISSUER")
            if self.grace_oauth_scopes_file is None:
                raise ValueError("GRACE_OAUTH_SCOPES_FILE is required with GRACE_OAUTH_ISSUER")
        elif self.grace_static_tokens == "off":
            raise ValueError("GRACE_STATIC_TOKENS=off needs GRACE_OAUTH_ISSUER (or nobody gets in)")
        if self.grace_static_tokens == "off" and (
            self.api_tokens or self.grace_tokens_file is not None
        ):
            raise ValueError(
                "GRACE_STATIC_TOKENS=off but GRACE_API_TOKENS or GRACE_TOKENS_FILE is set: "
                "unset them or turn static tokens on"
            )
        if self.grace_oauth_introspection_url and not self.grace_oauth_issuer:
            raise ValueError("GRACE_OAUTH_INTROSPECTION_URL needs GRACE_OAUTH_ISSUER")
        return self

    @property
    def admission(self) -> tuple[int, float]:
        return self.grace_max_inflight, self.grace_inflight_wait_s

    @property
    def api_tokens(self) -> list[str]:
        return [t.strip() for t in self.grace_api_tokens.get_secret_value().split(",") if t.strip()]

    @property
    def static_tokens(self) -> bool:
        return self.grace_static_tokens == "on"

    @property
    def oauth_audiences(self) -> list[str]:
        named = [a.strip() for a in self.grace_oauth_audience.split(",") if a.strip()]
        return named or [self.grace_oauth_resource]

    @property
    def oauth_algorithms(self) -> list[str]:
        return self.grace_oauth_algorithms.split(",")
