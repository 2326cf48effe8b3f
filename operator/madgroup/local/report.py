"""``madgroup report`` on the local runner: the support bundle of the group running here.

Each component's process state and last log lines; each MAD's ``/status``, ``/metrics`` and
the answers of the read-only tools its contract names for reports (Rogers' connections and
stats, Fiedler's task counts); versions; the declaration, ``.env`` and the rendered Redis
configuration with every secret redacted (:mod:`madgroup.bundle`). A part that cannot be
collected (a component down) is named in the manifest with the reason; the rest is kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
from typing import Any

import httpx

from madgroup import bundle, topology
from madgroup.local import certificates, envfile, launcher, logview, processes
from madgroup.local.context import Context
from mads.core.mcp_client import McpToolError, McpUnreachableError, call_tool

TIMEOUT_S = 10.0
_ACL_HASH = re.compile(r"#[0-9a-f]{64}\b")


def collect(ctx: Context) -> bundle.Bundle:
    state = ctx.state.load()
    dotenv = envfile.load(ctx.env_file) if ctx.env_file.exists() else {}
    declared = ctx.state.declared()
    secret_keys = declared.secret_keys
    report = bundle.Bundle("local", bundle.secret_values(dotenv, secret_keys))
    report.not_included.update(declared.not_backed_up)
    report.add("versions.json", {**bundle.versions(), "redis-server": _redis_version()})
    report.add("env.json", bundle.redact_env(dotenv, secret_keys))
    if ctx.state.declaration_file.exists():
        report.add("declaration.json", ctx.state.declaration_file.read_text())
    processes_part: dict[str, Any] = {}
    for unit in declared.units(topology.COMPONENT_NAMES):  # each process of each component
        c = state.components.get(unit)
        if c is None:
            processes_part[unit] = {"state": "not started"}
        else:
            processes_part[unit] = {
                **dataclasses.asdict(c),
                "alive": processes.alive(c.pid, c.ticks),
            }
        lines = logview.last_lines(ctx.state.log_file(unit), bundle.LOG_LINES)
        report.add(f"{unit}/log.txt", "\n".join(lines) + ("\n" if lines else ""))
    report.add("processes.json", processes_part)
    for rendered, part in (
        (ctx.state.redis_conf, "redis.conf"),
        (ctx.state.redis_acl, "users.acl"),
    ):
        if rendered.exists():
            report.add(f"rendered/{part}", _without_acl_hashes(rendered.read_text()))
    ca_file = certificates.ca_file(ctx.state)
    internal = dotenv.get(topology.INTERNAL_TOKEN_VARIABLE, "")
    for comp in topology.COMPONENTS:
        for unit in declared.instances(comp.name) if comp.is_mad else ():
            port = state.ports.get(unit, comp.port)
            _mad_parts(report, comp, unit, port, ca_file, internal)
    return report


def _mad_parts(
    report: bundle.Bundle,
    comp: topology.Component,
    unit: str,
    port: int,
    ca_file: str | None,
    internal: str,
) -> None:
    """What one process of MAD ``comp`` (``unit``) says of itself."""
    https = topology.serves_tls(comp) and ca_file is not None
    base = f"{'https' if https else 'http'}://127.0.0.1:{port}"
    verify: str | bool = ca_file if https and ca_file else True
    for path, part in (("/status", "status.json"), ("/metrics", "metrics.txt")):
        try:
            response = httpx.get(f"{base}{path}", timeout=TIMEOUT_S, verify=verify)
            response.raise_for_status()
            report.add(f"{unit}/{part}", response.text)
        except httpx.HTTPError as exc:
            report.could_not(f"{unit}/{part}", f"GET {base}{path}: {exc}")
    contract = comp.contract
    if contract is None:
        return
    headers = {"Authorization": f"Bearer {internal}"} if internal else {}
    for tool in contract.report_tools:
        name = f"{unit}/{tool}.json"
        try:
            data = asyncio.run(
                call_tool(
                    f"{base}/mcp", tool, {}, headers=headers, timeout=TIMEOUT_S, verify=verify
                )
            )
            report.add(name, data if isinstance(data, dict | list) else {"result": data})
        except (McpToolError, McpUnreachableError, OSError) as exc:
            report.could_not(name, f"{tool}: {exc}")


def _redis_version() -> str | None:
    try:
        done = subprocess.run(
            [launcher.resolve("redis-server"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError, launcher.LaunchError):
        return None
    return done.stdout.strip() or None


def _without_acl_hashes(text: str) -> str:
    """A rendered Redis file, its password hashes (``#<sha256>``) redacted."""
    return _ACL_HASH.sub("#" + bundle.REDACTED, text)
