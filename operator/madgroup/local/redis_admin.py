"""The control plane's one way to talk to Redis: as the administrator of the group's bus,
on this machine's loopback, over TLS (checked against the group's CA) when the bus speaks
it. Readiness checks, backups and a renewed certificate all go through here; the MADs talk
to Redis through :class:`mads.core.bus.Bus` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from madgroup.local.ports import HOST

Redis = redis.Redis
RedisError = redis.RedisError
ResponseError = redis.ResponseError


@contextlib.contextmanager
def administrator(
    port: int, password: str | None, *, timeout: float, ca_file: str | None = None
) -> Iterator[redis.Redis]:
    """A connection to the bus on ``port`` (``password``: the administrator's; None to
    connect without one), closed on leaving."""
    client = redis.Redis(
        host=HOST,
        port=port,
        password=password,
        ssl=ca_file is not None,
        ssl_ca_certs=ca_file,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        driver_info=None,  # no CLIENT SETINFO: one round trip less per check
    )
    try:
        yield client
    finally:
        client.close()


def ping(port: int, password: str | None, timeout: float = 0.5, ca_file: str | None = None) -> str:
    """``AUTH`` (when a password is given) and ``PING``: Redis's answer, ``PONG`` when it is
    ready, else its error as it said it (``NOAUTH ...``, ``WRONGPASS ...``, ``LOADING ...``).
    A Redis that cannot be reached raises :class:`OSError`."""
    with administrator(port, password, timeout=timeout, ca_file=ca_file) as client:
        try:
            client.ping()
        except redis.ResponseError as exc:
            return _said(exc)
        except redis.AuthenticationError as exc:  # a ConnectionError in redis-py
            return _said(exc)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise OSError(str(exc)) from None
    return "PONG"


def _said(exc: redis.RedisError) -> str:
    code = getattr(exc, "status_code", None)
    return f"{code} {exc}" if code else str(exc)


def ready(port: int, password: str, timeout: float = 0.5, ca_file: str | None = None) -> bool:
    try:
        return ping(port, password, timeout, ca_file) == "PONG"
    except OSError:
        return False
