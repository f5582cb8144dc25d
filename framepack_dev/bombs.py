"""Image and video files that cost far more to decode than their size or header says, for tests and benchmarks
(issue 21): a GIF whose header declares 1 x 1 pixels with a huge frame, animations, and videos whose container
header names a smaller size than their frames. Made with Pillow and PyAV at the sizes asked for."""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

GIF_TRAILER = b"\x3b"


def _gif(frames: list, **options) -> bytes:
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=len(frames) > 1, append_images=frames[1:], **options)
    return out.getvalue()


def _descriptors(data: bytes) -> list[int]:
    """Offsets of a Pillow-written GIF's image descriptors (Pillow writes no junk, so 0x2C after a block is one)."""
    found, pos = [], 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:
            pos += 2
        else:
            found.append(pos)
            flags = data[pos + 9]
            pos += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        while data[pos]:
            pos += 1 + data[pos]
        pos += 1
    return found


def gif_declaring(canvas: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A real one-colour GIF of ``frame`` pixels whose header (logical screen) declares ``canvas``: Pillow grows the
    canvas to the frame. Encoding it holds the frame in memory once (8000 x 8000: 64 MB; the file is ~50 KB)."""
    from PIL import Image

    data = bytearray(_gif([Image.new("P", frame, 1)]))
    data[6:10] = struct.pack("<HH", *canvas)
    return bytes(data)


def gif_with_hidden_frame(frame: tuple[int, int], count: int = 2) -> bytes:
    """A GIF of ``count`` 1 x 1 frames whose header and first frame are 1 x 1 and whose last frame's descriptor says
    ``frame``; only headers are real (the last frame's data is that of a 1 x 1 frame). A few hundred bytes: for
    checks that must refuse it from its headers, before anything decodes it."""
    from PIL import Image

    frames = [Image.new("RGB", (1, 1), (255 * i, 0, 0)) for i in range(2)]
    data = bytearray(_gif(frames, duration=40, disposal=1))
    first, second = _descriptors(bytes(data))
    block = bytes(data[second - 8:len(data) - 1])  # the second frame with its graphic control extension
    assert block[:2] == b"\x21\xf9", "Pillow wrote no graphic control extension before the frame"
    body = bytes(data[:second - 8]) + block * (count - 1)
    last = len(body) - len(block) + 8
    return body[:last + 5] + struct.pack("<HH", *frame) + body[last + 9:] + GIF_TRAILER


def animation(fmt: str, count: int, size: tuple[int, int]) -> bytes:
    """``count`` distinct frames of ``size`` as an animated GIF, PNG (APNG) or WEBP."""
    from PIL import Image

    frames = [Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, 128)) for i in range(count)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


def flat_video(path: str | Path, width: int, height: int, frames: int, codec: str = "libx264",
               container: str = "mp4") -> Path:
    """A video of one flat colour: tiny files at any size (a 2048 x 2048, 30-frame H.264 MP4 is ~30 KB)."""
    import av

    path = Path(path)
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=30)
        stream.time_base = Fraction(1, 30)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24" if codec == "png" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "30", "preset": "ultrafast"}
        picture = av.VideoFrame(width, height, stream.pix_fmt)
        for plane in picture.planes:
            plane.update(bytes([100]) * plane.buffer_size)
        for index in range(frames):
            picture.pts = index  # in the stream's 1/30 s time base
            for packet in stream.encode(picture):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def declare_size(path: str | Path, width: int, height: int) -> Path:
    """Rewrites a MOV/MP4's header sizes (the track header and the video sample entry) to width x height, leaving
    the coded frames as they are: a file whose header lies about its frames' size."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    track = data.find(b"tkhd")
    end = track - 4 + struct.unpack(">I", data[track - 4:track])[0]
    data[end - 8:end] = struct.pack(">II", width << 16, height << 16)
    for entry in (b"avc1", b"png ", b"mp4v"):
        at = data.find(entry)
        if at > 0:
            data[at + 28:at + 32] = struct.pack(">HH", width, height)
    path.write_bytes(bytes(data))
    return path
