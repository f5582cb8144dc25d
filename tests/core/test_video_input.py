"""video_input.py (input videos read in order, never whole) and write_mp4 continuing one: the frames before the
seam reach the encoder exactly as read and, with crf 0 (lossless H.264), come out of the MP4 exactly; the output
has input + num_frames frames (num_frames with new frames only); bad files give clear errors."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch

from framepack_core.color import rgb_to_yuv420p
from framepack_core.config import VAE_SPATIAL_FACTOR
from framepack_core.errors import InputError
from framepack_core.frames import decode_chunks
from framepack_core.mp4 import Mp4Writer, write_mp4
from framepack_core.planning import plan_video
from framepack_core.video_input import CHUNK_FRAMES, Fitted, FrameTensor, VideoFile
from framepack_dev.videos import moving_frames, write_video

H, W = 4, 6  # latents; 32x48 pixels


def _video(tmp_path, count, fps=30, lossless=True, size=(W * 8, H * 8), name="input"):
    frames = list(moving_frames(count, size[1], size[0], seed=count))
    path = write_video(tmp_path / f"{name}.{'mov' if lossless else 'mp4'}", frames, *size, fps=fps,
                       lossless=lossless)
    return path, frames


def test_a_video_file_is_counted_and_read_exactly_in_chunks(tmp_path):
    path, frames = _video(tmp_path, 2 * CHUNK_FRAMES + 5)
    source = VideoFile(str(path))
    assert (source.frames, source.width, source.height, source.fps) == (len(frames), W * 8, H * 8, 30)
    chunks = list(source.iter_rgb24())
    assert [len(c) for c in chunks] == [CHUNK_FRAMES, CHUNK_FRAMES, 5]
    assert all(c.dtype == torch.uint8 for c in chunks)
    assert np.array_equal(torch.cat(chunks).numpy(), np.stack(frames))
    assert np.array_equal(source.read_tail(7).numpy(), np.stack(frames[-7:]))
    in_memory = VideoFile(io.BytesIO(path.read_bytes()), name="upload.mov")  # ComfyUI may hand over bytes
    assert in_memory.frames == len(frames)
    assert np.array_equal(in_memory.read_tail(3).numpy(), np.stack(frames[-3:]))


def test_frames_in_memory_and_fitting(tmp_path):
    images = torch.rand(20, 24, 40, 3)
    source = FrameTensor(images, 30.0)
    assert (source.frames, source.width, source.height) == (20, 40, 24)
    assert torch.equal(torch.cat(list(source.iter_rgb24())), (images * 255).round().to(torch.uint8))
    same = Fitted(source, 40, 24)
    assert not same.resized and torch.equal(torch.cat(list(same.iter_rgb24())), torch.cat(list(source.iter_rgb24())))
    other = Fitted(source, 16, 16)  # 40x24 covers 16x16 after scaling by 2/3: a centre crop of the width
    out = torch.cat(list(other.iter_rgb24()))
    assert other.resized and out.shape == (20, 16, 16, 3) and other.frames == 20
    with pytest.raises(InputError, match="24 fps.*30"):
        FrameTensor(images, 24.0)
    FrameTensor(images, 30000 / 1001)  # 29.97 counts as 30


@pytest.mark.parametrize("content,match", [
    (b"", "not a readable video"),
    (b"\x00\x01garbage" * 100, "not a readable video"),
])
def test_unreadable_files_are_refused(tmp_path, content, match):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        VideoFile(str(path))


def test_a_picture_a_truncated_file_and_another_rate_are_refused(tmp_path):
    from PIL import Image

    picture = tmp_path / "still.png"
    Image.new("RGB", (48, 32), (10, 20, 30)).save(picture)
    with pytest.raises(InputError, match="picture, not a video.*Image Conditioning"):
        VideoFile(str(picture))
    path, _ = _video(tmp_path, 40, lossless=False)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(InputError, match="readable|damaged|no frames"):
        source = VideoFile(str(truncated))
        list(source.iter_rgb24())
    slow, _ = _video(tmp_path, 10, fps=24, name="slow")
    with pytest.raises(InputError, match="24 fps.*ffmpeg"):
        VideoFile(str(slow))


def _latents(plan, lead, seed=0):
    return torch.randn(1, 16, lead - 1 + plan.total_latents, H, W, generator=torch.Generator().manual_seed(seed))


def fake_vae(latents):
    """A causal decoder's frame count (1 for the first latent, 4 for each later one), values from the latents."""
    repeats = torch.tensor([1] + [4] * (latents.shape[2] - 1))
    pixels = torch.sigmoid(latents[0, :3].repeat_interleave(repeats, dim=1))
    pixels = pixels.repeat_interleave(VAE_SPATIAL_FACTOR, 2).repeat_interleave(VAE_SPATIAL_FACTOR, 3)
    return pixels.permute(1, 2, 3, 0)


