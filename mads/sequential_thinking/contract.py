"""Sequential Thinking's contract: an MCP server with one tool, ``sequentialthinking``,
compatible with the public reference server of that name. It needs no bus. Its callers use
:mod:`mads.sequential_thinking.client` (part of this contract) to reach it."""

from __future__ import annotations

from mads.core.contract import MadContract

NAME = "sequential_thinking"
PORT = 8000
TOOL_NAME = "sequentialthinking"
CONNECTED_LOG = "Successfully connected to Sequential Thinking MCP server"
"""What a caller's link logs on every (re)connect (the deployment guide looks for it)."""
LINK_NAME = "Sequential Thinking"
STATUS_LABEL = f"{LINK_NAME} Connected"
"""The status line a caller's link adds to the caller's ``mad-status``."""
DEFAULT_URL = f"http://{NAME}:{PORT}/mcp"
URL_VARIABLE = "SEQUENTIAL_THINKING_URL"
"""Where a caller reads this MAD's MCP endpoint (:mod:`mads.sequential_thinking.client`)."""

CONTRACT = MadContract(
    name=NAME,
    port=PORT,
    banner="SequentialThinkingV1",
    service="mads.sequential_thinking.service:build",
    description="MCP server with the sequentialthinking tool.",
    tools=(TOOL_NAME,),
    uses_bus=False,
    url_variable=URL_VARIABLE,
    status_labels=("Thoughts In Memory",),
    log_lines={"caller_connected": CONNECTED_LOG},
)
