"""The store's failure paths as an operator sees them, and configuration errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mads.core.mcp_client import McpToolError
from tests.support.fiedler import Fiedler, call
from tests.support.mad_process import REPO
from tests.support.waiting import wait_for


def database_line(fiedler: Fiedler) -> str | None:
    try:
        report = httpx.get(f"{fiedler.process.url}/status", timeout=5).json()
    except httpx.HTTPError:
        return None
    return next(line["value"] for line in report["lines"] if line["label"] == "Database Status")


async def test_database_error_is_reported_then_recovers(
    start_fiedler: Callable[..., Fiedler], tmp_path: Path
) -> None:
    blocker = tmp_path / "volume"
    blocker.write_text("a file where the database directory should be")
    db_path = blocker / "fiedler_state.db"
    fiedler = start_fiedler({"FIEDLER_DB_PATH": str(db_path)}, wait_ready=False)

    line = wait_for(lambda: database_line(fiedler), what="a status report")
    assert line == (
        f"ERROR (NotADirectoryError: unable to open database file: {blocker} is not a directory)"
    )
    status = fiedler.process.cli("mad-status")
    assert status.returncode == 1
    assert "- Status: DEGRADED" in status.stdout.splitlines()
    assert f"- Database Status: {line}" in status.stdout.splitlines()
    readiness = httpx.get(f"{fiedler.process.url}/readyz")
    assert readiness.status_code == 503
    assert "Database" in readiness.json()["waiting_for"]
    assert f"Cannot open the SQLite state database at {db_path}" in fiedler.process.log_text()
    with pytest.raises(McpToolError, match="the task store is unavailable"):
        await call(fiedler, "fiedler_converse", {"prompt": "Respond with OK", "requester_id": "o"})

    # The volume shows up: Fiedler opens the database without a restart.
    blocker.unlink()
    blocker.mkdir()
    fiedler.process.wait_ready()
    assert database_line(fiedler) == "OK"
    assert f"Initialized SQLite state database at {db_path}..." in fiedler.process.log_text()
    assert fiedler.rows() == 0

    # The database disappears under a running Fiedler: a real query notices.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    line = wait_for(
        lambda: (value := database_line(fiedler)) != "OK" and value, what="Database ERROR"
    )
    assert line == "ERROR (sqlite3.OperationalError: unable to open database file)"
    wait_for(lambda: httpx.get(f"{fiedler.process.url}/readyz").status_code == 503, what="unready")
    assert "Traceback" not in fiedler.process.log_text()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FIEDLER_LLM_PROVIDER": "openai", "FIEDLER_LLM_MODEL": "m"},
            "FIEDLER_LLM_BASE_URL is required when FIEDLER_LLM_PROVIDER=openai",
        ),
        (
            {"FIEDLER_LLM_PROVIDER": "openai", "FIEDLER_LLM_BASE_URL": "http://127.0.0.1:9/v1"},
            "FIEDLER_LLM_MODEL is required when FIEDLER_LLM_PROVIDER=openai",
        ),
        ({"FIEDLER_LLM_PROVIDER": "claude"}, "FIEDLER_LLM_PROVIDER is invalid: "),
        ({"FIEDLER_LLM_BASE_URL": "localhost:11434"}, "FIEDLER_LLM_BASE_URL is invalid: "),
        ({"FIEDLER_MAX_CONCURRENCY": "0"}, "FIEDLER_MAX_CONCURRENCY is invalid: "),
    ],
)
def test_configuration_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    secret = "sk-never-printed-7c1e"
    result = subprocess.run(
        [sys.executable, "-m", "mads.core.cli.run", "fiedler"],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "REDIS_PASSWORD": "unused",
            "FIEDLER_LLM_API_KEY": secret,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"mad-run fiedler: configuration error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert secret not in result.stderr + result.stdout


def test_an_unwritable_data_directory_is_named_with_uid_and_fix() -> None:
    """A bind mount owned by root while Fiedler runs unprivileged: one line that names the
    directory, the uid Fiedler runs as and the fix (SQLite alone says only "unable to open
    database file")."""
    # Not under tmp_path: its parents are private to the user running the tests.
    data = Path(tempfile.mkdtemp(prefix="fiedler-data-"))
    data.chmod(0o755)
    code = (
        "import sys; from mads.fiedler.sqlite_store import connect\n"
        "try:\n    connect(sys.argv[1])\n"
        "except PermissionError as exc:\n    print(exc)\n"
    )
    argv = [sys.executable, "-c", code, str(data / "fiedler_state.db")]
    if os.getuid() == 0:  # root may write anywhere: run the check as nobody
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    else:
        data.chmod(0o555)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    finally:
        data.chmod(0o755)
        shutil.rmtree(data, ignore_errors=True)
    uid = 65534 if os.getuid() == 0 else os.getuid()
    assert done.stdout.strip() == (
        f"{data} is not writable by uid {uid} (it belongs to uid {os.getuid()}, mode "
        f"{0o755 if os.getuid() == 0 else 0o555:04o}); fix: chown {uid} {data} on the host, "
        "or mount a named volume there"
    ), done.stderr
    assert "Traceback" not in done.stderr
