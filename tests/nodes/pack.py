"""Imports the nodes/ modules that hold no ComfyUI code, where ComfyUI is not installed.

nodes/__init__.py registers the nodes and imports ComfyUI, and node modules reach the core by relative imports
(`..framepack_core`), so the checkout is mounted as a stand-in package whose nodes/ package is a bare module (its
__init__ is never run). Everything a test uses comes through this package, core classes included
(`pack_module("framepack_core.errors").InputError`): the stand-in holds its own copy of framepack_core.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "framepack_pack"


def pack_module(name: str) -> types.ModuleType:
    """The module `name` ("nodes.latent", "framepack_core.planning") of the checkout, imported through the stand-in
    package."""
    if PACKAGE not in sys.modules:
        pack = types.ModuleType(PACKAGE)
        pack.__path__ = [str(REPO)]
        nodes = types.ModuleType(f"{PACKAGE}.nodes")
        nodes.__path__ = [str(REPO / "nodes")]
        sys.modules[PACKAGE] = pack
        sys.modules[f"{PACKAGE}.nodes"] = nodes
    return importlib.import_module(f"{PACKAGE}.{name}")
