"""``mad-cli <tool> '<json>'``: call one of this MAD's tools and print the JSON result.

Exit codes: 0 success; 1 the tool reported an error or the MAD could not be reached or
refused the call; 2 a usage error found before calling (invalid JSON, not an object, a bad
``--url``, ``--timeout`` or token, an unknown tool). Every failure is one line on stderr.
Usage errors are found before the MCP client is even imported, so they answer at once.

A refusal says which one, with its HTTP status (the SDK itself reports only "Server
returned an error response"): ``Grace refused the call: wrong bearer token (HTTP 401): ...``,
``no MCP endpoint at <url> (HTTP 404): ...``, or the MAD's own reason (a token's scope: 403;
over its rate: 429).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mads.core.cli.target import TargetError, base_url, checked_token, seconds, tls_verify
from mads.core.contract import INTERNAL_TOKEN_VARIABLE
from mads.core.errors import MadError
from mads.core.logs import one_line, quoted
from mads.core.registry import contracts

if TYPE_CHECKING:
    import httpx2

MAX_ARGUMENT_BYTES = 4 * 1024 * 1024
INTERNAL_REALM = "madgroup-internal"
"""The realm of the group's internal credential (``WWW-Authenticate``)."""


class UsageError(MadError):
    pass


@dataclass(frozen=True)
class Refusal:
    """An HTTP refusal the MAD answered with instead of MCP."""

    status: int
    reason: str
    """The MAD's own words (its ``{"error": ...}``, else the body's first line), one line."""
    realm: str


class RefusedError(MadError):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"HTTP {refusal.status}")
        self.refusal = refusal


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``mad-cli: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_arguments(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    if len(text) > MAX_ARGUMENT_BYTES:
        raise UsageError(f"arguments are over {MAX_ARGUMENT_BYTES} characters")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"arguments are not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise UsageError("arguments are nested too deeply") from None
    if not isinstance(value, dict):
        raise UsageError(f"arguments must be a JSON object, not {type(value).__name__}")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            "arguments hold text that is not valid Unicode (a lone surrogate such as \\ud800)"
        ) from None
    except RecursionError:
        raise UsageError("arguments are nested too deeply") from None
    return value


def bearer_token(explicit: str | None) -> str | None:
    """``--token``, else ``$MAD_API_TOKEN``, else the first of the tokens this MAD's
    contract says its clients present (so ``mad-cli`` inside Grace's own container works
    when Grace requires tokens), else the group's internal credential (so it works inside
    every other MAD's)."""
    if explicit:
        return checked_token(explicit)
    if os.environ.get("MAD_API_TOKEN"):
        return checked_token(os.environ["MAD_API_TOKEN"])
    own = contracts().get(os.environ.get("MAD_NAME", "").strip())
    variable = own.client_token_variable if own else None
    tokens = [t.strip() for t in os.environ.get(variable or "", "").split(",") if t.strip()]
    if tokens:
        return checked_token(tokens[0])
    internal = os.environ.get(INTERNAL_TOKEN_VARIABLE, "").strip()
    if not internal and os.environ.get(f"{INTERNAL_TOKEN_VARIABLE}_FILE"):
        with contextlib.suppress(OSError):
            internal = Path(os.environ[f"{INTERNAL_TOKEN_VARIABLE}_FILE"]).read_text().strip()
    return checked_token(internal) if internal else None


