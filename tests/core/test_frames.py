"""Output sizes, the resize rule, and streaming section-wise decoding with overlap blending.

Decoding is checked with a fake causal "decoder" whose frames carry known values, against a whole-video
reference written the way the original FramePack blends (concatenate everything, then soft-append)."""

import pytest
import torch

from framepack_core import InputError
from framepack_core.frames import (BUCKETS_640, DecodeChunk, StreamingBlender, blend_all, decode_chunks,
                                   find_nearest_bucket, output_size, resize_and_center_crop)
from framepack_core.planning import kept_frame_indices, plan_video


# -- buckets and sizes ----------------------------------------------------------------------------------------

def test_buckets_are_the_originals_shape():
    assert len(BUCKETS_640) == 14
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in BUCKETS_640)
    assert [h for h, _ in BUCKETS_640] == sorted(h for h, _ in BUCKETS_640)  # landscape to portrait


def test_nearest_bucket_rule():
    assert find_nearest_bucket(480, 832) == (480, 832)
    # 1920x1080: |1080*832 - 1920*480| = 23040 beats 448x864's 72960 and 512x768's 153600
    assert find_nearest_bucket(1080, 1920) == (480, 832)
    assert find_nearest_bucket(1920, 1080) == (832, 480)
    # a square image ties between 608x640 and 640x608 (both off by 32 per unit); the later bucket wins
    assert find_nearest_bucket(1000, 1000) == (640, 608)
    assert find_nearest_bucket(1, 100) == (416, 960) and find_nearest_bucket(100, 1) == (960, 416)
    with pytest.raises(InputError, match="640"):
        find_nearest_bucket(480, 832, resolution=512)


@pytest.mark.parametrize("image_hw,aspect,resolution,expected", [
    ((720, 1280), "16:9", "480p", (848, 480)),
    ((720, 1280), "9:16", "480p", (480, 848)),
    ((100, 100), "16:9", "720p", (1280, 720)),
    ((100, 100), "9:16", "720p", (720, 1280)),
    ((1080, 1920), "auto", "480p", (848, 480)),  # sqrt(848*480*16/9) = 850.7 -> 848; sqrt(848*480*9/16) = 478.5 -> 480
    ((1000, 1000), "auto", "480p", (640, 640)),  # sqrt(848*480) = 638.0 -> 640
    ((800, 600), "auto", "480p", (560, 736)),  # 3:4: sqrt(407040*.75) = 552.5 -> 560; sqrt(407040/.75) = 736.7 -> 736
    ((480, 640), "auto", "720p", (1104, 832)),  # 4:3 at 1280x720's area: 1108.5 -> 1104, 831.4 -> 832
    ((1920, 1080), "auto", "720p", (720, 1280)),
    ((10, 10000), "auto", "480p", (2048, 64)),  # a panorama is narrowed to fit 2048, the short side stays >= 64
    ((200, 1200), "auto", "720p", (2048, 336)),  # 6:1 would be 2351.6x391.9; scaled by 2048/2351.6 -> 341.3 -> 336
    ((1080, 1920), "auto", "640", (832, 480)),
    ((1000, 1000), "auto", "640", (608, 640)),
    ((100, 100), "16:9", "640", (832, 480)),
    ((100, 100), "9:16", "640", (480, 832)),
])
def test_output_sizes(image_hw, aspect, resolution, expected):
    width, height = output_size(*image_hw, aspect, resolution)
    assert (width, height) == expected
    assert width % 16 == 0 and height % 16 == 0


def test_custom_size_rounding_and_range():
    assert output_size(10, 10, "auto", "custom", 100, 70) == (96, 64)  # 6.25 -> 6, 4.375 -> 4
    assert output_size(10, 10, "16:9", "custom", 72, 88) == (80, 96)  # halves round up: 4.5 -> 5, 5.5 -> 6
    assert output_size(10, 10, "auto", "custom", 64, 2048) == (64, 2048)


