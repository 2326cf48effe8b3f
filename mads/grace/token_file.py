"""The format of Grace's named tokens file (``GRACE_TOKENS_FILE``): part of Grace's public
contract, so the declaration (``spec.grace.tokens``) can check and render it without
Grace's internals. What the entries mean at run time is :mod:`mads.grace.tokens`'s.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mads.core.errors import MadError

ALL = ("*",)
SHA256_HEX = r"^[0-9a-f]{64}$"


class TokenFileError(MadError, ValueError):
    """A tokens file that cannot be used, as one line (never with a token or hash)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


Glob = Annotated[str, Field(min_length=1, max_length=200, description="A glob (fnmatch).")]


class TokenScopes(_Model):
    """What a token may use."""

    tools: list[Glob] = Field(
        default_factory=lambda: list(ALL),
        min_length=1,
        max_length=1000,
        description="Globs over the tool names it may call (default: all).",
    )
    topics: list[Glob] = Field(
        default_factory=lambda: list(ALL),
        min_length=1,
        max_length=1000,
        description="Globs over the channels it may publish on and subscribe to (default: all).",
    )


class TokenLimits(_Model):
    """How fast a token may go (unset: no limit)."""

    requests_per_second: float | None = Field(
        default=None, gt=0, le=1_000_000, description="A token bucket of one second's worth."
    )
    concurrent_calls: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Requests in flight at once."
    )


class TokenEntry(_Model):
    """One named front-door token, stored as its SHA-256 (never the token itself)."""

    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Its name."
    )
    sha256: str = Field(pattern=SHA256_HEX, description="Hex SHA-256 of the token.")
    scopes: TokenScopes = Field(default_factory=TokenScopes, description="What it may use.")
    limits: TokenLimits = Field(default_factory=TokenLimits, description="How fast.")


class TokenFile(_Model):
    """What ``GRACE_TOKENS_FILE`` holds."""

    tokens: list[TokenEntry] = Field(max_length=10_000)

    def check_unique(self) -> None:
        """TokenFileError (without the file's name) when a name or hash repeats."""
        names: dict[str, str] = {}
        hashes: dict[str, str] = {}
        for entry in self.tokens:
            if entry.name in names:
                raise TokenFileError(f"token name {entry.name!r} twice")
            if entry.sha256 in hashes:
                raise TokenFileError(
                    f"tokens {hashes[entry.sha256]!r} and {entry.name!r} have the same sha256"
                )
            names[entry.name] = hashes[entry.sha256] = entry.name
