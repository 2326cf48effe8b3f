"""A support bundle: named parts gathered from a running group, every secret redacted, written
as one ``.tar.gz`` with a manifest (what each part is, its SHA-256, and what could not be
collected and why). Each substrate collects its own parts; this is what they share.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import platform
import re
import tarfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
"""Variable names whose values a bundle never carries, whatever the declaration says."""
MIN_SECRET_CHARS = 6
"""Shorter values are not searched for in the text (they would match everywhere)."""
PACKAGES = ("madgroup", "mcp", "redis", "pydantic", "kopf", "kubernetes", "starlette", "uvicorn")
LOG_LINES = 500


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_name(kind: str) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"madgroup-report-{kind}-{stamp}.tar.gz"


def redact_env(values: Mapping[str, str], secret_keys: Iterable[str] = ()) -> dict[str, str]:
    """``values`` with the value of every secret variable replaced (set or not, it says so)."""
    secret = set(secret_keys)
    return {
        key: (REDACTED if value else "") if key in secret or SECRET_NAME.search(key) else value
        for key, value in values.items()
    }


def secret_values(values: Mapping[str, str], secret_keys: Iterable[str] = ()) -> set[str]:
    """The values of ``values``'s secret variables (what :class:`Bundle` scrubs from text);
    a comma-separated list (``GRACE_API_TOKENS``) gives each of its items too."""
    secret = set(secret_keys)
    found: set[str] = set()
    for key, value in values.items():
        if value and (key in secret or SECRET_NAME.search(key)):
            found.add(value)
            found.update(item.strip() for item in value.split(",") if item.strip())
    return found


def versions() -> dict[str, Any]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), **found}


class Bundle:
    def __init__(self, substrate: str, secrets: Iterable[str] = ()) -> None:
        self.substrate = substrate
        self._secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True
        )
        self.parts: dict[str, bytes] = {}
        self.missing: dict[str, str] = {}
        self.not_included: dict[str, str] = {}
        """Component -> where its data is, when it is kept outside the group (a database
        with backups of its own): no part holds any of it."""

    def redact(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, REDACTED)
        return text

    def add(self, name: str, content: str | Mapping[str, Any] | list[Any]) -> None:
        text = content if isinstance(content, str) else json.dumps(content, indent=2, default=str)
        self.parts[name] = self.redact(text).encode()

    def could_not(self, name: str, reason: str) -> None:
        """Record that part ``name`` could not be collected (the bundle says why)."""
        self.missing[name] = self.redact(reason)

    def manifest(self) -> dict[str, Any]:
        return {
            "kind": "madgroup-report",
            "substrate": self.substrate,
            "created_at": now_utc(),
            "parts": {
                name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                for name, data in sorted(self.parts.items())
            },
            "missing": dict(sorted(self.missing.items())),
            **(
                {"not_included": dict(sorted(self.not_included.items()))}
                if self.not_included
                else {}
            ),
            "redacted": "every secret's value is replaced by " + REDACTED,
        }

    def write(self, path: Path) -> Path:
        manifest = json.dumps(self.manifest(), indent=2).encode()
        root = path.name.removesuffix(".tar.gz")
        with tarfile.open(path, "w:gz") as archive:
            for name, data in [("manifest.json", manifest), *sorted(self.parts.items())]:
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size = len(data)
                info.mode = 0o600
                archive.addfile(info, io.BytesIO(data))
        path.chmod(0o600)
        return path


def summary(path: str, report: Bundle) -> str:
    """What ``madgroup report`` prints: where, how many parts, what could not be had, and
    whose data is kept outside the group (none of it is in the bundle)."""
    manifest = report.manifest()
    lines = [f"wrote {path}: {len(manifest['parts'])} parts, every secret redacted"]
    lines += [f"  not collected: {n} ({why})" for n, why in manifest["missing"].items()]
    lines += [f"  not included: {line}" for line in report.not_included.values()]
    return "\n".join(lines)
