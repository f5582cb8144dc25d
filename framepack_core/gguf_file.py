"""Reading FramePack GGUF files: checks every count, size and type a file claims before anything is built from it.

GGUF files are read with the `gguf` package (llama.cpp's reference reader), which memory-maps the file: the packed
tensor data stays in the file's pages until the loader places it. The package is imported only when a .gguf file is
chosen, so the .safetensors path works without it.

A FramePack GGUF (gguf_convert.py writes them) has `general.architecture` = "framepack", the model config as JSON
in `framepack.config` and the variant ("I2V_HY" or "F1") in `framepack.variant`; its tensor names are the released
checkpoints' (diffusers) names. GGUF stores dimensions innermost first (ggml's ne order): the shapes here are
torch's (outermost first). Tensors of more than 4 dimensions (the patch embedders' 5-D convolution weights) are
stored flattened, as ggml tools need, with their shape in `framepack.orig_shape.<name>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np

from .errors import CheckpointError, NotFramePackError
from .gguf_dequant import FLOAT_TYPES, QUANT_TYPES, type_name
from .limits import (MAX_CHECKPOINT_JSON_BYTES, MAX_GGUF_ARRAY_ITEMS, MAX_GGUF_METADATA, MAX_GGUF_TENSOR_ELEMENTS,
                     MAX_GGUF_TENSORS, VARIANTS)

ARCHITECTURE = "framepack"
CONFIG_KEY = f"{ARCHITECTURE}.config"
VARIANT_KEY = f"{ARCHITECTURE}.variant"
ORIG_SHAPE_PREFIX = f"{ARCHITECTURE}.orig_shape."
MAGIC = b"GGUF"
HEADER_BYTES = 24  # magic, version (u32), tensor count, metadata count (u64 each)
MAX_DIMS = 4  # ggml's GGML_MAX_DIMS
PIP_HINT = "pip install gguf (into the Python that runs ComfyUI)"
CONVERT_HINT = ("convert the FramePack model with `python -m framepack_core.gguf_convert SRC DST.gguf --type Q8_0` "
                "(README: GGUF), or use the .safetensors model")
# what other architectures are, for the message (general.architecture values of llama.cpp and ComfyUI-GGUF)
_KNOWN = {"llama": "a LLaMA language model", "flux": "a FLUX image model in ComfyUI-GGUF's layout",
          "hyvid": "a HunyuanVideo model in ComfyUI-GGUF's key layout (not FramePack's weights)",
          "wan": "a Wan video model", "ltxv": "an LTX-Video model", "sd3": "a Stable Diffusion 3 model",
          "sdxl": "an SDXL model", "sd1": "a Stable Diffusion 1.x model", "t5": "a T5 text encoder",
          "t5encoder": "a T5 text encoder"}


@dataclass
class GgufTensor:
    shape: tuple[int, ...]  # logical torch shape
    qtype: int  # ggml type id
    data: np.ndarray  # memory-mapped: uint8 blocks for quantized and BF16 tensors, float arrays for F32/F16

    @property
    def quantized(self) -> bool:
        return self.qtype in QUANT_TYPES

    @property
    def dtype_name(self) -> str:
        return type_name(self.qtype)


@dataclass
class GgufModel:
    path: Path
    tensors: dict[str, GgufTensor]  # by name as stored (prefix not yet stripped)
    config: dict | None  # the JSON of framepack.config
    variant: str | None


def import_gguf(path: Path):
    try:
        import gguf
    except ImportError as err:
        raise CheckpointError(f"{path.name} is a GGUF file, which needs the gguf package, not installed here: "
                              f"{PIP_HINT}, then restart ComfyUI. .safetensors models load without it.") from err
    return gguf


def _unreadable(path: Path, detail: object) -> CheckpointError:
    return CheckpointError(f"{path.name} is not a readable GGUF file (truncated or corrupt: {detail}); download or "
                           "convert it again.")


def _check_header(path: Path) -> None:
    """The counts a file claims, refused before the reader walks them."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or head[:4] != MAGIC:
        raise _unreadable(path, f"{size} bytes, no GGUF header" if len(head) < HEADER_BYTES else "no GGUF magic")
    tensors, metadata = int.from_bytes(head[8:16], "little"), int.from_bytes(head[16:24], "little")
    if tensors > MAX_GGUF_TENSORS:
        raise CheckpointError(f"{path.name} claims {tensors} tensors; a FramePack GGUF holds about a thousand (at most "
                              f"{MAX_GGUF_TENSORS} are read). It is corrupt or not a FramePack model: {CONVERT_HINT}.")
    if metadata > MAX_GGUF_METADATA:
        raise CheckpointError(f"{path.name} claims {metadata} metadata entries (at most {MAX_GGUF_METADATA} are read). "
                              f"It is corrupt or not a FramePack model: {CONVERT_HINT}.")


