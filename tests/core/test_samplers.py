"""Samplers: exactness on a constant x0 field, accuracy against the analytic flow of a Gaussian, a hand-derived
UniPC trajectory, hooks and registry."""

import math

import pytest
import torch

from framepack_core.errors import InputError, Interrupted
from framepack_core.samplers import SAMPLERS, _phi, get_sampler, sample_euler, sample_unipc
from framepack_core.schedule import sigma_schedule

F64 = torch.float64
ALL_SAMPLERS = sorted(SAMPLERS)


def run(name, model_fn, noise, sigmas, **kwargs):
    return get_sampler(name)(model_fn, noise, sigmas, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Constant x0 prediction: the flow field v = (x - c) / sigma is linear in x and every sampler is exact.


@pytest.mark.parametrize("name", ALL_SAMPLERS)
@pytest.mark.parametrize("steps", [1, 2, 3, 25])
def test_constant_x0_is_reproduced_along_the_exact_trajectory(name, steps):
    gen = torch.Generator().manual_seed(1)
    c = torch.randn(2, 3, 4, generator=gen, dtype=F64)
    noise = torch.randn(2, 3, 4, generator=gen, dtype=F64)
    sigmas = sigma_schedule(steps, shift=7.0).to(F64)
    seen = []

    def callback(step, total, x, x0):
        seen.append((step, x.clone()))

    out = run(name, lambda x, sigma: c.clone(), noise, sigmas, callback=callback)
    assert (out - c).abs().max().item() <= 1e-5
    # The exact solution from sigma = 1 is the straight line x(sigma) = c + sigma * (noise - c).
    for step, x in seen:
        assert torch.allclose(x, c + sigmas[step] * (noise - c), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# Gaussian data x0 ~ N(m, s^2) (per element) with x_sigma = (1 - sigma) x0 + sigma eps.
# Posterior mean:  E[x0 | x] = m + (1 - sigma) s^2 / V(sigma) * (x - (1 - sigma) m),  V = (1 - sigma)^2 s^2 + sigma^2.
# The marginals stay Gaussian and a 1-D flow is monotone, so the probability-flow ODE from sigma = 1 keeps the
# z-score:  x*(sigma) = (1 - sigma) m + sqrt(V(sigma)) * z  with z = x(1) (V(1) = 1).

MEAN = torch.tensor([0.7, -1.3, 2.0, 0.0], dtype=F64)
STD = torch.tensor([0.5, 0.3, 1.5, 0.8], dtype=F64)
Z = torch.tensor([[0.3, -1.0, 0.5, 1.2], [-1.5, 0.7, 1.9, -0.4]], dtype=F64)


def gaussian_x0(x, sigma):
    sigma = torch.as_tensor(sigma, dtype=F64).reshape(-1, 1)
    variance = (1 - sigma) ** 2 * STD ** 2 + sigma ** 2
    return MEAN + (1 - sigma) * STD ** 2 / variance * (x - (1 - sigma) * MEAN)


def gaussian_flow(sigma: float):
    return (1 - sigma) * MEAN + torch.sqrt((1 - sigma) ** 2 * STD ** 2 + sigma ** 2) * Z


def analytic_final_x0(sigmas):
    last = sigmas[-2].item()
    return gaussian_x0(gaussian_flow(last), last)


@pytest.mark.parametrize("sigma", [0.95, 0.6, 0.2, 0.03])
def test_gaussian_closed_form_solves_the_flow_ode(sigma):
    # Guards the test's own derivation: d x*/d sigma == (x* - E[x0 | x*]) / sigma.
    eps = 1e-6
    slope = (gaussian_flow(sigma + eps) - gaussian_flow(sigma - eps)) / (2 * eps)
    x = gaussian_flow(sigma)
    assert torch.allclose(slope, (x - gaussian_x0(x, sigma)) / sigma, atol=1e-7, rtol=0)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_matches_the_analytic_gaussian_x0(variant):
    # The linspace-in-t schedule always ends with a factor-2 step in sigma, which limits the accuracy of the
    # final x0 prediction; 1000 steps at shift 1 bring the error to ~4e-6 (shift 7 needs far more steps).
    sigmas = sigma_schedule(1000, shift=1.0).to(F64)
    out = sample_unipc(gaussian_x0, Z, sigmas, variant=variant)
    assert (out - analytic_final_x0(sigmas)).abs().max().item() <= 1e-5


def test_unipc_error_shrinks_faster_than_euler():
    # The production schedule (shift 7). Observed: Euler ~1st order, UniPC ~1.7 (both bh variants).
    def error(sampler, steps, **kw):
        sigmas = sigma_schedule(steps, shift=7.0).to(F64)
        return (sampler(gaussian_x0, Z, sigmas, **kw) - analytic_final_x0(sigmas)).abs().max().item()

    def observed_order(errors):  # over a factor of 4 in steps
        return math.log2(errors[0] / errors[-1]) / 2

    step_counts = [40, 80, 160]
    euler = [error(sample_euler, n) for n in step_counts]
    for variant in ("bh1", "bh2"):
        unipc = [error(sample_unipc, n, variant=variant) for n in step_counts]
        assert all(u < e / 2 for u, e in zip(unipc, euler))
        assert observed_order(unipc) > observed_order(euler) + 0.5
    assert 0.7 < observed_order(euler) < 1.3


# ----------------------------------------------------------------------------------------------------------------
# A UniPC run re-derived by hand: 4 steps, so the orders are 1, 2, 3 (warm-up, then the full order).


def phi(k, z):
    """Closed forms phi_k(z) = (e^z - sum_{j<k} z^j / j!) / z^k."""
    return (math.exp(z) - sum(z ** j / math.factorial(j) for j in range(k))) / z ** k


def lagrange_weights(nodes, g):
    """Solve sum_m w_m r_m^(k-1) = g_k: w_m is the functional g applied to the Lagrange polynomial of node m."""
    weights = []
    for m, r_m in enumerate(nodes):
        others = [r for j, r in enumerate(nodes) if j != m]
        if len(others) == 1:
            (p,) = others
            weights.append((g[1] - p * g[0]) / (r_m - p))
        else:
            p, q = others
            weights.append((g[2] - (p + q) * g[1] + p * q * g[0]) / ((r_m - p) * (r_m - q)))
    return weights


def linear_model(x, sigma):
    # x0 depends on both x and sigma, so predictor and corrector are both exercised.
    sigma = torch.as_tensor(sigma, dtype=F64).reshape(-1, *([1] * (x.ndim - 1)))
    return (0.5 + 0.3 * sigma ** 2) * x + torch.sin(2 * sigma)


def hand_unipc(noise, sig, variant):
    lam = [-math.log(s) for s in sig[:-1]]
    m = [linear_model(noise, sig[0])]
    xs = [noise]
    x = noise
    for i in (1, 2, 3):
        h = lam[i] - lam[i - 1]
        z = -h
        B = z if variant == "bh1" else math.expm1(z)
        g = [z * phi(k + 1, z) * math.factorial(k) / B for k in (1, 2, 3)]
        base = sig[i] / sig[i - 1] * x - math.expm1(z) * m[i - 1]
        if i == 1:       # UniP-1 (no correction term), UniC-1 with weight 1/2
            x_pred = base
            m.append(linear_model(x_pred, sig[i]))
            x = base - B * 0.5 * (m[1] - m[0])
        elif i == 2:     # UniP-2 with weight 1/2, UniC-2 from a 2x2 system
            r1 = (lam[0] - lam[1]) / h
            D1 = (m[0] - m[1]) / r1
            x_pred = base - B * 0.5 * D1
            m.append(linear_model(x_pred, sig[i]))
            c1, c2 = lagrange_weights([r1, 1.0], g)
            x = base - B * (c1 * D1 + c2 * (m[2] - m[1]))
        else:            # UniP-3 from a 2x2 system, UniC-3 from a 3x3 system
            r1 = (lam[1] - lam[2]) / h
            r2 = (lam[0] - lam[2]) / h
            D1 = (m[1] - m[2]) / r1
            D2 = (m[0] - m[2]) / r2
            a1, a2 = lagrange_weights([r1, r2], g)
            x_pred = base - B * (a1 * D1 + a2 * D2)
            m.append(linear_model(x_pred, sig[i]))
            c1, c2, c3 = lagrange_weights([r1, r2, 1.0], g)
            x = base - B * (c1 * D1 + c2 * D2 + c3 * (m[3] - m[2]))
        xs.append(x)
    return xs, m


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_phi_weights_are_accurate_for_short_and_long_steps(k):
    # Short steps, where the closed form cancels badly: phi_k(z) = 1/k! + z/(k+1)! + z^2/(k+2)! + O(z^3).
    for z in (-1e-7, -1e-5, -1e-3):
        taylor = 1 / math.factorial(k) + z / math.factorial(k + 1) + z * z / math.factorial(k + 2)
        assert _phi(k, z) == pytest.approx(taylor, rel=0, abs=abs(z) ** 3 / math.factorial(k + 3) + 1e-16)
    # Longer steps: the closed form is well conditioned there.
    for z in (-0.4, -0.99, -1.01, -3.0):
        assert _phi(k, z) == pytest.approx(phi(k, z), rel=1e-12, abs=0)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_matches_a_hand_derived_four_step_run(variant):
    sigmas = sigma_schedule(4, shift=3.0).to(F64)
    sig = sigmas.tolist()
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    expected_x, expected_x0 = hand_unipc(noise, sig, variant)
    seen = []
    out = sample_unipc(linear_model, noise, sigmas, variant=variant,
                       callback=lambda step, total, x, x0: seen.append((x.clone(), x0.clone())))
    assert len(seen) == 4
    for (x, x0), ex, ex0 in zip(seen, expected_x, expected_x0):
        assert torch.allclose(x, ex, atol=1e-12, rtol=0)
        assert torch.allclose(x0, ex0, atol=1e-12, rtol=0)
    assert torch.allclose(out, expected_x0[-1], atol=1e-12, rtol=0)
    # The result is the last x0 prediction, not the (corrected) last x.
    assert not torch.allclose(out, expected_x[-1], atol=1e-6)


def test_bh1_and_bh2_differ_once_correction_weights_matter():
    sigmas = sigma_schedule(5, shift=3.0).to(F64)
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    a = sample_unipc(linear_model, noise, sigmas, variant="bh1")
    b = sample_unipc(linear_model, noise, sigmas, variant="bh2")
    assert (a - b).abs().max().item() > 1e-6


# ----------------------------------------------------------------------------------------------------------------
# Model-call contract and hooks


class CountingModel:
    def __init__(self):
        self.sigmas = []

    def __call__(self, x, sigma):
        assert x.dtype == torch.float32
        assert sigma.shape == (x.shape[0],) and sigma.dtype == torch.float32
        self.sigmas.append(sigma[0].item())
        return 0.9 * x + 0.1


@pytest.mark.parametrize("name", ALL_SAMPLERS)
@pytest.mark.parametrize("steps", [1, 2, 4, 25])
def test_exactly_steps_model_calls_never_at_sigma_zero(name, steps):
    model = CountingModel()
    sigmas = sigma_schedule(steps, shift=7.0)
    calls = []
    run(name, model, torch.randn(2, 4, 3), sigmas, callback=lambda step, total, x, x0: calls.append((step, total)))
    assert model.sigmas == sigmas[:-1].tolist()
    assert calls == [(i, steps) for i in range(steps)]


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_half_precision_noise_is_sampled_in_float32(name):
    out = run(name, CountingModel(), torch.randn(1, 2, 2).to(torch.bfloat16), sigma_schedule(3, shift=7.0))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", ALL_SAMPLERS)
@pytest.mark.parametrize("stop_at", [0, 1, 3])
def test_interrupt_requested_in_callback_stops_before_the_next_model_call(name, stop_at):
    model = CountingModel()
    stop = {"now": False}

    def callback(step, total, x, x0):
        if step == stop_at:
            stop["now"] = True

    with pytest.raises(Interrupted):
        run(name, model, torch.randn(1, 3), sigma_schedule(6, shift=7.0),
            callback=callback, interrupt=lambda: stop["now"])
    assert len(model.sigmas) == stop_at + 1


@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_interrupt_checked_before_the_first_model_call(name):
    model = CountingModel()
    with pytest.raises(Interrupted):
        run(name, model, torch.randn(1, 3), sigma_schedule(4, shift=7.0), interrupt=lambda: True)
    assert model.sigmas == []


@pytest.mark.parametrize("name,variant", [("unipc_bh1", "bh1"), ("unipc_bh2", "bh2")])
def test_each_registered_unipc_runs_its_named_variant(name, variant):
    """The registry entry reproduces the hand-derived run of its own B(h) variant, and not the other one's."""
    sigmas = sigma_schedule(4, shift=3.0).to(F64)
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    other = {"bh1": "bh2", "bh2": "bh1"}[variant]
    out = get_sampler(name)(linear_model, noise, sigmas)
    assert torch.allclose(out, hand_unipc(noise, sigmas.tolist(), variant)[1][-1], atol=1e-12, rtol=0)
    assert not torch.allclose(out, hand_unipc(noise, sigmas.tolist(), other)[1][-1], atol=1e-9, rtol=0)


def test_registered_euler_is_the_euler_step():
    """x_next = x0 + (sigma_next / sigma) * (x - x0), written out for three steps."""
    sigmas = sigma_schedule(3, shift=3.0).to(F64)
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    x = noise
    for sigma, sigma_next in zip(sigmas.tolist(), sigmas.tolist()[1:]):
        x0 = linear_model(x, sigma)
        x = x0 + (sigma_next / sigma) * (x - x0)
    assert torch.allclose(get_sampler("euler")(linear_model, noise, sigmas), x, atol=1e-12, rtol=0)


def test_registry_and_unknown_name():
    assert set(SAMPLERS) == {"unipc_bh1", "unipc_bh2", "euler"}
    assert get_sampler("euler") is sample_euler
    with pytest.raises(InputError, match="unipc_bh1.*unipc_bh2.*euler"):
        get_sampler("dpmpp_2m")


@pytest.mark.parametrize("sigmas", [
    torch.tensor([1.0]),                    # no step
    torch.tensor([[1.0, 0.0]]),             # not 1-D
    torch.tensor([1.0, 0.5, 0.5, 0.0]),     # not strictly decreasing
    torch.tensor([0.0, 0.5, 1.0]),          # increasing
    torch.tensor([1.0, -0.5]),              # negative
    torch.tensor([1.0, float("nan"), 0.0]),
])
@pytest.mark.parametrize("name", ALL_SAMPLERS)
def test_invalid_sigmas_raise_input_error(name, sigmas):
    with pytest.raises(InputError, match="sigmas"):
        run(name, CountingModel(), torch.randn(1, 3), sigmas)


def test_unknown_unipc_variant_raises_input_error():
    with pytest.raises(InputError, match="bh1"):
        sample_unipc(CountingModel(), torch.randn(1, 3), sigma_schedule(3, shift=7.0), variant="bh3")
