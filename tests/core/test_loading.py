"""Loading from the file layouts users have, fp8 storage numerics, and clear errors for bad files."""

import dataclasses
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from framepack_core import TINY, CheckpointError, FramePackConfig, FramePackTransformer, InputError
from framepack_core.config import RELEASED
from framepack_core.errors import NotFramePackError
from framepack_core.loading import detect_variant, is_fp8_eligible, load_framepack_model, save_framepack_model


def _random_model(config=TINY, seed=0):
    torch.manual_seed(seed)
    model = FramePackTransformer(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def _inputs(config=TINY, seed=3):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    # timestep and guidance are bf16-representable, so bf16 and fp32 models see the same conditioning values
    return dict(hidden_states=r(1, 16, 2, 8, 8), timestep=torch.tensor([800.0]), guidance=torch.tensor([9984.0]),
                encoder_hidden_states=r(1, 6, config.text_embed_dim), encoder_attention_mask=None,
                pooled_projections=r(1, config.pooled_projection_dim), image_embeddings=r(1, 4, config.image_proj_dim),
                latent_indices=torch.arange(1, 3), clean_latents=r(1, 16, 2, 8, 8),
                clean_latent_indices=torch.tensor([0, 3]), clean_latents_2x=r(1, 16, 2, 8, 8),
                clean_latent_2x_indices=torch.tensor([4, 5]), clean_latents_4x=r(1, 16, 16, 8, 8),
                clean_latent_4x_indices=torch.arange(6, 22))


def _run(model, x=None):
    with torch.no_grad():
        return model(**(x or _inputs(model.config)))


def _assert_same_model(loaded, reference):
    """Every weight bit-identical; outputs equal up to rounding. Loaded weights are memory-mapped at the file's
    offsets, which are not 64-byte aligned, and AVX-512 matmul kernels sum in another order for unaligned
    operands, so a bitwise output check would test the CPU rather than the loader."""
    expected = reference.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(expected)
    assert all(got[k].dtype == expected[k].dtype and torch.equal(got[k], expected[k]) for k in expected)
    assert (_run(loaded) - _run(reference)).abs().max().item() < 1e-5


@pytest.fixture(scope="module")
def reference():
    return _random_model()


def test_single_file_round_trip_fp32_is_exact(tmp_path, reference):
    [path] = save_framepack_model(reference, tmp_path / "FramePackI2V_HY_tiny.safetensors")
    loaded = load_framepack_model(path, compute_dtype="fp32")
    assert loaded.config == reference.config
    _assert_same_model(loaded, reference)
    assert torch.equal(_run(loaded), _run(load_framepack_model(path, compute_dtype="fp32")))  # the same file twice


def test_sharded_folder_round_trip_is_exact(tmp_path, reference):
    files = save_framepack_model(reference, tmp_path / "FramePackI2V_HY", max_shard_bytes=200_000)
    assert len(files) >= 3
    index = json.loads((tmp_path / "FramePackI2V_HY" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(reference.state_dict())
    _assert_same_model(load_framepack_model(tmp_path / "FramePackI2V_HY", compute_dtype="fp32"), reference)


def test_comfy_prefixed_keys_load(tmp_path, reference):
    """ComfyUI-saved diffusion models carry a model.diffusion_model. prefix."""
    state = {f"model.diffusion_model.{k}": v for k, v in reference.state_dict().items()}
    [path] = save_framepack_model(state, tmp_path / "prefixed.safetensors", config=TINY)
    _assert_same_model(load_framepack_model(path, compute_dtype="fp32"), reference)


def test_bf16_file_and_dtypes(tmp_path, reference):
    [path] = save_framepack_model(reference, tmp_path / "m_bf16.safetensors", storage="bf16")
    model = load_framepack_model(path, compute_dtype="bf16")
    assert model.transformer_blocks[0].attn.to_q.weight.dtype == torch.bfloat16
    out = _run(model)
    assert out.dtype == torch.float32  # float32 output head
    rel = ((out - _run(reference)).norm() / _run(reference).norm()).item()
    assert rel < 0.05, rel


def test_fp16_file_loads_but_fp16_compute_is_refused(tmp_path, reference):
    """fp16 activations overflow in HunyuanVideo-family models: the compute dtype is refused with the reason and the
    fix; an fp16 weight file still loads into bf16 compute."""
    [path] = save_framepack_model(reference, tmp_path / "m_fp16.safetensors", storage="fp16")
    for dtype in ("fp16", torch.float16):
        with pytest.raises(InputError, match="fp16 is not supported.*Use bf16"):
            load_framepack_model(path, compute_dtype=dtype)
    model = load_framepack_model(path, compute_dtype="bf16")
    assert model.transformer_blocks[0].attn.to_q.weight.dtype == torch.bfloat16


# The weights community fp8 files store in fp8, listed here rather than taken from is_fp8_eligible (the function
# under test): the matmul weights inside the blocks. Everything else, including the blocks' adaptive-norm
# modulation layers (norm1.linear, norm.linear), the token refiner, the embedders and the output head, stays in
# the compute dtype.
FP8_DOUBLE_BLOCK_WEIGHTS = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj", "attn.add_k_proj",
                            "attn.add_v_proj", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2",
                            "ff_context.net.0.proj", "ff_context.net.2")
FP8_SINGLE_BLOCK_WEIGHTS = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")
RELEASED_KEYS = Path(__file__).resolve().parents[1] / "data" / "framepack_released_keys.tsv"


def _fp8_keys(config) -> set[str]:
    return ({f"transformer_blocks.{i}.{name}.weight" for i in range(config.num_layers)
             for name in FP8_DOUBLE_BLOCK_WEIGHTS} |
            {f"single_transformer_blocks.{i}.{name}.weight" for i in range(config.num_single_layers)
             for name in FP8_SINGLE_BLOCK_WEIGHTS})


def test_fp8_eligible_keys_of_the_released_checkpoint():
    """Over the released checkpoint's 1274 keys: exactly the 20 x 12 + 40 x 5 block matmul weights."""
    keys = [line.split("\t")[0] for line in RELEASED_KEYS.read_text().splitlines() if line.strip()]
    assert len(keys) == 1274
    expected = _fp8_keys(RELEASED)
    assert len(expected) == 440 and expected <= set(keys)
    assert {k for k in keys if is_fp8_eligible(k)} == expected


# Relative L2 error of the tiny model's output against the bf16 model, measured: 0.0092 (e4m3fn) and 0.0173
# (e5m2, 2 mantissa bits) on these inputs (0.009-0.011 and 0.017-0.021 over other input seeds). The bounds are
# about twice that.
FP8_OUTPUT_TOLERANCE = {"fp8_e4m3fn": 0.02, "fp8_e5m2": 0.035}


@pytest.mark.parametrize("fp8", ["fp8_e4m3fn", "fp8_e5m2"])
def test_fp8_files_and_storage(tmp_path, reference, fp8):
    """Community fp8 files: block matmul weights fp8, the rest bf16. Each stored weight is the reference weight
    rounded to the nearest fp8 (or bf16) value, and the output stays within twice the measured error."""
    [path] = save_framepack_model(reference, tmp_path / f"m_{fp8}.safetensors", storage=fp8)
    model = load_framepack_model(path, compute_dtype="bf16")  # storage auto keeps fp8
    fp8_dtype = getattr(torch, fp8.replace("fp8", "float8"))
    fp8_keys = _fp8_keys(reference.config)
    assert len(fp8_keys) == 2 * 12 + 2 * 5
    expected_state = reference.state_dict()
    for key, tensor in model.state_dict().items():
        expected = fp8_dtype if key in fp8_keys else torch.bfloat16
        assert tensor.dtype == expected, key
        # the random weights are O(0.1), far inside both fp8 ranges: no clamping
        assert torch.equal(tensor, expected_state[key].to(expected)), key
    ref_bf16 = load_framepack_model(save_framepack_model(reference, tmp_path / "b.safetensors", storage="bf16")[0])
    a, b = _run(model), _run(ref_bf16)
    rel = ((a - b).norm() / b.norm()).item()
    assert rel <= FP8_OUTPUT_TOLERANCE[fp8], rel
    assert rel > 0  # it really is quantised


def test_fp8_storage_requested_from_bf16_file(tmp_path, reference):
    [path] = save_framepack_model(reference, tmp_path / "m.safetensors", storage="bf16")
    model = load_framepack_model(path, compute_dtype="bf16", storage="fp8_e4m3fn")
    assert model.single_transformer_blocks[0].proj_mlp.weight.dtype == torch.float8_e4m3fn
    assert model.x_embedder.proj.weight.dtype == torch.bfloat16


def test_fp8_file_with_compute_storage_is_upcast(tmp_path, reference, caplog):
    [path] = save_framepack_model(reference, tmp_path / "m.safetensors", storage="fp8_e4m3fn")
    model = load_framepack_model(path, compute_dtype="bf16", storage="compute")
    assert all(t.dtype == torch.bfloat16 for t in model.state_dict().values())
    assert "cannot restore precision" in caplog.text


def test_config_inferred_from_shapes_without_metadata(tmp_path):
    """Community single files carry no config: sizes come from the shapes (head dim 128 -> released RoPE)."""
    config = FramePackConfig(num_attention_heads=1, attention_head_dim=128, num_layers=1, num_single_layers=2,
                             num_refiner_layers=1, text_embed_dim=24, pooled_projection_dim=8, image_proj_dim=12)
    model = _random_model(config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    loaded = load_framepack_model(tmp_path / "plain.safetensors", compute_dtype="fp32")
    assert loaded.config == config
    _assert_same_model(loaded, model)


def test_variant_detection():
    assert detect_variant("FramePack_F1_I2V_HY_20250503.safetensors") == "F1"
    assert detect_variant("framepack_f1_fp8_e4m3fn.safetensors") == "F1"
    assert detect_variant("models/lllyasviel/FramePack_F1_I2V_HY_20250503") == "F1"
    assert detect_variant("FramePackI2V_HY_bf16.safetensors") == "I2V_HY"
    assert detect_variant("FramePackI2V_HY_fp8_e4m3fn.safetensors") == "I2V_HY"


# -- bad files: each gives a CheckpointError naming the file and what is wrong -----------------------------------

def test_pickle_checkpoint_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "FramePackI2V_HY.ckpt"
    path.write_bytes(pickle.dumps({"x_embedder.proj.weight": [1, 2, 3]}))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must never be called"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load must never be called"))
    with pytest.raises(CheckpointError, match=r"FramePackI2V_HY\.ckpt.*pickle.*safetensors"):
        load_framepack_model(path)


def test_pickle_renamed_to_safetensors_refused(tmp_path):
    path = tmp_path / "renamed.safetensors"
    torch.save({"a": torch.zeros(2)}, path)  # a zip-based pickle
    with pytest.raises(CheckpointError, match=r"renamed\.safetensors.*pickle"):
        load_framepack_model(path)


def test_truncated_file(tmp_path, reference):
    [path] = save_framepack_model(reference, tmp_path / "cut.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors.*(truncated|corrupt).*download it again"):
        load_framepack_model(path)


@pytest.mark.parametrize("content", [b"", b"<html>404 Not Found</html>" * 3])
def test_empty_or_html_file(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        load_framepack_model(path)


def test_missing_shard(tmp_path, reference):
    files = save_framepack_model(reference, tmp_path / "sharded", max_shard_bytes=200_000)
    files[1].unlink()
    with pytest.raises(CheckpointError, match=rf"missing: {files[1].name}"):
        load_framepack_model(tmp_path / "sharded")


def test_plain_hunyuan_video_diffusers_transformer(tmp_path, reference):
    state = {k: v for k, v in reference.state_dict().items()
             if not k.startswith(("clean_x_embedder.", "image_projection."))}
    save_file(state, str(tmp_path / "hunyuan_video_t2v.safetensors"))
    with pytest.raises(CheckpointError, match=r"hunyuan_video_t2v\.safetensors.*HunyuanVideo transformer in diffusers"):
        load_framepack_model(tmp_path / "hunyuan_video_t2v.safetensors")


@pytest.mark.parametrize("keys,family", [
    (["double_blocks.0.img_attn.qkv.weight", "txt_in.individual_token_refiner.blocks.0.norm1.weight",
      "img_in.proj.weight"], "HunyuanVideo transformer \\(original"),
    (["blocks.0.self_attn.q.weight", "patch_embedding.weight", "text_embedding.0.weight"], "Wan"),
])
def test_other_model_families(tmp_path, keys, family):
    save_file({k: torch.zeros(2, 2) for k in keys}, str(tmp_path / "other.safetensors"))
    with pytest.raises(NotFramePackError, match=rf"other\.safetensors is not a FramePack transformer.*{family}") as caught:
        load_framepack_model(tmp_path / "other.safetensors")
    assert not caught.value.is_lora and "models/" not in str(caught.value)


def test_a_lora_is_named_in_the_core_own_terms(tmp_path):
    """The core says what the file is; where LoRAs go in a UI is the nodes' hint, not the core's."""
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 4)},
              str(tmp_path / "style.safetensors"))
    with pytest.raises(NotFramePackError, match=r"style\.safetensors is not a FramePack transformer: it looks like a "
                                                r"LoRA, which is applied on top of a FramePack model") as caught:
        load_framepack_model(tmp_path / "style.safetensors")
    assert caught.value.is_lora
    assert not any(word in str(caught.value) for word in ("node", "models/", "ComfyUI")), caught.value


