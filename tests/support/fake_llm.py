"""A small OpenAI-compatible Chat Completions server on loopback, for the tests that run
Fiedler (its own and Grace's).

It streams (SSE) like the real API and behaves according to the prompt:

- ``think: <text>`` with the ``sequentialthinking`` tool offered: one streamed tool call
  (arguments split across chunks); once the tool result comes back, an answer quoting the
  ``thoughtHistoryLength`` the real Sequential Thinking service returned;
- ``status: <code>``: that HTTP error, always; ``flaky: ...``: 503 on the first request,
  then an echo; ``hang``: no answer for a minute;
- anything else: ``Echo: <prompt>`` streamed word by word, ``delay`` seconds apart.

``answer_delay`` makes every answer take that long before its first chunk (the slow LLM of
the concurrency tests); ``in_flight`` is how many requests it is answering right now and
``peak`` the most it ever answered at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.ports import free_port
from tests.support.waiting import wait_for


def echo_chunks(prompt: str) -> list[str]:
    words = prompt.split(" ")
    return ["Echo", ": "] + [w if i == len(words) - 1 else f"{w} " for i, w in enumerate(words)]


class FakeLLM:
    def __init__(self) -> None:
        self.port = free_port()
        self.delay = 0.0
        self.answer_delay = 0.0
        self.in_flight = 0
        self.peak = 0
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self._seen: set[str] = set()
        self.streaming: set[str] = set()
        self.disconnects: list[str] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def fiedler_env(self) -> dict[str, str]:
        """What points a Fiedler at this endpoint."""
        return {
            "FIEDLER_LLM_PROVIDER": "openai",
            "FIEDLER_LLM_BASE_URL": self.base_url,
            "FIEDLER_LLM_MODEL": "test-model",
        }

    def start(self) -> FakeLLM:
        app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        server = self._server
        wait_for(lambda: server.started, timeout=10, interval=0.02, what="the fake LLM server")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def requests_for(self, prompt: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["messages"][0]["content"] == prompt]

    async def _complete(self, request: Request) -> Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        streaming = False
        try:
            response = await self._answer(request)
            streaming = isinstance(response, StreamingResponse)
            return response
        finally:
            if not streaming:  # a stream counts until it ends (events())
                self.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        messages = body["messages"]
        prompt = messages[0]["content"]
        if prompt.startswith("status: "):
            return JSONResponse(
                {"error": {"message": "simulated failure", "type": "test"}},
                status_code=int(prompt.split()[1]),
            )
        if prompt.startswith("flaky: ") and prompt not in self._seen:
            self._seen.add(prompt)
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if prompt == "hang":
            await asyncio.sleep(60)
        if prompt.startswith("slow: "):
            return self._stream(body, [{"content": "Thinking"}], stall=60.0, prompt=prompt)
        if messages[-1]["role"] == "tool":
            result = json.loads(messages[-1]["content"])
            n = result["thoughtHistoryLength"]
            return self._stream(body, [{"content": c} for c in ("Thought ", "recorded", f" ({n})")])
        offered = [t["function"]["name"] for t in body.get("tools") or []]
        if prompt.startswith("think: ") and "sequentialthinking" in offered:
            arguments = json.dumps(
                {
                    "thought": prompt.removeprefix("think: "),
                    "thoughtNumber": 1,
                    "totalThoughts": 1,
                    "nextThoughtNeeded": False,
                }
            )
            third = len(arguments) // 3
            parts = [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]
            deltas: list[dict[str, Any]] = [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "sequentialthinking", "arguments": ""},
                        }
                    ],
                }
            ]
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in parts]
            return self._stream(body, deltas, finish="tool_calls")
        return self._stream(body, [{"content": c} for c in echo_chunks(prompt)])

    def _stream(
        self,
        body: dict[str, Any],
        deltas: list[dict[str, Any]],
        finish: str = "stop",
        stall: float = 0.0,
        prompt: str = "",
    ) -> StreamingResponse:
        delay, answer_delay = self.delay, self.answer_delay

        def chunk(delta: dict[str, Any], reason: str | None) -> str:
            data = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            }
            return f"data: {json.dumps(data)}\n\n"

        async def events() -> AsyncIterator[str]:
            self.streaming.add(prompt)
            finished = False
            try:
                if answer_delay:
                    await asyncio.sleep(answer_delay)
                for delta in deltas:
                    if delay:
                        await asyncio.sleep(delay)
                    yield chunk(delta, None)
                if stall:
                    await asyncio.sleep(stall)
                yield chunk({}, finish)
                yield "data: [DONE]\n\n"
                finished = True
            finally:
                self.in_flight -= 1
                self.streaming.discard(prompt)
                if not finished:
                    self.disconnects.append(prompt)

        return StreamingResponse(events(), media_type="text/event-stream")
