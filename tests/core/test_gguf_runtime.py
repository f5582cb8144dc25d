"""Quantized GGUF weights at run time: LoRAs of every format the pack reads as runtime side paths (the packed bytes
untouched), the block streamer moving the packed bytes, and torch.compile of quantized blocks without a graph
break (compiled output equal to eager)."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from safetensors.torch import save_file
from torch._dynamo.testing import CompileCounterWithBackend

from framepack_core import TINY
from framepack_core.gguf_convert import convert
from framepack_core.gguf_linear import QuantizedLinear
from framepack_core.layers import Linear
from framepack_core.loading import load_framepack_model, save_framepack_model
from framepack_core.lora_apply import apply_loras
from framepack_core.lora_formats import load_lora_file
from framepack_core.offload import BlockStreamer, module_bytes
from framepack_dev.random_weights import random_model, window_inputs
from tests.core.block_graphs import assert_blocks_trace_in_one_graph

D, MLP = TINY.inner_dim, TINY.mlp_dim


@pytest.fixture(scope="module")
def q_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    [src] = save_framepack_model(random_model(TINY, seed=5, std=0.05), folder / "tiny.safetensors", storage="bf16")
    return convert(src, folder / "tiny-Q4_0.gguf", "Q4_0")


def _forward(model):
    with torch.no_grad():
        return model(**window_inputs(TINY)).float()


def _pair(out_dim, in_dim, seed, rank=4, std=0.1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rank, in_dim, generator=g) * std, torch.randn(out_dim, rank, generator=g) * std


def _loras(tmp_path):
    """Three LoRAs in the three formats the pack reads: kohya (flattened names) over every block matmul, PEFT /
    diffusers names on two layers, and Tencent's original names (a fused qkv that is split on loading)."""
    model = random_model(TINY)
    kohya = {}
    for i, (name, m) in enumerate((n, m) for n, m in model.named_modules() if isinstance(m, Linear)
                                  and n.startswith(("transformer_blocks", "single_transformer_blocks"))):
        down, up = _pair(m.out_features, m.in_features, 10 + i)
        stem = "lora_unet_" + name.replace(".", "_")
        kohya.update({f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up, f"{stem}.alpha": torch.tensor(2.0)})
    peft = {}
    for i, (name, shape) in enumerate({"transformer_blocks.1.ff.net.2": (D, MLP),
                                       "single_transformer_blocks.0.proj_mlp": (MLP, D)}.items()):
        down, up = _pair(*shape, 100 + i)
        peft.update({f"transformer.{name}.lora_A.weight": down, f"transformer.{name}.lora_B.weight": up})
    original = {}
    for i, (stem, shape) in enumerate({"double_blocks.0.img_attn_qkv": (3 * D, D),
                                       "single_blocks.1.linear2": (D, D + MLP)}.items()):
        down, up = _pair(*shape, 200 + i)
        original.update({f"diffusion_model.{stem}.lora_A.weight": down, f"diffusion_model.{stem}.lora_B.weight": up})
    loras = []
    for name, tensors in (("kohya", kohya), ("peft", peft), ("original", original)):
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / f"{name}.safetensors"))
        loras.append(load_lora_file(tmp_path / f"{name}.safetensors"))
    return loras


