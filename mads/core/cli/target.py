"""Which MAD a command-line tool talks to: ``--url``, else ``$MAD_PORT``/``$MAD_NAME`` on
loopback (what ``docker compose exec <mad> ...`` and ``madgroup exec`` provide), and the
checks on what a user types, so a bad value is one line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from urllib.parse import urlsplit

from mads.core.errors import MadUsageError
from mads.core.logs import quoted
from mads.core.registry import contracts

TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
"""A bearer token as RFC 6750 allows it."""


class TargetError(MadUsageError, ValueError):
    pass


def port_number(text: str, source: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise TargetError(f"{source}={quoted(text)} is not a port number (1-65535)")
    return int(text)


def checked_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host and a valid
    port; else :class:`TargetError`."""
    if not url.isascii() or not url.isprintable() or " " in url:
        raise TargetError(f"--url {quoted(url)} is not a URL (printable ASCII, no spaces)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise TargetError(f"--url {quoted(url)} is not a valid URL: {exc}") from None
    try:
        port = parts.port
    except ValueError:
        raise TargetError(f"--url {quoted(url)}: the port is not a port number (1-65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"--url {quoted(url)} must look like http://HOST:PORT")
    if port == 0:
        raise TargetError(f"--url {quoted(url)}: port 0 is not a port number (1-65535)")
    if parts.query or parts.fragment:
        raise TargetError(f"--url {quoted(url)} must not have a query or a fragment")
    return url.rstrip("/")


def base_url(explicit: str | None) -> str:
    """``--url``, else this MAD on loopback: ``https`` when it serves TLS
    (``MAD_TLS_CERT_FILE`` is set in its environment), ``http`` otherwise."""
    if explicit:
        return checked_url(explicit)
    port = os.environ.get("MAD_PORT", "").strip()
    if not port:
        name = os.environ.get("MAD_NAME", "").strip()
        known = contracts()
        if name in known:
            port = str(known[name].port)
        elif name:
            raise TargetError(f"MAD_NAME={quoted(name)} is not a known MAD ({', '.join(known)})")
        else:
            raise TargetError(
                "no MAD to talk to: set MAD_NAME or MAD_PORT, or pass --url http://HOST:PORT"
            )
    scheme = "https" if os.environ.get("MAD_TLS_CERT_FILE", "").strip() else "http"
    return f"{scheme}://127.0.0.1:{port_number(port, 'MAD_PORT')}"


def tls_verify() -> str | bool:
    """What an HTTPS MAD's certificate is checked against: the group's CA when this
    environment names one (``MAD_TLS_CA_FILE``), else the system's trust store."""
    ca = os.environ.get("MAD_TLS_CA_FILE", "").strip()
    return ca or True


def seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value > 86_400:
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a number of seconds (0 to 86400)")
    return value


def checked_token(token: str) -> str:
    if not TOKEN.match(token):
        raise TargetError(
            "the bearer token has characters a token cannot have "
            "(letters, digits and - . _ ~ + / = only)"
        )
    return token