@pytest.mark.parametrize("call,match", [
    (lambda: output_size(10, 10, "auto", "custom", 10, 64), "custom_width.*64.*2048"),
    (lambda: output_size(10, 10, "auto", "custom", 64, 4096), "custom_height"),
    (lambda: output_size(10, 10, "auto", "custom", None, 64), "custom_width"),
    (lambda: output_size(10, 10, "auto", "custom", True, 64), "custom_width"),
    (lambda: output_size(10, 10, "4:3", "480p"), "aspect_ratio.*auto.*16:9.*9:16"),
    (lambda: output_size(10, 10, "auto", "1080p"), "resolution.*480p.*720p.*640.*custom"),
    (lambda: output_size(0, 10), "empty"),
])
def test_output_size_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


# -- resize and crop ------------------------------------------------------------------------------------------

def test_resize_covers_and_centre_crops_wide_image():
    img = torch.zeros(1, 100, 200, 3)
    img[:, :, 50:150] = 1.0  # a white centre band, half the width
    out = resize_and_center_crop(img, 64, 64)
    assert out.shape == (1, 64, 64, 3)
    assert torch.allclose(out, torch.ones_like(out))  # cover: only the 100x100 centre (the band) survives


def test_resize_covers_and_centre_crops_tall_image():
    img = torch.zeros(2, 200, 100, 3)
    img[:, 75:125] = 1.0  # a 64x32 target at scale 0.64 keeps exactly the 50 centre rows
    img[:, 75:125, :50, 0] = 0.0  # left half of them without red: the crop must not be mirrored or shifted
    out = resize_and_center_crop(img, 64, 32)
    assert out.shape == (2, 32, 64, 3)
    assert torch.allclose(out[..., 1:], torch.ones_like(out[..., 1:]))
    assert out[:, :, :28, 0].max() < 0.05 and out[:, :, 36:, 0].min() > 0.95


def test_resize_pass_through_clamp_and_dtype():
    img = torch.rand(1, 100, 200, 3)
    assert resize_and_center_crop(img, 200, 100) is img  # exact pass-through
    checker = (torch.arange(8).view(-1, 1) + torch.arange(8)) % 2
    up = resize_and_center_crop(checker.float().view(1, 8, 8, 1).expand(1, 8, 8, 3), 64, 64)
    assert up.min() >= 0 and up.max() <= 1  # bicubic overshoots on edges; the result is clamped
    half = resize_and_center_crop(img.half(), 64, 48)
    assert half.dtype == torch.float16 and half.shape == (1, 48, 64, 3)
    with pytest.raises(InputError, match="batch"):
        resize_and_center_crop(torch.rand(100, 200, 3), 64, 64)


def test_resize_extreme_aspect_has_no_giant_intermediate():
    img = torch.rand(1, 10, 10000, 3)
    out = resize_and_center_crop(img, 848, 480)
    assert out.shape == (1, 480, 848, 3) and 0 <= out.min() and out.max() <= 1
    tiny = resize_and_center_crop(torch.rand(1, 1, 1, 3), 64, 64)
    assert tiny.shape == (1, 64, 64, 3) and torch.allclose(tiny, tiny[0, 0, 0])


# -- section-wise decoding ------------------------------------------------------------------------------------

def true_frame(g):
    """The 'true video': generated frame g has value g (any distinct values would do)."""
    return float(g)


def fake_decode(chunk, offset=0.0):
    """A causal decoder stand-in: decoding latents [a, b) gives 1 frame for latent a (its group's last frame,
    4a) and 4 frames for each later latent i (4i-3 .. 4i). `offset` marks which decode a frame came from."""
    frames = [4 * chunk.latent_start] + [f for i in range(chunk.latent_start + 1, chunk.latent_end)
                                         for f in range(4 * i - 3, 4 * i + 1)]
    values = torch.tensor([true_frame(f) + offset for f in frames])
    return values.view(-1, 1, 1, 1).expand(-1, 2, 2, 3).clone()