def test_loras_on_quantized_weights_change_the_output_as_on_the_dequantized_model(tmp_path, q_file):
    loras = _loras(tmp_path)
    assert [lora.formats for lora in loras] == [{"kohya"}, {"diffusers"}, {"hunyuan-original"}]
    quantized = load_framepack_model(q_file, compute_dtype="fp32")
    dequantized = load_framepack_model(q_file, compute_dtype="fp32", storage="compute")
    packed = {n: m.weight.clone() for n, m in quantized.named_modules() if isinstance(m, QuantizedLinear)}
    base_q, base_d = _forward(quantized), _forward(dequantized)
    torch.testing.assert_close(base_q, base_d, rtol=1e-5, atol=1e-6)
    stack = [(loras[0], 1.0), (loras[1], 0.7), (loras[2], -0.5)]
    report_q = apply_loras(quantized, stack)
    report_d = apply_loras(dequantized, stack)
    modes = {mode for lora in report_q.loras for mode in lora.layers.values()}
    assert modes == {"runtime"}  # every block Linear is quantized: all take the side path
    assert all(report_q.loras[i].layers.keys() == report_d.loras[i].layers.keys() for i in range(3))
    for lora in report_q.loras:
        for name, mode in lora.layers.items():
            assert (mode == "runtime") == isinstance(quantized.get_submodule(name), QuantizedLinear)
    for name, m in quantized.named_modules():  # the base weights are never dequantized and requantized
        if isinstance(m, QuantizedLinear):
            assert torch.equal(m.weight, packed[name])
    contribution_q = _forward(quantized) - base_q
    contribution_d = _forward(dequantized) - base_d
    assert contribution_d.abs().max() > 1e-2  # the LoRAs visibly change the output
    torch.testing.assert_close(contribution_q, contribution_d, rtol=1e-4, atol=1e-5)


def test_the_streamer_copies_the_packed_bytes(q_file):
    """Every block streamed through the slots: the quantized model's output is unchanged and it copies the packed
    bytes, not bf16 ones."""
    copied, outputs, block_bytes = {}, {}, {}
    for storage in ("auto", "compute"):
        model = load_framepack_model(q_file, compute_dtype="bf16", storage=storage)
        plain = _forward(model)
        streamer = BlockStreamer(model, "cpu", reserve_bytes=0, force_stream=True)
        assert streamer.plan.streamed_blocks == len(model.blocks)
        outputs[storage] = _forward(model)
        torch.testing.assert_close(outputs[storage], plain, rtol=0, atol=0)
        copied[storage] = streamer.copied_bytes
        block_bytes[storage] = sum(module_bytes(b) for b in model.blocks)
        streamer.release()
    # the same block copies in both runs (the last one re-fetches the first block, the largest kind here, hence
    # not exactly the sum ratio): Q4_0 block weights are 4.5 bits against 16; biases and norms stay
    assert copied["auto"] / copied["compute"] == pytest.approx(block_bytes["auto"] / block_bytes["compute"], rel=0.03)
    assert copied["auto"] < 0.45 * copied["compute"]  # 0.42 here (the tiny blocks' biases weigh more than at 13B)


def test_quantized_blocks_compile_without_a_graph_break(q_file):
    """Both block kinds with Q4_0 weights trace into one graph each (dynamo's explain, as tests/core/test_compile.py
    checks the bf16 blocks); inductor's numerics are checked per type below, on one layer, to keep the test fast."""
    model = load_framepack_model(q_file, compute_dtype="fp32")
    assert isinstance(model.single_transformer_blocks[0].proj_mlp, QuantizedLinear)
    torch._dynamo.reset()
    assert_blocks_trace_in_one_graph(model)
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["Q8_0", "Q5_1", "Q4_K", "Q6_K"])
def test_dequantizing_matmul_compiles_with_inductor_no_graph_break(name):
    from framepack_core.gguf_dequant import QUANT_TYPES, TYPE_IDS
    from framepack_core.gguf_linear import make_quantized
    from tests.core.gguf_files import random_blocks
    qtype = TYPE_IDS[name]
    layer = make_quantized(Linear(256, 64), qtype)
    blocks = random_blocks(name, 64 * 256 // QUANT_TYPES[qtype][1], seed=qtype, scale=0.01)
    layer.weight = torch.nn.Parameter(torch.from_numpy(blocks).reshape(64, -1), requires_grad=False)
    x = torch.randn(3, 7, 256, generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    with torch.no_grad():
        eager = layer(x)
        compiled = torch.compile(layer, backend=counter, fullgraph=True)(x)
    assert counter.frame_count == 1
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
