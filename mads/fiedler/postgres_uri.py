"""The PostgreSQL connection URI Fiedler is given, and what of it may be shown.

The URI carries the password (a CloudNativePG cluster's ``<cluster>-app`` Secret holds it
under the key ``uri``: ``postgresql://app:<password>@<cluster>-rw.<namespace>:5432/app``).
Only the host and the database name are ever logged or reported; any text that reaches a
log or a status line passes through :meth:`PostgresTarget.redact` first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mads.core.errors import MadUsageError

SCHEMES = ("postgresql://", "postgres://")
SHAPE = "postgresql://user:password@host:5432/dbname"


class InvalidUriError(MadUsageError, ValueError):
    """Not a PostgreSQL URI; the message never repeats the URI (it may hold a password)."""


@dataclass(frozen=True)
class PostgresTarget:
    uri: str = field(repr=False)
    host: str
    database: str
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """The password as given in the URI and as decoded."""

    @property
    def location(self) -> str:
        """``host/database``: what log lines and the status say."""
        return f"{self.host}/{self.database}"

    def redact(self, text: str) -> str:
        """``text`` with the URI and the password masked, should either appear in it."""
        for secret in (self.uri, *self.secrets):
            text = text.replace(secret, "***")
        return text


def parse(uri: str) -> PostgresTarget:
    # Imported here: a Fiedler on the SQLite store starts without loading psycopg.
    from psycopg import conninfo

    uri = uri.strip()
    if not uri.startswith(SCHEMES):
        raise InvalidUriError(f"must be a PostgreSQL URI ({SHAPE})")
    try:
        parts = conninfo.conninfo_to_dict(uri)
    except Exception:  # libpq's message may quote the URI: say what is wrong ourselves
        raise InvalidUriError(f"is not a valid PostgreSQL URI ({SHAPE})") from None
    if not str(parts.get("port") or "5432").replace(",", "").isdigit():
        raise InvalidUriError(f"has a port that is not a number ({SHAPE})")
    host = str(parts.get("host") or "localhost").split(",")[0]
    database = str(parts.get("dbname") or parts.get("user") or "postgres")
    given = urlsplit(uri).password
    secrets = {str(p) for p in (parts.get("password"), given) if p}
    return PostgresTarget(uri, host, database, tuple(sorted(secrets, key=len, reverse=True)))
