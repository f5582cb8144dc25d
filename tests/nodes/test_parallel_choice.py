"""The FramePack Parallel node's gpus text: devices per rank, and refusals that name the fix."""

import pytest

from .pack import pack_module

choice = pack_module("nodes.parallel_choice")
InputError = pack_module("framepack_core.errors").InputError


def test_gpu_lists():
    assert choice.parse_gpus("all", 4) == ("cuda:0", "cuda:1", "cuda:2", "cuda:3")
    assert choice.parse_gpus(" 2, 0 ", 4) == ("cuda:2", "cuda:0")
    assert choice.parse_gpus("CPU:3", 0) == ("cpu",) * 3


@pytest.mark.parametrize("text,visible,message", [
    ("all", 0, "sees no CUDA GPU; use 'cpu:2'"),
    ("0,1,4", 2, r"sees 2 CUDA GPU\(s\) \(0-1\), not 4"),
    ("0,0", 2, "names a GPU twice"),
    ("0;1", 2, "is not a GPU list"),
    ("-1", 2, "is not a GPU list"),
    ("cpu:0", 0, "takes N from 1 to 8"),
    ("cpu:9", 0, "takes N from 1 to 8"),
    (",".join(["0"] * 40), 2, "characters long"),
])
def test_refusals(text, visible, message):
    with pytest.raises(InputError, match=message):
        choice.parse_gpus(text, visible)
