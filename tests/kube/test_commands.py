"""``madgroup operator`` where the operator's libraries are not installed (a MAD image, or
``pip install madgroup`` without the ``operator`` extra)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.mad_process import REPO

WITHOUT = """
import sys
sys.modules[{library!r}] = None  # as if not installed: importing it fails
from madgroup.cli import main
sys.exit(main(["operator"]))
"""


def test_operator_without_its_libraries_says_which_extra_to_install() -> None:
    for library in ("kopf", "kubernetes"):
        done = subprocess.run(
            [sys.executable, "-c", WITHOUT.format(library=library)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert done.returncode == 1
        assert done.stderr == (
            f"madgroup: the operator needs {library}, which is not installed: "
            "pip install 'madgroup[operator]' (the operator image has it)\n"
        )
