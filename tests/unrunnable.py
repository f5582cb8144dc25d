"""Skipping a whole test folder whose requirements are missing, without importing its modules (their imports would
fail): each module is collected as a stand-in that skips with the folder's reason, so pytest prints one line
saying what is missing and how to run the tests. scripts/test.sh fails on such skips (tests/skip_guard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


class _Unrunnable(pytest.Module):
    reason = ""

    def collect(self):
        pytest.skip(self.reason)


def unrunnable_module(parent: pytest.Collector, module_path: Path, reason: str) -> pytest.Module:
    """For a conftest's ``pytest_pycollect_makemodule``: a module that is skipped, not imported."""
    module = _Unrunnable.from_parent(parent, path=module_path)
    module.reason = reason
    return module
