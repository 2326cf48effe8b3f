"""Kept for bench/calls.py, which imports ``new_token`` from here (tests/core/test_fuzz.py
too, until its change to tests/support/grace.py lands): the helpers live in
tests/support/grace.py."""

from tests.support.grace import call, grace_session, new_token, ok

__all__ = ["call", "grace_session", "new_token", "ok"]
