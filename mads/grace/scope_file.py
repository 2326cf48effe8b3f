"""The format of Grace's OAuth scopes file (``GRACE_OAUTH_SCOPES_FILE``): part of Grace's
public contract, so the declaration (``spec.grace.oauth.scopes``) can check and render it
without Grace's internals. What a mapping grants at run time is :mod:`mads.grace.scope_map`'s.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mads.grace.token_file import Glob, TokenFileError, TokenLimits

SCOPE_TOKEN = r"^[\x21\x23-\x5b\x5d-\x7e]+$"
"""RFC 6749 section 3.3: a scope is printable ASCII without space, '"' or '\\'."""

ScopeName = Annotated[str, Field(min_length=1, max_length=200, pattern=SCOPE_TOKEN)]


class ScopeMapError(TokenFileError):
    """A scopes file that cannot be used, as one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class GrantedScope(_Model):
    """What one OAuth scope lets its holder do at Grace."""

    tools: list[Glob] = Field(
        default_factory=list, max_length=1000, description="Globs over tool names it grants."
    )
    topics: list[Glob] = Field(
        default_factory=list,
        max_length=1000,
        description="Globs over the channels it grants publishing on and subscribing to.",
    )


class SubjectEntry(_Model):
    """Settings for one subject (a token's ``sub``)."""

    limits: TokenLimits = Field(default_factory=TokenLimits, description="Its own limits.")


class ScopeMapFile(_Model):
    """What ``GRACE_OAUTH_SCOPES_FILE`` holds."""

    scopes: dict[ScopeName, GrantedScope] = Field(
        max_length=1000, description="OAuth scope -> what it grants."
    )
    limits: TokenLimits = Field(
        default_factory=TokenLimits, description="Limits of each subject (unset: none)."
    )
    subjects: dict[Annotated[str, Field(min_length=1, max_length=255)], SubjectEntry] = Field(
        default_factory=dict, max_length=10_000, description="Per-subject overrides."
    )
