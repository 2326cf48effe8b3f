"""Each task's stream chunks, in this process, for MCP clients that asked for progress.

The worker announces every chunk on ``mad.stream.<task_id>`` for the bus and also puts it
here; a ``tasks/result`` with a ``progressToken`` follows the task's chunks from the first
(kept for the most recent tasks, so a client that asks late still sees them all) to the one
marked ``done``, and sends each as an MCP progress notification.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

Chunk = Mapping[str, Any]
"""What the worker announces: ``task_id``, ``seq``, ``delta`` or ``done``."""


class _Kept:
    def __init__(self, max_chunks: int) -> None:
        self.chunks: deque[Chunk] = deque(maxlen=max_chunks)
        self.changed = asyncio.Event()
        self.done = False


class ChunkFeed:
    def __init__(self, max_tasks: int = 200, max_chunks: int = 2000) -> None:
        self.max_tasks = max_tasks
        self.max_chunks = max_chunks
        self._tasks: OrderedDict[str, _Kept] = OrderedDict()

    def _kept(self, task_id: str) -> _Kept:
        kept = self._tasks.get(task_id)
        if kept is None:
            kept = self._tasks[task_id] = _Kept(self.max_chunks)
            while len(self._tasks) > self.max_tasks:
                _, dropped = self._tasks.popitem(last=False)
                dropped.done = True  # a follower of a forgotten task stops
                dropped.changed.set()
        return kept

    def put(self, task_id: str, chunk: Chunk) -> None:
        kept = self._kept(task_id)
        kept.chunks.append(chunk)
        kept.done = kept.done or bool(chunk.get("done"))
        kept.changed.set()
        kept.changed = asyncio.Event()

    async def follow(self, task_id: str) -> AsyncIterator[Chunk]:
        """The task's chunks, kept ones first, until its ``done`` chunk."""
        kept = self._kept(task_id)
        seen = 0
        while True:
            changed = kept.changed
            for chunk in list(kept.chunks):
                seq = int(chunk.get("seq", 0))
                if seq > seen:
                    seen = seq
                    yield chunk
            if kept.done:
                return
            await changed.wait()