def test_shape_mismatch_names_groups(tmp_path, reference):
    state = dict(reference.state_dict())
    state.pop("single_transformer_blocks.1.proj_out.bias")
    state["extra.weight"] = torch.zeros(1)
    save_framepack_model(state, tmp_path / "odd.safetensors", config=TINY)
    with pytest.raises(CheckpointError, match=r"odd\.safetensors.*missing 1 tensors: single_transformer_blocks\.N\.\* "
                                              r"\(1\).*unexpected 1 tensors: extra\.\*"):
        load_framepack_model(tmp_path / "odd.safetensors")


def test_peak_ram_near_one_copy(tmp_path):
    """Loading builds on the meta device and assigns: peak RSS growth stays near one copy of the weights."""
    config = dataclasses.replace(TINY, num_attention_heads=4, attention_head_dim=128, rope_axes_dim=(16, 56, 56),
                                 num_layers=2, num_single_layers=4)
    model = _random_model(config)
    [path] = save_framepack_model(model, tmp_path / "mid.safetensors", storage="bf16")
    size = path.stat().st_size
    assert size > 80e6
    del model
    script = textwrap.dedent(f"""
        import resource, torch
        from framepack_core.loading import load_framepack_model
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        m = load_framepack_model({str(path)!r}, compute_dtype="bf16")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    growth = int(out.stdout.strip().splitlines()[-1])
    assert growth < 1.6 * size, f"peak RSS grew {growth / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
