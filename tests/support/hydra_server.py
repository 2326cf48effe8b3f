"""A real OAuth 2.1 authorization server for tests: Ory Hydra, built from the Go module
pinned in ``tests/support/gotools/modules/hydra/`` (by :mod:`tests.support.gotools`, cached
by version), run with its in-memory store on free loopback ports and issuing JWT access
tokens.

The admin API does what an organisation's identity team would: register client-credentials
clients (for an audience, with scopes; opaque tokens for one that asks), shorten a client's
token lifespan, and rotate the access-token signing key.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import processes
from tests.support.gotools import build
from tests.support.gotools.tools import HYDRA_TOOL
from tests.support.ports import free_port
from tests.support.waiting import wait_for

ACCESS_TOKEN_KEYS = "hydra.jwt.access-token"


def binary() -> Path:
    """The cached Hydra binary, built first if it is not there (several minutes, once:
    scripts/test builds it before the suite). A test fails naming the fix when it cannot
    be built."""
    try:
        build.ensure([HYDRA_TOOL])
        return build.binaries([HYDRA_TOOL])["hydra"]
    except build.BuildError as exc:
        pytest.fail(f"Ory Hydra cannot be built: {exc}")


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str


class HydraServer:
    def __init__(self, workdir: Path, executable: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.executable = executable
        self.public_port = free_port()
        self.admin_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "hydra.log"

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def introspection_url(self) -> str:
        return f"{self.admin}/admin/oauth2/introspect"

    def start(self) -> HydraServer:
        config = self.workdir / "hydra.yml"
        config.write_text(
            json.dumps(
                {
                    "dsn": "memory",
                    "serve": {
                        "public": {"host": "127.0.0.1", "port": self.public_port},
                        "admin": {"host": "127.0.0.1", "port": self.admin_port},
                    },
                    "urls": {"self": {"issuer": self.issuer}},
                    "secrets": {"system": [secrets.token_urlsafe(32)]},
                    "strategies": {"access_token": "jwt"},
                    "log": {"level": "info", "leak_sensitive_values": False},
                }
            )
        )
        config.chmod(0o600)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(self.executable), "serve", "all", "--dev", "--sqa-opt-out", "-c", str(config)],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self._ready, timeout=60, what="Ory Hydra's health endpoints")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"hydra exited with {self.process.returncode}:\n{self.log_text()}")
        try:
            public = httpx.get(f"{self.issuer}/health/ready", timeout=2)
            admin = httpx.get(f"{self.admin}/health/ready", timeout=2)
        except httpx.HTTPError:
            return False
        return public.status_code == 200 and admin.status_code == 200

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    # -- the admin API ---------------------------------------------------------------------

    def client(
        self,
        scopes: list[str],
        audiences: list[str],
        *,
        opaque: bool = False,
        client_id: str | None = None,
    ) -> Client:
        """A new client-credentials client allowed ``scopes`` and ``audiences`` (named
        ``client_id``, or a fresh name), issued opaque access tokens with ``opaque``."""
        client = Client(client_id or f"client-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
        body: dict[str, Any] = {
            "client_id": client.client_id,
            "client_secret": client.secret,
            "grant_types": ["client_credentials"],
            "scope": " ".join(scopes),
            "audience": audiences,
            "token_endpoint_auth_method": "client_secret_basic",
        }
        if opaque:
            body["access_token_strategy"] = "opaque"
        response = httpx.post(f"{self.admin}/admin/clients", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return client

    def token(self, client: Client, scopes: list[str], audience: str) -> str:
        """An access token for ``client`` (the client-credentials grant)."""
        response = httpx.post(
            f"{self.issuer}/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "scope": " ".join(scopes),
                "audience": audience,
            },
            auth=(client.client_id, client.secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def set_token_lifespan(self, client: Client, lifespan: str) -> None:
        """How long ``client``'s next access tokens live (Go duration: ``2s``)."""
        response = httpx.put(
            f"{self.admin}/admin/clients/{client.client_id}/lifespans",
            json={"client_credentials_grant_access_token_lifespan": lifespan},
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def rotate_signing_key(self) -> str:
        """A new key in the access-token key set (Hydra signs with the newest); its id."""
        kid = f"rotated-{secrets.token_hex(4)}"
        response = httpx.post(
            f"{self.admin}/admin/keys/{ACCESS_TOKEN_KEYS}",
            json={"alg": "RS256", "kid": kid, "use": "sig"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return kid


def unverified_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def unverified_claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


@pytest.fixture(scope="module")
def hydra(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One Hydra for a test module (a module takes it with ``from tests.support.hydra_server
    import hydra as hydra``); stopped after the module."""
    server = HydraServer(tmp_path_factory.mktemp("hydra"), binary())
    try:
        yield server.start()
    finally:
        server.stop()
