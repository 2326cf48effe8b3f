"""kmock's Kubernetes emulator with the API-server behaviour the operator relies on.

kmock 0.8 stores objects and streams watch events, but leaves out what a real API server
adds. This subclass fills exactly those gaps, so the operator under test runs unchanged:

- metadata stamped on create (``uid``, ``resourceVersion``, ``generation``,
  ``creationTimestamp``); ``resourceVersion`` bumped on every change, ``generation`` on
  every change outside ``status`` (kopf's JSON-patch ``test`` ops need ``resourceVersion``);
- POST answers 201 (the kubernetes client's CustomObjectsApi returns None on 200);
- JSON-patch ``test`` failures answer 422 (kopf retries on it);
- server-side apply (``application/apply-patch+yaml``) creates a missing object and merges
  into an existing one; a change that changes nothing is not an event;
- ``/status`` patches change only ``status``, other patches never change ``status``;
- discovery of every resource involved (kopf waits for namespaces and CRDs to appear).

Not filled: owner-reference garbage collection, labelSelector on lists, namespace listing
(the operator under test runs cluster-wide).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
import uuid
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
from kmock._internal import dicts, enums

RESOURCES: dict[str, dict[str, Any]] = {
    "v1/namespaces": {"kind": "Namespace", "namespaced": False},
    "v1/events": {"kind": "Event", "namespaced": True},
    "v1/pods": {"kind": "Pod", "namespaced": True, "sub": ["log"]},
    "v1/secrets": {"kind": "Secret", "namespaced": True},
    "v1/services": {"kind": "Service", "namespaced": True},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True},
    "v1/persistentvolumeclaims": {"kind": "PersistentVolumeClaim", "namespaced": True},
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True, "sub": ["status"]},
    "apps/v1/statefulsets": {"kind": "StatefulSet", "namespaced": True, "sub": ["status"]},
    "networking.k8s.io/v1/networkpolicies": {"kind": "NetworkPolicy", "namespaced": True},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "namespaced": True},
    "batch/v1/cronjobs": {"kind": "CronJob", "namespaced": True},
    "autoscaling/v2/horizontalpodautoscalers": {
        "kind": "HorizontalPodAutoscaler",
        "namespaced": True,
    },
    "storage.k8s.io/v1/storageclasses": {"kind": "StorageClass", "namespaced": False},
    "cert-manager.io/v1/certificates": {"kind": "Certificate", "namespaced": True},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition",
        "namespaced": False,
    },
    "madgroup.io/v1alpha1/madgroups": {"kind": "MadGroup", "namespaced": True, "sub": ["status"]},
}
VERBS = ["get", "list", "watch", "create", "patch", "update", "delete"]
APPLY = "application/apply-patch+yaml"


@dataclasses.dataclass(frozen=True)
class Served:
    """One request the emulator answered."""

    method: str
    resource: Any
    name: str | None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Apiserver(kmock.KubernetesEmulator):
    """The emulator the operator tests run against."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        self._served: list[Served] = []
        self.pod_logs: dict[tuple[str | None, str | None, str], str] = {}
        """``(namespace, pod, container) -> text``: what ``pods/<name>/log`` answers."""
        for key, info in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=info["kind"],
                namespaced=info["namespaced"],
                verbs=VERBS,
                subresources=info.get("sub", []),
            )

    # ---- helpers for tests ------------------------------------------------------------

    @property
    def served(self) -> list[Served]:
        """Every request served so far, oldest first."""
        return list(self._served)

    def live(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The current object, or None when absent or deleted."""
        try:
            obj = self.objects[resource, namespace, name]
        except KeyError:
            return None
        return None if obj.deleted else copy.deepcopy(obj.raw)

    def names(self, resource: str, namespace: str | None = None) -> list[str]:
        out = []
        for (res, ns, name), obj in list(self.objects.items()):
            wanted_ns = namespace is None or ns == namespace
            if self._same(res, resource) and not obj.deleted and wanted_ns:
                out.append(name)
        return sorted(out)

    @staticmethod
    def _same(res: Any, resource: str) -> bool:
        return res == kmock.resource(resource)

    async def change(
        self, resource: str, namespace: str, name: str, patch: dict[str, Any], *, status: bool
    ) -> dict[str, Any]:
        """Patch an object as a controller would (``status=True``: via /status), with the
        same bookkeeping and watch event as an API request."""
        res = kmock.resource(resource)
        async with self._lock:
            new = await self._modify(res, namespace, name, patch, status_only=status)
        return new

    async def remove(self, resource: str, namespace: str, name: str) -> None:
        res = kmock.resource(resource)
        async with self._lock:
            obj = self.objects[res, namespace, name]
            raw = obj.raw
            obj.delete()
            await self._buses[res].put({"type": "DELETED", "object": raw})

    # ---- the gaps ---------------------------------------------------------------------

    def _stamp(self, data: dict[str, Any], namespace: str | None) -> None:
        meta = data.setdefault("metadata", {})
        if namespace and not meta.get("namespace"):
            meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", _now())

    async def _modify(
        self, res: Any, namespace: str | None, name: str, patch: Any, *, status_only: bool
    ) -> dict[str, Any]:
        """Apply ``patch`` to a stored object under the lock; return the new object.

        Raises kmock's 404/422 errors the way the API server answers them."""
        obj = self.objects[res, namespace, name]
        old = copy.deepcopy(obj.raw)
        try:
            new = copy.deepcopy(dict(dicts.patch_dict(old, patch)))
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict) as exc:
            raise kmock.KubernetesError(422, "Invalid", f"patch failed: {exc}") from None
        if status_only:
            new = {**old, "status": new.get("status")}
        else:
            new["status"] = old.get("status")
            if new.get("status") is None:
                new.pop("status", None)
            new["metadata"]["generation"] = old["metadata"].get("generation", 1)
            if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
                k: v for k, v in old.items() if k not in ("metadata", "status")
            }:
                new["metadata"]["generation"] += 1
        if new == old:
            return old
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        obj.history.append(new)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            obj.delete()  # the last finalizer is gone: the object goes
            await self._buses[res].put({"type": "DELETED", "object": copy.deepcopy(new)})
        else:
            await self._buses[res].put({"type": "MODIFIED", "object": copy.deepcopy(new)})
        return new

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method = str(getattr(request.method, "value", request.method)).upper()
        self._served.append(Served(method, request.resource, request.name))
        # kmock keeps every request and matches new ones against that history, so each
        # request costs more than the last; keep its history short (``served`` has ours).
        del self._requests[:-50]
        if request.resource is None:
            return await super()._handle(request)
        if request.subresource == "log":  # the kubelet's part: what the test said it logged
            key = (request.namespace, request.name, request.params.get("container", ""))
            if key not in self.pod_logs:
                return self._status(404, "NotFound", f"no log for {key}")
            tail = int(request.params.get("tailLines", 0) or 0)
            lines = self.pod_logs[key].splitlines()[-tail:] if tail else self.pod_logs[key]
            text = "\n".join(lines) + "\n" if tail else str(lines)
            return aiohttp.web.Response(text=text, content_type="text/plain")
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            return await self._create(request)
        if request.action == enums.action.UPDATE and request.name is not None:
            return await self._update(request)
        return await super()._handle(request)

    async def _create(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        data = copy.deepcopy(request.data)
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        namespace = request.namespace or meta.get("namespace")
        name = meta.get("name")
        key = (request.resource, namespace, name)
        async with self._lock:
            if key in self.objects and not self.objects[key].deleted:
                return self._status(409, "AlreadyExists", f"{name} already exists")
            return await self._insert(key, data, namespace)

    async def _insert(
        self, key: tuple[Any, str | None, str | None], data: dict[str, Any], namespace: str | None
    ) -> aiohttp.web.StreamResponse:
        """Store a new object (reviving a deleted key) and announce it; the caller holds the
        lock. Answers 201, as a real API server does for a create."""
        self._stamp(data, namespace)
        if key in self.objects:
            self.objects[key].create(data)
        else:
            self.objects[key] = data
        await self._buses[key[0]].put({"type": "ADDED", "object": copy.deepcopy(data)})
        return aiohttp.web.json_response(data, status=201)

    async def _update(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        key = (request.resource, request.namespace, request.name)
        content_type = request.headers.get("Content-Type", "")
        async with self._lock:
            exists = key in self.objects and not self.objects[key].deleted
            if not exists:
                if not content_type.startswith(APPLY):
                    return self._status(404, "NotFound", f"{request.name} not found")
                return await self._insert(key, copy.deepcopy(request.data), request.namespace)
            try:
                new = await self._modify(
                    request.resource,
                    request.namespace,
                    request.name,
                    request.data,
                    status_only=request.subresource == "status",
                )
            except kmock.KubernetesError as exc:
                return self._status(exc.status, exc.reason or "", exc.message or "")
        return aiohttp.web.json_response(new)

    @staticmethod
    def _status(code: int, reason: str, message: str) -> aiohttp.web.StreamResponse:
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }
        return aiohttp.web.json_response(body, status=code)
