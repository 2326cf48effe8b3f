"""The MADs and what they share (:mod:`mads.core`)."""

from mads import mcp_package

mcp_package.defer_init()  # before any ``mcp`` import: a MAD serving MCP needs no client
