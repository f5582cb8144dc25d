"""frames.decode_video and mp4.write_mp4 with a fake VAE that records its calls: chunk order and slices, the blended
output against blend_all, streaming (frames leave before the last chunk is decoded), progress counts, the MP4 on
disk, and no partial file after a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import weakref
from pathlib import Path

import av
import pytest
import torch

from framepack_core.config import VAE_SPATIAL_FACTOR
from framepack_core.errors import InputError
from framepack_core.frames import blend_all, decode_chunks, decode_video, video_size
from framepack_core.mp4 import write_mp4
from framepack_core.planning import plan_video

H, W = 4, 6  # latent size: 32x48 pixels


def _latents(plan, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 16, plan.total_latents, H, W, generator=g)


class FakeVae:
    """Decodes latents [1, C, n, h, w] to [1, 4n - 3, 8h, 8w, 3] as a causal video VAE shapes them: the first
    latent gives 1 frame, each later one 4. Frame values come from the latents and from where the chunk starts, so
    two chunks decode their shared frames differently and the blending shows."""

    def __init__(self, log: list | None = None, fail_on_call: int | None = None):
        self.calls: list[torch.Tensor] = []
        self.log = log if log is not None else []
        self.fail_on_call = fail_on_call

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        self.calls.append(latents.clone())
        self.log.append("decode")
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("the VAE ran out of memory")
        repeats = torch.tensor([1] + [4] * (latents.shape[2] - 1))
        per_frame = latents[0, :3].repeat_interleave(repeats, dim=1)  # [3, frames, h, w]
        offset = 0.01 * len(self.calls)
        pixels = torch.sigmoid(per_frame + offset).repeat_interleave(VAE_SPATIAL_FACTOR, dim=2)
        pixels = pixels.repeat_interleave(VAE_SPATIAL_FACTOR, dim=3)
        return pixels.permute(1, 2, 3, 0).unsqueeze(0)  # ComfyUI's video layout [B, T, H, W, C]


@pytest.mark.parametrize("mode,frames", [("inverted", 100), ("forward", 100), ("inverted", 30), ("forward", 259)])
def test_decode_video_decodes_chunks_in_order_and_blends_like_blend_all(mode, frames):
    plan = plan_video(frames, mode)
    latents = _latents(plan)
    vae = FakeVae()
    out, progress = [], []
    count = decode_video(plan, latents, vae, out.append, on_chunk=lambda done, total: progress.append((done, total)))
    chunks = decode_chunks(plan)
    assert len(vae.calls) == len(chunks)
    for call, chunk in zip(vae.calls, chunks):
        assert torch.equal(call, latents[:, :, chunk.latent_start:chunk.latent_end])
    reference_vae = FakeVae()  # decodes the chunks in the same order, so with the same per-call offsets
    reference = blend_all(plan, [reference_vae(latents[:, :, c.latent_start:c.latent_end])[0] for c in chunks])
    video = torch.cat(out)
    assert count == len(video) == plan.output_frames == frames
    assert torch.equal(video, reference)
    assert all(len(f) for f in out)  # no empty batches are handed on
    assert progress == [(i + 1, len(chunks)) for i in range(len(chunks))]
    assert video.dtype == torch.float32 and video.shape[1:] == (H * 8, W * 8, 3)


def test_frames_leave_before_the_last_chunk_is_decoded():
    plan = plan_video(259, "forward")
    log: list[str] = []
    decode_video(plan, _latents(plan), FakeVae(log), lambda frames: log.append("frames"))
    assert log.count("decode") == len(plan.sections) > 2
    last_decode = len(log) - 1 - log[::-1].index("decode")
    assert "frames" in log[:last_decode]  # streamed, not collected and handed over at the end


@pytest.mark.parametrize("bad", [lambda lat: lat[:, :, :-1], lambda lat: lat[0]])
def test_decode_video_refuses_latents_that_do_not_fit_the_plan(bad):
    plan = plan_video(100, "inverted")
    vae = FakeVae()
    with pytest.raises(InputError, match="latent"):
        decode_video(plan, bad(_latents(plan)), vae, lambda frames: None)
    assert vae.calls == []


def test_video_size_uses_the_vae_factor():
    assert video_size(torch.zeros(1, 16, 3, H, W)) == (W * VAE_SPATIAL_FACTOR, H * VAE_SPATIAL_FACTOR)


def _probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return len(frames), stream.codec_context.width, stream.codec_context.height


@pytest.mark.parametrize("keep_frames", [True, False])
def test_write_mp4_writes_every_frame_and_returns_all_or_the_last(tmp_path, keep_frames):
    plan = plan_video(61, "inverted")
    latents = _latents(plan, seed=3)
    path = tmp_path / "video.mp4"
    progress = []
    images = write_mp4(str(path), plan, latents, FakeVae(), crf=19, keep_frames=keep_frames,
                       on_chunk=lambda done, total: progress.append(done))
    expected = []
    decode_video(plan, latents, FakeVae(), expected.append)
    expected = torch.cat(expected)
    assert torch.equal(images, expected if keep_frames else expected[-1:])
    assert _probe(path) == (61, W * 8, H * 8)
    assert progress == list(range(1, len(plan.sections) + 1))


def test_write_mp4_leaves_no_partial_file_when_decoding_fails(tmp_path):
    plan = plan_video(259, "forward")
    path = tmp_path / "video.mp4"
    with pytest.raises(RuntimeError, match="out of memory"):
        # fails at the last chunk, when the encoder has long written packets to the file
        write_mp4(str(path), plan, _latents(plan), FakeVae(fail_on_call=len(plan.sections)))
    assert not path.exists()
    with pytest.raises(InputError, match="plan expects"):
        write_mp4(str(path), plan, _latents(plan)[:, :, :-1], FakeVae())
    assert not path.exists() and list(tmp_path.iterdir()) == []


_LONG_VIDEO_SCRIPT = """
import resource, sys, torch
import framepack_core.mp4 as mp4
from framepack_core.config import VAE_SPATIAL_FACTOR
from framepack_core.planning import plan_video