def reference_video(plan, decoded, chunks):
    """Whole-video blending as the original does it: keep one growing history, soft-append each decode with
    linspace(1, 0, overlap) weights on the earlier frames, and drop frames only at the very end."""
    history = decoded[0]
    for chunk, current in zip(chunks[1:], decoded[1:]):
        o = chunk.overlap_frames
        w = torch.linspace(1, 0, o).view(-1, 1, 1, 1)
        history = torch.cat([history[:-o], w * history[-o:] + (1 - w) * current[:o], current[o:]])
    return history[kept_frame_indices(plan)]


@pytest.mark.parametrize("num_frames", [30, 31, 97, 180, 240, 1800])
@pytest.mark.parametrize("mode", ["inverted", "forward"])
def test_chunks_align_with_video_frames(num_frames, mode):
    plan = plan_video(num_frames, mode)
    chunks = decode_chunks(plan)
    sections = plan.sections_in_time_order
    assert len(chunks) == len(sections)
    assert chunks[0] == DecodeChunk(0, sections[0].latent_end, 0)
    for chunk, section in zip(chunks[1:], sections[1:]):
        assert chunk.latent_end == section.latent_end
        assert chunk.latent_start == section.latent_start - plan.window  # full context: one window before
        assert chunk.overlap_frames == 4 * plan.window - 3
    produced = chunks[0].num_frames
    for c in chunks[1:]:
        assert c.first_frame + c.overlap_frames == produced  # the overlap is exactly what was produced before
        produced = c.first_frame + c.num_frames
    assert produced == plan.generated_frames
    # every decode agrees with the true video: blending must give the true frames, minus the drops
    frames = blend_all(plan, [fake_decode(c) for c in chunks])
    assert len(frames) == num_frames
    assert frames[:, 0, 0, 0].tolist() == [true_frame(g) for g in kept_frame_indices(plan)]


@pytest.mark.parametrize("overlap", [1, 2, 5, 20])
def test_custom_overlap_context(overlap):
    plan = plan_video(240, "forward")
    chunks = decode_chunks(plan, overlap)
    for c, s in zip(chunks[1:], plan.sections_in_time_order[1:]):
        assert c.latent_start == max(0, s.latent_start - overlap)  # never before the start latent
        assert c.overlap_frames == 4 * (s.latent_start - c.latent_start) - 3
    decoded = [fake_decode(c, offset=100.0 * i) for i, c in enumerate(chunks)]
    assert torch.equal(blend_all(plan, decoded, overlap), reference_video(plan, decoded, chunks))


def test_overlap_must_be_at_least_one_latent():
    with pytest.raises(ValueError, match="overlap_latents"):
        decode_chunks(plan_video(97), 0)


def test_cross_fade_weights_are_the_originals():
    plan = plan_video(180, "forward")  # 5 sections of 9 latents; generated frame 90 is dropped
    chunks = decode_chunks(plan)
    assert [(c.first_frame, c.overlap_frames) for c in chunks] == [(0, 0), (4, 33), (40, 33), (76, 33), (112, 33)]
    values = [0.0, 1.0, 0.0, 1.0, 0.0]  # each chunk decodes to a constant
    decoded = [torch.full((c.num_frames, 1, 1, 1), v) for c, v in zip(chunks, values)]
    # by hand, in generated numbering: chunk 0 alone on 0..3, a 33-frame ramp to chunk 1 on 4..36, chunk 1 alone
    # on 37..39, a ramp back on 40..72, and so on; the last chunk alone after its ramp
    up, down = torch.linspace(0, 1, 33), torch.linspace(1, 0, 33)
    expected = torch.cat([torch.zeros(4), up, torch.ones(3), down, torch.zeros(3), up, torch.ones(3), down,
                          torch.zeros(181 - 145)])
    assert len(expected) == plan.generated_frames
    frames = blend_all(plan, decoded)[:, 0, 0, 0]
    assert torch.allclose(frames, expected[kept_frame_indices(plan)], atol=1e-6)


