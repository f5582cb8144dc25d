"""FlowDenoiser: velocity -> x0 conversion, real CFG and CFG rescale."""

import pytest
import torch

from framepack_core.errors import InputError
from framepack_core.guidance import FlowDenoiser, rescale_guided_velocity
from framepack_core.samplers import sample_euler, sample_unipc
from framepack_core.schedule import sigma_schedule

SHAPE = (2, 4, 3, 5, 5)  # B, C, T, H, W


class FakeTransformer:
    """Velocity predictor with fixed, different outputs per branch; records every call."""

    def __init__(self, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.outputs = {"positive": torch.randn(SHAPE, generator=gen), "negative": 0.5 * torch.randn(SHAPE, generator=gen)}
        self.calls = []

    def __call__(self, x, timestep, branch):
        self.calls.append((branch, timestep.clone()))
        return self.outputs[branch].to(torch.bfloat16)  # like a bf16 transformer


def inputs(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=gen), torch.tensor([0.8, 0.3])


def per_sample(t):
    return t.reshape(-1, *([1] * (len(SHAPE) - 1)))


def test_cfg_one_calls_only_the_positive_branch():
    model = FakeTransformer()
    x, sigma = inputs()
    x0 = FlowDenoiser(model, cfg_scale=1.0)(x, sigma)
    assert [branch for branch, _ in model.calls] == ["positive"]
    v = model.outputs["positive"].to(torch.bfloat16).float()
    assert x0.dtype == torch.float32
    assert torch.allclose(x0, x - v * per_sample(sigma), atol=1e-6, rtol=0)


def test_timestep_is_sigma_times_1000_in_float32_per_sample():
    model = FakeTransformer()
    x, sigma = inputs()
    FlowDenoiser(model)(x, sigma)
    (_, timestep), = model.calls
    assert timestep.dtype == torch.float32 and timestep.shape == (2,)
    assert torch.allclose(timestep, torch.tensor([800.0, 300.0]))
    # A scalar sigma is broadcast over the batch.
    FlowDenoiser(model)(x, torch.tensor(0.25))
    assert torch.equal(model.calls[-1][1], torch.tensor([250.0, 250.0]))


def test_cfg_two_combines_both_branches():
    model = FakeTransformer()
    x, sigma = inputs()
    x0 = FlowDenoiser(model, cfg_scale=2.0)(x, sigma)
    assert sorted(branch for branch, _ in model.calls) == ["negative", "positive"]
    pos = model.outputs["positive"].to(torch.bfloat16).float()
    neg = model.outputs["negative"].to(torch.bfloat16).float()
    v = neg + 2.0 * (pos - neg)
    assert torch.allclose(x0, x - v * per_sample(sigma), atol=1e-6, rtol=0)


def test_settings_can_be_passed_positionally():
    denoiser = FlowDenoiser(FakeTransformer(), 3.0, 0.25)
    assert (denoiser.cfg_scale, denoiser.cfg_rescale, denoiser.uses_negative) == (3.0, 0.25, True)


def test_cfg_zero_is_the_negative_branch():
    model = FakeTransformer()
    x, sigma = inputs()
    v = FlowDenoiser(model, cfg_scale=0.0).velocity(x, sigma)
    assert torch.allclose(v, model.outputs["negative"].to(torch.bfloat16).float())


def reference_rescale(guided, positive, phi):
    # Lin et al. 2023, eq. 15-16, with torch's default (unbiased) std as in the original.
    dims = list(range(1, guided.ndim))
    rescaled = guided * positive.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return phi * rescaled + (1 - phi) * guided


@pytest.mark.parametrize("phi", [0.0, 0.3, 0.7, 1.0])
def test_rescale_matches_the_reference_formula(phi):
    model = FakeTransformer()
    x, sigma = inputs()
    v = FlowDenoiser(model, cfg_scale=5.0, cfg_rescale=phi).velocity(x, sigma)
    pos = model.outputs["positive"].to(torch.bfloat16).float()
    neg = model.outputs["negative"].to(torch.bfloat16).float()
    guided = neg + 5.0 * (pos - neg)
    assert torch.allclose(v, reference_rescale(guided, pos, phi), atol=1e-5, rtol=1e-6)


def test_full_rescale_restores_the_positive_std_per_sample():
    model = FakeTransformer()
    x, sigma = inputs()
    v = FlowDenoiser(model, cfg_scale=7.0, cfg_rescale=1.0).velocity(x, sigma)
    pos = model.outputs["positive"].to(torch.bfloat16).float()
    dims = list(range(1, len(SHAPE)))
    assert torch.allclose(v.std(dim=dims), pos.std(dim=dims), rtol=1e-5)
    guided = FlowDenoiser(model, cfg_scale=7.0).velocity(x, sigma)
    assert (guided.std(dim=dims) > 2 * pos.std(dim=dims)).all()  # without rescale CFG 7 inflates the scale


def test_rescale_is_a_no_op_without_real_cfg():
    model = FakeTransformer()
    x, sigma = inputs()
    a = FlowDenoiser(model, cfg_scale=1.0, cfg_rescale=1.0)(x, sigma)
    b = FlowDenoiser(model, cfg_scale=1.0)(x, sigma)
    assert torch.equal(a, b)
    assert all(branch == "positive" for branch, _ in model.calls)


def test_rescale_of_a_constant_velocity_stays_finite():
    guided = torch.ones(2, 3, 4)
    out = rescale_guided_velocity(guided, torch.randn(2, 3, 4), 0.5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs,word", [
    (dict(cfg_scale=-0.5), "cfg_scale"),
    (dict(cfg_scale=float("inf")), "cfg_scale"),
    (dict(cfg_rescale=-0.1), "cfg_rescale"),
    (dict(cfg_rescale=1.5), "cfg_rescale"),
    (dict(cfg_rescale=float("nan")), "cfg_rescale"),
])
def test_invalid_guidance_settings_raise_input_error(kwargs, word):
    with pytest.raises(InputError, match=word):
        FlowDenoiser(FakeTransformer(), **kwargs)


def test_sigma_with_the_wrong_batch_size_is_rejected():
    x, _ = inputs()
    with pytest.raises(InputError, match="sigma"):
        FlowDenoiser(FakeTransformer())(x, torch.tensor([0.5, 0.5, 0.5]))


@pytest.mark.parametrize("cfg_scale,expected_calls", [(1.0, 6), (2.0, 12)])
@pytest.mark.parametrize("sampler", [sample_unipc, sample_euler])
def test_sampling_through_the_denoiser(sampler, cfg_scale, expected_calls):
    # v = (x - c) / sigma is the flow towards the constant c in both branches, so any CFG scale gives c.
    c = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    calls = []

    def predict_velocity(x, timestep, branch):
        calls.append(branch)
        return (x - c) / per_sample(timestep / 1000.0)

    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    out = sampler(FlowDenoiser(predict_velocity, cfg_scale=cfg_scale), noise, sigma_schedule(6, shift=7.0))
    assert len(calls) == expected_calls
    assert (out - c).abs().max().item() <= 1e-5
