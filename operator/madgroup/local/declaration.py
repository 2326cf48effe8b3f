"""The MadGroup declaration, as the local runner takes it (``madgroup up -f FILE``).

The same file as on the other substrates, validated by the same model; what the local
runner cannot honour is refused or reported, one line each.
"""

from __future__ import annotations

from pathlib import Path

from madgroup import spec

SUBSTRATE = "the local runner"
REFUSED = {
    "spec.*.replicas": "it runs one process per component; more replicas need Kubernetes",
}
IGNORED = {
    "spec.image.*": "it runs this installation's code, not images",
    "spec.*.image": "it runs this installation's code, not images",
    "spec.*.storage.size": "data lives in the state directory, which has no size",
}


def load(path: Path | None) -> tuple[spec.Document, spec.MadGroupSpec, list[str]]:
    """The declaration, validated and checked; the notes are what it ignores."""
    document, declared = spec.load(path)
    notes = spec.check_substrate(declared, SUBSTRATE, refused=REFUSED, ignored=IGNORED)
    return document, declared, notes
