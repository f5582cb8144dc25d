"""Converts a FramePack transformer (the diffusers folder, or a single bf16/fp16/fp32/fp8 .safetensors file) into a
FramePack GGUF file:

    python -m framepack_core.gguf_convert SRC DST.gguf --type Q8_0 [--variant I2V_HY|F1]

Types: Q8_0, Q5_1, Q5_0, Q4_1, Q4_0 (quantized here with the `gguf` package's own Python quantizers, which match
ggml's), BF16 and F16. K-quants (Q6_K, Q5_K, Q4_K, Q3_K, Q2_K) have no Python quantizer: make a BF16 GGUF here,
then quantize it with llama.cpp's llama-quantize (README: GGUF).

Which tensors are quantized: every matmul weight inside the 60 blocks (`is_quantizable`: the attention and MLP
projections, as loading.is_fp8_eligible, and also the blocks' modulation Linears `norm1.linear` / `norm.linear`,
3.4B of the 12.9B parameters, which the fp8 rule leaves in bf16 only because their names contain "norm"), whose
rows are whole blocks; norms, biases, the embedders and the output head keep the source's precision (bf16 for bf16
and fp8 sources, fp16/fp32 for such sources). The model config and the variant go into
the metadata (gguf_file.py names the keys), the tensor names are the released checkpoints' names.

Streaming: the tensor table is written from the source's header, then each tensor is read, converted and written
in turn (quantized in row chunks), so peak RAM is about one source tensor plus its quantized copy.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from safetensors import safe_open

from .config import FramePackConfig
from .errors import FramePackError, InputError
from .gguf_dequant import FLOAT_TYPES, QUANT_TYPES, TYPE_IDS
from .gguf_file import ARCHITECTURE, CONFIG_KEY, MAX_DIMS, ORIG_SHAPE_PREFIX, VARIANT_KEY, import_gguf
from .limits import VARIANTS
from .loading import _check_config_matches, _check_keys, detect_variant, infer_config, read_shapes, resolve_source
from .transformer import FramePackTransformer

# the types made here (the gguf package quantizes them in Python), best first
CONVERT_TYPES = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "BF16", "F16")
CHUNK_ELEMENTS = 1 << 22  # rows quantized at once: about 16 MB of float32
_SOURCE_FLOAT = {"F32": "F32", "F16": "F16"}  # other source dtypes (BF16, fp8) are kept as BF16
_BLOCK_WEIGHT = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.\d+\..*\.weight$")


def is_quantizable(key: str, shape: tuple[int, ...]) -> bool:
    """A matmul weight inside a block (2-D: the blocks' RMSNorm weights are 1-D)."""
    return bool(_BLOCK_WEIGHT.match(key)) and len(shape) == 2


@dataclass
class Entry:
    """One tensor to write: its name, logical shape, ggml type and a function producing its data (called once, in
    file order)."""
    name: str
    shape: tuple[int, ...]
    qtype: int
    produce: Callable[[], np.ndarray]


def stored_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """GGUF allows at most 4 dimensions: larger tensors are stored flattened to [first, rest]."""
    return shape if len(shape) <= MAX_DIMS else (shape[0], prod(shape[1:]))


def packed_bytes(shape: tuple[int, ...], qtype: int) -> int:
    if qtype in QUANT_TYPES:
        _, block, size = QUANT_TYPES[qtype]
        return prod(shape) // block * size
    return prod(shape) * FLOAT_TYPES[qtype][1].itemsize


def encode(tensor: torch.Tensor, qtype: int) -> np.ndarray:
    """The bytes of a tensor in a ggml type (quantized types: uint8 blocks, [rows, bytes per row])."""
    if qtype in FLOAT_TYPES:
        data = tensor.to(FLOAT_TYPES[qtype][1]).contiguous()
        return data.view(torch.uint8).numpy() if qtype == TYPE_IDS["BF16"] else data.numpy()
    gguf = import_gguf(Path("model.gguf"))
    rows = tensor.reshape(-1, tensor.shape[-1])
    step = max(1, CHUNK_ELEMENTS // rows.shape[1])
    out = np.empty((rows.shape[0], packed_bytes((rows.shape[1],), qtype)), dtype=np.uint8)
    for start in range(0, rows.shape[0], step):
        chunk = rows[start:start + step].float().numpy()
        out[start:start + step] = gguf.quants.quantize(chunk, gguf.GGMLQuantizationType(qtype))
    return out


def write_gguf(dst: str | Path, entries: Iterable[Entry], *, config: FramePackConfig | None, variant: str | None,
               architecture: str = ARCHITECTURE) -> Path:
    """Writes a GGUF file: metadata and the tensor table first, then each entry's data as it is produced."""
    gguf = import_gguf(Path(dst))
    entries = list(entries)
    writer = gguf.GGUFWriter(None, architecture)
    if config is not None:
        writer.add_string(CONFIG_KEY, json.dumps({"_class_name": "HunyuanVideoTransformer3DModelPacked",
                                                  **config.to_diffusers_kwargs()}))
    if variant is not None:
        writer.add_string(VARIANT_KEY, variant)
    for e in entries:
        stored = stored_shape(e.shape)
        if stored != e.shape:
            writer.add_array(ORIG_SHAPE_PREFIX + e.name, list(e.shape))
        writer.add_tensor_info(e.name, stored, np.dtype(np.float32), packed_bytes(e.shape, e.qtype),
                               raw_dtype=gguf.GGMLQuantizationType(e.qtype))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(dst)
    try:
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for e in entries:
            writer.write_tensor_data(np.ascontiguousarray(e.produce()))
    finally:
        writer.close()
    return dst


def target_type(key: str, shape: tuple[int, ...], source_dtype: str, qtype: int) -> int:
    """The ggml type a tensor is written in: `qtype` for a block matmul weight whose rows are whole blocks, else
    the source's own float type (BF16 for bf16 and fp8 sources)."""
    block = QUANT_TYPES[qtype][1] if qtype in QUANT_TYPES else 1
    if is_quantizable(key, shape) and shape[1] % block == 0:
        return qtype
    return TYPE_IDS[_SOURCE_FLOAT.get(source_dtype, "BF16")]


def convert(src: str | Path, dst: str | Path, type_name: str = "Q8_0", variant: str | None = None) -> Path:
    """Converts a FramePack model (checked as the loader checks it) into a GGUF file; returns its path."""
    if type_name not in CONVERT_TYPES:
        raise InputError(f"--type {type_name} is not one of {', '.join(CONVERT_TYPES)} (K-quants: see README, GGUF)")
    if variant is not None and variant not in VARIANTS:
        raise InputError(f"--variant {variant} is not one of {', '.join(VARIANTS)}")
    import_gguf(Path(dst))
    source = resolve_source(src)
    found, prefix = read_shapes(source)
    config = source.config or infer_config(found, source.label)
    _check_config_matches(config, found, source.label)
    with torch.device("meta"):
        model = FramePackTransformer(config)
    _check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, found, source.label)
    qtype = TYPE_IDS[type_name]
    handles = {file: safe_open(str(file), framework="pt", device="cpu") for file in source.files}

    def producer(file: Path, raw_key: str, out_type: int):
        return lambda: encode(handles[file].get_tensor(raw_key).reshape(stored_shape(found[raw_key[len(prefix):]][0])),
                              out_type)

    entries = []
    for key in sorted(found):
        shape, dtype, file = found[key]
        out_type = target_type(key, tuple(shape), dtype, qtype)
        entries.append(Entry(key, tuple(shape), out_type, producer(file, prefix + key, out_type)))
    return write_gguf(dst, entries, config=config, variant=variant or detect_variant(Path(src).name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framepack_core.gguf_convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="the diffusers folder or a .safetensors file of FramePackI2V_HY or F1")
    parser.add_argument("dst", help="the .gguf file to write (put it in ComfyUI's models/diffusion_models)")
    parser.add_argument("--type", default="Q8_0", choices=CONVERT_TYPES, help="the type of the block weights")
    parser.add_argument("--variant", choices=VARIANTS, help="default: from the source's name (F1 when it says F1)")
    args = parser.parse_args(argv)
    try:
        path = convert(args.src, args.dst, args.type, args.variant)
    except FramePackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
