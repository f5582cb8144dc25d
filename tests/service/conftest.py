"""The service's tests need the client's dependency and the service extra; without them every module here is
skipped with one line saying how to run them (scripts/test.sh installs them and fails on any skip)."""

from __future__ import annotations

import importlib.util

from tests.unrunnable import unrunnable_module

NEEDED = {"websocket": "websocket-client", "fastapi": "fastapi", "uvicorn": "uvicorn", "PIL": "pillow"}
MISSING_PACKAGES = [package for module, package in NEEDED.items() if importlib.util.find_spec(module) is None]
MISSING = (f"{', '.join(MISSING_PACKAGES)} (the service's dependencies) not installed here: pip install '.[service]', "
           "or run `bash scripts/test.sh`") if MISSING_PACKAGES else None


def pytest_pycollect_makemodule(module_path, parent):
    if MISSING:
        return unrunnable_module(parent, module_path, MISSING)
    return None
