"""Sigma schedule: the original's Flux time shift with mu capped at ln 7."""

import math

import pytest
import torch

from framepack_core.errors import InputError
from framepack_core.schedule import flux_mu, resolve_shift, seq_len_for_latents, sigma_schedule

# The original's 640 resolution buckets (height, width), bucket_tools.py.
BUCKETS_640 = [(416, 960), (448, 864), (480, 832), (512, 768), (544, 704), (576, 672), (608, 640),
               (640, 608), (672, 576), (704, 544), (768, 512), (832, 480), (864, 448), (960, 416)]
WINDOW_LATENT_FRAMES = 9  # latent_window_size 9 -> 33 video frames -> (33 + 3) // 4 latent frames


def closed_form(steps: int, mu: float) -> torch.Tensor:
    """The original's form e^mu / (e^mu + (1/t - 1)), evaluated independently in float64 on interior points."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    inner = math.exp(mu) / (math.exp(mu) + (1.0 / t[1:-1] - 1.0))
    return torch.cat([torch.ones(1, dtype=torch.float64), inner, torch.zeros(1, dtype=torch.float64)])


def test_flux_mu_passes_through_the_anchor_points():
    assert flux_mu(256) == pytest.approx(0.5, abs=1e-12)
    assert flux_mu(4096) == pytest.approx(1.15, abs=1e-12)
    assert flux_mu(2176) == pytest.approx(0.825, abs=1e-12)  # midpoint


def test_seq_len_matches_the_original_token_count():
    # The original's comment: 640 x 640 x 33 frames -> 80 x 80 x 9 latents -> 14400 tokens.
    assert seq_len_for_latents(9, 80, 80) == 14400
    assert seq_len_for_latents(1, 3, 3) == 2  # integer division, like the original


@pytest.mark.parametrize("steps", [1, 2, 7, 25, 100])
@pytest.mark.parametrize("kwargs", [dict(shift=7.0), dict(shift=0.5), dict(seq_len=300), dict(seq_len=14040)])
def test_endpoints_exact_and_strictly_decreasing(steps, kwargs):
    sigmas = sigma_schedule(steps, **kwargs)
    assert sigmas.dtype == torch.float32
    assert sigmas.shape == (steps + 1,)
    assert sigmas[0].item() == 1.0
    assert sigmas[-1].item() == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


@pytest.mark.parametrize("steps", [3, 25, 40])
@pytest.mark.parametrize("seq_len", [64, 256, 1000, 4096, 8000])
def test_uncapped_schedule_matches_closed_form(steps, seq_len):
    mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (seq_len - 256)
    assert mu < math.log(7.0)
    expected = closed_form(steps, mu)
    assert torch.allclose(sigma_schedule(steps, seq_len=seq_len).double(), expected, atol=1e-7, rtol=0)


def test_cap_gives_shift_seven_for_a_14k_token_window():
    seq_len = seq_len_for_latents(WINDOW_LATENT_FRAMES, 640 // 8, 640 // 8)
    assert flux_mu(seq_len) > math.log(7.0)  # the uncapped rule would shift much harder
    assert resolve_shift(seq_len=seq_len) == 7.0
    expected = closed_form(25, math.log(7.0))
    got = sigma_schedule(25, seq_len=seq_len)
    assert torch.allclose(got.double(), expected, atol=1e-7, rtol=0)
    assert torch.equal(got, sigma_schedule(25, shift=7.0))
    # The original's 25-step values for shift 7 (documented in the research notes): .9941, .9877, ..., .2258.
    assert got[1].item() == pytest.approx(0.9941, abs=1e-4)
    assert got[-2].item() == pytest.approx(0.2258, abs=1e-4)


@pytest.mark.parametrize("height,width", BUCKETS_640)
def test_every_640_bucket_is_capped_at_shift_seven(height, width):
    seq_len = seq_len_for_latents(WINDOW_LATENT_FRAMES, height // 8, width // 8)
    assert 13_000 < seq_len < 14_500
    assert resolve_shift(seq_len=seq_len) == 7.0


def test_max_shift_changes_the_cap():
    assert resolve_shift(seq_len=14040, max_shift=3.0) == 3.0
    assert resolve_shift(seq_len=14040, max_shift=100.0) == pytest.approx(math.exp(flux_mu(14040)))


def test_explicit_shift_overrides_seq_len():
    got = sigma_schedule(10, seq_len=14040, shift=3.0)
    assert torch.allclose(got.double(), closed_form(10, math.log(3.0)), atol=1e-7, rtol=0)
    assert not torch.allclose(got, sigma_schedule(10, seq_len=14040))


def test_shift_one_is_the_plain_linear_schedule():
    assert torch.allclose(sigma_schedule(8, shift=1.0), torch.linspace(1, 0, 9), atol=1e-7, rtol=0)


@pytest.mark.parametrize("args,kwargs,word", [
    ((0,), dict(shift=7.0), "steps"),
    ((2.5,), dict(shift=7.0), "steps"),
    ((10,), dict(shift=0.0), "shift"),
    ((10,), dict(shift=-1.0), "shift"),
    ((10,), dict(shift=float("nan")), "shift"),
    ((10,), dict(), "seq_len"),
    ((10,), dict(seq_len=0), "seq_len"),
    ((10,), dict(seq_len=1000, max_shift=0.0), "max_shift"),
])
def test_invalid_arguments_raise_input_error_naming_the_parameter(args, kwargs, word):
    with pytest.raises(InputError, match=word):
        sigma_schedule(*args, **kwargs)


def test_seq_len_for_latents_rejects_empty_latents():
    with pytest.raises(InputError, match="latent_height"):
        seq_len_for_latents(9, 0, 80)
