"""The operator against a real cluster (kind): CRD installed, a MadGroup rolled out in
order, deleted in reverse. Skips when no cluster is reachable.

Run with a kind cluster as the current kubeconfig context::

    kind create cluster && pytest tests/e2e -m e2e
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.e2e


def _cluster() -> Any:
    try:
        import kubernetes
        from madgroup.kube.api import client_from_kubeconfig

        client = client_from_kubeconfig()
        kubernetes.client.VersionApi(client).get_code(_request_timeout=3)
        return client
    except Exception as exc:  # no kubeconfig, no server, no credentials: all mean "skip"
        pytest.skip(f"no Kubernetes cluster reachable ({type(exc).__name__}: {exc})"[:200])


@pytest.fixture
def cluster() -> Any:
    return _cluster()


async def _eventually(check: Callable[[], Any], what: str) -> Any:
    """``check`` (a blocking call to the cluster) in a thread, until it gives a value."""
    return await async_wait_for(
        lambda: asyncio.to_thread(check), timeout=180, interval=1, what=what
    )


async def test_a_madgroup_rolls_out_in_order_on_a_real_cluster(cluster):
    import kopf
    import kubernetes
    from madgroup.kube import crd as spec
    from madgroup.kube import naming
    from madgroup.kube.api import KubeApi
    from madgroup.kube.handlers import build_registry
    from madgroup.kube.reconcile import group_path

    api = KubeApi(cluster)
    ext = kubernetes.client.ApiextensionsV1Api(cluster)
    try:
        ext.create_custom_resource_definition(spec.crd_manifest())
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    ns = f"mg-e2e-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(cluster)
    core.create_namespace({"metadata": {"name": ns}})
    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=build_registry(api, repair_interval=5),
            standalone=True,
            namespaces=[ns],
            stop_flag=stop,
        )
    )
    try:
        api.create(
            f"/apis/{spec.API_VERSION}/namespaces/{ns}/{spec.PLURAL}",
            {
                "apiVersion": spec.API_VERSION,
                "kind": spec.KIND,
                "metadata": {"name": "e2e", "namespace": ns},
                "spec": {},
            },
        )
        sts = naming.STATEFULSET.path(ns, "e2e-redis")
        await _eventually(lambda: api.get(sts), "the Redis StatefulSet")
        assert api.get(naming.DEPLOYMENT.path(ns, "e2e-sequential-thinking")) is None
        # Redis's image is public: once it is ready, Sequential Thinking follows.
        await _eventually(
            lambda: api.get(naming.DEPLOYMENT.path(ns, "e2e-sequential-thinking")),
            "Sequential Thinking applied after Redis became ready",
        )
        status = api.get(group_path(ns, "e2e"))["status"]
        ready = {c["type"]: c for c in status["conditions"]}
        assert ready["RedisReady"]["status"] == "True"
        api.delete(group_path(ns, "e2e"))
        await _eventually(lambda: api.get(group_path(ns, "e2e")) is None, "teardown")
        assert api.get(sts) is None
    finally:
        stop.set()
        await asyncio.wait([task], timeout=30)
        core.delete_namespace(ns)
