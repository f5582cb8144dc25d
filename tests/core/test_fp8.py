"""fp8 matmul (framepack_core.fp8): which device takes it (fake capabilities on the CPU), the reason logged once
elsewhere, and the numerics of torch._scaled_mm against the upcast path. torch._scaled_mm also runs on the CPU in
this PyTorch, so the scaled path itself is exercised here, on the tiny model with the released key layout."""

import logging

import pytest
import torch
import torch._dynamo

from framepack_core import TINY, FramePackTransformer
from framepack_core import fp8
from framepack_core.fp8 import E4M3_MAX, scaled_linear, select_fp8_matmul, unsupported_reason
from framepack_core.layers import Linear
from framepack_core.loading import load_framepack_model, save_framepack_model
from framepack_dev.random_weights import random_model, window_inputs


@pytest.fixture(autouse=True)
def fresh_log_memory(monkeypatch):
    monkeypatch.setattr(fp8, "_logged", set())


def _fp8_model(tmp_path, storage="fp8_e4m3fn") -> FramePackTransformer:
    model = random_model(TINY, std=0.1)
    [path] = save_framepack_model(model, tmp_path / "tiny.safetensors")
    return load_framepack_model(path, compute_dtype="bf16", storage=storage)


def _rel_l2(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


# -- selection -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device,capability,supported,words", [
    ("cpu", None, False, "cpu device"),
    ("cuda", (8, 6), False, "8.6"),  # RTX 30xx / A-series: no fp8 tensor cores
    ("cuda", (8, 0), False, "8.0"),  # A100
    ("cuda", (8, 9), True, None),  # RTX 40xx / L4 / L40
    ("cuda:1", (9, 0), True, None),  # H100 / H200
    ("cuda", (12, 0), True, None),  # Blackwell
])
def test_fp8_matmul_needs_compute_capability_8_9(device, capability, supported, words):
    reason = unsupported_reason(device, capability)
    assert (reason is None) == supported
    if words:
        assert words in reason


def test_selection_flags_the_eligible_layers_and_logs_the_reason_once(tmp_path, caplog):
    model = _fp8_model(tmp_path)
    fp8_layers = [m for m in model.modules() if isinstance(m, Linear) and m.weight.dtype == torch.float8_e4m3fn]
    assert fp8_layers and all(not m.fp8_matmul for m in model.modules() if isinstance(m, Linear))
    assert select_fp8_matmul(model, "cuda", capability=(9, 0))
    assert all(m.fp8_matmul for m in fp8_layers)
    assert not any(m.fp8_matmul for m in model.modules() if isinstance(m, Linear) and m not in fp8_layers)
    with caplog.at_level(logging.INFO, logger="framepack_core.fp8"):
        assert not select_fp8_matmul(model, "cuda", capability=(8, 6))
        assert not select_fp8_matmul(model, "cuda", capability=(8, 6))
    assert not any(m.fp8_matmul for m in fp8_layers)
    upcast = [r.getMessage() for r in caplog.records if "upcast" in r.getMessage()]
    assert len(upcast) == 1 and "8.6" in upcast[0]


def test_e5m2_weights_and_models_without_fp8_keep_the_upcast(tmp_path, caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="framepack_core.fp8"):
        assert not select_fp8_matmul(_fp8_model(tmp_path, "fp8_e5m2"), "cuda", capability=(9, 0))
    assert any("e5m2" in r.getMessage() for r in caplog.records)
    assert not select_fp8_matmul(FramePackTransformer(TINY), "cuda", capability=(9, 0))  # nothing stored in fp8
    monkeypatch.delattr(torch, "_scaled_mm")
    assert "_scaled_mm" in unsupported_reason("cuda", (9, 0))


# -- numerics (where torch._scaled_mm runs: CUDA >= 8.9, and the CPU in this PyTorch) ------------------------------

def test_scaled_linear_against_the_upcast_matmul():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 37, 64, generator=g) * 3).bfloat16()
    weight = (torch.randn(48, 64, generator=g) * 0.05).to(torch.float8_e4m3fn)
    bias = torch.randn(48, generator=g).bfloat16()
    scaled = scaled_linear(x, weight, bias)
    upcast = torch.nn.functional.linear(x, weight.bfloat16(), bias)
    assert scaled.shape == upcast.shape == (3, 37, 48) and scaled.dtype == torch.bfloat16
    error = _rel_l2(scaled, upcast)
    assert 1e-4 < error < 0.05  # e4m3 activations: ~2-3 % relative error, never exact
    # activations that e4m3 holds exactly after the per-tensor scale: multiples of 0.25 with maximum 1.75, so the
    # scale is 1.75 / 448 = 2^-8 and every value becomes a multiple of 64 up to 448; only the bf16 output rounds
    exact = torch.randint(-7, 8, (5, 64), generator=g) * 0.25
    exact[0, 0] = 1.75
    exact = exact.bfloat16()
    assert _rel_l2(scaled_linear(exact, weight), torch.nn.functional.linear(exact.float(), weight.float())) < 4e-3


def test_scale_maps_the_largest_activation_to_the_format_maximum(monkeypatch):
    seen = {}
    real = torch._scaled_mm

    def spy(a, b, **kw):
        seen["amax"] = a.float().abs().max().item()
        seen["scale"] = kw["scale_a"].item()
        return real(a, b, **kw)

    monkeypatch.setattr(torch, "_scaled_mm", spy)
    x = torch.tensor([[1.0, -7.0] + [0.5] * 14]).bfloat16()
    scaled_linear(x, torch.eye(16).to(torch.float8_e4m3fn))
    assert seen["amax"] == E4M3_MAX
    assert seen["scale"] == pytest.approx(7.0 / E4M3_MAX, rel=1e-2)


def test_the_tiny_model_runs_every_block_matmul_through_scaled_mm(tmp_path, monkeypatch):
    model = _fp8_model(tmp_path)
    with torch.no_grad():
        upcast = model(**window_inputs(TINY))
    calls = []
    real = torch._scaled_mm
    monkeypatch.setattr(torch, "_scaled_mm", lambda *a, **kw: (calls.append(a[1].shape), real(*a, **kw))[1])
    select_fp8_matmul(model, "cuda", capability=(9, 0))
    with torch.no_grad():
        scaled = model(**window_inputs(TINY))
    # per dual block: fused image qkv, fused text qkv, to_out, to_add_out, two MLPs of two layers = 8;
    # per single block: fused qkv+mlp and proj_out (one matmul over [attention | gelu(mlp)]) = 2
    assert len(calls) == TINY.num_layers * 8 + TINY.num_single_layers * 2
    assert torch.isfinite(scaled).all()
    assert 0 < _rel_l2(scaled, upcast) < 0.1
    select_fp8_matmul(model, "cuda", capability=(8, 6))
    with torch.no_grad():
        assert torch.equal(model(**window_inputs(TINY)), upcast)  # switched off: the upcast path, bit for bit


def test_no_graph_break_in_a_block_on_the_scaled_path(tmp_path):
    model = _fp8_model(tmp_path)
    select_fp8_matmul(model, "cuda", capability=(9, 0))
    g = torch.Generator().manual_seed(2)
    h = torch.randn(1, 40, TINY.inner_dim, generator=g).bfloat16()
    temb = torch.randn(1, TINY.inner_dim, generator=g).bfloat16()
    rope = torch.polar(torch.ones(40, TINY.attention_head_dim // 2), torch.rand(40, TINY.attention_head_dim // 2))
    with torch.no_grad():
        report = torch._dynamo.explain(model.single_transformer_blocks[0])(h, temb, rope, None)
    assert report.graph_break_count == 0, report.break_reasons
