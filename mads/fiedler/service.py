"""Fiedler, the orchestrator: durable tasks answered by an LLM provider.

Wiring only: settings, the bus, the Sequential Thinking link, the task store, the provider,
the worker, the MCP tools, and the durable request stream ``mad.fiedler.requests`` through
which a relay (Grace) hands work over even while Fiedler restarts.
"""

from __future__ import annotations

import logging

from mads.core.relay import ToolRequestServer
from mads.core.service import MadService
from mads.core.settings import load_settings
from mads.fiedler import mcp_tasks, tools
from mads.fiedler.announcer import Announcer
from mads.fiedler.database import Database
from mads.fiedler.metrics import FiedlerCollector
from mads.fiedler.providers import Provider
from mads.fiedler.providers.builtin import BuiltinProvider
from mads.fiedler.settings import FiedlerSettings
from mads.fiedler.store import TaskStore
from mads.fiedler.worker import Worker
from mads.sequential_thinking import client
from mads.sequential_thinking.client import ThinkingLink

NAME = "fiedler"
INSTRUCTIONS = (
    "The MAD group's orchestrator: fiedler_converse starts a task (or, called as an MCP task, "
    "answers with its handle), fiedler_get_task_status reports it, fiedler_cancel_task "
    "cancels it, fiedler_list_tasks lists them."
)
# Fiedler runs one replica and fiedler_converse is idempotent per request, so a request an
# earlier incarnation read but never acknowledged can be taken over quickly.
CLAIM_IDLE_MS = 5_000


def make_provider(
    settings: FiedlerSettings, link: ThinkingLink, logger: logging.Logger
) -> Provider:
    if settings.fiedler_llm_provider == "openai":
        # Imported only when configured: it brings httpx, which the builtin responder and
        # every other MAD go without (a faster start).
        from mads.fiedler.providers.openai import OpenAIProvider

        assert settings.fiedler_llm_base_url and settings.fiedler_llm_model  # check_provider
        return OpenAIProvider(
            base_url=settings.fiedler_llm_base_url,
            model=settings.fiedler_llm_model,
            api_key=settings.fiedler_llm_api_key,
            timeout_s=settings.fiedler_llm_timeout_s,
            retries=settings.fiedler_llm_retries,
            max_tool_rounds=settings.fiedler_llm_max_tool_rounds,
            link=link,
            logger=logger,
        )
    return BuiltinProvider()


def build() -> MadService:
    settings = load_settings(FiedlerSettings, mad_name=NAME)
    settings.check_provider()
    service = MadService(NAME, settings, instructions=INSTRUCTIONS)
    log = service.log

    bus = service.use_bus(settings)
    link = client.link(service, settings)

    store = TaskStore(settings.fiedler_db_path, log)
    database = Database(store, log)
    service.add_status(database.status_line)
    service.add_readiness("Database", database.ready)
    service.on_startup(database.try_open)
    service.add_background(database.run)

    provider = make_provider(settings, link, log)
    announcer = Announcer(bus, log)
    worker = Worker(store, provider, announcer, log, concurrency=settings.max_concurrency)
    service.metrics.register(FiedlerCollector(worker))
    tools.register(service, store, worker, settings.fiedler_max_prompt_chars)
    mcp_tasks.serve(service, store, worker)
    service.add_background(announcer.run)

    async def run_worker() -> None:
        await database.opened.wait()
        log.info(
            "Answering with the %s provider, at most %d task(s) at a time",
            provider.name,
            settings.max_concurrency,
        )
        await worker.run()

    server = ToolRequestServer(
        bus, NAME, service.call_tool_locally, logger=log, claim_idle_ms=CLAIM_IDLE_MS
    )
    service.before_heartbeat(server.keep_tools_published)

    async def serve_requests() -> None:
        # Take relayed requests only once they can be stored: an entry is acknowledged
        # after its task is committed.
        await database.opened.wait()
        await server.run(tools=await service.tool_definitions())

    service.add_background(run_worker)
    service.add_background(serve_requests)

    async def shutdown() -> None:
        await announcer.drain()
        await provider.close()
        await store.close()

    service.on_shutdown(shutdown)
    return service
