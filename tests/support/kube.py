"""The Kubernetes substrate for tests: an emulated API server (tests/support/kube_emulator.py)
and the real operator running in the test's loop, as fixtures, and the helpers that read and
change what the operator made.

The tests play the kubelet and the workload controllers: they set a child's status to say
its pods are ready, exactly as a cluster would report it. A folder's conftest takes the
fixtures with ``from tests.support.kube import _no_kubeconfig, apiserver, operator``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import Any

import aiohttp
import kmock
import kopf
import kubernetes
import pytest
from madgroup import topology
from madgroup.kube import naming
from madgroup.kube.api import KubeApi, client_for
from madgroup.kube.handlers import build_registry

from tests.support.kube_emulator import Apiserver
from tests.support.waiting import async_wait_for

NS = "team-a"
GROUPS = "madgroup.io/v1alpha1/madgroups"
DEPLOYMENTS = "apps/v1/deployments"
STATEFULSETS = "apps/v1/statefulsets"
SERVICES = "v1/services"
SECRETS = "v1/secrets"
POLICIES = "networking.k8s.io/v1/networkpolicies"
DEADLINE = 20.0


@pytest.fixture(autouse=True)
def _no_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Never read the developer's kubeconfig."""
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none")
    )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))


@pytest.fixture
async def apiserver() -> AsyncIterator[Apiserver]:
    async with Apiserver() as handler, kmock.Server(handler):
        yield handler


class _Family:
    """The tasks the operator spawned, directly or not.

    ``kopf.operator`` cancels, when it stops, every task created after it started: in a test
    that includes the emulator's request handlers and pytest's own fixture tasks. Tracking
    the operator's descendants through a task factory lets kopf stop only its own."""

    def __init__(self) -> None:
        self.members: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def factory(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        parent = asyncio.current_task(loop)
        if parent is not None and parent in self.members:
            self.members.add(task)
        return task


class _Outsiders(Collection[asyncio.Task[Any]]):
    """kopf's ``ignored`` tasks: everything not spawned by the operator."""

    def __init__(self, family: _Family) -> None:
        self.family = family

    def __contains__(self, task: object) -> bool:
        return task not in self.family.members

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(t for t in asyncio.all_tasks() if t not in self.family.members)

    def __len__(self) -> int:
        return len(list(iter(self)))


class Operator:
    """Starts and stops the operator inside the running event loop."""

    def __init__(self, apiserver: Apiserver, repair_interval: float) -> None:
        self.apiserver = apiserver
        self.repair_interval = repair_interval
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._previous_factory: Any = None
        self.api = KubeApi(client_for(str(apiserver.url)))

    async def start(self) -> None:
        server = str(self.apiserver.url)

        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=server, insecure=True)

        registry = build_registry(self.api, login=login, repair_interval=self.repair_interval)
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        family = _Family()

        async def run() -> None:
            tasks = await kopf.spawn_tasks(
                registry=registry,
                standalone=True,
                clusterwide=True,
                stop_flag=self._stop,
                ready_flag=ready,
            )
            await kopf.run_tasks(tasks, ignored=_Outsiders(family))

        loop = asyncio.get_running_loop()
        self._previous_factory = loop.get_task_factory()
        loop.set_task_factory(family.factory)
        self._task = asyncio.create_task(run())
        family.members.add(self._task)
        await asyncio.wait_for(ready.wait(), DEADLINE)

    async def stop(self, timeout: float = DEADLINE) -> None:
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        task, self._task = self._task, None
        try:
            done, _ = await asyncio.wait([task], timeout=timeout)
        finally:
            asyncio.get_running_loop().set_task_factory(self._previous_factory)
        assert done, "the operator did not stop"
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


@pytest.fixture
async def operator(apiserver: Apiserver) -> AsyncIterator[Operator]:
    op = Operator(apiserver, repair_interval=1.0)
    await op.start()
    try:
        yield op
    finally:
        await op.stop()


