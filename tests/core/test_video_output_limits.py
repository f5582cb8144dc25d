"""The MP4 writer and the frames it hands back, under hostile names and long videos: a file is only ever created
(never overwritten, never a path cut at a NUL byte), returning every frame is refused above the stated budget before
anything is decoded, the frames returned fill one tensor allocated once, and frames read back from the MP4 (what the
safety checker scores) are the video's own."""

from __future__ import annotations

import sys

import pytest
import torch

from framepack_core import mp4 as mp4_module
from framepack_core.errors import InputError
from framepack_core.frames import decode_video
from framepack_core.limits import MAX_RETURNED_FRAMES_BYTES
from framepack_core.mp4 import write_mp4
from framepack_core.planning import plan_video
from tests.core.test_decode_video import FakeVae, _latents


def test_an_existing_file_is_never_overwritten(tmp_path):
    plan = plan_video(30, "inverted")
    path = tmp_path / "taken.mp4"
    path.write_bytes(b"someone else's video")
    with pytest.raises(InputError, match="taken.mp4 already exists"):
        write_mp4(str(path), plan, _latents(plan), FakeVae())
    assert path.read_bytes() == b"someone else's video"


@pytest.mark.parametrize("name", ["clip.mp4\x00/z", "clip.mkv\x00"])
def test_a_path_with_a_nul_byte_is_refused_and_nothing_is_written(tmp_path, name):
    plan = plan_video(30, "inverted")
    (tmp_path / "clip.mp4").write_bytes(b"existing")
    with pytest.raises(InputError, match="not usable"):
        write_mp4(str(tmp_path / name), plan, _latents(plan), FakeVae())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    assert (tmp_path / "clip.mp4").read_bytes() == b"existing"


def test_returning_every_frame_above_the_budget_is_refused_before_decoding(tmp_path):
    plan = plan_video(61, "inverted")
    latents = _latents(plan)
    vae = FakeVae()
    width, height = latents.shape[-1] * 8, latents.shape[-2] * 8
    need = 61 * width * height * 3 * 4
    with pytest.raises(InputError, match=r"returning all 61 frames at 48x32 .* the limit is .* GiB\. Turn "
                                         r"return_frames off"):
        write_mp4(str(tmp_path / "v.mp4"), plan, latents, vae, keep_frames=True, frames_budget=need - 1)
    assert vae.calls == [] and list(tmp_path.iterdir()) == []
    # exactly at the budget, and without returned frames at any size, it runs
    assert write_mp4(str(tmp_path / "a.mp4"), plan, latents, FakeVae(), frames_budget=need).shape[0] == 61
    assert write_mp4(str(tmp_path / "b.mp4"), plan, latents, FakeVae(), keep_frames=False, frames_budget=1).shape[0] == 1
    assert MAX_RETURNED_FRAMES_BYTES == 8 * 1024 ** 3  # the budget the README states


def test_returned_frames_fill_one_tensor_allocated_once(tmp_path, monkeypatch):
    """No list of chunks joined at the end (twice the memory at the join): torch.cat is not used, and the result
    is the decoded video exactly."""
    plan = plan_video(100, "forward")
    latents = _latents(plan, seed=4)
    expected = []
    decode_video(plan, latents, FakeVae(), expected.append)
    expected = torch.cat(expected)

    real_cat = torch.cat

    def cat_outside_the_writer(*args, **kwargs):  # the colour conversion may join what it likes
        if sys._getframe(1).f_code.co_filename == mp4_module.__file__:
            raise AssertionError("the returned frames must not be joined from chunks")
        return real_cat(*args, **kwargs)

    monkeypatch.setattr(torch, "cat", cat_outside_the_writer)
    frames = write_mp4(str(tmp_path / "v.mp4"), plan, latents, FakeVae(), keep_frames=True)
    assert torch.equal(frames, expected)


def test_frames_read_back_from_the_mp4_are_the_videos_own(tmp_path):
    plan = plan_video(61, "inverted")
    latents = _latents(plan, seed=5)
    path = tmp_path / "v.mp4"
    frames = write_mp4(str(path), plan, latents, FakeVae(), crf=0)
    assert mp4_module.count_frames(str(path)) == 61
    picked = mp4_module.read_frames(str(path), [0, 30, 60])
    assert picked.shape == (3, *frames.shape[1:]) and picked.dtype == torch.float32
    # H.264 at crf 0 in yuv420p: chroma subsampling and 8 bits; each picked frame is far closer to its own frame
    # than to the others
    for row, index in enumerate((0, 30, 60)):
        errors = [(picked[row] - frames[i]).abs().mean().item() for i in (0, 30, 60)]
        assert errors[row] < 0.03 and errors[row] == min(errors), errors
    with open(path, "rb") as f:  # a file object (what ComfyUI's VIDEO may hold) works the same
        assert torch.equal(mp4_module.read_frames(f, [60]), picked[2:])
