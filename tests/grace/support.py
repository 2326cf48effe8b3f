"""Kept for the modules that still import from here (bench/calls.py,
tests/core/test_fuzz.py, tests/grace/test_backpressure.py, tests/grace/test_registry_heals.py,
tests/fiedler/test_idempotency.py): the helpers live in tests/support/grace.py."""

from tests.support.grace import call, grace_session, new_token, ok

__all__ = ["call", "grace_session", "new_token", "ok"]
