"""Choosing the task store by environment: wrong settings stop Fiedler with one line naming
the variable (never the URI's password); a PostgreSQL store that is not there yet is
reported and waited for, as the SQLite file is."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.fiedler import Fiedler
from tests.support.mad_process import REPO
from tests.support.postgres import PostgresServer, require
from tests.support.waiting import wait_for

SECRET = "pw-never-printed-5d1c"


def start_fails(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mads.core.cli.run", "fiedler"],
        env={**os.environ, "PYTHONPATH": str(REPO), "REDIS_PASSWORD": "unused", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FIEDLER_STORE": "postgresql"},
            "FIEDLER_STORE_URI (or FIEDLER_STORE_URI_FILE) is required when "
            "FIEDLER_STORE=postgresql",
        ),
        (
            {"FIEDLER_STORE": "postgresql", "FIEDLER_STORE_URI": f"mysql://u:{SECRET}@h/db"},
            "FIEDLER_STORE_URI is invalid: must be a PostgreSQL URI "
            "(postgresql://user:password@host:5432/dbname)",
        ),
        (
            {"FIEDLER_STORE": "postgresql", "FIEDLER_STORE_URI": f"postgresql://u:{SECRET}@h:x/d"},
            "FIEDLER_STORE_URI is invalid: has a port that is not a number",
        ),
        (
            {"FIEDLER_STORE": "postgresql", "FIEDLER_STORE_URI_FILE": "/nonexistent/uri"},
            "FIEDLER_STORE_URI_FILE /nonexistent/uri cannot be read (No such file or directory)",
        ),
        ({"FIEDLER_STORE": "mysql"}, "FIEDLER_STORE is invalid: "),
        (
            {"FIEDLER_REPLICAS": "3"},
            "FIEDLER_REPLICAS=3 needs FIEDLER_STORE=postgresql: the SQLite store has one "
            "writer, so Fiedler runs one replica on it",
        ),
        ({"FIEDLER_LEASE_S": "0.5"}, "FIEDLER_LEASE_S is invalid: "),
    ],
)
def test_store_settings_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    result = start_fails(env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"mad-run fiedler: configuration error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert SECRET not in result.stderr + result.stdout


def database_line(fiedler: Fiedler) -> str | None:
    try:
        report = httpx.get(f"{fiedler.process.url}/status", timeout=5).json()
    except httpx.HTTPError:
        return None
    return next(line["value"] for line in report["lines"] if line["label"] == "Database Status")


def test_a_postgresql_store_not_there_yet_is_reported_then_used(
    start_fiedler: Callable[..., Fiedler], tmp_path: Path
) -> None:
    require()
    server = PostgresServer()  # initialised, not started yet
    try:
        uri_file = tmp_path / "uri"
        uri_file.write_text(server.uri("postgres"))
        fiedler = start_fiedler(
            {"FIEDLER_STORE": "postgresql", "FIEDLER_STORE_URI_FILE": str(uri_file)},
            wait_ready=False,
        )
        line = wait_for(lambda: database_line(fiedler), what="a status report")
        assert line.startswith("ERROR (psycopg.OperationalError: connection failed: "), line
        assert "Connection refused" in line
        assert httpx.get(f"{fiedler.process.url}/readyz").status_code == 503
        wait_for(
            lambda: (
                "Cannot open the PostgreSQL task store at 127.0.0.1/postgres: "
                in fiedler.process.log_text()
            ),
            what="the log line",
        )

        server.start()
        fiedler.process.wait_ready(timeout=60)
        assert database_line(fiedler) == "OK"
        log = fiedler.process.log_text()
        assert "Initialized PostgreSQL task store at 127.0.0.1/postgres..." in log
        assert "Initialized SQLite state database" not in log
        assert server.password not in log + str(line)
        assert "Traceback" not in log
    finally:
        server.cleanup()
