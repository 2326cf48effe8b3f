"""Fiedler's MCP tools: thin — they check input, then hand over to the store and worker."""

import asyncio
import uuid
from typing import Annotated

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AfterValidator, Field
from typing_extensions import TypedDict  # pydantic needs it for output schemas before 3.12

from mads.core import channels, failpoints, tracing
from mads.core.errors import MadError
from mads.core.logs import quoted
from mads.core.relay import current_request_id
from mads.core.service import MadService
from mads.fiedler.contract import CONTRACT, TaskStatus
from mads.fiedler.store import StoreUnavailableError, Task, TaskStore
from mads.fiedler.worker import Worker

PREVIEW_CHARS = 200

CONVERSE = """Ask Fiedler something. Returns at once with the new task's id; the task is stored
before this reply. Poll fiedler_get_task_status for the outcome, or subscribe to the
returned stream_topic (mad.stream.<task_id>) for the answer as it is produced. Give a
request_id to retry safely: the same requester_id and request_id always return the same
task, however often the call is repeated, across Fiedler restarts."""
GET_STATUS = """The state of one task: status (PENDING, RUNNING, COMPLETED, FAILED or
CANCELLED), the prompt, result_payload once COMPLETED, error_details once FAILED or
CANCELLED, and timestamps."""
CANCEL = """Cancel a task: a PENDING one never runs; a RUNNING one has its provider call
aborted. Either ends CANCELLED, error_details saying who cancelled it, and the reply is the
task's state (as fiedler_get_task_status gives it). Cancelling a CANCELLED task again
changes nothing and gives the same reply; a COMPLETED or FAILED task cannot be cancelled
(an error, nothing changed)."""
CANCEL_WAIT_S = 2.0
"""How long fiedler_cancel_task waits for a running task's provider call to stop, so its
reply shows CANCELLED."""
CANCEL_POLL_S = 0.1
"""How often the store is read while waiting for another replica to stop a task."""
LIST_TASKS = """Recent tasks, newest first, optionally only those with a status or from one
requester. For operators: each entry shows the first 200 characters of the prompt."""
COUNT_TASKS = """How many tasks the store holds, in total and in each state (PENDING, RUNNING,
COMPLETED, FAILED, CANCELLED). For operators and support bundles."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


TaskId = Annotated[
    str, Field(min_length=1, max_length=128, description="The task_id fiedler_converse returned.")
]
RequesterId = Annotated[
    str,
    Field(min_length=1, max_length=128, description="Who is asking (a team, user or MAD name)."),
    AfterValidator(_not_blank),
]
RequestId = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:@-]+$",
        description="Optional idempotency key (letters, digits, . _ : @ -): a retry with the "
        "same requester_id and request_id returns the task the first call created.",
    ),
]


class ConverseReply(TypedDict):
    status: str
    task_id: str
    stream_topic: str


class TaskStatusReply(TypedDict):
    task_id: str
    status: str
    prompt: str
    result_payload: str | None
    error_details: str | None
    created_at: str
    updated_at: str


class TaskSummary(TypedDict):
    task_id: str
    status: str
    requester_id: str
    prompt_preview: str
    error_details: str | None
    created_at: str
    updated_at: str


class TaskCounts(TypedDict):
    total: int
    by_status: dict[str, int]


class TaskList(TypedDict):
    count: int
    tasks: list[TaskSummary]


def _unavailable(exc: StoreUnavailableError) -> ToolError:
    return ToolError(f"the task store is unavailable: {exc}")


def register(service: MadService, store: TaskStore, worker: Worker, max_prompt_chars: int) -> None:
    Prompt = Annotated[
        str,
        Field(
            min_length=1,
            max_length=max_prompt_chars,
            description=f"What to ask (1 to {max_prompt_chars} characters).",
        ),
        AfterValidator(_not_blank),
    ]

    @service.tool("fiedler_converse", description=CONVERSE)
    async def fiedler_converse(
        prompt: Prompt, requester_id: RequesterId, request_id: RequestId = None
    ) -> ConverseReply:
        # The client's own key when it gives one; otherwise a request relayed over the bus
        # carries its message id: delivered twice (the relay redelivers after a crash), it
        # still makes one task.
        key = f"request:{requester_id}:{request_id}" if request_id else current_request_id.get()
        try:
            task, created = await store.create(str(uuid.uuid4()), prompt, requester_id, key)
        except StoreUnavailableError as exc:
            raise _unavailable(exc) from None
        failpoints.hit("fiedler.converse.after_store")  # tests: a crash before the reply
        if created:
            service.log.info(CONTRACT.log_line("received", task_id=task.task_id))
            worker.announce_status(task)
            worker.submit(task.task_id, tracing.captured())
        return ConverseReply(
            status=task.status.lower(),
            task_id=task.task_id,
            stream_topic=channels.stream(task.task_id),
        )

    @service.tool("fiedler_get_task_status", description=GET_STATUS)
    async def fiedler_get_task_status(task_id: TaskId) -> TaskStatusReply:
        try:
            task = await store.get(task_id)
        except StoreUnavailableError as exc:
            raise _unavailable(exc) from None
        if task is None:
            raise ToolError(f"unknown task_id {quoted(task_id)}: no such task")
        return status_reply(task)

    @service.tool("fiedler_cancel_task", description=CANCEL)
    async def fiedler_cancel_task(
        task_id: TaskId,
        requester_id: Annotated[
            str | None,
            Field(min_length=1, max_length=128, description="Who is cancelling (for the record)."),
        ] = None,
    ) -> TaskStatusReply:
        by = f"{requester_id or 'a caller'} (fiedler_cancel_task)"
        try:
            return status_reply(await cancel(store, worker, task_id, by))
        except StoreUnavailableError as exc:
            raise _unavailable(exc) from None
        except CancelRefused as exc:
            raise ToolError(str(exc)) from None

    @service.tool("fiedler_list_tasks", description=LIST_TASKS)
    async def fiedler_list_tasks(
        status: Annotated[TaskStatus | None, Field(description="Only tasks in this state.")] = None,
        requester_id: Annotated[
            str | None, Field(max_length=128, description="Only tasks from this requester.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many (1-1000).")] = 50,
    ) -> TaskList:
        try:
            tasks = await store.recent(status, requester_id, limit)
        except StoreUnavailableError as exc:
            raise _unavailable(exc) from None
        return TaskList(count=len(tasks), tasks=[_summary(task) for task in tasks])

    @service.tool("fiedler_count_tasks", description=COUNT_TASKS)
    async def fiedler_count_tasks() -> TaskCounts:
        try:
            counts = await store.counts()
        except StoreUnavailableError as exc:
            raise _unavailable(exc) from None
        return TaskCounts(
            total=sum(counts.values()), by_status={str(k): v for k, v in counts.items()}
        )


class CancelRefused(MadError, ValueError):
    """The task is unknown or already finished; nothing was changed."""


async def cancel(store: TaskStore, worker: Worker, task_id: str, by: str) -> Task:
    """Cancel ``task_id`` (the one path for fiedler_cancel_task and MCP's tasks/cancel) and
    return it as it then is: CANCELLED, or still RUNNING if its provider call has not
    stopped within CANCEL_WAIT_S (it ends CANCELLED when it does). A task another replica
    runs hears of it through the store; this one watches the store for the outcome."""
    found = await store.cancel(task_id, by)
    if found is None:
        raise CancelRefused(f"unknown task_id {quoted(task_id)}: no such task")
    task, now_cancelled = found
    if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
        raise CancelRefused(
            f"task {quoted(task_id)} is already {task.status}: a finished task cannot be "
            "cancelled; nothing changed"
        )
    if now_cancelled:  # was PENDING: it never runs
        worker.changed(task)
        worker.end_stream(task, 0)
    elif task.status == TaskStatus.RUNNING and worker.request_cancel(task_id, by):
        await worker.wait_done(task_id, CANCEL_WAIT_S)
        task = await store.get(task_id) or task
    elif task.status == TaskStatus.RUNNING:
        task = await _outcome_within(store, task, CANCEL_WAIT_S)
    return task


async def _outcome_within(store: TaskStore, task: Task, timeout: float) -> Task:
    """The task once it is terminal, or as it is after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.status.terminal and loop.time() < deadline:
        await asyncio.sleep(CANCEL_POLL_S)
        task = await store.get(task.task_id) or task
    return task


def status_reply(task: Task) -> TaskStatusReply:
    """What fiedler_get_task_status answers for ``task``."""
    return TaskStatusReply(
        task_id=task.task_id,
        status=task.status,
        prompt=task.prompt,
        result_payload=task.result_payload,
        error_details=task.error_details,
        created_at=task.created_at,
        updated_at=task.updated_at,
    )


def _summary(task: Task) -> TaskSummary:
    return TaskSummary(
        task_id=task.task_id,
        status=task.status,
        requester_id=task.requester_id,
        prompt_preview=task.prompt[:PREVIEW_CHARS],
        error_details=task.error_details,
        created_at=task.created_at,
        updated_at=task.updated_at,
    )
