"""The service's tests need the client's dependency and the service extra; without them every module here is
skipped with one line saying how to run them (scripts/test.sh installs them and fails on any skip)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.unrunnable import unrunnable_module

NEEDED = {"websocket": "websocket-client", "fastapi": "fastapi", "uvicorn": "uvicorn", "PIL": "pillow"}
MISSING_PACKAGES = [package for module, package in NEEDED.items() if importlib.util.find_spec(module) is None]
MISSING = (f"{', '.join(MISSING_PACKAGES)} (the service's dependencies) not installed here: pip install '.[service]', "
           "or run `bash scripts/test.sh`") if MISSING_PACKAGES else None


def pytest_pycollect_makemodule(module_path, parent):
    if MISSING:
        return unrunnable_module(parent, module_path, MISSING)
    return None


@pytest.fixture
def live(tmp_path):
    """make(**config) -> a LiveService on a loopback port (its one ComfyUI server unreachable), closed after the
    test."""
    from tests.service.harness import LiveService  # needs the service's dependencies, checked above

    services = []

    def make(**config):
        services.append(LiveService(["http://127.0.0.1:9"], tmp_path / str(len(services)), **config))
        return services[-1]

    yield make
    for s in services:
        s.close()
