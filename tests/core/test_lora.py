"""LoRA reading and application (framepack_core.lora_formats, framepack_core.lora_apply) on the tiny FramePack
transformer with random weights.

The original-name (HunyuanVideo / Tencent) mapping is checked against an independent implementation: diffusers'
`_convert_hunyuan_video_lora_to_diffusers` (test-only dependency), run on the same tensors.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from framepack_core import TINY, FramePackTransformer
from framepack_core.layers import Linear
from framepack_core.lora_apply import apply_loras
from framepack_core.lora_formats import load_lora_file

D, MLP = TINY.inner_dim, TINY.mlp_dim  # 32, 128


# -- helpers ------------------------------------------------------------------------------------------------------

def _model(seed: int = 0) -> FramePackTransformer:
    model = FramePackTransformer(TINY).eval()
    gen = torch.Generator().manual_seed(seed)
    # small random weights keep activations O(1) through the blocks
    model.load_state_dict({k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in model.state_dict().items()})
    return model


def _inputs(seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    return dict(hidden_states=rnd(1, 16, 2, 4, 4), timestep=torch.tensor([700.0]), guidance=torch.tensor([10000.0]),
                encoder_hidden_states=rnd(1, 5, TINY.text_embed_dim), encoder_attention_mask=None,
                pooled_projections=rnd(1, TINY.pooled_projection_dim), image_embeddings=rnd(1, 3, TINY.image_proj_dim),
                latent_indices=torch.arange(2))


@torch.no_grad()
def _forward(model) -> torch.Tensor:
    return model(**_inputs())


def _pair(out_dim: int, in_dim: int, rank: int, seed: int, std: float = 0.1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rank, in_dim, generator=gen) * std, torch.randn(out_dim, rank, generator=gen) * std


def _save(tmp_path, name: str, tensors: dict, metadata: dict | None = None):
    path = tmp_path / name
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().clone() for name, m in model.named_modules() if isinstance(m, Linear)}


def _changed(before: dict, model) -> set[str]:
    after = _weights(model)
    return {name for name in before if not torch.equal(before[name], after[name])}


def _deltas(lora) -> dict[str, torch.Tensor]:
    """module -> summed delta W of a loaded LoraFile at strength 1."""
    out: dict[str, torch.Tensor] = {}
    for w in lora.weights:
        out[w.target] = out.get(w.target, 0) + w.delta()
    return out


# -- format a: diffusers / PEFT -------------------------------------------------------------------------------------

DIFFUSERS_TARGETS = {  # module -> (out, in)
    "transformer_blocks.0.attn.to_q": (D, D),
    "transformer_blocks.1.ff_context.net.0.proj": (MLP, D),
    "single_transformer_blocks.1.proj_mlp": (MLP, D),
    "single_transformer_blocks.0.proj_out": (D, D + MLP),
    "context_embedder.token_refiner.refiner_blocks.0.attn.to_out.0": (D, D),
    "image_projection.up": (3 * D, TINY.image_proj_dim),
}


@pytest.mark.parametrize("prefix", ["transformer.", "", "diffusion_model."])
@pytest.mark.parametrize("naming", [("lora_A", "lora_B"), ("lora_down", "lora_up")])
def test_diffusers_format_targets_the_named_layers(tmp_path, prefix, naming):
    tensors, expected = {}, {}
    for i, (module, (out_dim, in_dim)) in enumerate(DIFFUSERS_TARGETS.items()):
        down, up = _pair(out_dim, in_dim, rank=4, seed=i)
        tensors[f"{prefix}{module}.{naming[0]}.weight"] = down
        tensors[f"{prefix}{module}.{naming[1]}.weight"] = up
        expected[module] = up @ down
    model = _model()
    before = _weights(model)
    report = apply_loras(model, [(load_lora_file(_save(tmp_path, "style.safetensors", tensors)), 1.0)])
    assert _changed(before, model) == set(DIFFUSERS_TARGETS)
    after = _weights(model)
    for module, delta in expected.items():
        torch.testing.assert_close(after[module], before[module] + delta, rtol=0, atol=1e-6)
    (applied,) = report.loras
    assert applied.matched == len(DIFFUSERS_TARGETS) and not applied.unmatched
    assert set(applied.layers.values()) == {"merged"}


# -- format b: musubi-tuner / kohya ---------------------------------------------------------------------------------

def test_kohya_names_resolve_against_real_modules(tmp_path):
    kohya = {  # flattened name -> (real module, out, in)
        "lora_unet_single_transformer_blocks_0_attn_to_q": ("single_transformer_blocks.0.attn.to_q", D, D),
        "lora_unet_transformer_blocks_1_ff_context_net_0_proj": ("transformer_blocks.1.ff_context.net.0.proj", MLP, D),
        "lora_unet_transformer_blocks_0_norm1_context_linear": ("transformer_blocks.0.norm1_context.linear", 6 * D, D),
        "lora_unet_transformer_blocks_0_attn_to_add_out": ("transformer_blocks.0.attn.to_add_out", D, D),
        "lora_unet_time_text_embed_timestep_embedder_linear_1": ("time_text_embed.timestep_embedder.linear_1", D, 256),
    }
    rank, alpha = 8, 2.0
    tensors, expected = {}, {}
    for i, (stem, (module, out_dim, in_dim)) in enumerate(kohya.items()):
        down, up = _pair(out_dim, in_dim, rank, seed=10 + i)
        tensors.update({f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up,
                        f"{stem}.alpha": torch.tensor(alpha)})
        expected[module] = (alpha / rank) * up @ down
    model = _model()
    before = _weights(model)
    lora = load_lora_file(_save(tmp_path, "musubi.safetensors", tensors))
    assert lora.formats == {"kohya"}
    apply_loras(model, [(lora, 1.0)])
    assert _changed(before, model) == {module for module, _, _ in kohya.values()}
    after = _weights(model)
    for module, delta in expected.items():
        torch.testing.assert_close(after[module], before[module] + delta, rtol=0, atol=1e-6)


# -- format c: HunyuanVideo original names, checked against diffusers' converter -----------------------------------

@pytest.fixture(scope="module")
def convert_reference():
    module = pytest.importorskip("diffusers.loaders.lora_conversion_utils",
                                 reason="diffusers is the test-only reference for the HunyuanVideo names")
    return module._convert_hunyuan_video_lora_to_diffusers

# Tencent name -> (out, in) at the tiny width. diffusers handles these LoRA factors correctly (it shares lora_A
# and splits lora_B), so it is run on the very same lora_A / lora_B tensors.
ORIGINAL_BLOCK_LAYERS = {
    "double_blocks.0.img_attn_qkv": (3 * D, D), "double_blocks.0.img_attn_proj": (D, D),
    "double_blocks.0.img_mlp.fc1": (MLP, D), "double_blocks.0.img_mlp.fc2": (D, MLP),
    "double_blocks.0.img_mod.linear": (6 * D, D),
    "double_blocks.1.txt_attn_qkv": (3 * D, D), "double_blocks.1.txt_attn_proj": (D, D),
    "double_blocks.1.txt_mlp.fc1": (MLP, D), "double_blocks.1.txt_mlp.fc2": (D, MLP),
    "double_blocks.1.txt_mod.linear": (6 * D, D),
    "single_blocks.1.linear2": (D, D + MLP), "single_blocks.0.modulation.linear": (3 * D, D),
    "final_layer.linear": (4 * 16, D), "time_in.mlp.0": (D, 256), "vector_in.in_layer": (D, TINY.pooled_projection_dim),
    "guidance_in.mlp.2": (D, D), "txt_in.input_embedder": (D, TINY.text_embed_dim),
    "txt_in.individual_token_refiner.blocks.0.mlp.fc1": (4 * D, D),
    "txt_in.c_embedder.linear_1": (D, TINY.text_embed_dim), "txt_in.t_embedder.mlp.0": (D, 256),
}


def _original_lora(layers: dict, rank: int = 4, seed: int = 100) -> dict[str, torch.Tensor]:
    tensors = {}
    for i, (stem, (out_dim, in_dim)) in enumerate(layers.items()):
        down, up = _pair(out_dim, in_dim, rank, seed + i)
        tensors[f"diffusion_model.{stem}.lora_A.weight"] = down
        tensors[f"diffusion_model.{stem}.lora_B.weight"] = up
    return tensors


def _reference_deltas(convert_reference, tensors: dict) -> dict[str, torch.Tensor]:
    converted = convert_reference({k: v.clone() for k, v in tensors.items()})
    out = {}
    for key, up in converted.items():
        if key.endswith(".lora_B.weight"):
            module = key[len("transformer."):-len(".lora_B.weight")]
            out[module] = up @ converted[key.replace("lora_B", "lora_A")]
    return out


def test_original_names_match_diffusers_conversion(tmp_path, convert_reference):
    tensors = _original_lora(ORIGINAL_BLOCK_LAYERS)
    reference = _reference_deltas(convert_reference, tensors)
    lora = load_lora_file(_save(tmp_path, "hv_original.safetensors", tensors))
    ours = _deltas(lora)
    assert not lora.ignored and lora.formats == {"hunyuan-original"}
    assert set(ours) == set(reference)
    assert len(ours) == len(ORIGINAL_BLOCK_LAYERS) + 4  # two fused q/k/v layers became three each
    for module in reference:
        torch.testing.assert_close(ours[module], reference[module], rtol=0, atol=0)
    # and every normalised name is a real layer of the model, with fitting shapes
    model = _model()
    before = _weights(model)
    report = apply_loras(model, [(lora, 1.0)])
    assert report.loras[0].matched == len(ours) and not report.loras[0].unmatched
    assert _changed(before, model) == set(ours)


def test_original_names_kohya_flattened_equal_dotted(tmp_path):
    dotted = _original_lora(ORIGINAL_BLOCK_LAYERS)
    flattened = {}
    for key, tensor in dotted.items():
        stem = key[len("diffusion_model."):].rsplit(".lora_", 1)[0]
        kind = "lora_down" if key.endswith("lora_A.weight") else "lora_up"
        flattened[f"lora_unet_{stem.replace('.', '_')}.{kind}.weight"] = tensor
    a = _deltas(load_lora_file(_save(tmp_path, "dotted.safetensors", dotted)))
    b = _deltas(load_lora_file(_save(tmp_path, "flat.safetensors", flattened)))
    assert set(a) == set(b)
    for module in a:
        assert torch.equal(a[module], b[module])


def test_single_block_linear1_split_matches_diffusers(tmp_path, convert_reference):
    # diffusers hard-codes the released width 3072 for the linear1 -> q, k, v, mlp split, so this runs at 3072
    width, mlp, rank = 3072, 40, 2
    down, up = _pair(3 * width + mlp, width, rank, seed=7)
    tensors = {"transformer.single_blocks.3.linear1.lora_A.weight": down,
               "transformer.single_blocks.3.linear1.lora_B.weight": up}
    converted = convert_reference({k: v.clone() for k, v in tensors.items()})
    ours = {w.target: w for w in load_lora_file(_save(tmp_path, "linear1.safetensors", tensors)).weights}
    expected = {f"single_transformer_blocks.3.{m}" for m in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}
    assert set(ours) == expected
    # delta W compared as a map on probe vectors (the full 3072 x 3072 matrices are big)
    probe = torch.randn(width, 3, generator=torch.Generator().manual_seed(0))
    for module in expected:
        a, b = (converted[f"transformer.{module}.lora_{ab}.weight"] for ab in "AB")
        ref = b @ (a @ probe)
        torch.testing.assert_close(ours[module].scale * ours[module].up @ (ours[module].down @ probe), ref,
                                   rtol=0, atol=0)


def test_fused_weights_whose_lora_a_diffusers_would_chunk(tmp_path, convert_reference):
    """final_layer.adaLN_modulation.1 (shift, scale -> scale, shift) and the token refiner's self_attn_qkv: for
    LoRA factors diffusers also chunks lora_A along the rank (a bug: B @ A then mixes rank components), so the
    reference is diffusers' conversion of the full delta W = B @ A written under the layer's `.weight` key, which
    it splits / reorders correctly."""
    layers = {"final_layer.adaLN_modulation.1": (2 * D, D),
              "txt_in.individual_token_refiner.blocks.0.self_attn_qkv": (3 * D, D)}
    tensors = _original_lora(layers, seed=300)
    full = {}
    for stem in layers:
        full[f"{stem}.weight"] = (tensors[f"diffusion_model.{stem}.lora_B.weight"]
                                  @ tensors[f"diffusion_model.{stem}.lora_A.weight"])
    reference = {k[len("transformer."):-len(".weight")]: v for k, v in convert_reference(full).items()}
    ours = _deltas(load_lora_file(_save(tmp_path, "fused.safetensors", tensors)))
    assert set(ours) == set(reference) == {
        "norm_out.linear", *(f"context_embedder.token_refiner.refiner_blocks.0.attn.to_{p}" for p in "qkv")}
    for module in reference:
        torch.testing.assert_close(ours[module], reference[module], rtol=1e-6, atol=1e-7)


# -- merge arithmetic, forward, fp8 ---------------------------------------------------------------------------------

def _block_lora(tmp_path, name: str, seed: int, std: float = 0.1, rank: int = 4, alpha: float | None = None):
    """A kohya-style LoRA over every matmul of every block of the tiny model."""
    tensors = {}
    for i, (module, m) in enumerate((n, m) for n, m in _model().named_modules()
                                    if isinstance(m, Linear) and n.startswith(("transformer_blocks",
                                                                                "single_transformer_blocks"))):
        down, up = _pair(m.out_features, m.in_features, rank, seed * 1000 + i, std)
        stem = "lora_unet_" + module.replace(".", "_")
        tensors.update({f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up})
        if alpha is not None:
            tensors[f"{stem}.alpha"] = torch.tensor(alpha)
    return load_lora_file(_save(tmp_path, name, tensors))


def test_merged_weights_and_forward_match_hand_merged_model(tmp_path):
    lora = _block_lora(tmp_path, "blocks.safetensors", seed=1, rank=4, alpha=2.0)
    strength = 0.75
    model, by_hand = _model(), _model()
    base = _forward(model)
    apply_loras(model, [(lora, strength)])
    layers = dict(by_hand.named_modules())
    with torch.no_grad():
        for w in lora.weights:
            name = next(n for n in layers if n.replace(".", "_") == w.target)
            module = layers[name]
            module.weight += strength * (2.0 / 4) * (w.up @ w.down)  # alpha / rank
            torch.testing.assert_close(model.get_submodule(name).weight, module.weight, rtol=0, atol=1e-6)
    out, expected = _forward(model), _forward(by_hand)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert (out - base).abs().max() > 1e-2  # the LoRA visibly changes the output


def _to_fp8(model: FramePackTransformer) -> FramePackTransformer:
    model = copy.deepcopy(model)
    for block in model.blocks:
        for m in block.modules():
            if isinstance(m, Linear):
                m.weight.data = m.weight.data.to(torch.float8_e4m3fn)
    return model


# The LoRA is small against the weights (std 0.03 factors, rank 4: delta W entries ~2% of |W|, well below the fp8
# e4m3 spacing of 12.5% of |W|), the usual case, where merging into fp8 loses or scrambles the effect.
# Tolerance: relative L2 error of the fp8 model's LoRA contribution against the float32 model's. Even an exact
# runtime LoRA differs by the fp8 rounding of the *base* weights the contribution flows through (rms ~3.6% for
# e4m3; measured 3.1-3.9% over seeds 2-7); a merged-into-fp8 LoRA is off by ~90%.
FP8_CONTRIBUTION_TOLERANCE = 0.08


def test_fp8_weights_get_the_full_lora_effect_at_runtime(tmp_path):
    lora = _block_lora(tmp_path, "small.safetensors", seed=2, std=0.03)
    model32 = _model()
    model8 = _to_fp8(model32)
    naive8 = copy.deepcopy(model8)
    base32, base8 = _forward(model32), _forward(model8)

    apply_loras(model32, [(lora, 1.0)])
    report = apply_loras(model8, [(lora, 1.0)])
    contribution32 = _forward(model32) - base32
    contribution8 = _forward(model8) - base8

    assert set(report.loras[0].layers.values()) == {"runtime"}
    assert all(m.weight.dtype == torch.float8_e4m3fn for b in model8.blocks for m in b.modules()
               if isinstance(m, Linear))  # fp8 storage untouched
    gain = float((contribution8 * contribution32).sum() / (contribution32 * contribution32).sum())
    error = float((contribution8 - contribution32).norm() / contribution32.norm())
    assert 0.95 < gain < 1.05, gain
    assert error < FP8_CONTRIBUTION_TOLERANCE, error

    # the test can tell: merging the same LoRA into the fp8 weights is far off
    layers = dict(naive8.named_modules())
    with torch.no_grad():
        for w in lora.weights:
            name = next(n for n in layers if n.replace(".", "_") == w.target)
            weight = layers[name].weight
            weight.data = (weight.data.float() + w.delta()).to(weight.dtype)
    contribution_naive = _forward(naive8) - base8
    naive_error = float((contribution_naive - contribution32).norm() / contribution32.norm())
    assert naive_error > 4 * FP8_CONTRIBUTION_TOLERANCE, naive_error


# -- several LoRAs, strengths, alpha ------------------------------------------------------------------------------

def _single_layer_lora(tmp_path, name, module, out_dim, in_dim, rank, seed, alpha=None, metadata=None):
    down, up = _pair(out_dim, in_dim, rank, seed)
    tensors = {f"transformer.{module}.lora_A.weight": down, f"transformer.{module}.lora_B.weight": up}
    if alpha is not None:
        tensors[f"transformer.{module}.alpha"] = torch.tensor(alpha)
    return load_lora_file(_save(tmp_path, name, tensors, metadata)), up @ down


def test_two_loras_with_strengths_add_up(tmp_path):
    q, o = "transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.proj_out"
    a, delta_a = _single_layer_lora(tmp_path, "a.safetensors", q, D, D, 4, seed=1)
    b, delta_b = _single_layer_lora(tmp_path, "b.safetensors", q, D, D, 2, seed=2)
    c, delta_c = _single_layer_lora(tmp_path, "c.safetensors", o, D, D + MLP, 2, seed=3)
    model = _model()
    before = _weights(model)
    report = apply_loras(model, [(a, 0.7), (b, -1.3), (c, 2.0)])
    after = _weights(model)
    torch.testing.assert_close(after[q], before[q] + 0.7 * delta_a - 1.3 * delta_b, rtol=0, atol=1e-6)
    torch.testing.assert_close(after[o], before[o] + 2.0 * delta_c, rtol=0, atol=1e-6)
    assert [lora.matched for lora in report.loras] == [1, 1, 1]

    # the same on fp8 storage: two runtime adapters on one layer, each at its own strength
    model8 = _to_fp8(_model())
    apply_loras(model8, [(a, 0.7), (b, -1.3)])
    layer = model8.get_submodule(q)
    x = torch.randn(5, D)
    plain = torch.nn.functional.linear(x, layer.weight.float(), layer.bias)
    torch.testing.assert_close(layer(x), plain + x @ (0.7 * delta_a - 1.3 * delta_b).T, rtol=1e-5, atol=1e-6)


def test_strength_zero_is_a_no_op(tmp_path):
    lora = _block_lora(tmp_path, "zero.safetensors", seed=3)
    model = _model()
    before, base = _weights(model), _forward(model)
    report = apply_loras(model, [(lora, 0.0)])
    assert not _changed(before, model)
    assert torch.equal(_forward(model), base)
    assert set(report.loras[0].layers.values()) == {"skipped"}
    model8 = _to_fp8(_model())
    apply_loras(model8, [(lora, 0.0)])
    assert not any(m.lora for m in model8.modules() if isinstance(m, Linear))


def test_alpha_scales_by_alpha_over_rank(tmp_path):
    q = "transformer_blocks.1.attn.to_k"
    plain, delta = _single_layer_lora(tmp_path, "plain.safetensors", q, D, D, 8, seed=5)
    halved, _ = _single_layer_lora(tmp_path, "alpha.safetensors", q, D, D, 8, seed=5, alpha=4.0)
    peft_meta = {"lora_adapter_metadata": json.dumps({"r": 8, "lora_alpha": 2.0})}
    quarter, _ = _single_layer_lora(tmp_path, "peft.safetensors", q, D, D, 8, seed=5, metadata=peft_meta)
    for lora, factor in ((plain, 1.0), (halved, 0.5), (quarter, 0.25)):
        model = _model()
        before = model.get_submodule(q).weight.detach().clone()
        apply_loras(model, [(lora, 2.0)])
        torch.testing.assert_close(model.get_submodule(q).weight, before + 2.0 * factor * delta, rtol=0, atol=1e-6)


def _peft_lora(tmp_path, name: str, modules: list[str], rank: int, config: dict):
    """A diffusers-saved LoRA (lora_A/lora_B on each module, PEFT LoraConfig in the metadata); returns the file
    and each module's up @ down."""
    tensors, deltas = {}, {}
    for seed, module in enumerate(modules):
        down, up = _pair(D, D, rank, seed=20 + seed)
        tensors[f"transformer.{module}.lora_A.weight"] = down
        tensors[f"transformer.{module}.lora_B.weight"] = up
        deltas[module] = up @ down
    metadata = {"lora_adapter_metadata": json.dumps({"r": rank, **config})}
    return load_lora_file(_save(tmp_path, name, tensors, metadata)), deltas


