"""Input videos that cost more than their header or their file size says (issue 21, item 2): a header naming a
smaller size than the frames, a frame of another size in the middle, too many pixels x frames, and a large input
fitted to the output size inside the decoder (no frame converted at the input's size, none before the tail).
Small files with the limits made small for the test; bench/media_bombs.py measures the memory at full size."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from framepack_core import video_input
from framepack_core.errors import InputError
from framepack_core.frames import resize_and_center_crop
from framepack_core.video_input import Fitted, VideoFile
from framepack_dev.bombs import declare_size, flat_video
from framepack_dev.videos import moving_frames, write_video


@pytest.mark.parametrize("codec,refusal", [
    # H.264 carries its real size in the sample entry's SPS: FFmpeg reports it at open, without decoding a frame
    ("libx264", "is 256x192; input videos may have at most 8192 pixels a side and 16384 pixels a frame"),
    # PNG frames carry it only in themselves: probing decodes one, which the decoder's own limit refuses to build
    ("png", "gives no frame size within the limits .*16384 pixels a frame"),
])
def test_frames_larger_than_the_header_says_are_refused_before_they_are_built(tmp_path, monkeypatch, codec, refusal):
    """The issue's MOV (header 64x64, frames 16000x16000) at 16x16 over 256x192, with the frame cap at 128x128."""
    path = declare_size(flat_video(tmp_path / f"lying_{codec}.mov", 256, 192, 3, codec=codec, container="mov"),
                        16, 16)
    monkeypatch.setattr(video_input, "MAX_INPUT_FRAME_PIXELS", 128 * 128)
    with pytest.raises(InputError, match=refusal):
        VideoFile(str(path))
    monkeypatch.setattr(video_input, "MAX_INPUT_FRAME_PIXELS", 256 * 192)
    assert (VideoFile(str(path)).width, VideoFile(str(path)).height) == (256, 192)


def test_the_decoder_refuses_a_frame_over_the_limit_that_the_probe_did_not_see(tmp_path, monkeypatch):
    """A frame of another size in the middle of a stream: over the pixel cap, the decoder refuses it; within the
    cap, the size check refuses it before it is converted."""
    path = _spliced(tmp_path / "spliced.mov", (48, 32), (96, 64), at=5)
    monkeypatch.setattr(video_input, "MAX_INPUT_FRAME_PIXELS", 64 * 48)
    with pytest.raises(InputError, match="cannot be decoded .*a frame over the limits"):
        VideoFile(str(path))
    monkeypatch.setattr(video_input, "MAX_INPUT_FRAME_PIXELS", 2 * 96 * 64)  # FFmpeg counts its aligned buffer
    with pytest.raises(InputError, match=r"changes size at frame 5 \(96x64, 48x32 before\).*scale=48:32"):
        VideoFile(str(path))


def test_pixels_times_frames_are_bounded(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mov", moving_frames(20, 32, 48), 48, 32)
    monkeypatch.setattr(video_input, "MAX_INPUT_PIXEL_FRAMES", 48 * 32 * 19)
    with pytest.raises(InputError, match=r"more than 19 frames of 48x32; at that size at most 19 can be continued "
                                         r"\(an input may hold 29184 pixels x frames\)"):
        VideoFile(str(path))
    monkeypatch.setattr(video_input, "MAX_INPUT_PIXEL_FRAMES", 48 * 32 * 20)
    assert VideoFile(str(path)).frames == 20


def test_a_large_input_is_fitted_in_the_decoder_and_only_its_tail_is_converted(tmp_path, monkeypatch):
    frames = list(moving_frames(20, 192, 256, seed=3))
    path = write_video(tmp_path / "large.mov", frames, 256, 192)
    converted = []
    original = VideoFile._convert

    def record(frame, fit):
        array = original(frame, fit)
        converted.append(array.shape)
        return array

    monkeypatch.setattr(VideoFile, "_convert", staticmethod(record))
    fitted = Fitted(VideoFile(str(path)), 64, 32)
    tail = fitted.read_tail(9)
    assert converted == [(32, 64, 3)] * 9  # 11 frames decoded and skipped, none converted at 256x192
    whole = torch.cat(list(fitted.iter_rgb24()))
    assert torch.equal(whole[-9:], tail) and len(converted) == 9 + 20
    # the same picture as the image rule on the full frames (FFmpeg's bicubic vs torch's antialiased bicubic)
    reference = resize_and_center_crop(torch.from_numpy(np.stack(frames)).float() / 255, 64, 32) * 255
    difference = (whole.float() - reference).abs()
    assert difference.mean() < 1.0 and torch.quantile(difference.flatten(), 0.99) < 4, difference.mean()
    same = Fitted(VideoFile(str(path)), 256, 192)  # no fit at the input's size: exactly as decoded
    assert np.array_equal(torch.cat(list(same.iter_rgb24())).numpy(), np.stack(frames))


def _spliced(path, size, other, at: int, count: int = 8):
    """A PNG-in-MOV stream of `count` frames of `size` whose frame `at` is `other` pixels (a packet from another
    encoder): the container and the first frames say `size`."""
    with av.open(str(path), "w", format="mov") as out:
        stream = out.add_stream("png", rate=30)
        stream.width, stream.height, stream.pix_fmt = *size, "rgb24"
        odd = av.CodecContext.create("png", "w")
        odd.width, odd.height, odd.pix_fmt, odd.time_base = *other, "rgb24", Fraction(1, 30)
        for i in range(count):
            width, height = other if i == at else size
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in (odd if i == at else stream).encode(frame):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 30)
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
