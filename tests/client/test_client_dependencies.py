"""The API client runs wherever Python and websocket-client are: every module imports in an interpreter where torch,
numpy, ComfyUI and the other heavy packages cannot be imported."""

from __future__ import annotations

from pathlib import Path

from tests.blocked_imports import run_without

CLIENT = Path(__file__).resolve().parents[2] / "framepack_client"
BLOCKED = ("torch", "numpy", "safetensors", "einops", "PIL", "av", "diffusers", "transformers", "comfy", "comfy_api",
           "folder_paths")


def test_every_client_module_imports_without_torch_or_comfyui():
    modules = sorted(p.stem for p in CLIENT.glob("*.py") if p.stem not in ("__init__", "__main__"))
    proc = run_without(BLOCKED, f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module("framepack_client." + name)
        assert "websocket" in sys.modules
        print("ok")
    """, cwd=CLIENT.parent, why="the client must not need it", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
