"""framepack_core must import and run with no ComfyUI present: torch, safetensors, einops and numpy only.

Two checks: every import statement in framepack_core names the standard library, one of those four packages or
framepack_core itself (static, so an import hidden in a rarely used function is caught too; the optional packages
below are the only exceptions); and a fresh interpreter in which ComfyUI's modules (and diffusers/transformers, and
PyAV) cannot be imported at all loads every framepack_core module and runs a tiny forward pass.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.blocked_imports import run_without

CORE = Path(__file__).resolve().parents[2] / "framepack_core"
ALLOWED_THIRD_PARTY = {"torch", "safetensors", "einops", "numpy"}
# optional attention kernels, imported inside try/except by attention.py and used only when installed; PyAV (which
# ComfyUI ships), imported by mp4.py only when a file is written; transformers (which ComfyUI requires), imported by
# safety_classifier.py only when the safety checker loads its classifier; gguf (pip install gguf), imported by the
# gguf_* modules only when a .gguf file is read or written
OPTIONAL = {"flash_attn", "sageattention", "av", "transformers", "gguf"}
BLOCKED = ("comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "server", "execution", "latent_preview",
           "diffusers", "transformers", "av", "gguf")


def _imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_imports_are_stdlib_or_the_four_allowed_packages():
    offenders = {}
    for path in sorted(CORE.glob("*.py")):
        extra = _imported_top_level_names(path) - set(sys.stdlib_module_names) - ALLOWED_THIRD_PARTY - OPTIONAL
        extra.discard("__future__")
        if extra:
            offenders[path.name] = sorted(extra)
    assert not offenders, f"framepack_core imports packages beyond torch/safetensors/einops/numpy: {offenders}"


def test_imports_and_runs_where_comfyui_cannot_be_imported():
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    proc = run_without(BLOCKED, f"""
        import importlib
        import torch
        import framepack_core
        for name in {modules!r}:
            importlib.import_module("framepack_core." + name)
        from framepack_core import TINY, FramePackTransformer
        torch.manual_seed(0)
        model = FramePackTransformer(TINY).eval()
        t, h, w = 2, 4, 4
        with torch.no_grad():
            out = model(torch.randn(1, 16, t, h, w), torch.tensor([500.0]), torch.randn(1, 7, TINY.text_embed_dim),
                        None, torch.randn(1, TINY.pooled_projection_dim), torch.tensor([10000.0]),
                        image_embeddings=torch.randn(1, 5, TINY.image_proj_dim), latent_indices=torch.arange(t))
        assert out.shape == (1, 16, t, h, w), out.shape
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
        assert not leaked, leaked
        print("ok")
    """, cwd=CORE.parent, why="framepack_core must not need it")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
