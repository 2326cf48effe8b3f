"""Fiedler's configuration: the shared bus and Sequential Thinking variables plus ``FIEDLER_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from mads.core.settings import ConfigurationError
from mads.fiedler import postgres_uri
from mads.fiedler.contract import LLM_VARIABLES, ONE_WRITER, LLMProvider, TaskStore, llm_missing
from mads.fiedler.store import Retention
from mads.sequential_thinking.client import ThinkingClientSettings

DEFAULT_DB_PATH = "/data/fiedler_state.db"
LLM_CONCURRENCY = 4
"""Tasks at once by default with an LLM endpoint, which queues or rate-limits beyond that."""
BUILTIN_CONCURRENCY = 32
"""Tasks at once by default with the built-in responder, which answers at once (only the
store's commits bound it)."""
DEFAULT_RETENTION_S = 30 * 86_400
"""How long a finished task is kept unless the declaration says otherwise: 30 days."""


class FiedlerSettings(ThinkingClientSettings):
    fiedler_store: TaskStore = Field(
        default="sqlite",
        description="Where tasks live: the SQLite file (one replica) or PostgreSQL (shared "
        "by any number of replicas).",
    )
    fiedler_db_path: str = Field(default=DEFAULT_DB_PATH, min_length=1)
    fiedler_store_uri: SecretStr | None = Field(
        default=None,
        description="With FIEDLER_STORE=postgresql: postgresql://user:password@host:5432/db "
        "(secret).",
    )
    fiedler_store_uri_file: Path | None = Field(
        default=None,
        description="A file holding FIEDLER_STORE_URI (used when that is unset or empty), "
        "e.g. the key 'uri' of a CloudNativePG cluster's app Secret.",
    )
    fiedler_volume_bytes: int | None = Field(
        default=None,
        ge=1,
        description="The size of the volume the SQLite file lives on, in bytes (the operator "
        "sets it on Kubernetes): exported as fiedler_volume_bytes beside "
        "fiedler_database_bytes, for the volume alert.",
    )
    fiedler_store_pool_size: int = Field(default=10, ge=1, le=1000)
    fiedler_store_timeout_s: float = Field(default=10.0, gt=0, le=300)
    fiedler_lease_s: float = Field(
        default=15.0,
        ge=1,
        le=3600,
        description="How long a replica's claim on a task lasts unless renewed (every third "
        "of it); a task whose holder died is taken over after at most this long.",
    )
    fiedler_claim_poll_s: float = Field(default=1.0, gt=0, le=60)
    fiedler_replicas: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="How many Fiedler replicas the group declares; more than one needs "
        "FIEDLER_STORE=postgresql.",
    )
    fiedler_llm_provider: LLMProvider = "builtin"
    fiedler_llm_base_url: str | None = None
    fiedler_llm_model: str | None = None
    fiedler_llm_api_key: SecretStr | None = None
    fiedler_llm_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    fiedler_llm_retries: int = Field(default=2, ge=0, le=20)
    fiedler_llm_max_tool_rounds: int = Field(default=8, ge=1, le=100)
    fiedler_max_concurrency: int | None = Field(default=None, ge=1, le=1024)
    fiedler_max_prompt_chars: int = Field(default=100_000, ge=1, le=1_000_000)
    fiedler_retention_max_age_s: float = Field(
        default=DEFAULT_RETENTION_S,
        ge=0,
        description="Finished tasks (COMPLETED, FAILED, CANCELLED) are deleted this long "
        "after they finish; 0: kept whatever their age.",
    )
    fiedler_retention_max_tasks: int | None = Field(
        default=None,
        ge=1,
        description="Keep at most this many finished tasks, the newest (unset: no limit).",
    )
    fiedler_retention_interval_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="How often finished tasks past the retention are looked for and deleted.",
    )

    @field_validator("fiedler_llm_provider", "fiedler_store", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("fiedler_llm_base_url")
    @classmethod
    def _llm_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("fiedler_llm_model")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("fiedler_store_uri")
    @classmethod
    def _store_uri(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        postgres_uri.parse(value.get_secret_value())  # one line, the URI never repeated
        return value

    def postgres_target(self) -> postgres_uri.PostgresTarget:
        """The PostgreSQL store's address (checked by :meth:`check_store`)."""
        assert self.fiedler_store_uri is not None
        return postgres_uri.parse(self.fiedler_store_uri.get_secret_value())

    def check_store(self) -> None:
        """PostgreSQL needs its URI; more than one replica needs PostgreSQL (one line
        naming the variable, as every configuration error)."""
        if self.fiedler_store == "postgresql" and self.fiedler_store_uri is None:
            raise ConfigurationError(
                "FIEDLER_STORE_URI (or FIEDLER_STORE_URI_FILE) is required when "
                "FIEDLER_STORE=postgresql"
            )
        if self.fiedler_store == "sqlite" and self.fiedler_replicas > 1:
            raise ConfigurationError(
                f"FIEDLER_REPLICAS={self.fiedler_replicas} needs FIEDLER_STORE=postgresql: "
                + ONE_WRITER
            )

    @property
    def retention(self) -> Retention:
        """Which finished tasks are deleted (:mod:`mads.fiedler.retention`)."""
        age = self.fiedler_retention_max_age_s
        return Retention(max_age_s=age or None, max_tasks=self.fiedler_retention_max_tasks)

    @property
    def max_concurrency(self) -> int:
        """Tasks worked on at once: ``FIEDLER_MAX_CONCURRENCY``, else
        :data:`LLM_CONCURRENCY` for an LLM endpoint and :data:`BUILTIN_CONCURRENCY` for the
        built-in responder."""
        if self.fiedler_max_concurrency is not None:
            return self.fiedler_max_concurrency
        return BUILTIN_CONCURRENCY if self.fiedler_llm_provider == "builtin" else LLM_CONCURRENCY

    def check_provider(self) -> None:
        """What the provider requires (:data:`mads.fiedler.contract.LLM_REQUIRES`) is set;
        say which variable is missing (one line, as every configuration error)."""
        provider = self.fiedler_llm_provider
        given = {"base_url": self.fiedler_llm_base_url, "model": self.fiedler_llm_model}
        missing = llm_missing(provider, given)
        if missing:
            variable = LLM_VARIABLES[missing[0]]
            raise ConfigurationError(
                f"{variable} is required when {LLM_VARIABLES['provider']}={provider}"
            )
