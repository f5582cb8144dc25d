"""LoRA files from strangers: metadata patterns are module names matched literally (never run as regular
expressions), their size and count are capped, damaged alpha/rank values are clear errors, and a LoRA stack is
capped, de-duplicated and loaded one file at a time."""

from __future__ import annotations

import gc
import json
import time
import weakref

import pytest
import torch
from safetensors.torch import save_file

from framepack_core import TINY, CheckpointError, FramePackTransformer, InputError
from framepack_core import lora_apply as lora_module
from framepack_core.limits import MAX_ALPHA_PATTERN_CHARS, MAX_ALPHA_PATTERNS, MAX_LORAS
from framepack_core.lora_formats import PEFT_METADATA_KEY, load_lora_file

D = TINY.inner_dim
Q = "transformer_blocks.0.attn.to_q"


def _save(tmp_path, name, tensors, metadata=None):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def _pair(rank=4, seed=0, module=Q, out=D, inp=D):
    gen = torch.Generator().manual_seed(seed)
    return {f"transformer.{module}.lora_A.weight": torch.randn(rank, inp, generator=gen) * 0.1,
            f"transformer.{module}.lora_B.weight": torch.randn(out, rank, generator=gen) * 0.1}


def _peft(alpha_pattern: dict, lora_alpha: float = 4.0) -> dict:
    return {PEFT_METADATA_KEY: json.dumps({"r": 4, "lora_alpha": lora_alpha, "alpha_pattern": alpha_pattern})}


# -- alpha_pattern ------------------------------------------------------------------------------------------------

def test_alpha_patterns_name_modules_literally(tmp_path):
    """A pattern is a module name (or a dotted tail of one): "to_." is not a wildcard for "to_q"."""
    exact = load_lora_file(_save(tmp_path, "exact.safetensors", _pair(), _peft({Q: 8.0})))
    tail = load_lora_file(_save(tmp_path, "tail.safetensors", _pair(), _peft({"attn.to_q": 8.0})))
    wildcard = load_lora_file(_save(tmp_path, "wild.safetensors", _pair(), _peft({"transformer_blocks.0.attn.to_.": 8.0})))
    partial = load_lora_file(_save(tmp_path, "partial.safetensors", _pair(), _peft({"tn.to_q": 8.0})))
    assert exact.weights[0].scale == tail.weights[0].scale == 8.0 / 4
    assert wildcard.weights[0].scale == partial.weights[0].scale == 4.0 / 4  # lora_alpha: the pattern did not match


def test_the_first_listed_pattern_wins_like_peft(tmp_path):
    lora = load_lora_file(_save(tmp_path, "order.safetensors", _pair(), _peft({"to_q": 2.0, Q: 8.0})))
    assert lora.weights[0].scale == 2.0 / 4


def test_a_catastrophic_regex_in_the_metadata_loads_at_once(tmp_path):
    """"(a*)*c" against a 26-letter key name backtracks 2^26 ways as a regular expression (seconds to hours as the
    name grows); as a literal name it is one comparison."""
    stem = "a" * 26
    tensors = {f"{stem}.lora_A.weight": torch.zeros(4, D), f"{stem}.lora_B.weight": torch.zeros(D, 4)}
    path = _save(tmp_path, "hostile.safetensors", tensors, _peft({"(a*)*c": 1.0, "(a|aa)*$": 2.0}))
    started = time.perf_counter()
    lora = load_lora_file(path)
    assert time.perf_counter() - started < 1.0
    assert lora.weights[0].scale == 4.0 / 4


def test_pattern_length_and_count_are_capped(tmp_path):
    long = "x" * (MAX_ALPHA_PATTERN_CHARS + 1)
    with pytest.raises(CheckpointError, match=rf"long\.safetensors.*alpha_pattern.*{MAX_ALPHA_PATTERN_CHARS + 1} "
                                              rf"characters.*at most {MAX_ALPHA_PATTERN_CHARS}"):
        load_lora_file(_save(tmp_path, "long.safetensors", _pair(), _peft({long: 1.0})))
    many = {f"m{i}": 1.0 for i in range(MAX_ALPHA_PATTERNS + 1)}
    with pytest.raises(CheckpointError, match=rf"many\.safetensors.*{MAX_ALPHA_PATTERNS + 1} alpha_pattern.*"
                                              rf"at most {MAX_ALPHA_PATTERNS}"):
        load_lora_file(_save(tmp_path, "many.safetensors", _pair(), _peft(many)))


