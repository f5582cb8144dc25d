"""Uploads: the images and the video a job starts from, read from a local file, an http(s) URL (fetched under a
URL policy: framepack_client.fetch) or a data: URI, checked, and stored in the ComfyUI server's input folder under a
name made from their content.

Images are checked from their header (framepack_client.images) and videos from their first bytes
(framepack_client.media) and a probe of their streams and frames (framepack_client.video_probe) before anything is
sent; a local file's size is checked before it is read.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

from framepack_core.limits import MAX_IMAGE_BYTES, MAX_VIDEO_BYTES

from .errors import ComfyHTTPError, JobError
from .fetch import FetchError, UrlPolicy, is_image_source, load_source, short
from .images import ImageProblem, check_image
from .media import check_media_bytes
from .server_api import ComfyClient
from .video_probe import video_problem

# The user's own image URLs: any address (a server on the user's network is fine), but never a redirect from a
# public server into the local network or from https to http (fetch.py).
IMAGE_FETCH_SECONDS = 60.0
CLIENT_URL_POLICY = UrlPolicy(allow_private=True, timeout=IMAGE_FETCH_SECONDS, max_bytes=MAX_IMAGE_BYTES,
                              user_agent="framepack-client", name_addresses=True)
# For parameter files made by someone else (--untrusted-input): only public addresses.
UNTRUSTED_URL_POLICY = UrlPolicy(allow_private=False, timeout=IMAGE_FETCH_SECONDS, max_bytes=MAX_IMAGE_BYTES,
                                 user_agent="framepack-client", name_addresses=True,
                                 allow_hint="an --untrusted-input request may only name public addresses")
VIDEO_FETCH_SECONDS = 600.0  # a video to continue may be hundreds of MB


def video_policy(policy: UrlPolicy) -> UrlPolicy:
    """The same address and redirect rules for a video URL, with the video's byte cap and a longer deadline."""
    return replace(policy, max_bytes=MAX_VIDEO_BYTES, timeout=max(policy.timeout, VIDEO_FETCH_SECONDS),
                   accept="video/*")


def _read_source(source: str, what: str, policy: UrlPolicy, max_bytes: int, smaller: str) -> tuple[bytes, str]:
    """(bytes, how to name the source in messages) of a local file, an http(s) URL fetched under ``policy`` or a
    data: URI, at most ``max_bytes`` (a local file is measured before it is read); unchecked."""
    if is_image_source(source):  # http(s) or data:
        shown = "the data: URI" if source[:5].lower() == "data:" else short(source)
        try:
            return load_source(source, policy), shown
        except FetchError as err:
            raise JobError(f"could not use {shown}: {err}; check the URL or download the {what} yourself and pass "
                           "the file") from err
    path = Path(source).expanduser()
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise JobError(f"the {what} {source} is {size} bytes; the limit is {max_bytes} bytes: pass {smaller}")
        return path.read_bytes(), source
    except OSError as err:
        raise JobError(f"cannot read the {what} {source}: {err.strerror}") from err


def _read_image(source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> tuple[bytes, str]:
    """(bytes, file suffix) of a local image, an http(s) URL (fetched under ``policy``) or a data: URI, checked to
    be an image within the size limits (from its header, before anything is uploaded)."""
    data, shown = _read_source(source, "image", policy, MAX_IMAGE_BYTES, "a smaller image")
    try:
        kind = check_image(data)
    except ImageProblem as err:
        raise JobError(f"{shown}: {err}") from err
    return data, "." + ("jpg" if kind == "jpeg" else kind)


def upload_image(client: ComfyClient, source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> str:
    """Uploads an image into the server's input folder under a name made from its content (the same image is
    stored once); returns the name for LoadImage.

    Never overwrite: a queued or running job may be reading that very file, and rewriting it truncates it first.
    Without overwrite the server keeps an identical file as it is and gives another name to a different one.
    """
    data, suffix = _read_image(source, policy)
    name = f"framepack_client_{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    return client.upload_image(data, name=name, overwrite=False)


def _read_video(source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> tuple[bytes, str]:
    """(bytes, container) of a local video, an http(s) URL (fetched under :func:`video_policy` of ``policy``: the
    image URLs' address and redirect rules) or a data: URI, checked by its first bytes to be a video, then probed."""
    data, shown = _read_source(source, "video", video_policy(policy), MAX_VIDEO_BYTES,
                               "a shorter video (only its end is used as context)")
    problem, kind = check_media_bytes("video", data, shown, "video")
    problem = problem or video_problem(io.BytesIO(data), f"video {shown}")
    if problem:
        raise JobError(problem)
    return data, kind


def upload_video(client: ComfyClient, source: str, policy: UrlPolicy = CLIENT_URL_POLICY) -> str:
    """Uploads a video to continue like upload_image (same endpoint, content-named, never overwritten); returns
    the name for LoadVideo. Its URL is fetched under the image URLs' rules with the video's byte cap."""
    data, kind = _read_video(source, policy)
    name = f"framepack_client_{hashlib.sha256(data).hexdigest()[:16]}.{kind}"
    try:
        return client.upload_image(data, name=name, overwrite=False)
    except ComfyHTTPError as err:
        if err.status == 413:
            raise JobError(f"the server refused the {len(data) >> 20} MiB video as too large: start ComfyUI with a "
                           "larger --max-upload-size (in MB), or shorten the video (only its end matters)") from err
        raise