async def call(
    url: str, tool: str, arguments: dict[str, Any], timeout: float, token: str | None = None
) -> tuple[bool, Any]:
    from mads.core.mcp_client import error_text, result_data, session  # the SDK: ~0.4 s

    headers = {"Authorization": f"Bearer {token}"} if token else None
    refusals: list[Refusal] = []

    async def note(response: httpx2.Response) -> None:
        if response.status_code >= 400 and not refusals:
            await response.aread()
            refusal = _refusal(response)
            if refusal is not None:
                refusals.append(refusal)

    try:
        async with session(
            url, timeout=timeout, headers=headers, verify=tls_verify(), on_response=note
        ) as s:
            tools = sorted(t.name for t in (await s.list_tools()).tools)
            if tool not in tools:
                raise UsageError(
                    f"unknown tool {quoted(tool)}; available: {', '.join(tools) or 'none'}"
                )
            result = await s.call_tool(tool, arguments)
    except UsageError:
        raise
    except Exception:
        if refusals:  # what the SDK reported as a bare error: the MAD said no, and why
            raise RefusedError(refusals[0]) from None
        raise
    if getattr(result, "is_error", False):
        return False, error_text(result, tool)
    return True, result_data(result)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mad-cli",
        description="Call one of the MAD's MCP tools and print the JSON result.",
        epilog='example: mad-cli <tool> \'{"argument": "value"}\' (run it with an unknown '
        "tool name to list the MAD's tools)",
    )
    parser.add_argument("tool", help="tool name (an unknown name lists the available ones)")
    parser.add_argument("arguments", nargs="?", help="tool arguments as a JSON object")
    parser.add_argument("--url", help="the MAD's base URL (default: http://127.0.0.1:$MAD_PORT)")
    parser.add_argument("--timeout", type=seconds, default=30.0, help="seconds (default 30)")
    parser.add_argument(
        "--token",
        help="bearer token (default: $MAD_API_TOKEN, or the first token this MAD accepts)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.tool.isprintable() or len(args.tool) > 256:
            raise UsageError("the tool name must be printable and at most 256 characters")
        arguments = parse_arguments(args.arguments)
        base = base_url(args.url)
        url = f"{base}/mcp"
        token = bearer_token(args.token)
    except (UsageError, TargetError) as exc:
        print(f"mad-cli: {exc}", file=sys.stderr)
        return 2
    who = _who(base) if args.url else _who(base, os.environ.get("MAD_NAME", "").strip())
    return _call_and_print(url, args.tool, arguments, args.timeout, token, who)


def _who(url: str, name: str = "") -> str:
    """How a refusal names the MAD: by its name when this is its own environment."""
    if name in contracts():
        return name.replace("_", " ").title()
    return f"the MAD at {url}"


def _refusal(response: httpx2.Response) -> Refusal | None:
    """The refusal in a non-2xx reply; None for a JSON-RPC error (the SDK reports those
    in the MAD's words already)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "jsonrpc" in body:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        reason = body["error"]
    else:
        lines = response.text.strip().splitlines()
        reason = lines[0] if lines else ""
    realm = response.headers.get("www-authenticate", "").partition('realm="')[2].rstrip('"')
    return Refusal(response.status_code, one_line(reason, 300), realm)


def refusal_message(refusal: Refusal, url: str, who: str, token_sent: bool) -> str:
    """One line saying what the MAD refused and what to do about it."""
    status, reason = refusal.status, refusal.reason
    if status == 404:
        return f"no MCP endpoint at {url} (HTTP 404): a MAD serves MCP at /mcp on its port"
    if status == 401 and refusal.realm == INTERNAL_REALM:
        what = "wrong internal credential" if token_sent else "no internal credential"
        return (
            f"{who} refused the call: {what} (HTTP 401): it serves the group only; run "
            "mad-cli in the MAD's own environment, or call its tools through the front door"
        )
    if status == 401:
        if token_sent:
            return f"{who} refused the call: wrong bearer token (HTTP 401): check --token"
        return (
            f"{who} refused the call: missing bearer token (HTTP 401): pass --token or set "
            "$MAD_API_TOKEN"
        )
    if status == 429:
        return f"{who} refused the call (HTTP 429): {reason or 'too many requests'}; retry"
    if 400 <= status < 500:
        return f"{who} refused the call (HTTP {status}): {reason or 'no reason given'}"
    return f"{who} failed the call (HTTP {status}): {reason or 'no reason given'}"


def _call_and_print(
    url: str,
    tool: str,
    arguments: dict[str, Any],
    timeout: float,
    token: str | None,
    who: str = "the MAD",
) -> int:
    from mads.core.mcp_client import McpUnreachableError

    try:
        ok, data = asyncio.run(call(url, tool, arguments, timeout, token))
    except UsageError as exc:
        print(f"mad-cli: {exc}", file=sys.stderr)
        return 2
    except RefusedError as exc:
        message = refusal_message(exc.refusal, url, who, token is not None)
        print(f"mad-cli: {message}", file=sys.stderr)
        return 1
    except McpUnreachableError as exc:
        print(f"mad-cli: {exc}{_hint(exc.reason)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # anything else the transport raised: one line, not a traceback
        print(f"mad-cli: calling {tool} at {url} failed: {_first_line(exc)}", file=sys.stderr)
        return 1
    if not ok:
        print(f"mad-cli: {tool} failed: {_first_line(data)}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2))
    return 0


def _hint(reason: str) -> str:
    if reason == "HTTP 401":
        return " (a bearer token is required or was refused: --token or $MAD_API_TOKEN)"
    if reason == "HTTP 403":
        return " (the token may not call this tool)"
    if reason == "HTTP 404":
        return " (no MCP endpoint at that URL: the MAD serves it at /mcp)"
    if reason == "HTTP 503":
        return " (the MAD is busy: retry shortly)"
    return ""


def _first_line(value: Any) -> str:
    text = str(value).strip() or type(value).__name__
    return text.splitlines()[0][:500]


if __name__ == "__main__":
    sys.exit(main())
