"""Kept for bench/operator.py, which imports the emulator from here: it lives in
tests/support/kube_emulator.py."""

from tests.support.kube_emulator import Apiserver

__all__ = ["Apiserver"]
