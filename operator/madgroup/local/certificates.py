"""The group's TLS files on this machine: a private CA and each TLS server's certificate in
the state directory (``madgroup init --tls``), and picking up a renewed one while running.
"""

from __future__ import annotations

from madgroup import topology
from madgroup.errors import MadGroupError
from madgroup.local import redis_admin
from madgroup.local.ports import HOST
from madgroup.local.state import StateDir
from mads.core import tls

TLS_HOSTS = ("localhost", HOST, "::1")
"""The names a local client may reach a TLS server by (its certificate names them all)."""


def tls_files(state: StateDir, server: str) -> topology.TlsFiles | None:
    """Where a TLS server's files are, when the declaration turns TLS on."""
    if not state.declared().tls:
        return None
    directory = state.tls_dir
    return topology.TlsFiles(
        ca=str(directory / tls.CA_CERT),
        cert=str(directory / tls.cert_file(server)),
        key=str(directory / tls.key_file(server)),
    )


def ca_file(state: StateDir) -> str | None:
    """The group's CA when the bus speaks TLS, else None."""
    return str(state.tls_dir / tls.CA_CERT) if state.declared().tls else None


def ensure(state: StateDir, group: str, *, renew: bool = False) -> list[str]:
    """The group's CA and every TLS server's certificate for this machine, made where
    missing or due (every server's with ``renew``; the CA is kept, so every client keeps
    trusting it). Returns the file names written."""
    servers = {name: TLS_HOSTS for name in topology.tls_servers()}
    return tls.ensure(state.tls_dir, group, servers, renew=renew)


class ReloadError(MadGroupError):
    """Redis did not take the renewed certificate (the message says why, in one line)."""


def reload_redis(port: int, password: str, files: topology.TlsFiles) -> None:
    """Make a running Redis serve its renewed certificate: ``CONFIG SET`` of its TLS files
    (as the administrator, over TLS) reloads them; connections already open stay, new ones
    get the new certificate, so nothing in flight is lost."""
    try:
        with redis_admin.administrator(port, password, timeout=5, ca_file=files.ca) as client:
            client.config_set("tls-cert-file", files.cert)
            client.config_set("tls-key-file", files.key)
    except redis_admin.RedisError as exc:
        raise ReloadError(f"Redis on port {port} did not reload its certificate: {exc}") from None
