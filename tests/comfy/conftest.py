"""Fixtures for tests against one real ComfyUI server per test session.

``comfy_server``  the running :class:`ComfyServer` (session; its base dir is a pytest temp dir)
``comfy``         a fresh :class:`ComfyClient` bound to it (own client id per test)
``models_dir``, ``input_dir``, ``output_dir``   the server's folders (write model files into
                  ``models_dir / "vae"`` etc. before queueing a prompt that names them)
``comfy_frontend`` the frontend open in headless chromium (session; needs /usr/bin/chromium)

Extra main.py arguments for the session: ``FRAMEPACK_COMFY_ARGS="--verbose DEBUG"``.
Every test in this folder gets the ``comfy`` marker; a failing one shows the server's log tail.
Without a ComfyUI (neither the pinned one nor COMFYUI_DIR) the whole folder is skipped with one line saying how to
run it; scripts/test.sh installs the pinned ComfyUI and fails on any skip.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from framepack_dev.comfy_server import ComfyNotInstalled, ComfyServer, ComfyStartError, locate_comfyui
from tests.unrunnable import unrunnable_module

if TYPE_CHECKING:
    from framepack_client.server_api import ComfyClient


def _missing() -> str | None:
    try:
        locate_comfyui()
    except ComfyNotInstalled as missing:
        return (f"these tests start a real ComfyUI server and none is installed here ({missing}); "
                "`bash scripts/test.sh` installs the pinned ComfyUI and runs them")
    return None


MISSING = _missing()


def pytest_pycollect_makemodule(module_path, parent):
    if MISSING:
        return unrunnable_module(parent, module_path, MISSING)
    return None


_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.comfy)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("comfy_server")
    if report.failed and isinstance(server, ComfyServer):
        report.sections.append(("ComfyUI log (last 80 lines)", server.log_tail(80)))


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    extra_args = shlex.split(os.environ.get("FRAMEPACK_COMFY_ARGS", ""))
    server = ComfyServer(base_dir=tmp_path_factory.mktemp("comfyui"), extra_args=extra_args)
    try:
        server.start()
    except ComfyStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def comfy(comfy_server: ComfyServer) -> ComfyClient:
    if not comfy_server.is_running():
        pytest.fail(f"the ComfyUI server is no longer running:\n{comfy_server.log_tail()}", pytrace=False)
    return comfy_server.client()


@pytest.fixture(scope="session")
def models_dir(comfy_server: ComfyServer) -> Path:
    return comfy_server.models_dir


@pytest.fixture(scope="session")
def input_dir(comfy_server: ComfyServer) -> Path:
    return comfy_server.input_dir


@pytest.fixture(scope="session")
def output_dir(comfy_server: ComfyServer) -> Path:
    return comfy_server.output_dir


@pytest.fixture(scope="session")
def comfy_frontend(comfy_server: ComfyServer):
    pytest.importorskip("playwright", reason="playwright is not installed in this interpreter; "
                                             "bash scripts/test.sh runs the tests in a venv that has it")
    from tests.comfy.frontend import ComfyFrontend

    try:
        frontend = ComfyFrontend(comfy_server.url).open()
    except FileNotFoundError as exc:  # no chromium
        pytest.skip(f"{exc}; bash scripts/test.sh installs Debian chromium (as root) and runs these tests")
    yield frontend
    frontend.close()