def _bounded_reader_class(gguf):
    """gguf.GGUFReader that refuses, before walking or decoding them, arrays, strings and tensors larger than any
    real model's (a hostile header could otherwise make it build millions of objects or decode huge strings)."""

    class BoundedReader(gguf.GGUFReader):
        def _get_str(self, offset):
            length = int(self._get(offset, np.uint64)[0])
            if length > MAX_CHECKPOINT_JSON_BYTES:
                raise ValueError(f"a string of {length} bytes (at most {MAX_CHECKPOINT_JSON_BYTES} are read)")
            return super()._get_str(offset)

        def _get_field_parts(self, orig_offs, raw_type):
            if raw_type == gguf.GGUFValueType.ARRAY:
                count = int(self._get(orig_offs + 4, np.uint64)[0])
                if count > MAX_GGUF_ARRAY_ITEMS:
                    raise ValueError(f"a metadata array of {count} items (at most {MAX_GGUF_ARRAY_ITEMS} are read)")
            return super()._get_field_parts(orig_offs, raw_type)

        def _build_tensors(self, start_offs, fields):
            for field in fields:
                name = str(bytes(field.parts[1]), encoding="utf-8", errors="replace")
                dims = [int(d) for d in field.parts[3]]
                qtype = int(field.parts[4][0])
                _check_claims(self.data.shape[0], name, dims, qtype, start_offs + int(field.parts[5][0]))
            super()._build_tensors(start_offs, fields)

    return BoundedReader


class _Claim(ValueError):
    pass


def _check_claims(file_bytes: int, name: str, dims: list[int], qtype: int, offset: int) -> None:
    """One tensor's dimensions, type and data range, in exact integers (numpy's product would wrap around)."""
    if len(dims) > MAX_DIMS or len(dims) == 0:
        raise _Claim(f"tensor {name!r} has {len(dims)} dimensions (GGUF allows 1 to {MAX_DIMS})")
    if qtype not in QUANT_TYPES and qtype not in FLOAT_TYPES:
        supported = ", ".join(sorted(n for n, *_ in (*QUANT_TYPES.values(), *FLOAT_TYPES.values())))
        raise _Claim(f"tensor {name!r} has the unsupported type {_gguf_type_name(qtype)} (supported: {supported}); "
                     "convert the model again to one of these")
    elements = prod(dims)
    if elements > MAX_GGUF_TENSOR_ELEMENTS:
        raise _Claim(f"tensor {name!r} claims {'x'.join(map(str, reversed(dims)))} = {elements} elements (the "
                     f"largest FramePack tensor has about 47 million; at most {MAX_GGUF_TENSOR_ELEMENTS} are read)")
    if qtype in QUANT_TYPES:
        _, block, size = QUANT_TYPES[qtype]
        if dims[0] % block:
            raise _Claim(f"tensor {name!r} rows of {dims[0]} elements are not whole {type_name(qtype)} blocks "
                         f"of {block}")
        nbytes = elements // block * size
    else:
        nbytes = elements * {0: 4, 1: 2, 30: 2}[qtype]
    if offset + nbytes > file_bytes:
        raise _Claim(f"tensor {name!r} ({nbytes} bytes at offset {offset}) reaches past the end of the file "
                     f"({file_bytes} bytes): the file is truncated")


