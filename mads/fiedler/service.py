"""Fiedler, the orchestrator: durable tasks answered by an LLM provider.

Wiring only: settings, the bus, the Sequential Thinking link, the task store (SQLite, or
PostgreSQL shared by several replicas), the provider, the worker, the MCP tools, and the
durable request stream ``mad.fiedler.requests`` through which a relay (Grace) hands work
over even while Fiedler restarts — or while its task store is down: requests are then left
in the stream until they can be stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mads.core.relay import Deferred, ToolRequestServer
from mads.core.service import MadService
from mads.core.settings import load_settings
from mads.fiedler import mcp_tasks, tools
from mads.fiedler.announcer import Announcer
from mads.fiedler.database import Database
from mads.fiedler.metrics import FiedlerCollector
from mads.fiedler.providers import Provider
from mads.fiedler.providers.builtin import BuiltinProvider
from mads.fiedler.retention import Pruner
from mads.fiedler.settings import FiedlerSettings
from mads.fiedler.sqlite_store import SQLiteTaskStore
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
# fiedler_converse is idempotent per request (the relay's request id is unique in the
# store), so a request that a replica or an earlier incarnation read but never acknowledged
# can be taken over quickly by any replica.
CLAIM_IDLE_MS = 5_000
STORE_WAIT_S = 0.2
"""How often a relay held by an unavailable store looks again."""


def make_store(settings: FiedlerSettings, logger: logging.Logger) -> TaskStore:
    if settings.fiedler_store == "postgresql":
        # Imported only when configured: the SQLite default goes without psycopg.
        from mads.fiedler.postgres_store import PostgresTaskStore

        return PostgresTaskStore(
            settings.postgres_target(),
            logger,
            pool_size=settings.fiedler_store_pool_size,
            timeout_s=settings.fiedler_store_timeout_s,
        )
    return SQLiteTaskStore(settings.fiedler_db_path, logger)


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
            concurrency=settings.max_concurrency,
        )
    return BuiltinProvider()


def build() -> MadService:
    settings = load_settings(FiedlerSettings, mad_name=NAME)
    settings.check_provider()
    settings.check_store()
    service = MadService(NAME, settings, instructions=INSTRUCTIONS)
    log = service.log

    bus = service.use_bus(settings)
    link = client.link(service, settings)

    store = make_store(settings, log)
    database = Database(store, log)
    service.add_status(database.status_line)
    service.add_readiness("Database", database.ready)
    service.on_startup(database.try_open)
    service.add_background(database.run)

    provider = make_provider(settings, link, log)
    announcer = Announcer(bus, log)
    worker = Worker(
        store,
        provider,
        announcer,
        log,
        concurrency=settings.max_concurrency,
        lease_s=settings.fiedler_lease_s,
        poll_s=settings.fiedler_claim_poll_s,
    )
    pruner = Pruner(store, settings.retention, log, settings.fiedler_retention_interval_s)
    service.metrics.register(
        FiedlerCollector(
            worker,
            pruner,
            database_file=None if store.shared else settings.fiedler_db_path,
            volume_bytes=settings.fiedler_volume_bytes,
        )
    )
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
        if store.shared:
            log.info(
                "Claiming tasks from the %s task store as replica %s (leases of %g s)",
                store.kind,
                worker.owner,
                settings.fiedler_lease_s,
            )
        await worker.run()

    async def store_available() -> None:
        while not store.ok:
            await asyncio.sleep(STORE_WAIT_S)

    async def run_relayed(tool: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
        """A relayed call while the store is down is not answered with an error: it stays
        in the stream and is carried out once the store is back."""
        if not store.ok:
            raise Deferred(f"the task store is unavailable: {store.last_error}")
        ok, result = await service.call_tool_locally(tool, arguments)
        if not ok and not store.ok:  # the store went away during the call
            raise Deferred(f"the task store is unavailable: {store.last_error}")
        return ok, result

    server = ToolRequestServer(
        bus,
        NAME,
        run_relayed,
        logger=log,
        concurrency=settings.relay_concurrency,
        claim_idle_ms=CLAIM_IDLE_MS,
        gate=store_available,
        metrics=service.metrics,
    )
    service.before_heartbeat(server.keep_tools_published)

    async def serve_requests() -> None:
        # Take relayed requests only once they can be stored: an entry is acknowledged
        # after its task is committed.
        await database.opened.wait()
        await server.run(tools=await service.tool_definitions())

    async def prune() -> None:
        await database.opened.wait()
        await pruner.run()

    service.add_background(run_worker)
    service.add_background(serve_requests)
    service.add_background(prune)

    async def shutdown() -> None:
        await announcer.drain()
        await provider.close()
        await store.close()

    service.on_shutdown(shutdown)
    return service
