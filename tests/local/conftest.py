"""The local runner's tests: a group run by the real ``madgroup`` CLI, from
tests/support/local_group.py."""

from tests.support.local_group import group  # noqa: F401 (the fixture)
