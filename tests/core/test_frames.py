"""Output sizes, the resize rule, and streaming section-wise decoding with overlap blending."""

import pytest
import torch

from framepack_core import InputError
from framepack_core.frames import (BUCKETS_640, StreamingBlender, blend_all, decode_chunks, find_nearest_bucket,
                                   output_size, resize_and_center_crop)
from framepack_core.planning import plan_video


def test_nearest_bucket_rule():
    assert find_nearest_bucket(480, 832) == (480, 832)
    assert find_nearest_bucket(1080, 1920) == (480, 832)  # 16:9's nearest (|1080*832-1920*480| is smallest)
    assert find_nearest_bucket(1000, 1000) == (640, 608)  # tie 608x640 / 640x608 goes to the later bucket
    assert find_nearest_bucket(9, 16) in BUCKETS_640


@pytest.mark.parametrize("args,expected", [
    ((720, 1280, "16:9", "480p"), (848, 480)),
    ((720, 1280, "9:16", "480p"), (480, 848)),
    ((100, 100, "16:9", "720p"), (1280, 720)),
    ((100, 100, "9:16", "720p"), (720, 1280)),
    ((1000, 1000, "auto", "480p"), (640, 640)),  # sqrt(848*480) = 638 -> 640
    ((480, 640, "auto", "720p"), (1104, 832)),  # 4:3 at 1280x720's area
    ((1080, 1920, "auto", "640"), (832, 480)),
    ((100, 100, "16:9", "640"), (832, 480)),
    ((100, 100, "9:16", "640"), (480, 832)),
])
def test_output_sizes(args, expected):
    width, height = output_size(*args)
    assert (width, height) == expected
    assert width % 16 == 0 and height % 16 == 0


def test_custom_size_and_errors():
    assert output_size(10, 10, "auto", "custom", 100, 70) == (96, 64)
    with pytest.raises(InputError, match="custom_width"):
        output_size(10, 10, "auto", "custom", 10, 64)
    with pytest.raises(InputError, match="aspect_ratio"):
        output_size(10, 10, "4:3", "480p")
    with pytest.raises(InputError, match="resolution"):
        output_size(10, 10, "auto", "1080p")


def test_resize_covers_and_centre_crops():
    img = torch.zeros(1, 100, 200, 3)
    img[:, :, 50:150] = 1.0  # a white centre band, half the width
    out = resize_and_center_crop(img, 64, 64)
    assert out.shape == (1, 64, 64, 3)
    # cover: the 100x100 centre crop is taken, which is exactly the white band
    assert out.min() > 0.95
    assert torch.equal(resize_and_center_crop(img, 200, 100), img)  # exact pass-through


def test_resize_extreme_aspect_has_no_giant_intermediate():
    img = torch.rand(1, 10, 10000, 3)
    out = resize_and_center_crop(img, 848, 480)
    assert out.shape == (1, 480, 848, 3) and 0 <= out.min() and out.max() <= 1
    tiny = resize_and_center_crop(torch.rand(1, 1, 1, 3), 64, 64)
    assert tiny.shape == (1, 64, 64, 3) and torch.allclose(tiny, tiny[0, 0, 0])


def _fake_decode(chunk, offset=0.0):
    """A decoder whose frame values are their video frame index: chunk c gives frames [4a, 4b-3)."""
    idx = torch.arange(chunk.first_frame, chunk.first_frame + chunk.num_frames, dtype=torch.float32) + offset
    return idx.view(-1, 1, 1, 1).expand(-1, 2, 2, 3).clone()


@pytest.mark.parametrize("num_frames", [30, 97, 180, 1800])
@pytest.mark.parametrize("mode", ["inverted", "forward"])
def test_chunks_align_with_video_frames(num_frames, mode):
    plan = plan_video(num_frames, mode)
    chunks = decode_chunks(plan)
    assert len(chunks) == len(plan.sections)
    assert chunks[0].latent_start == 0 and chunks[0].overlap_frames == 0
    assert chunks[-1].latent_end == plan.total_latents
    produced = chunks[0].first_frame + chunks[0].num_frames
    for c in chunks[1:]:
        assert c.first_frame + c.overlap_frames == produced  # overlap = shared frames with what came before
        produced = c.first_frame + c.num_frames
    assert produced == plan.generated_frames
    # identical content in both decodes: blending must reproduce the frame indices exactly, minus the drops
    frames = blend_all(plan, [_fake_decode(c) for c in chunks])
    expected = [f for f in range(plan.generated_frames) if f not in set(plan.dropped_frames)]
    assert len(frames) == num_frames
    assert frames[:, 0, 0, 0].tolist() == expected


def test_cross_fade_weights_are_the_originals():
    plan = plan_video(97, "forward")
    chunks = decode_chunks(plan)
    # earlier chunk gives 0, later chunk 1: the overlap must ramp linearly 0 -> 1 over 4*9-3 = 33 frames
    decoded = [torch.zeros(c.num_frames, 1, 1, 1) if i % 2 == 0 else torch.ones(c.num_frames, 1, 1, 1)
               for i, c in enumerate(chunks)]
    frames = blend_all(plan, decoded)[:, 0, 0, 0]
    start = chunks[1].first_frame
    ramp = frames[start:start + 33]
    assert torch.allclose(ramp, torch.linspace(0, 1, 33), atol=1e-6)
    assert frames[:start].eq(0).all()


def test_streaming_holds_back_a_bounded_tail():
    plan = plan_video(1800, "forward")
    blender = StreamingBlender(plan)
    total, max_tail = 0, 0
    for chunk in decode_chunks(plan):
        total += len(blender.push(chunk, _fake_decode(chunk)))
        max_tail = max(max_tail, len(blender.tail))
    total += len(blender.flush())
    assert total == 1800
    assert max_tail <= 4 * 2 * plan.window  # never more than one chunk's frames, whatever the length


def test_streaming_rejects_misaligned_chunks():
    plan = plan_video(97)
    chunks = decode_chunks(plan)
    blender = StreamingBlender(plan)
    blender.push(chunks[0], _fake_decode(chunks[0]))
    with pytest.raises(ValueError):
        blender.push(chunks[2], _fake_decode(chunks[2]))
