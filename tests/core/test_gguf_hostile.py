"""Bad GGUF files: each refused with a message naming the file and the fix, before any weight is placed (the
loader's placing step is replaced by one that fails the test)."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest

from framepack_core import TINY, CheckpointError
from framepack_core import loading
from framepack_core.errors import NotFramePackError
from framepack_core.gguf_dequant import TYPE_IDS
from framepack_core.limits import MAX_GGUF_ARRAY_ITEMS, MAX_GGUF_METADATA, MAX_GGUF_TENSORS
from framepack_core.loading import load_framepack_model
from tests.core.gguf_files import write_model_gguf


@pytest.fixture(autouse=True)
def nothing_placed(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bad file reached the placing of weights")
    monkeypatch.setattr(loading, "place_gguf", refuse)


def _refused(path, *words):
    with pytest.raises(CheckpointError) as info:
        load_framepack_model(path)
    message = str(info.value)
    assert path.name in message, message
    for word in words:
        assert word in message, message
    return info.value


def _plain(path, arch, tensors: dict[str, np.ndarray], strings: dict | None = None, arrays: dict | None = None):
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in (strings or {}).items():
        writer.add_string(key, value)
    for key, value in (arrays or {}).items():
        writer.add_array(key, value)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_llama_gguf(tmp_path):
    path = _plain(tmp_path / "tinyllama-Q8_0.gguf", "llama",
                  {"token_embd.weight": np.zeros((32, 16), np.float32), "blk.0.attn_q.weight": np.zeros((16, 16), np.float16),
                   "output_norm.weight": np.ones(16, np.float32)},
                  strings={"general.name": "tiny"}, arrays={"tokenizer.ggml.tokens": ["<s>", "</s>", "a", "b"]})
    err = _refused(path, "'llama'", "LLaMA language model", "gguf_convert")
    assert isinstance(err, NotFramePackError)


def test_a_flux_gguf_in_comfyui_layout(tmp_path):
    path = _plain(tmp_path / "flux1-dev-Q4_0.gguf", "flux",
                  {"double_blocks.0.img_attn.qkv.weight": np.zeros((96, 32), np.float16),
                   "img_in.weight": np.zeros((32, 64), np.float16)})
    _refused(path, "'flux'", "FLUX", "gguf_convert")


def test_a_gguf_without_architecture(tmp_path):
    path = tmp_path / "noarch.gguf"
    _plain(path, "framepack", {"x.weight": np.zeros((4, 4), np.float32)})
    raw = path.read_bytes().replace(b"general.architecture", b"general.architecturX")
    path.write_bytes(raw)
    _refused(path, "no general.architecture", "gguf_convert")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path, _ = write_model_gguf(tmp_path_factory.mktemp("good") / "tiny-Q8_0.gguf", TINY, "Q8_0")
    return path


def test_truncated(tmp_path, good):
    for keep in (0.5, 0.999):
        path = tmp_path / f"cut{keep}.gguf"
        raw = good.read_bytes()
        path.write_bytes(raw[:int(len(raw) * keep)])
        _refused(path, "truncated", "onvert")
    path = tmp_path / "header.gguf"
    path.write_bytes(good.read_bytes()[:20])
    _refused(path, "not a readable GGUF file")


def test_a_tensor_with_a_wrong_shape(tmp_path):
    path, model = write_model_gguf(tmp_path / "shape.gguf", TINY, "F16")
    raw = path.read_bytes()
    # ff.net.2 is [32, 128]; its dims are stored innermost first: (128, 32) -> (64, 64) keeps the byte count
    name = b"transformer_blocks.0.ff.net.2.weight"
    at = raw.index(name) + len(name)
    dims = struct.unpack_from("<IQQ", raw, at)
    assert dims == (2, 128, 32)
    path.write_bytes(raw[:at] + struct.pack("<IQQ", 2, 64, 64) + raw[at + 20:])
    _refused(path, "other shapes", "transformer_blocks.0.ff.net.2.weight", "[64, 64]")


def _raw_tensor(path, dims, qtype, nbytes):
    """A GGUF holding one tensor info claiming `dims` (torch order) of `qtype`, with `nbytes` of data."""
    writer = gguf.GGUFWriter(str(path), "framepack")
    writer.add_tensor_info("x.weight", dims, np.dtype(np.float32), nbytes, raw_dtype=gguf.GGMLQuantizationType(qtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.write_tensor_data(np.zeros(nbytes, np.uint8))
    writer.close()
    return path


def test_an_unsupported_type(tmp_path):
    _refused(_raw_tensor(tmp_path / "iq4.gguf", (4, 32), gguf.GGMLQuantizationType.IQ4_NL, 72),
             "unsupported type IQ4_NL", "Q8_0", "convert")
    _refused(_raw_tensor(tmp_path / "i32.gguf", (4, 4), gguf.GGMLQuantizationType.I32, 64), "unsupported type I32")
    _refused(_raw_tensor(tmp_path / "q8_1.gguf", (4, 32), gguf.GGMLQuantizationType.Q8_1, 4 * 36), "type Q8_1")


@pytest.mark.parametrize("dims,words", [
    ((2 ** 32, 2 ** 32, 2 ** 32), "elements"),  # the product wraps around in 64-bit numpy arithmetic
    ((1 << 20, 1 << 9), "reaches past the end of the file"),  # 2 GB of data claimed in a tiny file
    ((4, 4, 4, 4, 4), "dimensions"),
])
def test_absurd_sizes(tmp_path, dims, words):
    _refused(_raw_tensor(tmp_path / "absurd.gguf", dims, gguf.GGMLQuantizationType.F32, 16), words)


def _header(path, tensors, metadata):
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensors, metadata) + bytes(64))
    return path


def test_too_many_tensors_or_metadata_entries(tmp_path):
    _refused(_header(tmp_path / "t.gguf", MAX_GGUF_TENSORS + 1, 1), f"at most {MAX_GGUF_TENSORS}")
    _refused(_header(tmp_path / "m.gguf", 1, MAX_GGUF_METADATA + 1), f"at most {MAX_GGUF_METADATA}")
    _refused(_header(tmp_path / "huge.gguf", 2 ** 63, 2 ** 63), "claims")


def test_a_metadata_array_or_string_claiming_too_much(tmp_path):
    path = _plain(tmp_path / "array.gguf", "framepack", {}, arrays={"junk": [1, 2, 3]})
    raw = bytearray(path.read_bytes())
    at = raw.index(b"junk") + 4 + 4 + 4  # key, value type (ARRAY), item type
    struct.pack_into("<Q", raw, at, 10 ** 12)
    path.write_bytes(bytes(raw))
    _refused(path, f"at most {MAX_GGUF_ARRAY_ITEMS}")
    path = _plain(tmp_path / "string.gguf", "framepack", {}, strings={"junk": "abc"})
    raw = bytearray(path.read_bytes())
    struct.pack_into("<Q", raw, raw.index(b"junk") + 4 + 4, 10 ** 12)
    path.write_bytes(bytes(raw))
    _refused(path, "string of")


def test_bad_config_metadata(tmp_path):
    path = _plain(tmp_path / "config.gguf", "framepack", {}, strings={"framepack.config": "{not json"})
    _refused(path, "not valid JSON")
    path = _plain(tmp_path / "config2.gguf", "framepack", {}, strings={"framepack.config": '{"num_layers": 100000}'})
    _refused(path, "not usable")
    path = _plain(tmp_path / "variant.gguf", "framepack", {}, strings={"framepack.variant": "../../etc"})
    _refused(path, "is not one of I2V_HY, F1")


def test_the_good_file_loads(good, monkeypatch):
    monkeypatch.undo()
    assert load_framepack_model(good).file_variant == "I2V_HY"
    assert TYPE_IDS["Q8_0"] == 8
