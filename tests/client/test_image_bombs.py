"""Images whose first header is harmless and whose other frames are not (issue 21, item 1): the client refuses them
before uploading, the service (framepack_client.fetch.load_image, what its intake calls) before storing, both from
the headers, before Pillow decodes anything. Bombs at the real limits, a few hundred bytes each
(framepack_dev.bombs); tests/core/test_image_header.py checks the walk against what Pillow builds."""

from __future__ import annotations

import base64

import pytest
from PIL import Image

from framepack_client import fetch
from framepack_client.hosted import HostedParams, ValidationError
from framepack_client.images import ImageProblem, check_image
from framepack_core.limits import MAX_IMAGE_FRAMES
from framepack_dev.bombs import animation, gif_with_hidden_frame


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decode by Pillow fails the test: the refusal must come from the headers."""
    def refuse(*args, **kwargs):
        raise AssertionError("Pillow was asked to open the file before its headers were checked")

    monkeypatch.setattr(Image, "open", refuse)


def data_uri(data: bytes) -> str:
    return "data:image/gif;base64," + base64.b64encode(data).decode()


def test_a_huge_frame_behind_a_1x1_header_is_refused_before_decoding(no_decoding, tmp_path):
    bomb = gif_with_hidden_frame((8000, 8000))  # 88 bytes; header and first frame 1x1
    with pytest.raises(ImageProblem, match="8000x8000 pixels in its frame 2; the limit is 8192 pixels per side and "
                                           "36000000 pixels in all"):
        check_image(bomb)
    path = tmp_path / "bomb.gif"
    path.write_bytes(bomb)
    with pytest.raises(ValidationError, match="bomb.gif.*8000x8000 pixels in its frame 2"):
        HostedParams.from_mapping({"image": str(path), "prompt": "p"})
    with pytest.raises(fetch.FetchError, match="8000x8000 pixels in its frame 2"):
        fetch.load_image(data_uri(bomb), fetch.UrlPolicy())


def test_too_many_frames_are_refused_before_decoding(no_decoding):
    many = gif_with_hidden_frame((1, 1), count=MAX_IMAGE_FRAMES + 1)
    with pytest.raises(ImageProblem, match=f"more than {MAX_IMAGE_FRAMES} frames; FramePack uses the first frame"):
        check_image(many)
    with pytest.raises(fetch.FetchError, match=f"more than {MAX_IMAGE_FRAMES} frames"):
        fetch.load_image(data_uri(many), fetch.UrlPolicy())


def test_an_animation_within_the_limits_is_accepted_and_one_beyond_them_is_not():
    small = animation("GIF", 5, (40, 30))
    assert check_image(small) == "gif"
    assert fetch.load_image(data_uri(small), fetch.UrlPolicy()) == (small, "gif")
    assert check_image(animation("PNG", 3, (40, 30))) == "png"
    # 60 frames of 1024 x 1024 (the 0.75 GB in ComfyUI) hold 63 million pixels: over the 36 million of all
    # frames together; 6 such frames at 320 x 320 show it without a big file
    with pytest.raises(ImageProblem, match="frames decode to .* pixels in all; the limit for all frames together is 300000"):
        check_image(animation("PNG", 6, (320, 320)), max_all_pixels=300_000)
