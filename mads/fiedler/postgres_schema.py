"""The PostgreSQL task store's schema: the same versions as the SQLite store's, migrated
once however many replicas start together.

Every replica runs :func:`migrate` when it opens the store. The whole migration is one
transaction that first takes a transaction-level advisory lock, so replicas starting at the
same moment queue up behind the first: it applies what is missing and commits (which
releases the lock); the next ones find the schema current and change nothing.
"""

from __future__ import annotations

from psycopg import AsyncConnection

from mads.fiedler.store import SCHEMA_VERSION, StoreUnavailableError

MIGRATION_LOCK = 0x66696564_6C6572  # "fiedler": the advisory lock the migration holds

# Each entry moves the schema one version up; never edit an entry once released.
MIGRATIONS: tuple[str, ...] = (
    # 1: tasks. ``seq`` orders them (SQLite's rowid): newest first for listings, oldest
    # first for claims.
    """
    CREATE TABLE tasks (
        seq            bigint GENERATED ALWAYS AS IDENTITY,
        task_id        text PRIMARY KEY,
        status         text NOT NULL CONSTRAINT tasks_status_check
                       CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED')),
        prompt         text NOT NULL,
        requester_id   text NOT NULL,
        request_key    text UNIQUE,
        result_payload text,
        error_details  text,
        attempts       integer NOT NULL DEFAULT 0,
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX tasks_by_seq ON tasks (seq);
    CREATE INDEX tasks_by_status ON tasks (status);
    CREATE INDEX tasks_by_requester ON tasks (requester_id);
    """,
    # 2: CANCELLED, and who asked for a running task to be cancelled.
    """
    ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
    ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
        CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'));
    ALTER TABLE tasks ADD COLUMN cancel_requested_by text;
    """,
    # 3: leases: the holder, the expiry it renews, the generation a finish must present.
    """
    ALTER TABLE tasks ADD COLUMN lease_owner text,
        ADD COLUMN lease_generation bigint NOT NULL DEFAULT 0,
        ADD COLUMN lease_expires_at timestamptz;
    UPDATE tasks SET lease_generation = attempts;
    CREATE INDEX tasks_claimable ON tasks (seq) WHERE status IN ('PENDING', 'RUNNING');
    """,
    # 4: finished tasks by when they finished, for the retention's deletes.
    """
    CREATE INDEX tasks_finished ON tasks (updated_at)
        WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION, "each schema version has its PostgreSQL migration"


async def migrate(conn: AsyncConnection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`, under the migration lock, in one
    transaction; returns the version found (0: an empty database)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cursor = await conn.execute("SELECT max(version) FROM schema_version")
        row = await cursor.fetchone()
        current = int(row[0] or 0) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreUnavailableError(
                f"database schema version {current} is newer than this Fiedler "
                f"(knows up to {SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    await conn.execute(statement.encode())
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return current