@pytest.mark.parametrize("num_frames,mode,overlap", [(1800, "forward", None), (240, "inverted", None),
                                                     (31, "inverted", None), (240, "forward", 3)])
def test_streaming_is_bounded_exact_and_matches_the_reference(num_frames, mode, overlap):
    plan = plan_video(num_frames, mode)
    chunks = decode_chunks(plan, overlap)
    decoded = [fake_decode(c, offset=1000.0 * (i % 3)) for i, c in enumerate(chunks)]  # decodes disagree
    blender = StreamingBlender(plan, overlap)
    parts, held = [], []
    for i, (chunk, frames) in enumerate(zip(chunks, decoded)):
        parts.append(blender.push(chunk, frames))
        held.append(blender.held_frames)
        next_overlap = chunks[i + 1].overlap_frames if i + 1 < len(chunks) else 0
        assert blender.held_frames == next_overlap  # only the tail the next chunk blends into
    parts.append(blender.flush())
    assert max(held) <= 4 * (overlap or plan.window) - 3
    streamed = torch.cat(parts)
    assert len(streamed) == plan.output_frames == num_frames
    assert sum(len(p) for p in parts[:-1]) == num_frames and len(parts[-1]) == 0
    assert torch.equal(streamed, blend_all(plan, decoded, overlap))
    assert torch.allclose(streamed, reference_video(plan, decoded, chunks))


def test_streaming_rejects_misuse():
    plan = plan_video(97)
    chunks = decode_chunks(plan)
    blender = StreamingBlender(plan)
    with pytest.raises(ValueError, match="order"):
        blender.push(chunks[1], fake_decode(chunks[1]))
    blender.push(chunks[0], fake_decode(chunks[0]))
    with pytest.raises(ValueError, match="order"):
        blender.push(chunks[2], fake_decode(chunks[2]))
    with pytest.raises(ValueError, match="frames"):
        blender.push(chunks[1], fake_decode(chunks[1])[:-1])
    with pytest.raises(ValueError, match="pushed"):
        blender.flush()  # the video would come out short
    for chunk in chunks[1:]:
        blender.push(chunk, fake_decode(chunk))
    assert blender.flush().shape == (0, 2, 2, 3)
    with pytest.raises(ValueError, match="already"):
        blender.push(chunks[0], fake_decode(chunks[0]))
    with pytest.raises(ValueError, match="decoded chunks"):
        blend_all(plan, [fake_decode(chunks[0])])


# -- starts left out of the output, and a continuation's seam -------------------------------------------------------

@pytest.mark.parametrize("num_frames,mode", [(30, "forward"), (97, "inverted"), (180, "forward")])
def test_a_blank_start_frame_is_never_output(num_frames, mode):
    plan = plan_video(num_frames, mode, start_in_output=False)
    frames = blend_all(plan, [fake_decode(c) for c in decode_chunks(plan)])
    assert len(frames) == num_frames
    assert frames[:, 0, 0, 0].tolist() == [true_frame(g) for g in kept_frame_indices(plan)]
    assert true_frame(0) not in frames[:, 0, 0, 0].tolist()


def seam_input(chunk, offset):
    """The input's frames the first chunk overlaps: generated frames first_frame .. 0 (input frames N-o .. N-1)."""
    values = torch.tensor([true_frame(g) + offset for g in range(chunk.first_frame, 1)])
    return values.view(-1, 1, 1, 1).expand(-1, 2, 2, 3).clone()


