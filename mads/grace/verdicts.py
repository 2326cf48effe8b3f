"""What verifying an OAuth access token concludes, apart from the verifier itself.

Kept apart so that the access guard can tell a refusal without importing the verifier's
libraries (PyJWT, httpx), which a Grace without OAuth never loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from mads.grace.tokens import Principal


@dataclass(frozen=True)
class Accepted:
    principal: Principal
    expires_at: float
    """Unix time after which the verdict no longer holds."""


@dataclass(frozen=True)
class Refused:
    """Why a token is not accepted, in one line, and how to answer: ``invalid_token`` with
    401, or ``temporarily_unavailable`` with 503 (the issuer cannot be reached)."""

    reason: str
    status: int = 401
