"""Rogers' configuration: the common bus + Sequential Thinking settings and its own knobs."""

from pydantic import Field

from mads.sequential_thinking.client import ThinkingClientSettings


class RogersSettings(ThinkingClientSettings):
    rogers_log_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Traffic log summary interval: the first message of a sender/channel pair "
        "in an interval is logged as it comes, the rest as one count at the interval's end.",
    )
    rogers_max_log_pairs: int = Field(default=500, ge=1, le=100_000)
    rogers_max_senders: int = Field(
        default=1000, ge=1, le=1_000_000, description="Distinct senders tracked before '(other)'."
    )
    rogers_max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    rogers_stats_retention_h: int = Field(default=24, ge=1, le=24 * 31)
    rogers_bus_volume_bytes: int | None = Field(
        default=None,
        ge=1,
        description="The size of the bus's volume, in bytes (the operator sets it on "
        "Kubernetes): exported as rogers_bus_volume_bytes beside rogers_bus_aof_bytes, for "
        "the volume alert.",
    )
    rogers_bus_storage_interval_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often Rogers reads the bus's append-only file size (INFO persistence).",
    )