@pytest.mark.parametrize("lead,expected_context", [(19, 9), (9, 9), (3, 3), (1, 1)])
@pytest.mark.parametrize("emit_seam", [True, False])
def test_a_continuation_joins_its_input_like_a_section(lead, expected_context, emit_seam):
    """The first chunk decodes min(window, lead) of the input's latents as context and overlaps exactly the input's
    last 4c - 3 frames; when every decode agrees with the input, the join is seamless (true values throughout),
    the seam's input frames come first when kept, then exactly num_frames new frames."""
    plan = plan_video(61, "forward", start_in_output=False)
    chunks = decode_chunks(plan, lead_latents=lead, seam=True)
    first = chunks[0]
    assert first == DecodeChunk(1 - expected_context, plan.sections_in_time_order[0].latent_end,
                                4 * expected_context - 3)
    assert chunks[1:] == decode_chunks(plan)[1:]  # later sections join as always
    seam = seam_input(first, 0.0)
    assert len(seam) == first.overlap_frames
    blender = StreamingBlender(plan, lead_latents=lead, seam_frames=seam, emit_seam=emit_seam)
    out = torch.cat([blender.push(c, fake_decode(c)) for c in chunks] + [blender.flush()])
    new = [true_frame(g) for g in kept_frame_indices(plan)]
    seam_values = [true_frame(g) for g in range(first.first_frame, 1)] if emit_seam else []
    assert out[:, 0, 0, 0].tolist() == seam_values + new
    assert len(out) == blender.output_frames == 61 + (first.overlap_frames if emit_seam else 0)


def test_the_seam_cross_fades_from_the_input_to_the_decode():
    """Input frames weigh 1 at the seam's start and 0 at the input's last frame (the original's soft append with
    the input as the earlier video), so the first output frame is the input's own and the decode takes over."""
    plan = plan_video(61, "forward", start_in_output=False)
    chunks = decode_chunks(plan, lead_latents=19, seam=True)
    o = chunks[0].overlap_frames
    seam = torch.zeros(o, 1, 1, 1)
    decoded = [torch.ones(c.num_frames, 1, 1, 1) for c in chunks]
    blender = StreamingBlender(plan, lead_latents=19, seam_frames=seam)
    out = torch.cat([blender.push(c, f) for c, f in zip(chunks, decoded)])[:, 0, 0, 0]
    assert torch.allclose(out[:o], torch.linspace(0, 1, o)) and torch.all(out[o:] == 1)


def test_seam_misuse():
    plan = plan_video(61, "forward", start_in_output=False)
    with pytest.raises(ValueError, match="last 33 frames"):
        StreamingBlender(plan, lead_latents=19, seam_frames=torch.zeros(5, 1, 1, 1))
    with pytest.raises(ValueError, match="start_in_output"):
        StreamingBlender(plan_video(61), lead_latents=19, seam_frames=torch.zeros(33, 1, 1, 1))
    with pytest.raises(ValueError, match="lead_latents"):
        decode_chunks(plan, lead_latents=0)


def _gradient_and_checker(height: int = 128, width: int = 256) -> torch.Tensor:
    """uint8 [H, W, 3]: horizontal and vertical ramps and a 1-pixel checkerboard (what aliasing shows)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    checker = ((torch.arange(width)[None, :] + torch.arange(height)[:, None]) % 2).float()
    return (torch.stack([xx, yy, checker], -1) * 255).round().to(torch.uint8)


def test_resize_is_antialiased_bicubic_like_pil():
    """Found by the mutation run: no test fixed the filter. Against PIL's BICUBIC (antialiased on downscaling,
    pixel centres aligned), same aspect so the crop is the whole picture. Measured: downscaling 256x128 -> 90x45
    differs by at most 0.5/255 (PIL's rounding to 8 bits); without antialiasing 0.50, with align_corners 0.12.
    Upscaling to 400x200: mean 0.0011 (PyTorch's bicubic kernel is a little sharper than PIL's when enlarging);
    with align_corners 0.058."""
    import numpy as np
    from PIL import Image

    u8 = _gradient_and_checker()
    source = u8.float()[None] / 255

    def pil(width, height):
        return torch.from_numpy(np.array(Image.fromarray(u8.numpy()).resize((width, height), Image.BICUBIC))) / 255

    down = resize_and_center_crop(source, 90, 45)[0]
    assert (down - pil(90, 45)).abs().max() < 2 / 255
    up = resize_and_center_crop(source, 400, 200)[0]
    assert (up - pil(400, 200)).abs().mean() < 0.003
