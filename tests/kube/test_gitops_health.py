"""GitOps health: the Argo CD health check (gitops/argocd/madgroup-health.lua) run by a Lua
interpreter (lupa) against MadGroup objects the operator itself wrote, against the emulated
API server, in each state a GitOps tool must tell apart; and the ConfigMap that installs it
carries exactly that script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import yaml

from tests.support.kube import (
    create_group,
    group,
    has_condition,
    patch_group,
    roll_out,
)
from tests.support.waiting import async_wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "gitops" / "argocd" / "madgroup-health.lua"
CONFIGMAP = ROOT / "gitops" / "argocd" / "argocd-cm.yaml"
KEY = "resource.customizations.health.madgroup.io_MadGroup"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """What Argo CD would show: the script's ``status`` and ``message`` for ``obj``."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    found = lua.execute(SCRIPT.read_text())
    return str(found["status"]), str(found["message"])


async def test_each_state_the_operator_writes(apiserver, operator) -> None:
    await create_group(apiserver, "demo")
    await async_wait_for(has_condition(apiserver, "demo", "Ready", "False"), what="rolling out")
    status, message = health(group(apiserver, "demo"))
    assert status == "Progressing" and "redis" in message.lower(), message

    await roll_out(apiserver, "demo")
    await async_wait_for(has_condition(apiserver, "demo", "Ready", "True"), what="Ready")
    assert health(group(apiserver, "demo"))[0] == "Healthy"

    await patch_group(
        apiserver, "demo", {"metadata": {"annotations": {"madgroup.io/paused": "true"}}}
    )
    await async_wait_for(has_condition(apiserver, "demo", "Paused", "True"), what="Paused")
    assert health(group(apiserver, "demo"))[0] == "Suspended"

    await create_group(apiserver, "broken", {"fiedler": {"replicas": 3}})
    await async_wait_for(has_condition(apiserver, "broken", "Stalled", "True"), what="Stalled")
    status, message = health(group(apiserver, "broken"))
    assert status == "Degraded" and "spec.fiedler.replicas" in message


def test_before_the_operator_reports_and_after_an_edit_it_has_not_seen() -> None:
    fresh = {"metadata": {"name": "demo", "generation": 1}}
    assert health(fresh) == ("Progressing", "Waiting for the operator to report on this MadGroup")
    ready = [{"type": "Ready", "status": "True", "message": "all ready"}]
    edited = {
        "metadata": {"name": "demo", "generation": 3},
        "status": {"observedGeneration": 2, "conditions": ready},
    }
    assert health(edited) == ("Progressing", "Waiting for the operator to observe generation 3")
    seen = {**edited, "status": {"observedGeneration": 3, "conditions": ready}}
    assert health(seen) == ("Healthy", "all ready")


def test_the_configmap_installs_exactly_this_script() -> None:
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "argocd-cm"
    assert configmap["data"][KEY] == SCRIPT.read_text()