class CountingWriter:  # the encoder's own buffers are libx264's; this measures what our decode path holds
    def __init__(self, path, width, height, fps=30, crf=19, metadata=None):
        self.frames = 0

    def write(self, frames):
        self.frames += len(frames)

    def close(self):
        pass

    def abort(self):
        pass


def decode(latents):
    repeats = torch.tensor([1] + [4] * (latents.shape[2] - 1))
    pixels = torch.sigmoid(latents[0, :3]).repeat_interleave(repeats, dim=1)
    pixels = pixels.repeat_interleave(VAE_SPATIAL_FACTOR, dim=2).repeat_interleave(VAE_SPATIAL_FACTOR, dim=3)
    return pixels.permute(1, 2, 3, 0).unsqueeze(0)


mp4.Mp4Writer = CountingWriter
plan = plan_video(1800, "inverted")
latents = torch.randn(1, 16, plan.total_latents, 12, 20, generator=torch.Generator().manual_seed(0))
mp4.write_mp4("warm.mp4", plan_video(61, "inverted"), latents[:, :, :16], decode, keep_frames=False)  # pools warm
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
last = mp4.write_mp4("long.mp4", plan, latents, decode, keep_frames=False)
assert last.shape == (1, 96, 160, 3), last.shape
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def test_a_long_video_is_decoded_in_bounded_memory(tmp_path):
    """1800 frames at 160x96 through write_mp4 with keep_frames=False (decode, blending, frames handed on): the
    float frames would take 316 MiB, so holding them (or any growing share of them) would break the 100 MiB bound
    on the peak RSS growth; measured: 39 MiB, the chunk being decoded and blended. Holding every frame, as
    keep_frames=True does on purpose, measured 903 MiB. A fresh process, so the peak is this job's."""
    frames_mib = 1800 * 96 * 160 * 3 * 4 / 2 ** 20
    bound_mib = 100
    assert frames_mib > 3 * bound_mib
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _LONG_VIDEO_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 0, out.stderr
    growth_mib = int(out.stdout.strip().splitlines()[-1]) / 2 ** 20
    assert growth_mib < bound_mib, f"peak RSS grew by {growth_mib:.0f} MiB decoding 1800 frames"


