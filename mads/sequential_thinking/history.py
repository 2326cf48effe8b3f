"""The thought history of one Sequential Thinking process, bounded so memory stays flat.

Same bookkeeping as the public reference server (every thought appended; a thought joins a
branch only when it names both ``branchFromThought`` and ``branchId``), except that the
oldest thoughts and the oldest branches are dropped beyond their caps.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TypedDict


@dataclass(frozen=True)
class Thought:
    thought: str
    thought_number: int
    total_thoughts: int
    next_thought_needed: bool
    is_revision: bool | None = None
    revises_thought: int | None = None
    branch_from_thought: int | None = None
    branch_id: str | None = None
    needs_more_thoughts: bool | None = None


class ThoughtResult(TypedDict):
    thoughtNumber: int
    totalThoughts: int
    nextThoughtNeeded: bool
    branches: list[str]
    thoughtHistoryLength: int


class ThoughtHistory:
    def __init__(self, max_thoughts: int = 1000, max_branches: int = 100) -> None:
        self.max_thoughts = max_thoughts
        self.max_branches = max_branches
        self._thoughts: deque[Thought] = deque(maxlen=max_thoughts)
        self._branches: OrderedDict[str, deque[Thought]] = OrderedDict()
        self.total_processed = 0

    def __len__(self) -> int:
        return len(self._thoughts)

    @property
    def branch_ids(self) -> list[str]:
        """In the reference's order, JavaScript's ``Object.keys``: ids that are array
        indices ("0", "7", "10") first, ascending, then the rest as they first came."""
        indices = sorted((key for key in self._branches if _is_array_index(key)), key=int)
        return indices + [key for key in self._branches if not _is_array_index(key)]

    def branch_length(self, branch_id: str) -> int:
        return len(self._branches.get(branch_id, ()))

    def record(self, thought: Thought) -> ThoughtResult:
        total = max(thought.total_thoughts, thought.thought_number)
        if total != thought.total_thoughts:
            thought = Thought(**{**thought.__dict__, "total_thoughts": total})
        self._thoughts.append(thought)
        self.total_processed += 1
        if thought.branch_from_thought is not None and thought.branch_id:
            branch = self._branches.get(thought.branch_id)
            if branch is None:
                branch = deque(maxlen=self.max_thoughts)
                self._branches[thought.branch_id] = branch
                while len(self._branches) > self.max_branches:
                    self._branches.popitem(last=False)
            branch.append(thought)
        return ThoughtResult(
            thoughtNumber=thought.thought_number,
            totalThoughts=thought.total_thoughts,
            nextThoughtNeeded=thought.next_thought_needed,
            branches=self.branch_ids,
            thoughtHistoryLength=len(self._thoughts),
        )


_MAX_ARRAY_INDEX = 2**32 - 2


def _is_array_index(key: str) -> bool:
    """Whether JavaScript treats ``key`` as an array index: the canonical decimal form of an
    integer from 0 to 2**32 - 2 ("7", not "07", "+7" or "7.0")."""
    return key.isascii() and key.isdigit() and str(int(key)) == key and int(key) <= _MAX_ARRAY_INDEX
