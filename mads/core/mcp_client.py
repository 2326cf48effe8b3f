"""Calling MCP tools through the official client (``mad-cli``, MAD-to-MAD links, Grace).

Connection failures come out as :class:`McpUnreachableError` naming the URL, whatever the
SDK's task groups wrapped them in, so callers print one line instead of a traceback.

The SDK's client is imported by the first :func:`session`, not with this module: most
MADs never call out over MCP, and those that do (Sequential Thinking's callers) only once
they call.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx2

from mads.core.errors import MadError

if TYPE_CHECKING:
    from mcp.client.session import ClientSession

DEFAULT_TIMEOUT = 30.0


class McpUnreachableError(MadError, ConnectionError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class McpToolError(MadError, RuntimeError):
    """The tool ran and reported an error (``isError``); the message is the server's."""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found.extend(_leaves(inner))
        return found
    return [exc]


def _reason(exc: BaseException) -> str | None:
    """A short reason if ``exc`` is a transport failure, else None."""
    for leaf in _leaves(exc):
        chain: BaseException | None = leaf
        while chain is not None:
            if isinstance(chain, httpx2.ConnectError | ConnectionRefusedError):
                return "connection refused (is it running?)"
            if isinstance(chain, httpx2.TimeoutException | TimeoutError):
                return "timed out"
            if isinstance(chain, httpx2.HTTPStatusError):
                return f"HTTP {chain.response.status_code}"
            if isinstance(chain, httpx2.TransportError | OSError):
                return str(chain) or type(chain).__name__
            chain = chain.__cause__ or chain.__context__
    return None


@contextlib.asynccontextmanager
async def session(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    verify: str | bool = True,
    on_response: Callable[[httpx2.Response], Awaitable[None]] | None = None,
) -> AsyncIterator[ClientSession]:
    """An initialized client session; transport failures raise :class:`McpUnreachableError`.
    ``verify``: a CA file an HTTPS server's certificate must chain to (or the system's).
    ``on_response`` sees every HTTP response before the SDK reads it (the SDK reports a
    refusal such as 401 without its status: a caller that wants to say which can)."""
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    hooks = {"response": [on_response]} if on_response is not None else None
    client = httpx2.AsyncClient(
        headers=dict(headers or {}), timeout=timeout, verify=verify, event_hooks=hooks
    )
    try:
        async with (
            client,
            streamable_http_client(url, http_client=client) as (read, write, *_),
            ClientSession(read, write) as client_session,
        ):
            await client_session.initialize()
            yield client_session
    except McpUnreachableError:
        raise
    except Exception as exc:
        reason = _reason(exc)
        if reason is not None:
            raise McpUnreachableError(url, reason) from None
        leaves = _leaves(exc)
        if len(leaves) == 1 and leaves[0] is not exc:
            raise leaves[0] from None
        raise


async def list_tools(url: str, **kwargs: Any) -> list[Any]:
    async with session(url, **kwargs) as s:
        return list((await s.list_tools()).tools)


def result_data(result: Any) -> Any:
    """The tool's result as plain data: structured content, else the text parsed as JSON,
    else the text."""
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        if isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    texts = [c.text for c in getattr(result, "content", []) if getattr(c, "type", "") == "text"]
    text = "\n".join(texts)
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_text(result: Any, tool: str | None = None) -> str:
    """The error a tool reported, without the SDK's ``Error executing tool <name>: `` prefix
    (the caller already names the tool)."""
    texts = [c.text for c in getattr(result, "content", []) if getattr(c, "type", "") == "text"]
    text = " ".join(t.strip() for t in texts).strip() or "the tool reported an error"
    return strip_sdk_prefix(text, tool)


def strip_sdk_prefix(message: str, tool: str | None) -> str:
    if tool:
        return message.removeprefix(f"Error executing tool {tool}: ")
    return message


async def call_tool(
    url: str,
    name: str,
    arguments: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Call one tool; return its data or raise :class:`McpToolError`."""
    async with session(url, **kwargs) as s:
        result = await s.call_tool(name, dict(arguments or {}))
    if getattr(result, "is_error", False):
        raise McpToolError(error_text(result, name))
    return result_data(result)