_CHUNK_SCRIPT = _LONG_VIDEO_SCRIPT.split("mp4.Mp4Writer = CountingWriter")[0] + """
mp4.Mp4Writer = CountingWriter
plan = plan_video(100, "inverted")
latents = torch.randn(1, 16, plan.total_latents, 44, 80, generator=torch.Generator().manual_seed(0))
warm = plan_video(30, "inverted")
mp4.write_mp4("warm.mp4", warm, latents[:, :, :warm.total_latents, :4, :4], decode, keep_frames=False)
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS

def kb(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))

base = kb("VmRSS")
mp4.write_mp4("video.mp4", plan, latents, decode, keep_frames=False)
print((kb("VmHWM") - base) * 1024)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_decoding_holds_one_decoded_chunk_and_one_overlap(tmp_path):
    """100 frames at 640x352 (3 chunks of up to 18 latents = 69 float frames, 178 MiB): the peak RSS growth of
    write_mp4 (its writer stubbed, as above) stays within the largest decoded chunk, one overlap held back for the
    next chunk (33 frames) and 96 MiB for the rest. Joining the blended overlap to the chunk, holding the next
    overlap while the blended one is still alive, or the previous chunk still referenced (by a name, a view or an
    empty slice) while the next one decodes each add a chunk- or overlap-sized share (measured: 532-696 MiB before,
    286 MiB now). A fresh process, so the peak is this job's."""
    frame = 640 * 352 * 3 * 4
    bound_mib = (69 * frame + 33 * frame) / 2 ** 20 + 96
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _CHUNK_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.returncode == 0, out.stderr
    growth_mib = int(out.stdout.strip().splitlines()[-1]) / 2 ** 20
    assert growth_mib < bound_mib, f"peak RSS grew by {growth_mib:.0f} MiB, over {bound_mib:.0f} MiB"


def test_no_decoded_chunk_outlives_its_frames(tmp_path):
    """When the VAE decodes a chunk, no earlier chunk's memory is still alive (not through a name, a view in a loop
    variable, the held overlap, an empty slice or the last frame write_mp4 returns): else two chunks sit in memory
    at once. The decoder's frames live in a numpy array, which goes only when no tensor view of it is left."""
    plan = plan_video(100, "inverted")
    outputs: list = []

    def decode(latents):
        assert all(ref() is None for ref in outputs), "an earlier decoded chunk is still referenced"
        array = FakeVae()(latents).contiguous().numpy().copy()
        outputs.append(weakref.ref(array))
        return torch.from_numpy(array)

    last = write_mp4(str(tmp_path / "v.mp4"), plan, _latents(plan), decode, keep_frames=False)
    assert len(outputs) == len(decode_chunks(plan)) == 3
    assert last.shape == (1, H * 8, W * 8, 3)
    assert all(ref() is None for ref in outputs)


def test_the_writer_converts_one_frame_at_a_time(tmp_path, monkeypatch):
    """Float frames become 8-bit one at a time: converting a whole batch at once would hold several float copies
    of it (clamp, scale, round)."""
    import framepack_core.mp4 as mp4

    seen = []
    real = mp4.to_rgb24
    monkeypatch.setattr(mp4, "to_rgb24", lambda frames: seen.append(tuple(frames.shape)) or real(frames))
    writer = mp4.Mp4Writer(str(tmp_path / "v.mp4"), 32, 16)
    writer.write(torch.rand(5, 16, 32, 3))
    writer.close()
    assert seen == [(16, 32, 3)] * 5 and writer.frames == 5
    assert mp4.count_frames(str(tmp_path / "v.mp4")) == 5


def test_freed_chunks_go_back_to_the_os_after_each_chunk(tmp_path, monkeypatch):
    """decode_video hands freed heap pages back (glibc malloc_trim) after each chunk's frames are out and the chunk
    released, and write_mp4 once more after a continuation's pass-through: at 720p this is the difference between
    2.1 and 1.96 GB of peak growth when continuing a video (bench/extend_memory.md)."""
    import framepack_core.frames as frames
    import framepack_core.mp4 as mp4

    plan = plan_video(100, "inverted")
    events: list = []
    monkeypatch.setattr(frames, "return_freed_memory", lambda: events.append("trim"))
    monkeypatch.setattr(mp4, "return_freed_memory", lambda: events.append("trim"))

    def decode(latents):
        events.append("decode")
        return FakeVae()(latents)

    write_mp4(str(tmp_path / "v.mp4"), plan, _latents(plan), decode, keep_frames=False)
    chunks = len(decode_chunks(plan))
    assert chunks > 1 and events == ["decode", "trim"] * chunks
    # glibc's own call works here (it returns 1 when it released memory, 0 when there was none to release)
    assert frames._malloc_trim() is None or frames._malloc_trim()(0) in (0, 1)
