"""Grace's configuration: the bus settings and its own ``GRACE_*`` knobs."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from mads.core.settings import BusSettings

MIN_TOKEN_CHARS = 16


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
    grace_client_ttl_s: float = Field(default=3600.0, ge=1, le=30 * 24 * 3600)
    grace_max_topics: int = Field(default=32, ge=1, le=1000)

    @field_validator("grace_api_tokens")
    @classmethod
    def _token_length(cls, value: SecretStr) -> SecretStr:
        tokens = [t.strip() for t in value.get_secret_value().split(",") if t.strip()]
        if any(len(t) < MIN_TOKEN_CHARS for t in tokens):
            raise ValueError(f"every token must be at least {MIN_TOKEN_CHARS} characters")
        return value

    @property
    def api_tokens(self) -> list[str]:
        return [t.strip() for t in self.grace_api_tokens.get_secret_value().split(",") if t.strip()]
