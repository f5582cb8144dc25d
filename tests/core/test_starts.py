"""starts.py: which input frames a continuation encodes, which latents it keeps, and the text-to-video blanks."""

import pytest
import torch

from framepack_core.errors import InputError
from framepack_core.generate import CONTEXT_LATENTS
from framepack_core.limits import MAX_CONTEXT_LATENTS, MAX_INPUT_FRAMES, MIN_INPUT_FRAMES
from framepack_core.starts import Continuation, blank_image, history_from_encoding, initial_context, tail_frames


def test_the_context_limit_is_the_section_loops_history():
    assert MAX_CONTEXT_LATENTS == CONTEXT_LATENTS == 19


def _reference_tail(n, context):
    """Brute force: the longest tail of 4m + 1 frames (a causal VAE's whole latents ending on the last frame)
    whose latents beyond the first number at most `context`."""
    return max(t for t in range(1, n + 1) if t % 4 == 1 and (t - 1) // 4 <= context)


@pytest.mark.parametrize("context", [1, 2, 5, 18, 19])
def test_tail_frames_and_kept_latents(context):
    for n in list(range(MIN_INPUT_FRAMES, 120)) + [1800, MAX_INPUT_FRAMES]:
        t = tail_frames(n, context)
        assert t == _reference_tail(n, context)
        encoded = torch.arange((t - 1) // 4 + 1, dtype=torch.float32).view(1, 1, -1, 1, 1)  # latent i holds i
        kept = history_from_encoding(encoded, context)
        # all of a short input's latents; a long one's last `context`, the image-like first one dropped
        assert kept.flatten().tolist() == list(range(max(0, encoded.shape[2] - context), encoded.shape[2]))
    assert tail_frames(1800) == 77 and tail_frames(45) == 45 and tail_frames(48) == 45 and tail_frames(5) == 5


@pytest.mark.parametrize("frames", [0, 1, 4, MAX_INPUT_FRAMES + 1])
def test_input_length_is_bounded(frames):
    with pytest.raises(InputError, match=r"frame"):
        tail_frames(frames)


def test_context_latents_range_and_history_shape():
    with pytest.raises(InputError, match="context_latents"):
        tail_frames(100, 20)
    for bad in (torch.zeros(1, 16, 0, 2, 2), torch.zeros(1, 16, 20, 2, 2), torch.zeros(1, 4, 3, 2, 2)):
        with pytest.raises(InputError, match="history latents"):
            Continuation(bad, input_frames=100)
    with pytest.raises(InputError, match="at least 5"):
        Continuation(torch.zeros(1, 16, 1, 2, 2), input_frames=3)


def test_initial_context():
    start = torch.full((1, 16, 1, 2, 3), 7.0)
    history = torch.randn(1, 16, 4, 2, 3)
    assert not initial_context("inverted", start, Continuation(history, 17), 19).any()
    plain = initial_context("forward", start, None, 19)
    assert torch.equal(plain[:, :, -1:], start) and not plain[:, :, :-1].any()
    cont = initial_context("forward", start, Continuation(history, 17), 19)
    assert torch.equal(cont[:, :, -4:], history) and not cont[:, :, :-4].any() and cont.shape[2] == 19


def test_blank_images():
    for kind, value in (("black", 0.0), ("white", 1.0), ("grey", 0.5)):
        image = blank_image(kind, 8, 12)
        assert image.shape == (1, 8, 12, 3) and torch.all(image == value)
    noise = blank_image("noise", 8, 12, seed=3)
    assert torch.equal(noise, blank_image("noise", 8, 12, seed=3))
    assert not torch.equal(noise, blank_image("noise", 8, 12, seed=4))
    assert 0 <= noise.min() and noise.max() <= 1 and noise.std() > 0.2
    with pytest.raises(InputError, match="black, white, grey, noise"):
        blank_image("green", 8, 8)


def test_noise_blank_is_one_rgb_picture_seeded_from_zero_by_default():
    """Found by the mutation run: the noise start's shape and default seed were never checked."""
    noise = blank_image("noise", 24, 40)
    assert noise.shape == (1, 24, 40, 3) and 0 <= noise.min() and noise.max() < 1
    assert torch.equal(noise, blank_image("noise", 24, 40, seed=0))
    assert not torch.equal(noise, blank_image("noise", 24, 40, seed=1))
    assert torch.equal(noise, torch.rand((1, 24, 40, 3), generator=torch.Generator("cpu").manual_seed(0)))


@pytest.mark.parametrize("shape", [(1, 16, 3, 4), (2, 16, 3, 4, 4), (1, 15, 3, 4, 4), (1, 16, 0, 4, 4),
                                   (1, 16, 20, 4, 4)])
def test_continuation_refuses_history_of_another_shape(shape):
    with pytest.raises(InputError, match=r"history latents must be \[1, 16, 1\.\.\.19, h, w\]"):
        Continuation(torch.zeros(shape), 100)
    Continuation(torch.zeros(1, 16, 19, 4, 4), 100)
