"""Sequential Thinking: the group's MCP reasoning service. Needs no Redis."""

from __future__ import annotations

from mads.core.service import MadService
from mads.core.settings import load_settings
from mads.core.status import StatusLine
from mads.sequential_thinking import tools
from mads.sequential_thinking.history import ThoughtHistory
from mads.sequential_thinking.settings import SequentialThinkingSettings

NAME = "sequential_thinking"


def build() -> MadService:
    settings = load_settings(SequentialThinkingSettings, mad_name=NAME)
    service = MadService(
        NAME,
        settings,
        instructions="Structured, revisable step-by-step thinking (tool: sequentialthinking).",
    )
    history = ThoughtHistory(
        max_thoughts=settings.sequential_thinking_max_history,
        max_branches=settings.sequential_thinking_max_branches,
    )
    tools.register(service, history, settings.sequential_thinking_max_thought_chars)
    service.add_status(
        lambda: StatusLine(
            label="Thoughts In Memory",
            value=f"{len(history)}/{history.max_thoughts}",
            ok=True,
        )
    )
    return service
