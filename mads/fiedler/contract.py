"""Fiedler's contract: the orchestrator. ``fiedler_converse`` stores a task and answers at
once; the task runs ``PENDING -> RUNNING -> COMPLETED | FAILED`` (or ``CANCELLED``, from
``PENDING`` or ``RUNNING``), each change logged and published on ``mad.fiedler.task.status``,
output chunks on ``mad.stream.<task_id>``."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from mads.core import channels
from mads.core.contract import BusAccess, DataFile, MadContract, TaskTools
from mads.sequential_thinking.contract import NAME as SEQUENTIAL_THINKING
from mads.sequential_thinking.contract import STATUS_LABEL as THINKING_STATUS

NAME = "fiedler"
TASK_STATUS_CHANNEL = "mad.fiedler.task.status"
DATABASE_LABEL = "Database Status"
VOLUME_BYTES_VARIABLE = "FIEDLER_VOLUME_BYTES"
DB_FILE = DataFile(
    variable="FIEDLER_DB_PATH", filename="fiedler_state.db", size_variable=VOLUME_BYTES_VARIABLE
)
DEFAULT_DATA_DIR = "/data"
LLM_VARIABLES = {
    "provider": "FIEDLER_LLM_PROVIDER",
    "base_url": "FIEDLER_LLM_BASE_URL",
    "model": "FIEDLER_LLM_MODEL",
    "api_key": "FIEDLER_LLM_API_KEY",
}
"""The variables naming Fiedler's answer provider (``builtin`` or ``openai``)."""

TaskStore = Literal["sqlite", "postgresql"]
"""Where Fiedler keeps its tasks: the SQLite file in its data directory (one writer, so one
replica) or a PostgreSQL database that any number of replicas share."""
SHARED_STORE: TaskStore = "postgresql"
"""The store several replicas may share."""
STORE_VARIABLES = {
    "store": "FIEDLER_STORE",
    "uri": "FIEDLER_STORE_URI",
}
"""The variables choosing Fiedler's task store (the URI is a secret: it holds a password)."""
ONE_WRITER = "the SQLite store has one writer, so Fiedler runs one replica on it"
"""Why more than one replica needs the shared store (Fiedler's words and the declaration's)."""

LLMProvider = Literal["builtin", "openai"]
"""Where Fiedler's answers come from: the built-in responder (operational checks only) or
any OpenAI-compatible endpoint."""
LLM_REQUIRES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"builtin": (), "openai": ("base_url", "model")}
)
"""The settings (keys of :data:`LLM_VARIABLES`) each provider cannot work without: the one
rule, which Fiedler's settings and the MadGroup declaration both check in their words."""
LLM_KEYED: tuple[str, ...] = ("openai",)
"""The providers an API key applies to."""


def llm_missing(provider: str, given: Mapping[str, object]) -> tuple[str, ...]:
    """What ``provider`` requires that ``given`` (settings by key) leaves empty."""
    return tuple(key for key in LLM_REQUIRES.get(provider, ()) if not given.get(key))


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


CONTRACT = MadContract(
    name=NAME,
    port=8003,
    banner="FiedlerV1",
    service="mads.fiedler.service:build",
    description="The orchestrator: durable tasks answered by an LLM provider.",
    tools=(
        "fiedler_converse",
        "fiedler_get_task_status",
        "fiedler_list_tasks",
        "fiedler_cancel_task",
        "fiedler_count_tasks",
    ),
    report_tools=("fiedler_count_tasks",),
    peers=(SEQUENTIAL_THINKING,),
    bus=BusAccess(publishes=(TASK_STATUS_CHANNEL, channels.STREAMS), serves_tools=True),
    status_labels=(THINKING_STATUS, DATABASE_LABEL),
    log_lines={
        "database": "Initialized SQLite state database at {path}...",
        "database_shared": "Initialized PostgreSQL task store at {location}...",
        "received": "Received new task {task_id}",
        "status": "Task {task_id} status changed to {status}",
    },
    data=DB_FILE,
    secrets=(LLM_VARIABLES["api_key"], STORE_VARIABLES["uri"]),
    tasks=TaskTools(
        start="fiedler_converse",
        status="fiedler_get_task_status",
        cancel="fiedler_cancel_task",
        states={
            TaskStatus.PENDING: "working",
            TaskStatus.RUNNING: "working",
            TaskStatus.COMPLETED: "completed",
            TaskStatus.FAILED: "failed",
            TaskStatus.CANCELLED: "cancelled",
        },
        status_channel=TASK_STATUS_CHANNEL,
        stream_prefix=channels.STREAM_PREFIX,
    ),
)
