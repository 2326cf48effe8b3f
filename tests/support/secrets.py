"""Scanning what an operator can see for secrets."""

from __future__ import annotations

from collections.abc import Mapping


def exposures(places: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """``"<secret> in <place>"`` for every secret whose value appears in a place's text."""
    return [
        f"{name} in {where}"
        for where, text in places.items()
        for name, value in secrets.items()
        if value in text
    ]
