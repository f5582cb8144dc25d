"""Settings shared by every test folder: markers and the artifacts folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "artifacts"  # git-ignored; screenshots and other outputs worth looking at


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "comfy: starts a real ComfyUI server (tests/comfy; deselect with -m 'not comfy')")
    config.addinivalue_line("markers", "frontend: drives the ComfyUI frontend in headless chromium")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Repository-root ``artifacts/`` (created), for files a person may want to look at after a run."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
