"""Any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM, llama.cpp server).

The request asks for ``stream: true``; content deltas are emitted as they arrive (an
endpoint that answers with one JSON body instead is accepted too). When the Sequential
Thinking link knows the ``sequentialthinking`` tool, the model is offered it; every call
the model makes is carried out against the real service and the result fed back, for at
most ``max_tool_rounds`` rounds (the last round offers no tools, so the model must answer).

Connection failures, timeouts, HTTP 429 and 5xx are retried with backoff — but only while
nothing of that response has been emitted, so the stream never repeats itself. Whatever
finally fails becomes a :class:`ProviderError` naming the cause. The API key is sent as a
bearer token and never logged or echoed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from mads.core.mcp_client import McpToolError, McpUnreachableError
from mads.fiedler.providers import Emit, ProviderError
from mads.sequential_thinking.client import TOOL_NAME, ThinkingLink

NAME = "openai"
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A failure worth another attempt (nothing of the response was emitted yet)."""


@dataclass
class ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def as_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class Turn:
    """One assistant response, assembled from streamed chunks."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, ToolCall] = field(default_factory=dict)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [self.calls[i] for i in sorted(self.calls)]

    def add_delta(self, delta: dict[str, Any], emit: Emit) -> None:
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.text.append(content)
            emit(content)
        for position, part in enumerate(delta.get("tool_calls") or []):
            index = part.get("index", position)
            call = self.calls.setdefault(index, ToolCall())
            call.id = part.get("id") or call.id
            function = part.get("function") or {}
            call.name = function.get("name") or call.name
            call.arguments += function.get("arguments") or ""

    def add_message(self, message: dict[str, Any], emit: Emit) -> None:
        """A whole (non-streamed) assistant message."""
        self.add_delta(
            {
                "content": message.get("content"),
                "tool_calls": [
                    {**call, "index": i} for i, call in enumerate(message.get("tool_calls") or [])
                ],
            },
            emit,
        )


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined with newlines)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _error_message(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.strip()[:300] or "no details"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    if error:
        return str(error)[:300]
    return body.strip()[:300]


class OpenAIProvider:
    name = NAME

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: SecretStr | None,
        timeout_s: float,
        retries: int,
        max_tool_rounds: int,
        link: ThinkingLink | None,
        logger: logging.Logger,
        concurrency: int,
        backoff_s: float = 0.5,
    ) -> None:
        """``concurrency``: how many tasks call the endpoint at once (each makes one request
        at a time). The connection pool holds that many, so it is never a ceiling of its own
        below ``FIEDLER_MAX_CONCURRENCY`` (httpx's default pool holds 100)."""
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_tool_rounds = max_tool_rounds
        self.link = link
        self.log = logger
        self.backoff_s = backoff_s
        headers = {"Accept": "text/event-stream"}
        if api_key is not None and api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def close(self) -> None:
        await self._client.aclose()

    def _scrub(self, text: str) -> str:
        secret = self._api_key.get_secret_value() if self._api_key is not None else ""
        return text.replace(secret, "***") if secret else text

    # -- the conversation ------------------------------------------------------------------

    async def answer(self, prompt: str, emit: Emit) -> str:
        emitted: list[str] = []

        def collect(piece: str) -> None:
            emitted.append(piece)
            emit(piece)

        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        for round_ in range(self.max_tool_rounds + 1):
            tools = self._tools() if round_ < self.max_tool_rounds else None
            turn = await self._complete(messages, tools, collect)
            calls = turn.tool_calls
            if not calls:
                return "".join(emitted)
            if tools is None:
                break
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(turn.text) or None,
                    "tool_calls": [call.as_message() for call in calls],
                }
            )
            for call in calls:
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": await self._run(call)}
                )
        raise ProviderError(
            f"the model kept calling tools after {self.max_tool_rounds} round(s) "
            "(FIEDLER_LLM_MAX_TOOL_ROUNDS) without giving an answer"
        )

    def _tools(self) -> list[dict[str, Any]] | None:
        schema = self.link.tool_schema if self.link is not None else None
        if schema is None:
            return None
        return [
            {
                "type": "function",
                "function": {
                    "name": schema["name"],
                    "description": schema["description"],
                    "parameters": schema["inputSchema"],
                },
            }
        ]

    async def _run(self, call: ToolCall) -> str:
        """Carry out one tool call; the result (or the tool's error) goes back to the model."""
        assert self.link is not None
        if call.name != TOOL_NAME:
            return json.dumps({"error": f"unknown tool {call.name!r}"})
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            return json.dumps({"error": "tool arguments are not valid JSON"})
        if not isinstance(arguments, dict):
            return json.dumps({"error": "tool arguments must be a JSON object"})
        try:
            result = await self.link.think(arguments)
        except McpUnreachableError as exc:
            raise ProviderError(
                f"Failed to connect to dependency: Sequential Thinking ({exc.reason})"
            ) from None
        except McpToolError as exc:
            return json.dumps({"error": str(exc)})
        return json.dumps(result)

    # -- one request, with retries ---------------------------------------------------------

    async def _complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, emit: Emit
    ) -> Turn:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if tools:
            body["tools"] = tools
        reason = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), 8.0))
            turn = Turn()
            try:
                await self._request(body, turn, emit)
                return turn
            except _Retryable as exc:
                reason = str(exc)
                if turn.text:
                    raise ProviderError(
                        f"the response from {self.base_url} broke off after "
                        f"{len(turn.text)} chunk(s): {reason}"
                    ) from None
                self.log.warning(
                    "LLM request to %s failed (attempt %d of %d): %s",
                    self.base_url,
                    attempt + 1,
                    self.retries + 1,
                    reason,
                )
        raise ProviderError(
            f"LLM endpoint {self.base_url} failed after {self.retries + 1} attempt(s) "
            f"(FIEDLER_LLM_RETRIES={self.retries}): {reason}"
        )

    async def _request(self, body: dict[str, Any], turn: Turn, emit: Emit) -> None:
        try:
            async with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code >= 400:
                    text = self._scrub((await response.aread()).decode(errors="replace"))
                    problem = f"HTTP {response.status_code}: {_error_message(text)}"
                    if response.status_code in RETRYABLE_STATUS:
                        raise _Retryable(problem)
                    raise ProviderError(f"LLM endpoint {self.url} answered {problem}")
                content_type = response.headers.get("content-type", "")
                if content_type.startswith("application/json"):
                    self._whole(json.loads(await response.aread()), turn, emit)
                else:
                    await self._streamed(response, turn, emit)
        except httpx.TimeoutException:
            raise _Retryable(
                f"no response within {self.timeout_s:g} s (FIEDLER_LLM_TIMEOUT_S)"
            ) from None
        except httpx.TransportError as exc:
            detail = self._scrub(str(exc).strip() or type(exc).__name__)
            raise _Retryable(f"cannot reach {self.url}: {detail}") from None
        except ValueError as exc:
            raise ProviderError(f"LLM endpoint sent a malformed response: {exc}") from None

    async def _streamed(self, response: httpx.Response, turn: Turn, emit: Emit) -> None:
        async for data in sse_events(response.aiter_lines()):
            if data.strip() == "[DONE]":
                return
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise ValueError("a streamed chunk is not a JSON object")
            if chunk.get("error"):
                raise ProviderError(
                    f"LLM endpoint reported an error: {_error_message(json.dumps(chunk))}"
                )
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                turn.add_delta(choice.get("delta") or {}, emit)

    def _whole(self, reply: Any, turn: Turn, emit: Emit) -> None:
        if not isinstance(reply, dict) or not reply.get("choices"):
            raise ValueError("the reply has no choices")
        choice = reply["choices"][0]
        turn.add_message(choice.get("message") or {}, emit)