def _applied_factors(lora, deltas) -> dict[str, float]:
    """Each module's weight change at strength 1, as a multiple of its up @ down."""
    model = _model()
    before = _weights(model)
    apply_loras(model, [(lora, 1.0)])
    after = _weights(model)
    factors = {}
    for module, delta in deltas.items():
        change = after[module] - before[module]
        factors[module] = float((change * delta).sum() / (delta * delta).sum())
        torch.testing.assert_close(change, factors[module] * delta, rtol=0, atol=1e-6)
    return factors


def test_peft_use_rslora_scales_by_alpha_over_the_square_root_of_the_rank(tmp_path):
    modules = ["transformer_blocks.0.attn.to_q", "single_transformer_blocks.1.attn.to_k"]
    rs, deltas = _peft_lora(tmp_path, "rs.safetensors", modules, 4, {"lora_alpha": 6.0, "use_rslora": True})
    plain, _ = _peft_lora(tmp_path, "plain.safetensors", modules, 4, {"lora_alpha": 6.0, "use_rslora": False})
    assert _applied_factors(rs, deltas) == pytest.approx({m: 3.0 for m in modules}, rel=1e-6)  # 6 / sqrt(4)
    assert _applied_factors(plain, deltas) == pytest.approx({m: 1.5 for m in modules}, rel=1e-6)  # 6 / 4


def test_peft_alpha_pattern_gives_the_named_module_its_alpha(tmp_path):
    """alpha_pattern maps a module name to its own alpha; the other modules keep lora_alpha, and use_rslora applies
    to both. A name is not a prefix: single_transformer_blocks.0 is not transformer_blocks.0."""
    named = "transformer_blocks.0.attn.to_q"
    others = ["transformer_blocks.1.attn.to_q", "single_transformer_blocks.0.attn.to_q"]
    config = {"lora_alpha": 8.0, "alpha_pattern": {named: 2.0}}
    lora, deltas = _peft_lora(tmp_path, "pattern.safetensors", [named, *others], 4, config)
    assert _applied_factors(lora, deltas) == pytest.approx({named: 0.5, others[0]: 2.0, others[1]: 2.0}, rel=1e-6)
    rs, deltas = _peft_lora(tmp_path, "pattern_rs.safetensors", [named, *others], 4, {**config, "use_rslora": True})
    assert _applied_factors(rs, deltas) == pytest.approx({named: 1.0, others[0]: 4.0, others[1]: 4.0}, rel=1e-6)
