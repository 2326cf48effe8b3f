"""docs/security.md shows each MAD's bus user exactly as the code derives it."""

from __future__ import annotations

import re
from pathlib import Path

from mads.core import access, registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_the_security_page_lists_every_bus_user_as_derived() -> None:
    text = DOC.read_text()
    section = re.search(r"<!-- bus-users:begin -->(.*)<!-- bus-users:end -->", text, re.S)
    assert section is not None
    shown = {
        line.strip().split()[1]: line.strip()
        for line in section.group(1).splitlines()
        if line.strip().startswith("user ")
    }
    derived = {
        name: perms.acl_rule("<sha256 of its password>")
        for name, perms in access.group_permissions(registry.contracts()).items()
    }
    assert shown == derived