# -- damaged alpha and rank ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha, says", [(torch.zeros(0), "holds 0 values"), (torch.ones(3), "holds 3 values"),
                                         (torch.tensor(float("nan")), "is not a finite number"),
                                         (torch.tensor(float("inf")), "is not a finite number")])
def test_a_damaged_alpha_is_named(tmp_path, alpha, says):
    tensors = {**_pair(), f"transformer.{Q}.alpha": alpha}
    with pytest.raises(CheckpointError, match=rf"bad_alpha\.safetensors: transformer\.{Q}\.alpha {says}.*damaged"):
        load_lora_file(_save(tmp_path, "bad_alpha.safetensors", tensors))


@pytest.mark.parametrize("metadata", [None, _peft({}, lora_alpha=8.0)])
def test_rank_zero_is_named(tmp_path, metadata):
    tensors = {**_pair(rank=0), f"transformer.{Q}.alpha": torch.tensor(4.0)} if metadata is None else _pair(rank=0)
    with pytest.raises(CheckpointError, match=rf"rank0\.safetensors: transformer\.{Q} has rank 0.*damaged"):
        load_lora_file(_save(tmp_path, "rank0.safetensors", tensors, metadata))


# -- the stack ----------------------------------------------------------------------------------------------------

def _model(seed=0) -> FramePackTransformer:
    model = FramePackTransformer(TINY).eval()
    gen = torch.Generator().manual_seed(seed)
    model.load_state_dict({k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in model.state_dict().items()})
    return model


def test_the_stack_loads_one_file_at_a_time_and_merges_duplicates(tmp_path, monkeypatch):
    from framepack_core.lora_apply import apply_lora_stack

    a = _save(tmp_path, "a.safetensors", _pair(seed=1))
    b = _save(tmp_path, "b.safetensors", _pair(seed=2, module="single_transformer_blocks.0.proj_out", inp=D + TINY.mlp_dim))
    refs, loads, most_alive = [], [], [0]
    real_load = lora_module.load_lora_file

    def counting_load(path):
        gc.collect()
        loaded = real_load(path)
        refs.append(weakref.ref(loaded))
        loads.append(path.name)
        most_alive[0] = max(most_alive[0], sum(ref() is not None for ref in refs))
        return loaded

    monkeypatch.setattr(lora_module, "load_lora_file", counting_load)
    stacked = _model()
    report = apply_lora_stack(stacked, [(a, 0.25), (b, 1.0), (a, 0.5)])
    assert loads == ["a.safetensors", "b.safetensors"]  # the duplicate is loaded once
    assert most_alive[0] == 1  # never two LoRA files in memory at once
    assert [(entry.name, entry.strength) for entry in report.loras] == [("a.safetensors", 0.75), ("b.safetensors", 1.0)]

    once = _model()
    lora_module.apply_loras(once, [(real_load(a), 0.75), (real_load(b), 1.0)])
    for (name, p1), p2 in zip(stacked.state_dict().items(), once.state_dict().values()):
        assert torch.equal(p1, p2), name  # bit for bit: a duplicate is the same file at the summed strength


def test_the_stack_is_capped_before_anything_loads(tmp_path, monkeypatch):
    from framepack_core.lora_apply import apply_lora_stack

    paths = [_save(tmp_path, f"l{i}.safetensors", _pair(seed=i)) for i in range(MAX_LORAS + 1)]
    monkeypatch.setattr(lora_module, "load_lora_file", lambda path: pytest.fail("nothing may load"))
    with pytest.raises(InputError, match=rf"{MAX_LORAS + 1} different LoRAs.*at most {MAX_LORAS}"):
        apply_lora_stack(_model(), [(p, 1.0) for p in paths])
