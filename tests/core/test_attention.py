"""Attention kernel choice per GPU generation, tested on the CPU with a faked compute capability: the plan, the
kernel reported, the Turing bf16 switch to fp16, and the warning for a backend that is not installed."""

import logging

import pytest
import torch
import torch.nn.functional as F

from framepack_core import attention
from framepack_core.attention import sdpa_plan
from framepack_core.errors import InputError


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    monkeypatch.setattr(attention, "_plans", {})
    monkeypatch.setattr(attention, "_kernels_used", {})
    monkeypatch.setattr(attention, "_warned_missing", set())


@pytest.mark.parametrize("capability,dtype,kernels,cast", [
    ((9, 0), torch.bfloat16, ("cudnn", "flash", "efficient", "math"), None),  # Hopper: cuDNN first
    ((8, 9), torch.bfloat16, ("flash", "efficient", "cudnn", "math"), None),  # Ada
    ((8, 0), torch.float16, ("flash", "efficient", "cudnn", "math"), None),
    ((7, 5), torch.bfloat16, ("efficient", "math"), torch.float16),  # Turing: no bf16 kernel
    ((7, 5), torch.float16, ("flash", "efficient", "cudnn", "math"), None),
    ((9, 0), torch.float32, ("efficient", "math"), None),
    (None, torch.bfloat16, (), None),  # CPU: PyTorch's own choice
])
def test_plan_per_gpu_generation(capability, dtype, kernels, cast):
    plan = sdpa_plan(capability, dtype)
    assert plan.kernels == kernels and plan.cast == cast
    assert (plan.warning is not None) == (cast is not None)


def _qkv(dtype=torch.float32, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, n, 2, 16, generator=g).to(dtype) for _ in range(3)]


def _reference(q, k, v):
    out = F.scaled_dot_product_attention(*(t.double().transpose(1, 2) for t in (q, k, v)))
    return out.transpose(1, 2).flatten(2)


@pytest.mark.parametrize("usable,reported", [({"cudnn", "flash", "efficient"}, "cudnn"),
                                             ({"flash", "efficient"}, "flash"), (set(), "math")])
def test_hopper_prefers_cudnn_and_reports_what_runs(monkeypatch, caplog, usable, reported):
    monkeypatch.setattr(attention, "_capability", lambda device: (9, 0))
    asked = []
    monkeypatch.setattr(attention, "_usable",
                        lambda name, *a: (asked.append(name), name in usable or name == "math")[1])
    q, k, v = _qkv(torch.bfloat16)
    with caplog.at_level(logging.INFO, logger=attention.__name__):
        out = attention.attention(q, k, v)
        attention.attention(q, k, v)
    assert asked[0] == "cudnn" and asked[-1] == reported and len(asked) == len(set(asked))  # probed once
    assert attention.kernels_used() == {"cpu bfloat16": reported}
    assert sum(f"SDPA kernel {reported}" in r.message for r in caplog.records) == 1
    assert torch.allclose(out.double(), _reference(q, k, v), atol=2e-2)


def test_turing_bf16_runs_attention_in_fp16_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(attention, "_capability", lambda device: (7, 5))
    monkeypatch.setattr(attention, "_usable", lambda name, q, *a: q.dtype == torch.float16 and name == "efficient")
    q, k, v = _qkv(torch.bfloat16)
    seen = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, **kw: (seen.append(a[0].dtype), real(*a, **kw))[1])
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        out = attention.attention(q, k, v)
        attention.attention(q, k, v)
    assert seen == [torch.float16, torch.float16] and out.dtype == torch.bfloat16
    assert attention.kernels_used() == {"cpu bfloat16": "efficient"}
    assert sum("no bf16 attention kernel" in r.message for r in caplog.records) == 1
    assert torch.allclose(out.double(), _reference(q, k, v), atol=2e-2)
    v_big = v.clone()
    v_big[0, 0] = 1e6  # beyond fp16: clamped, never inf
    assert torch.isfinite(attention.attention(q, k, v_big)).all()


def test_cpu_attention_is_plain_sdpa():
    q, k, v = _qkv()
    expected = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    assert torch.equal(attention.attention(q, k, v), expected.transpose(1, 2).flatten(2))
    assert attention.kernels_used() == {"cpu float32": "default"}


def test_backend_names_and_a_missing_backend_warns_once(caplog):
    with pytest.raises(InputError, match="unknown"):
        attention.resolve_backend("xformers")
    assert attention.resolve_backend("sdpa") == "sdpa"
    missing = [b for b in ("flash_attn", "sage") if b not in attention.available_backends()]
    if not missing:
        pytest.fail("both optional backends are installed here; this test needs one that is not")
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        assert [attention.resolve_backend(missing[0]) for _ in range(3)] == ["sdpa"] * 3
    assert sum("not installed" in r.message for r in caplog.records) == 1


def test_loading_resolves_the_backend_once(tmp_path, caplog):
    from framepack_core import TINY, FramePackTransformer
    from framepack_core.loading import load_framepack_model, save_framepack_model

    missing = next(b for b in ("flash_attn", "sage") if b not in attention.available_backends())
    path = save_framepack_model(FramePackTransformer(TINY), tmp_path / "tiny.safetensors")[0]
    with caplog.at_level(logging.WARNING, logger=attention.__name__):
        models = [load_framepack_model(path, compute_dtype="fp32", attention_backend=missing) for _ in range(2)]
    assert {block.attn.backend for m in models for block in m.blocks} == {"sdpa"}
    assert sum("not installed" in r.message for r in caplog.records) == 1
    with pytest.raises(InputError, match="unknown"):
        load_framepack_model(path, attention_backend="xformers")