class Recorder:
    """Wraps Mp4Writer's encoding step (one uint8 [H, W, 3] frame at a time, for pass-through and decoded frames
    alike): records the frames it encodes, in order."""

    def __init__(self, monkeypatch):
        self.frames: list[torch.Tensor] = []
        original = Mp4Writer._encode

        def record(writer, frame):
            self.frames.append(frame.clone())
            original(writer, frame)

        monkeypatch.setattr(Mp4Writer, "_encode", record)


@pytest.mark.parametrize("input_frames,lead", [(100, 19), (45, 12), (5, 2)])
@pytest.mark.parametrize("keep_input", [True, False])
def test_continuing_passes_the_input_through_unchanged_and_counts_exactly(tmp_path, monkeypatch, input_frames, lead,
                                                                           keep_input):
    path, frames = _video(tmp_path, input_frames)
    source = VideoFile(str(path))
    plan = plan_video(30, "forward", start_in_output=False)
    latents = _latents(plan, lead)
    seam = decode_chunks(plan, lead_latents=lead, seam=True)[0].overlap_frames
    recorder = Recorder(monkeypatch)
    out = tmp_path / "out.mp4"
    images = write_mp4(str(out), plan, latents, fake_vae, crf=0, lead_latents=lead, continues=source,
                       keep_input=keep_input)
    written = torch.stack(recorder.frames)
    assert len(written) == len(images) == (input_frames if keep_input else 0) + 30
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray() for f in container.decode(video=0)]  # yuv420p, as stored
    assert len(decoded) == len(written)
    if keep_input:
        passed = input_frames - seam  # 0 for a 5-frame input: all of it is in the seam
        assert [np.array_equal(written[k].numpy(), frames[k]) for k in range(passed)] == [True] * passed
        # and exactly in the file: lossless H.264 stores our own RGB -> yuv420p conversion of those frames
        for k in range(passed):
            assert np.array_equal(decoded[k], rgb_to_yuv420p(torch.from_numpy(frames[k])).numpy()), k
        # the seam starts from the input's own frame (weight 1) and ends on the decode
        assert np.array_equal(written[passed].numpy(), frames[passed])
    for k, frame in enumerate(written):  # everything in the file is what was handed to the encoder
        assert np.array_equal(decoded[k], rgb_to_yuv420p(frame).numpy())


def test_continuing_refuses_an_input_of_another_size_or_one_that_changed(tmp_path):
    plan = plan_video(30, "forward", start_in_output=False)
    path, _ = _video(tmp_path, 20, size=(64, 32))
    with pytest.raises(InputError, match="64x32.*48x32"):
        write_mp4(str(tmp_path / "a.mp4"), plan, _latents(plan, 4), fake_vae, lead_latents=4,
                  continues=VideoFile(str(path)))
    path, _ = _video(tmp_path, 20, name="changing")
    source = VideoFile(str(path))
    write_video(path, moving_frames(12, H * 8, W * 8), W * 8, H * 8)  # replaced on disk between the two reads
    with pytest.raises(InputError, match="changed"):
        write_mp4(str(tmp_path / "b.mp4"), plan, _latents(plan, 4), fake_vae, lead_latents=4, continues=source)
    assert not (tmp_path / "b.mp4").exists()


def test_a_fitted_tail_is_the_tail_of_the_fitted_video(tmp_path):
    path, _ = _video(tmp_path, 40, size=(64, 48))
    fitted = Fitted(VideoFile(str(path)), 32, 32)
    whole = torch.cat(list(fitted.iter_rgb24()))
    assert whole.shape == (40, 32, 32, 3)
    assert torch.equal(fitted.read_tail(9), whole[-9:])