async def request(
    apiserver: Apiserver, method: str, path: str, body: Any = None, content_type: str = ""
) -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"{str(apiserver.url).rstrip('/')}{path}", json=body, headers=headers
        ) as resp,
    ):
        data = await resp.json()
        assert resp.status < 300, data
        return data


def group_path(name: str, ns: str = NS) -> str:
    return f"/apis/madgroup.io/v1alpha1/namespaces/{ns}/madgroups/{name}"


async def create_group(
    apiserver: Apiserver,
    name: str,
    spec: dict[str, Any] | None = None,
    ns: str = NS,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    body = {
        "apiVersion": "madgroup.io/v1alpha1",
        "kind": "MadGroup",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
        "spec": spec or {},
    }
    return await request(
        apiserver, "POST", f"/apis/madgroup.io/v1alpha1/namespaces/{ns}/madgroups", body
    )


async def patch_group(apiserver: Apiserver, name: str, patch: dict[str, Any], ns: str = NS) -> None:
    await request(apiserver, "PATCH", group_path(name, ns), patch, "application/merge-patch+json")


def workload_resource(component: str) -> str:
    return STATEFULSETS if topology.component(component).stateful else DEPLOYMENTS


def workload(apiserver: Apiserver, group: str, component: str, ns: str = NS) -> dict | None:
    return apiserver.live(workload_resource(component), ns, naming.child_name(group, component))


async def mark_ready(
    apiserver: Apiserver, group: str, component: str, ns: str = NS, ready: int | None = None
) -> None:
    """Play the kubelet: the workload's pods are up and passing their readinessProbe."""
    live = workload(apiserver, group, component, ns)
    assert live is not None, f"{component} has no workload yet"
    replicas = live["spec"]["replicas"]
    count = replicas if ready is None else ready
    await apiserver.change(
        workload_resource(component),
        ns,
        live["metadata"]["name"],
        {
            "status": {
                "observedGeneration": live["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": count,
                "availableReplicas": count,
            }
        },
        status=True,
    )


def group(apiserver: Apiserver, name: str, ns: str = NS) -> dict[str, Any]:
    live = apiserver.live(GROUPS, ns, name)
    assert live is not None
    return live


def condition(apiserver: Apiserver, name: str, type_: str, ns: str = NS) -> dict[str, Any]:
    for cond in (group(apiserver, name, ns).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond
    return {}


def has_condition(
    apiserver: Apiserver, name: str, type_: str, status: str, reason: str | None = None
) -> Callable[[], bool]:
    def check() -> bool:
        cond = condition(apiserver, name, type_)
        return cond.get("status") == status and (reason is None or cond.get("reason") == reason)

    return check


def generated_secrets(group: str) -> list[str]:
    """The Secrets the operator makes for a group that references none: the administrator's
    password, each bus user's, the internal and the metrics credentials."""
    users = [naming.bus_secret_name(group, u) for u in topology.bus_users()]
    tokens = [naming.internal_token_secret_name(group), naming.metrics_token_secret_name(group)]
    return sorted([naming.password_secret_name(group), *tokens, *users])


def children(apiserver: Apiserver, ns: str = NS) -> dict[str, list[str]]:
    """Every object the operator could create, by resource."""
    return {
        res: apiserver.names(res, ns)
        for res in (SECRETS, SERVICES, DEPLOYMENTS, STATEFULSETS, POLICIES)
    }


async def roll_out(apiserver: Apiserver, name: str, ns: str = NS) -> None:
    """Mark each component ready as soon as it is applied, in order."""
    for comp in topology.COMPONENT_NAMES:
        await async_wait_for(
            lambda c=comp: workload(apiserver, name, c, ns), what=f"{comp} applied"
        )
        await mark_ready(apiserver, name, comp, ns)
    await async_wait_for(has_condition(apiserver, name, "Ready", "True"), what="Ready=True")
