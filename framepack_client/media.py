"""Is a source given for an image or a video usable, before anything is sent to a server? The checks are local and
cheap: a URL or a data: URI is checked for form only (it is fetched when the job is queued, under a URL policy:
framepack_client.fetch); a local file is read and checked, an image in full (framepack_client.images: kind and size
from its header), a video from its first bytes, then probed (framepack_client.video_probe: streams, size, rate and
frame count). A video given where an image is expected, and the reverse, say
which parameter takes it."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from framepack_core.limits import MAX_IMAGE_BYTES, MAX_VIDEO_BYTES

from .images import IMAGE_KINDS, ImageProblem, check_image, sniff_image_kind
from .video_probe import video_problem

VIDEO_KINDS = "MP4, MOV, WebM, MKV or AVI"  # containers ComfyUI's LoadVideo (PyAV) reads
MAX_BYTES = {"image": MAX_IMAGE_BYTES, "video": MAX_VIDEO_BYTES}


def is_url(text: str) -> bool:
    """http(s) URLs are downloaded by the client; anything else is a data: URI or a local path."""
    return text.lower().startswith(("http://", "https://"))


def is_data_uri(text: str) -> bool:
    return text[:5].lower() == "data:"


def sniff_video_kind(head: bytes) -> str | None:
    """The video container from a file's first bytes (MP4/MOV, Matroska/WebM, AVI), or None."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "mov" if head[8:10] == b"qt" else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def _kinds(kind: str) -> str:
    return f"{IMAGE_KINDS} image" if kind == "image" else f"{VIDEO_KINDS} video"


def media_problem(name: str, head: bytes, where: str, kind: str) -> str | None:
    """Why the first bytes of a file (named `where`) are not a `kind` ("image" or "video"), or None; a video
    given as an image and the reverse say which parameter takes it. For an image this is the kind only:
    :func:`check_media_bytes` checks the rest."""
    image, video = sniff_image_kind(head), sniff_video_kind(head)
    if kind == "image" and image is None:
        if video:
            return f"{name} {where} is a video ({video}), not an image: to continue it give it as video (--video)"
        return f"{name} {where} is not a {IMAGE_KINDS} image; convert it to PNG or JPEG"
    if kind == "video" and video is None:
        if image:
            return (f"{name} {where} is a {image.upper()} image, not a video: to start from it give it as image "
                    "(--image)")
        return f"{name} {where} is not a {VIDEO_KINDS} video; convert it to MP4"
    return None


def check_media_bytes(name: str, data: bytes, where: str, kind: str) -> tuple[str | None, str | None]:
    """(problem, None) or (None, format) for the bytes of a `kind` source: an image must pass
    :func:`framepack_client.images.check_image` (size from the header, then decoded where Pillow is installed); a
    video is known by its first bytes (the server's LoadVideo decodes it and says what is wrong with it)."""
    if not data:
        return f"{name} {where} is empty; give a {_kinds(kind)}", None
    problem = media_problem(name, data[:16], where, kind)
    if problem:
        return problem, None
    if kind == "video":
        return None, sniff_video_kind(data[:16])
    try:
        return None, check_image(data)
    except ImageProblem as err:
        return f"{name} {where}: {err}", None


def check_media_source(name: str, value: Any, kind: str = "image", local_files: bool = True) -> str | None:
    """Why `value` is not a usable `kind` ("image" or "video") source, or None: an http(s) URL or a data: URI
    (checked for form), or, with `local_files`, a readable local file within the size cap whose content is that
    kind. Without `local_files` (input made by someone else) local paths are refused."""
    article = "an" if kind == "image" else "a"
    if not isinstance(value, str) or not value.strip():
        what = "a file path, an http(s) URL or a data: URI" if local_files else "an http(s) URL or a data: URI"
        return f"{name} must be {what} of {article} {kind}, got {str(value)[:60]!r}"
    if is_url(value):
        if not urllib.parse.urlsplit(value).netloc:
            return f"{name} URL {value[:120]!r} has no host; give a full http(s)://host/path URL"
        return None
    if is_data_uri(value):
        return None if "," in value[:256] else \
            f"{name}: a data: URI needs a comma before its data (data:{kind}/...;base64,...)"
    if not local_files:
        return (f"{name} must be an http(s) URL or a data: URI of {article} {kind} (data:{kind}/...;base64,...); "
                f"local file paths are not accepted from this source, got {value[:60]!r}")
    if "://" in value:
        return f"{name} {value[:120]!r}: only local files and http(s) URLs (and data: URIs) are supported"
    path = Path(value).expanduser()
    if not path.exists():
        return f"{name} file {str(path)!r} does not exist; check the path (relative paths start at the current folder)"
    if not path.is_file():
        return f"{name} {str(path)!r} is not a file; give the path of a {_kinds(kind)}"
    limit = MAX_BYTES[kind]
    try:
        size = path.stat().st_size
        if size > limit:
            return f"{name} file {str(path)!r} is {size} bytes; the limit is {limit} bytes"
        with open(path, "rb") as f:
            data = f.read() if kind == "image" else f.read(16)  # a video is checked by its first bytes only
    except OSError as err:
        return f"{name} file {str(path)!r} cannot be read ({err.strerror}); check its permissions"
    where = f"file {str(path)!r}"
    problem = check_media_bytes(name, data, where, kind)[0]
    if problem or kind == "image":
        return problem
    try:  # the video's streams, size, rate and frames, before it is uploaded (framepack_client.video_probe)
        with open(path, "rb") as f:
            return video_problem(f, f"{name} {where}")
    except OSError as err:
        return f"{name} {where} cannot be read ({err.strerror}); check its permissions"
