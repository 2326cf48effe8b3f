"""A small, kind-agnostic client over the official (blocking) Kubernetes client.

The operator touches six kinds the same way (get, create, server-side apply, delete, patch
status), so one path-based client replaces six typed APIs. Calls block: run them from a
worker thread, never on the event loop.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes

from madgroup.errors import MadGroupError
from madgroup.kube.naming import MANAGER

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
DEFAULT_TIMEOUT = (5.0, 30.0)


class ApiError(MadGroupError):
    """A non-2xx answer from the API server; the message is the server's, never a body we
    sent (which may hold a Secret)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason


class KubeApi:
    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.client = client
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.client.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.client.call_api(*serialized, _request_timeout=self.timeout)
        resp.read()
        raw = resp.data.decode() if resp.data else ""
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"message": raw[:200]}
        if not 200 <= resp.status < 300:
            raise ApiError(
                resp.status, str(data.get("reason", "")), str(data.get("message", ""))[:300]
            )
        return data

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def text(self, path: str, query: list[tuple[str, str]] | None = None) -> str:
        """A GET whose answer is text (a pod's log)."""
        serialized = self.client.param_serialize(
            "GET", path, query_params=query or [], header_params={}, auth_settings=["BearerToken"]
        )
        resp = self.client.call_api(*serialized, _request_timeout=self.timeout)
        resp.read()
        raw = resp.data.decode(errors="replace") if resp.data else ""
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, "", raw[:300])
        return raw

    def create(self, collection_path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", collection_path, query=[("fieldManager", MANAGER)], body=body)

    def apply(
        self, path: str, body: dict[str, Any], *, manager: str = MANAGER, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply as the operator's field manager, taking over conflicting fields
        (a hand edit of a managed field is drift, and drift is repaired). Another
        ``manager`` without ``force`` gets a 409 where another manager holds a field."""
        query = [("fieldManager", manager)]
        if force:
            query.append(("force", "true"))
        return self._request("PATCH", path, query=query, body=body, content_type=APPLY)

    def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch as the operator's field manager."""
        return self._request(
            "PATCH", path, query=[("fieldManager", MANAGER)], body=patch, content_type=MERGE
        )

    def patch_status(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._request("PATCH", f"{path}/status", body=patch, content_type=MERGE)

    def delete(self, path: str, *, propagation: str = "Foreground") -> bool:
        """Delete; False when it was already gone."""
        try:
            self._request(
                "DELETE",
                path,
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": propagation,
                },
            )
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def client_from_kubeconfig(context: str | None = None) -> kubernetes.client.ApiClient:
    """The current kubeconfig (or the in-cluster service account)."""
    try:
        kubernetes.config.load_incluster_config()
        return kubernetes.client.ApiClient()
    except kubernetes.config.ConfigException:
        pass
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(context=context, client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


def client_for(host: str) -> kubernetes.client.ApiClient:
    """A client for an unauthenticated API endpoint (an emulator in tests)."""
    configuration = kubernetes.client.Configuration()
    configuration.host = host.rstrip("/")
    return kubernetes.client.ApiClient(configuration)
