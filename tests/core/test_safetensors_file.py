"""The file checks that model and LoRA loading share: the same refusals, each naming the file and the fix."""

import pickle

import pytest

from framepack_core import CheckpointError
from framepack_core.loading import load_framepack_model
from framepack_core.lora_formats import load_lora_file

LOADERS = {"model": load_framepack_model, "LoRA": load_lora_file}
SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle", ".pt2")


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load must never be called"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads must never be called"))


@pytest.mark.parametrize("what", LOADERS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_pickle_suffixes_are_refused_by_both(tmp_path, what, suffix):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(CheckpointError, match=rf"weights\{suffix} is a pickle-based file.*{what} files are read only "
                                              r"from \.safetensors"):
        LOADERS[what](path)


@pytest.mark.parametrize("what", LOADERS)
def test_raw_pickle_renamed_to_safetensors_is_named_as_such(tmp_path, what):
    path = tmp_path / "renamed.safetensors"
    path.write_bytes(pickle.dumps({"w": [1.0] * 8}, protocol=4))  # starts with 0x80 0x04
    with pytest.raises(CheckpointError, match=r"renamed\.safetensors is a PyTorch zip/pickle checkpoint renamed"):
        LOADERS[what](path)


@pytest.mark.parametrize("what", LOADERS)
def test_missing_and_empty_files(tmp_path, what):
    with pytest.raises(CheckpointError, match=rf"{what} file .*absent\.safetensors does not exist"):
        LOADERS[what](tmp_path / "absent.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors is empty or truncated \(2 bytes\); download it again"):
        LOADERS[what](tmp_path / "empty.safetensors")
