"""A MAD process imports what it serves with, not everything it could use.

Each MAD's serving path — what ``mad-run <name>`` imports and builds before it serves:
logging, the registry, the MAD's ``build()`` and its app — runs in a fresh interpreter in
the default configuration, and the modules it loaded are read back. What a MAD does not
use there is not imported: the MCP SDK's client (a MAD calls its peers only once it runs),
the OpenTelemetry SDK's tracing and exporters (only with ``MAD_TRACE_FILE`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``), the certificate code (only ``madgroup init --tls`` and
the bus users' tool write certificates), ``rich`` (the SDK's log handler, unused once
logging is set up), httpx (``mad-status`` and the OpenAI-compatible provider), the
operator's libraries and the control plane (never), redis for a MAD off the bus, and any
other MAD's code beyond its public contract and client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mads.core.registry import contracts

SERVING_PATH = """
import json, sys
from mads.core.cli import run
from mads.core.logs import configure_logging
from mads.core.registry import contract
from mads.core.service import build

configure_logging()
build(contract(sys.argv[1])).app()
print(json.dumps(sorted(sys.modules)))
"""

NEVER = (
    "mcp.client",
    "rich",
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
    "mads.core.trace_file",
    "cryptography.x509",
    "mads.core.tls",
    "mads.core.https",
    "httpx",
    "kopf",
    "kubernetes",
    "madgroup",
)
"""Not imported by any MAD's serving path in the default configuration (a name covers its
submodules)."""
OFF_THE_BUS = ("redis", "mads.core.bus", "opentelemetry.sdk")
"""Not imported by a MAD that does not use the bus (redis-py imports the OpenTelemetry
SDK's metrics, so only a MAD without redis is without all of the SDK)."""
PUBLIC = ("contract", "client")
"""What a MAD may import of another MAD: its contract, Sequential Thinking's client."""
TRACING = {"MAD_TRACE_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT"}


def loaded(name: str, tmp_path: Path, **extra: str) -> set[str]:
    """The modules the serving path of MAD ``name`` imports, in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in TRACING}
    env.update(
        MAD_NAME=name,
        REDIS_PASSWORD="unused",
        FIEDLER_DB_PATH=str(tmp_path / "fiedler.db"),
        **extra,
    )
    done = subprocess.run(
        [sys.executable, "-c", SERVING_PATH, name],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def under(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(f"{p}.") for p in packages))


def foreign(modules: set[str], name: str) -> list[str]:
    """Modules of other MADs than ``name`` beyond their public ones."""
    others = [mad for mad in contracts() if mad != name]
    allowed = {f"mads.{mad}.{part}" for mad in others for part in PUBLIC} | {
        f"mads.{mad}" for mad in others
    }
    return sorted(
        m for m in under(modules, tuple(f"mads.{mad}" for mad in others)) if m not in allowed
    )


@pytest.mark.parametrize("name", sorted(contracts()))
def test_the_serving_path_imports_only_what_it_serves_with(name: str, tmp_path: Path) -> None:
    modules = loaded(name, tmp_path)
    assert f"mads.{name}.service" in modules
    assert "mcp.server" in modules
    assert under(modules, NEVER) == []
    if not contracts()[name].uses_bus:
        assert under(modules, OFF_THE_BUS) == []
    assert foreign(modules, name) == []


@pytest.mark.parametrize("name", sorted(contracts()))
def test_tracing_imports_the_opentelemetry_sdk_when_asked_for(name: str, tmp_path: Path) -> None:
    modules = loaded(name, tmp_path, MAD_TRACE_FILE=str(tmp_path / "spans.jsonl"))
    assert "opentelemetry.sdk.trace" in modules
    assert "mads.core.trace_file" in modules


def test_the_mcp_package_is_whole_once_a_name_of_its_own_is_used() -> None:
    """``mcp``'s ``__init__`` runs at the first name looked up on the package: its client
    names are there, the very objects of the modules that define them."""
    probe = """
import sys
import mads.core.service
assert "mcp.client" not in sys.modules, "imported before it was asked for"
import mcp
from mcp import Client, ClientSession, types
from mcp.client.client import Client as Defined
from mcp.client.session import ClientSession as DefinedSession
assert Client is Defined and ClientSession is DefinedSession and types is sys.modules["mcp.types"]
assert "Client" in mcp.__all__ and "__getattr__" not in vars(mcp)
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