def _gguf_type_name(qtype: int) -> str:
    try:
        import gguf
        return gguf.GGMLQuantizationType(qtype).name
    except (ImportError, ValueError):
        return f"id {qtype}"


def _field_value(field):
    try:
        return field.contents()
    except (ValueError, IndexError, UnicodeDecodeError) as err:
        raise ValueError(f"metadata {field.name} cannot be decoded ({err})") from err


def read_gguf(path: str | Path) -> GgufModel:
    """Opens a FramePack GGUF file and checks it; raises CheckpointError (naming the file and the fix) for anything
    else. Nothing is allocated for the weights: the tensors are views of the memory-mapped file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path.name} does not exist")
    gguf = import_gguf(path)
    _check_header(path)
    try:
        # copy-on-write mapping: the arrays are writable (torch needs that) and the file never changes
        reader = _bounded_reader_class(gguf)(str(path), mode="c")
    except _Claim as err:
        raise CheckpointError(f"{path.name}: {err}. Download or convert the model again.") from err
    except (ValueError, KeyError, IndexError, OSError, OverflowError, UnicodeDecodeError, MemoryError) as err:
        raise _unreadable(path, err) from err
    try:
        fields = {name: field for name, field in reader.fields.items() if not name.startswith("GGUF.")}
        arch = _field_value(fields["general.architecture"]) if "general.architecture" in fields else None
        if arch != ARCHITECTURE:
            _refuse_architecture(path, arch)
        config = variant = None
        if CONFIG_KEY in fields:
            text = _field_value(fields[CONFIG_KEY])
            try:
                config = json.loads(text) if isinstance(text, str) else None
            except ValueError as err:
                raise CheckpointError(f"{path.name}: its {CONFIG_KEY} metadata is not valid JSON ({err}); convert "
                                      "the model again") from err
        if VARIANT_KEY in fields:
            variant = _field_value(fields[VARIANT_KEY])
            if variant not in VARIANTS:
                raise CheckpointError(f"{path.name}: its {VARIANT_KEY} metadata {str(variant)[:40]!r} is not one of "
                                      f"{', '.join(VARIANTS)}; convert the model again (with --variant)")
        tensors = {}
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            orig = fields.get(ORIG_SHAPE_PREFIX + t.name)
            if orig is not None:
                shape = _orig_shape(path, t.name, _field_value(orig), shape)
            tensors[t.name] = GgufTensor(shape, int(t.tensor_type), t.data)
    except ValueError as err:
        raise _unreadable(path, err) from err
    return GgufModel(path, tensors, config, variant)


def _orig_shape(path: Path, name: str, value: object, stored: tuple[int, ...]) -> tuple[int, ...]:
    if not (isinstance(value, list) and 0 < len(value) <= 8 and all(isinstance(d, int) and d > 0 for d in value)
            and prod(value) == prod(stored)):
        raise CheckpointError(f"{path.name}: its {ORIG_SHAPE_PREFIX}{name} metadata ({value!r}) is not a shape of "
                              f"the stored {list(stored)} tensor; convert the model again")
    return tuple(value)


def _refuse_architecture(path: Path, arch: object) -> None:
    if arch is None:
        what = "it has no general.architecture metadata, so it is not a FramePack GGUF"
    else:
        family = _KNOWN.get(str(arch).lower())
        what = f"its architecture is {arch!r}" + (f" ({family})" if family else "") + f", not {ARCHITECTURE!r}"
    raise NotFramePackError(f"{path.name} is not a FramePack GGUF: {what}. Use a FramePack GGUF: {CONVERT_HINT}.",
                            family=_KNOWN.get(str(arch).lower()) if arch else None)
