"""The API client runs wherever Python and websocket-client are: every module imports in an interpreter where torch,
numpy, ComfyUI and the other heavy packages cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "framepack_client"
BLOCKED = ("torch", "numpy", "safetensors", "einops", "PIL", "av", "diffusers", "transformers", "comfy", "comfy_api",
           "folder_paths")


def test_every_client_module_imports_without_torch_or_comfyui():
    modules = sorted(p.stem for p in CLIENT.glob("*.py") if p.stem not in ("__init__", "__main__"))
    script = textwrap.dedent(f"""
        import importlib, importlib.abc, sys
        blocked = {BLOCKED!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ImportError(f"{{name}} is blocked: the client must not need it")
                return None

        sys.meta_path.insert(0, Block())
        for name in {modules!r}:
            importlib.import_module("framepack_client." + name)
        assert "websocket" in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=CLIENT.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
