"""GGUF models: torch dequantization against the gguf package's numpy reference for every type, loading with the
weights kept quantized (and the shapes the right way round), the converter's round trip, storage options, and the
package being optional."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from framepack_core import TINY
from framepack_core.gguf_convert import CONVERT_TYPES, convert, is_quantizable, main
from framepack_core.gguf_dequant import FLOAT_TYPES, QUANT_TYPES, TYPE_IDS, dequantize
from framepack_core.gguf_linear import QuantizedLinear
from framepack_core.layers import Linear
from framepack_core.loading import load_framepack_model, save_framepack_model
from framepack_dev.random_weights import random_model, window_inputs
from tests.blocked_imports import run_without
from tests.core.gguf_files import K_CONFIG, random_blocks, write_model_gguf

QUANT_NAMES = [name for name, *_ in QUANT_TYPES.values()]
ALL_NAMES = QUANT_NAMES + [name for name, _ in FLOAT_TYPES.values()]


def _forward(model, config):
    with torch.no_grad():
        return model(**window_inputs(config)).float()


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_type_table_is_the_gguf_packages():
    for qtype, (name, block, size) in QUANT_TYPES.items():
        assert gguf.GGMLQuantizationType(qtype).name == name
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)] == (block, size)
    for qtype, (name, _) in FLOAT_TYPES.items():
        assert gguf.GGMLQuantizationType(qtype).name == name


@pytest.mark.parametrize("name", QUANT_NAMES)
@pytest.mark.parametrize("scale", [0.004, None], ids=["finite", "raw_bytes"])
def test_dequantize_equals_the_gguf_reference_bit_for_bit(name, scale):
    """Random blocks, plus all-zero and all-0xFF blocks; `raw_bytes` leaves the float16 scales random too (NaN,
    inf, subnormals, 65504)."""
    qtype = TYPE_IDS[name]
    blocks = random_blocks(name, 64, seed=qtype, scale=scale)
    blocks[0], blocks[1] = 0, 0xFF
    if scale is not None:
        blocks[2, :2] = np.array([65504.0], dtype=np.float16).view(np.uint8)  # the largest float16 scale
    block = QUANT_TYPES[qtype][1]
    rows = blocks.reshape(4, -1)  # 4 rows of 16 blocks, as a weight is stored
    reference = gguf.quants.dequantize(rows, gguf.GGMLQuantizationType(qtype))
    ours = dequantize(torch.from_numpy(rows), qtype, (4, 16 * block), torch.float32)
    assert ours.shape == reference.shape == (4, 16 * block)
    torch.testing.assert_close(ours, torch.from_numpy(reference), rtol=0, atol=0, equal_nan=True)
    # the cast to the compute dtype is the only rounding
    assert torch.equal(dequantize(torch.from_numpy(rows), qtype, (4, 16 * block), torch.bfloat16).float().nan_to_num(),
                       torch.from_numpy(reference).to(torch.bfloat16).float().nan_to_num())


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_type_loads_quantized_with_the_files_values(tmp_path, name):
    path, _ = write_model_gguf(tmp_path / f"model-{name}.gguf", K_CONFIG, name)
    model = load_framepack_model(path, compute_dtype="bf16")
    reader = gguf.GGUFReader(path)
    stored = {t.name: t for t in reader.tensors}
    quantized = [(n, m) for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]
    qtype = TYPE_IDS[name]
    if qtype in QUANT_TYPES:
        eligible = sorted(n for n, m in model.named_modules() if isinstance(m, Linear)
                          and is_quantizable(n + ".weight", tuple(m.weight.shape)))
        assert sorted(n for n, _ in quantized) == eligible and eligible
        for module_name, layer in quantized:
            t = stored[module_name + ".weight"]
            assert layer.weight.dtype == torch.uint8 and layer.qtype == qtype
            assert layer.weight.numel() == t.n_bytes  # only the packed bytes are held
            # GGUF lists dims innermost first: [in, out]; the layer is [out, in]
            assert list(t.shape) == [layer.in_features, layer.out_features]
            expected = gguf.quants.dequantize(t.data, t.tensor_type)
            got = dequantize(layer.weight, qtype, (layer.out_features, layer.in_features), torch.float32)
            torch.testing.assert_close(got, torch.from_numpy(expected), rtol=0, atol=0)
    else:
        assert not quantized
        weight = model.transformer_blocks[0].ff.net[0].proj.weight
        t = stored["transformer_blocks.0.ff.net.0.proj.weight"]
        assert tuple(weight.shape) == (K_CONFIG.mlp_dim, K_CONFIG.inner_dim) == tuple(reversed(t.shape.tolist()))
        torch.testing.assert_close(weight.float(), torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type))
                                   .to(torch.bfloat16).float(), rtol=0, atol=0)
    assert torch.isfinite(_forward(model, K_CONFIG)).all()
    # dequantizing at each matmul gives what dequantizing the whole model at load gives (in fp32: the bf16 runs
    # differ by the accumulation order of the fused QKV matmul the dequantized model takes)
    at_matmul = load_framepack_model(path, compute_dtype="fp32")
    dequantized = load_framepack_model(path, compute_dtype="fp32", storage="compute")
    assert not any(isinstance(m, QuantizedLinear) for m in dequantized.modules())
    torch.testing.assert_close(_forward(at_matmul, K_CONFIG), _forward(dequantized, K_CONFIG), rtol=1e-5, atol=1e-6)
    assert model.file_variant == "I2V_HY"


# relative L2 error of each block weight after a round trip through each type: 1.25 x the largest measured on
# these random normal weights (measured per layer: Q8_0 0.51-0.57%, Q5_1 3.7-3.9%, Q5_0 4.1-4.6%, Q4_1 7.5-8.3%,
# Q4_0 8.2-9.1%); a layer below half the smallest measured would mean a type was not applied as named
ROUND_TRIP_ERROR = {"Q8_0": 0.0072, "Q5_1": 0.049, "Q5_0": 0.057, "Q4_1": 0.104, "Q4_0": 0.115, "BF16": 0.0,
                    "F16": 0.0}
SMALLEST_ERROR = {"Q8_0": 0.0051, "Q5_1": 0.037, "Q5_0": 0.041, "Q4_1": 0.075, "Q4_0": 0.082}


@pytest.fixture(scope="module")
def bf16_file(tmp_path_factory):
    model = random_model(TINY, seed=3, std=0.05)
    [path] = save_framepack_model(model, tmp_path_factory.mktemp("src") / "FramePack_F1_I2V_HY_tiny.safetensors",
                                  storage="bf16")
    return path


@pytest.mark.parametrize("name", CONVERT_TYPES)
def test_converter_round_trip_within_the_types_error(tmp_path, bf16_file, name):
    reference = load_framepack_model(bf16_file, compute_dtype="fp32")
    dst = convert(bf16_file, tmp_path / f"tiny-{name}.gguf", name)
    model = load_framepack_model(dst, compute_dtype="fp32")
    assert model.file_variant == "F1"  # from the source's name
    assert model.config == reference.config
    ref_layers = dict(reference.named_modules())
    for module_name, layer in model.named_modules():
        if not isinstance(layer, Linear):
            continue
        ref = ref_layers[module_name].weight
        if isinstance(layer, QuantizedLinear):
            assert name in ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0") and is_quantizable(module_name + ".weight", ref.shape)
            weight = dequantize(layer.weight, layer.qtype, tuple(ref.shape), torch.float32)
            assert SMALLEST_ERROR[name] / 2 < _rel(weight, ref) <= ROUND_TRIP_ERROR[name], (module_name, _rel(weight, ref))
        else:
            assert layer.weight.dtype == torch.float32
            assert _rel(layer.weight, ref) <= (1e-3 if name == "F16" else 0)  # bf16 values: exact in F16 too
    for key, tensor in reference.state_dict().items():  # norms, biases, embedders, head: as in the source
        if not is_quantizable(key, tuple(tensor.shape)):
            assert torch.equal(model.state_dict()[key], tensor), key
    assert _rel(_forward(model, TINY), _forward(reference, TINY)) <= max(2 * ROUND_TRIP_ERROR[name], 1e-3)


def test_converter_reads_the_diffusers_folder_and_fp8_files(tmp_path, bf16_file):
    model = load_framepack_model(bf16_file, compute_dtype="bf16")
    folder = tmp_path / "FramePackI2V_HY"
    save_framepack_model(model, folder, max_shard_bytes=200_000)
    from_file = load_framepack_model(convert(bf16_file, tmp_path / "a.gguf", "Q8_0", variant="I2V_HY"))
    from_folder = load_framepack_model(convert(folder, tmp_path / "b.gguf", "Q8_0"))
    assert from_folder.file_variant == "I2V_HY"
    for key, tensor in from_file.state_dict().items():
        assert torch.equal(from_folder.state_dict()[key], tensor), key
    [fp8] = save_framepack_model(model, tmp_path / "fp8.safetensors", storage="fp8_e4m3fn")
    from_fp8 = load_framepack_model(convert(fp8, tmp_path / "c.gguf", "Q8_0"))
    assert isinstance(from_fp8.transformer_blocks[0].attn.to_q, QuantizedLinear)
    assert _rel(_forward(from_fp8, TINY), _forward(model, TINY)) < 0.1


def test_converter_command_line(tmp_path, bf16_file, capsys):
    assert main([str(bf16_file), str(tmp_path / "x.gguf"), "--type", "Q4_0"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.safetensors"), str(tmp_path / "y.gguf")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(bf16_file), str(tmp_path / "z.gguf"), "--type", "Q4_K"])  # K-quants: llama-quantize (README)


def test_storage_options(tmp_path, bf16_file):
    dst = convert(bf16_file, tmp_path / "q.gguf", "Q4_0")  # 4.5 bits a weight: below fp8 (Q8_0 is 8.5)
    auto = load_framepack_model(dst, compute_dtype="bf16")
    compute = load_framepack_model(dst, compute_dtype="bf16", storage="compute")
    fp8 = load_framepack_model(dst, compute_dtype="bf16", storage="fp8_e4m3fn")
    assert isinstance(auto.transformer_blocks[0].ff.net[2], QuantizedLinear)
    assert compute.transformer_blocks[0].ff.net[2].weight.dtype == torch.bfloat16
    assert fp8.transformer_blocks[0].ff.net[2].weight.dtype == torch.float8_e4m3fn
    assert fp8.transformer_blocks[0].norm1.linear.weight.dtype == torch.bfloat16  # not a block matmul weight

    def weight_bytes(m):
        return sum(t.numel() * t.element_size() for t in m.state_dict().values())
    assert weight_bytes(auto) < weight_bytes(fp8) < weight_bytes(compute)


def test_a_file_that_quantizes_other_linears_keeps_them_quantized(tmp_path):
    """Other tools also quantize the embedders' Linears and the output head: those stay quantized too; the
    quantized 5-D patch embedder (no Linear) is dequantized at load."""
    from framepack_core.gguf_convert import Entry, encode, stored_shape, write_gguf
    model = random_model(TINY, seed=4, std=0.05)
    q8 = TYPE_IDS["Q8_0"]
    entries = []
    for key, t in sorted(model.state_dict().items()):
        rows = stored_shape(tuple(t.shape))
        qtype = q8 if rows[-1] % 32 == 0 and len(rows) == 2 else TYPE_IDS["F32"]
        entries.append(Entry(key, tuple(t.shape), qtype, lambda t=t, r=rows, q=qtype: encode(t.reshape(r), q)))
    path = write_gguf(tmp_path / "all.gguf", entries, config=TINY, variant="F1")
    loaded = load_framepack_model(path, compute_dtype="fp32")
    assert isinstance(loaded.time_text_embed.timestep_embedder.linear_1, QuantizedLinear)
    assert isinstance(loaded.proj_out, QuantizedLinear)
    embedder = loaded.clean_x_embedder.proj_4x.weight
    assert embedder.dim() == 5 and embedder.dtype == torch.float32
    assert _rel(embedder, model.clean_x_embedder.proj_4x.weight) < 0.01
    assert _rel(_forward(loaded, TINY), _forward(model, TINY)) < 0.02


def test_safetensors_loads_without_the_gguf_package_and_gguf_files_say_how_to_get_it(tmp_path, bf16_file):
    gguf_path = convert(bf16_file, tmp_path / "m.gguf", "Q8_0")
    proc = run_without(("gguf",), f"""
        from framepack_core.loading import load_framepack_model
        from framepack_core.errors import CheckpointError
        load_framepack_model({str(bf16_file)!r})
        try:
            load_framepack_model({str(gguf_path)!r})
        except CheckpointError as err:
            print(err)
    """, cwd=Path(__file__).resolve().parents[2],
        why="the gguf package is optional")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "m.gguf" in proc.stdout and "pip install gguf" in proc.stdout
