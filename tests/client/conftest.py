"""The client's tests need its one dependency; without it every module here is skipped with one line saying how
to run them (scripts/test.sh installs it and fails on any skip)."""

from __future__ import annotations

from tests.unrunnable import unrunnable_module

try:
    import websocket  # noqa: F401
    MISSING = None
except ImportError:
    MISSING = ("websocket-client, the API client's dependency, is not installed here: pip install websocket-client, "
               "or run `bash scripts/test.sh`")


def pytest_pycollect_makemodule(module_path, parent):
    if MISSING:
        return unrunnable_module(parent, module_path, MISSING)
    return None
