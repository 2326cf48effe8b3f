"""Kubernetes quantities (``1Gi``, ``500m``) as numbers, by the Kubernetes client's own
parser."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from kubernetes.utils import parse_quantity

_parse: Callable[[str], Decimal] = parse_quantity  # the client's; it has no annotations


def value(quantity: str) -> Decimal:
    """``1Gi`` -> 1073741824."""
    return _parse(quantity)


def whole_bytes(quantity: str) -> int:
    """A size in bytes (a fraction of a byte rounds up, as the API server rounds it)."""
    return int(-(-_parse(quantity) // 1))
