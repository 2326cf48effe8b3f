"""The repository's sample MadGroup (manifests/samples/madgroup.yaml), as it is or with
parts of its spec replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.mad_process import REPO

SAMPLE = REPO / "manifests" / "samples" / "madgroup.yaml"


def sample_with(tmp_path: Path, spec: dict[str, Any]) -> Path:
    """A copy of the sample in ``tmp_path`` whose spec has ``spec``'s keys replaced."""
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"] = {**doc["spec"], **spec}
    path = tmp_path / "madgroup.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
