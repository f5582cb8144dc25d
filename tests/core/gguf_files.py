"""Writing GGUF test files: FramePack models in every ggml type (quantized blocks with random bytes where the gguf
package has no Python quantizer), through the converter's own writer."""

from __future__ import annotations

import numpy as np
import torch

from framepack_core.config import FramePackConfig
from framepack_core.gguf_convert import Entry, encode, is_quantizable, stored_shape, write_gguf
from framepack_core.gguf_dequant import FLOAT_TYPES, QUANT_TYPES, TYPE_IDS
from framepack_dev.random_weights import random_model

# The smallest config whose block matmul rows are whole K-quant blocks (256): 2 heads of 128, 1 + 1 blocks.
K_CONFIG = FramePackConfig(num_attention_heads=2, attention_head_dim=128, num_layers=1, num_single_layers=1,
                           num_refiner_layers=1, text_embed_dim=32, pooled_projection_dim=16, image_proj_dim=24)
# byte offsets of each type's float16 scale fields inside a block
F16_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "Q2_K": (80, 82),
              "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_blocks(type_name: str, n_blocks: int, seed: int, scale: float | None = 0.004) -> np.ndarray:
    """Random bytes for n blocks of a quantized type. `scale`: the float16 scale fields are set to +-U(0.5, 1.5) x
    scale (finite, weights of that size), or left as random bytes (NaN, inf, subnormals, anything) when None."""
    qtype = TYPE_IDS[type_name]
    size = QUANT_TYPES[qtype][2]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    if scale is not None:
        for offset in F16_FIELDS[type_name]:
            values = (rng.uniform(0.5, 1.5, n_blocks) * rng.choice([-1, 1], n_blocks) * scale).astype(np.float16)
            blocks[:, offset:offset + 2] = values.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def model_entries(model: torch.nn.Module, type_name: str, seed: int = 0, scale: float = 0.004) -> list[Entry]:
    """Every tensor of `model`: block matmul weights (gguf_convert.is_quantizable) in `type_name` (random blocks for quantized types, the
    model's own values for float types), the rest in BF16."""
    qtype = TYPE_IDS[type_name]
    entries = []
    for i, (key, tensor) in enumerate(sorted(model.state_dict().items())):
        shape = tuple(tensor.shape)
        if is_quantizable(key, shape) and qtype in QUANT_TYPES:
            n = tensor.numel() // QUANT_TYPES[qtype][1]
            data = random_blocks(type_name, n, seed + i, scale).reshape(shape[0], -1)
            entries.append(Entry(key, shape, qtype, lambda d=data: d))
        else:
            out = qtype if is_quantizable(key, shape) and qtype in FLOAT_TYPES else TYPE_IDS["BF16"]
            entries.append(Entry(key, shape, out, lambda t=tensor, o=out: encode(t.reshape(stored_shape(t.shape)), o)))
    return entries


def write_model_gguf(path, config: FramePackConfig, type_name: str, seed: int = 0, variant: str | None = "I2V_HY"):
    """A FramePack GGUF of a random model of `config` with its block weights in `type_name`; returns (path, the
    random float model whose non-block tensors the file holds)."""
    model = random_model(config, seed=seed, std=0.05)
    return write_gguf(path, model_entries(model, type_name, seed), config=config, variant=variant), model
