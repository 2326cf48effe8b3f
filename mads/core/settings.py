"""Configuration from the environment (the contract table of the design).

Every MAD reads its settings through :func:`load_settings`; a missing or invalid variable
stops the process at start with one line naming the variable, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mads.core.errors import MadUsageError

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


class ConfigurationError(MadUsageError):
    """One line naming the variable at fault."""


class MadSettings(BaseSettings):
    """What every MAD process reads."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    mad_name: str = Field(min_length=1, description="Which MAD this process is.")
    mad_host: str = "0.0.0.0"
    mad_port: int = Field(default=0, ge=0, le=65535, description="0 means the MAD's default.")
    mad_heartbeat_s: float = Field(default=5.0, gt=0, le=3600)
    mad_allowed_hosts: str = ""
    mad_log_format: Literal["text", "json"] = "text"
    mad_max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    mad_max_inflight: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="MCP requests worked on at once; more wait (MAD_INFLIGHT_WAIT_S), then "
        "get 503 with Retry-After.",
    )
    mad_inflight_wait_s: float = Field(default=2.0, ge=0, le=60)
    mad_direct_tool_calls: bool = Field(
        default=True,
        description="Answer plain tools/call requests for the MAD's own tools directly "
        "(see mads.core.direct_calls); false sends every request through the SDK.",
    )

    mad_internal_token: SecretStr = Field(
        default=SecretStr(""),
        description="The group's internal credential: when set, a MAD that is not the front "
        "door answers MCP only to requests bearing it (peers and mad-cli present it).",
    )

    mad_internal_token_file: Path | None = Field(
        default=None,
        description="A file holding MAD_INTERNAL_TOKEN (used when that is unset or empty).",
    )

    mad_metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="The group's metrics credential: a scraper presenting it (Authorization: "
        "Bearer) may read /status and /metrics from anywhere, and nothing else.",
    )

    mad_tls_cert_file: Path | None = Field(
        default=None,
        description="Serve HTTPS with this certificate (and MAD_TLS_KEY_FILE); a changed "
        "file is picked up while running.",
    )
    mad_tls_key_file: Path | None = Field(default=None, description="The certificate's key.")
    mad_tls_ca_file: Path | None = Field(
        default=None,
        description="The CA that signed the group's certificates: what mad-status and "
        "mad-cli verify this MAD's HTTPS against.",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> MadSettings:
        if (self.mad_tls_cert_file is None) != (self.mad_tls_key_file is None):
            raise ValueError(
                "MAD_TLS_CERT_FILE and MAD_TLS_KEY_FILE go together: set both or neither"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """``<SECRET>_FILE`` names a file holding a secret that is unset or empty in the
        environment, so a substrate can hand it over without putting it in one."""
        if not isinstance(data, dict):
            return data
        for field_name in list(data):
            if not field_name.endswith("_file") or not data[field_name]:
                continue
            secret = field_name.removesuffix("_file")
            if secret in cls.model_fields and not data.get(secret):
                try:
                    data[secret] = Path(data[field_name]).read_text().strip()
                except OSError as exc:
                    raise ValueError(
                        f"{field_name.upper()} {data[field_name]} cannot be read ({exc.strerror})"
                    ) from None
        return data

    @property
    def admission(self) -> tuple[int, float]:
        """What the HTTP edge admits: MCP requests at once, and how long one more waits."""
        return self.mad_max_inflight, self.mad_inflight_wait_s

    @property
    def internal_headers(self) -> dict[str, str]:
        """What a MAD sends a peer's MCP endpoint: the internal credential, when set."""
        token = self.mad_internal_token.get_secret_value()
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def allowed_hosts(self) -> list[str]:
        return [h.strip() for h in self.mad_allowed_hosts.split(",") if h.strip()]


class BusSettings(MadSettings):
    """A MAD that talks on the Conversation Bus."""

    redis_host: str = "redis"
    redis_port: int = Field(default=6379, ge=1, le=65535)
    redis_username: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="This MAD's bus user (its Redis ACL user); unset: the default user.",
    )
    redis_password: SecretStr = Field(description="Required: the bus refuses clients without it.")
    redis_password_file: Path | None = Field(
        default=None,
        description="A file holding REDIS_PASSWORD (used when that is unset or empty).",
    )
    redis_tls_ca_file: Path | None = Field(
        default=None,
        description="Set: the bus speaks TLS (rediss://) and its certificate must be signed by "
        "this CA.",
    )
    redis_max_connections: int = Field(
        default=64,
        ge=2,
        le=10_000,
        description="Connections to Redis for commands (subscriptions have a pool of their "
        "own: REDIS_MAX_SUBSCRIPTIONS).",
    )
    redis_max_subscriptions: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Connections to Redis for subscriptions made for outside clients (one "
        "per client following a task's stream; a further one waits for a free one); the "
        "MAD's own subscriptions and the connection watcher have their own.",
    )
    redis_pool_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a command waits for a free connection before 'busy, retry'.",
    )

    mad_relay_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Tool calls relayed over the bus that a MAD serving tools works on at "
        "once; unset: MAD_MAX_INFLIGHT, what its HTTP edge admits, so a relayed call is "
        "never throttled below a direct one.",
    )
    mad_relay_backlog_limit: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Relayed requests that may wait unhandled in an owner's stream; a call "
        "past it is refused ('busy, retry') and nothing is queued.",
    )

    @property
    def relay_concurrency(self) -> int:
        return self.mad_relay_concurrency or self.mad_max_inflight

    @field_validator("redis_password")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


SettingsT = TypeVar("SettingsT", bound=MadSettings)


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem as one line: the environment variable and what is wrong with it."""
    error = exc.errors()[0]
    variable = "_".join(str(part) for part in error.get("loc", ()) if part != "__root__").upper()
    if error.get("type") == "missing":
        return f"{variable} is required but not set"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{variable} is invalid: {message}" if variable else message


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read ``cls`` from the environment; raise :class:`ConfigurationError` with one line."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
