from pydantic import Field

from mads.core.settings import MadSettings


class SequentialThinkingSettings(MadSettings):
    sequential_thinking_max_history: int = Field(default=1000, ge=1, le=1_000_000)
    sequential_thinking_max_branches: int = Field(default=100, ge=1, le=100_000)
    sequential_thinking_max_thought_chars: int = Field(default=100_000, ge=1)
