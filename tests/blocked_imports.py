"""Run Python code in a fresh interpreter in which some top-level packages cannot be imported: how the tests prove
that a package of ours works without ComfyUI, torch or other heavy dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_BLOCKER = """
import importlib.abc, sys
blocked = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{{name}} is blocked: {why}")
        return None

sys.meta_path.insert(0, Block())
"""


def run_without(blocked: tuple[str, ...], code: str, cwd: Path, why: str, timeout: float = 300) -> \
        subprocess.CompletedProcess:
    """Runs ``code`` (dedented) after installing an import hook that refuses ``blocked``; ``sys.modules`` and
    ``blocked`` are available to it."""
    script = _BLOCKER.format(blocked=tuple(blocked), why=why) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=cwd)
