"""``mad-cli <tool> '<json>'``: call one of this MAD's tools and print the JSON result.

Exit codes: 0 success; 1 the tool reported an error or the MAD is unreachable; 2 a usage
error found before calling (invalid JSON, not an object, unknown tool).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from mads.core.cli.target import TargetError, base_url
from mads.core.mcp_client import McpUnreachableError, error_text, result_data, session


class UsageError(Exception):
    pass


def parse_arguments(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"arguments are not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"arguments must be a JSON object, not {type(value).__name__}")
    return value


def bearer_token(explicit: str | None) -> str | None:
    """``--token``, else ``$MAD_API_TOKEN``, else the first of ``$GRACE_API_TOKENS`` (so
    ``mad-cli`` inside Grace's own container works when Grace requires tokens)."""
    if explicit:
        return explicit
    if os.environ.get("MAD_API_TOKEN"):
        return os.environ["MAD_API_TOKEN"]
    tokens = [t.strip() for t in os.environ.get("GRACE_API_TOKENS", "").split(",") if t.strip()]
    return tokens[0] if tokens else None


async def call(
    url: str, tool: str, arguments: dict[str, Any], timeout: float, token: str | None = None
) -> tuple[bool, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with session(url, timeout=timeout, headers=headers) as s:
        tools = sorted(t.name for t in (await s.list_tools()).tools)
        if tool not in tools:
            raise UsageError(f"unknown tool {tool!r}; available: {', '.join(tools) or 'none'}")
        result = await s.call_tool(tool, arguments)
    if getattr(result, "is_error", False):
        return False, error_text(result, tool)
    return True, result_data(result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mad-cli",
        description="Call one of the MAD's MCP tools and print the JSON result.",
        epilog='example: mad-cli fiedler_get_task_status \'{"task_id": "..."}\'',
    )
    parser.add_argument("tool", help="tool name (an unknown name lists the available ones)")
    parser.add_argument("arguments", nargs="?", help="tool arguments as a JSON object")
    parser.add_argument("--url", help="the MAD's base URL (default: http://127.0.0.1:$MAD_PORT)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument(
        "--token", help="bearer token (default: $MAD_API_TOKEN or the first of $GRACE_API_TOKENS)"
    )
    args = parser.parse_args(argv)
    try:
        arguments = parse_arguments(args.arguments)
        url = f"{base_url(args.url)}/mcp"
        token = bearer_token(args.token)
        ok, data = asyncio.run(call(url, args.tool, arguments, args.timeout, token))
    except (UsageError, TargetError) as exc:
        print(f"mad-cli: {exc}", file=sys.stderr)
        return 2
    except McpUnreachableError as exc:
        print(f"mad-cli: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if not ok:
        print(f"mad-cli: {args.tool} failed: {data}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
