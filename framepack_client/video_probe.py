"""Is a video to continue one the server can use? Probed here, before anything is uploaded or queued: its streams,
its size and frame rate, and how many frames it holds (counted by reading its packets, at most one more than the
server accepts, without decoding any picture). A file cut short (a download that stopped), a single frame and an
audio-only file are refused with the user's own name for the video.

The probe needs PyAV (``pip install av``; ComfyUI and the test environment have it). Without it the video is
checked by its first bytes only (framepack_client.media) and the server's LoadVideo finds the rest.
"""

from __future__ import annotations

from typing import BinaryIO

from framepack_core.limits import FPS, FPS_TOLERANCE, MAX_INPUT_FRAMES, MAX_INPUT_SIDE, MIN_INPUT_FRAMES

CUT_SHORT = "if it was cut short (a download or a copy that stopped), get it again; else re-encode it as MP4"


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.split(": '", 1)[0][:200]  # FFmpeg appends the name it was given, which is not the user's


def video_problem(data: BinaryIO, shown: str) -> str | None:
    """Why the video in ``data`` (an open binary file or a BytesIO, read from where it is) cannot be continued, or
    None (also when PyAV is not installed). ``shown`` names it in messages, as the user gave it. The file object is
    handed to FFmpeg as such, so no name is ever read as one of FFmpeg's protocols."""
    try:
        import av
    except ImportError:
        return None
    try:
        container = av.open(data, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as err:
        return f"{shown} is not a readable video ({_reason(err)}): {CUT_SHORT}"
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            return (f"{shown} has no video stream (it holds {', '.join(kinds)}): give a video file to continue "
                    "(MP4, WebM, MOV or MKV)")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not (0 < width <= MAX_INPUT_SIDE and 0 < height <= MAX_INPUT_SIDE):
            return (f"{shown} is {width}x{height}; a video to continue must be 1 to {MAX_INPUT_SIDE} pixels on a "
                    "side: scale it down first")
        fps = stream.average_rate
        if fps is None or abs(float(fps) - FPS) > FPS_TOLERANCE:
            rate = "no frame rate" if fps is None else f"{float(fps):.3g} fps"
            return (f"{shown} has {rate}; FramePack continues {FPS} fps videos only: convert it first, e.g. "
                    f"ffmpeg -i in.mp4 -r {FPS} out.mp4")
        promised, count = stream.frames, 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.is_corrupt:
                    return f"{shown} is damaged (frame {count + 1} is corrupt): {CUT_SHORT}"
                count += 1
                if count > MAX_INPUT_FRAMES:
                    return (f"{shown} has more than {MAX_INPUT_FRAMES} frames: cut it first, only its end matters for "
                            "the continuation")
        except (av.error.FFmpegError, OSError) as err:
            return f"{shown} is damaged after {count} frames ({_reason(err)}): {CUT_SHORT}"
    if promised and count < promised:
        return f"{shown} is cut short: its header promises {promised} frames, it holds {count}; {CUT_SHORT}"
    if count < MIN_INPUT_FRAMES:
        return (f"{shown} has {count} frame{'s' if count != 1 else ''}; a video to continue needs at least "
                f"{MIN_INPUT_FRAMES} (to start from one picture, give it as --image)")
    return None
