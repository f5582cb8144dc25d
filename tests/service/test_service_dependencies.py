"""The service runs wherever the client and its extra (FastAPI, uvicorn, Pillow) are: every module imports in an
interpreter where torch, numpy, ComfyUI and the other heavy packages cannot be imported."""

from __future__ import annotations

from pathlib import Path

from tests.blocked_imports import run_without

SERVICE = Path(__file__).resolve().parents[2] / "framepack_service"
BLOCKED = ("torch", "numpy", "safetensors", "einops", "av", "diffusers", "transformers", "comfy", "comfy_api",
           "folder_paths", "nodes")


def test_every_service_module_imports_without_torch_or_comfyui():
    modules = sorted(p.stem for p in SERVICE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert {"app", "backend", "cli", "intake", "scheduler", "store"} <= set(modules)
    proc = run_without(BLOCKED, f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module("framepack_service." + name)
        assert "fastapi" in sys.modules and "framepack_client.hosted" in sys.modules
        print("ok")
    """, cwd=SERVICE.parent, why="the service must not need it", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
