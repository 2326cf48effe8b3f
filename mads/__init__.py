"""The MADs and what they share (:mod:`mads.core`)."""

from mads.core import sdk

sdk.defer_client_imports()  # before any ``mcp`` import: a MAD serving MCP needs no client
