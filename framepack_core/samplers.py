"""Samplers for the flow-matching ODE of FramePack.

Convention: x_sigma = (1 - sigma) * x0 + sigma * noise. A model function `model_fn(x, sigma) -> x0` returns the
clean-data ("denoised") prediction for a batch x at noise level sigma (a tensor of shape [B]). With velocity
v = (x - x0) / sigma the probability-flow ODE is

    dx/dsigma = (x - x0(x, sigma)) / sigma,

which in lambda = -log(sigma) integrates exactly (variation of constants) to

    x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0(lambda) dlambda.

Every sampler here takes the sample at sigmas[0] (pure noise when sigmas[0] == 1), makes exactly
`len(sigmas) - 1` model calls (never at sigma = 0), and supports two hooks:
  - interrupt(): checked before every model call; when it returns True, errors.Interrupted is raised.
  - callback(step, total_steps, x, x0): after every model call (step counts from 0); x is the sample at
    sigmas[step] and x0 the model's clean prediction there.
Samplers do not switch off autograd; run them under torch.inference_mode() (the original does).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch

from .errors import InputError, Interrupted

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]
InterruptCheck = Callable[[], bool]
Sampler = Callable[..., torch.Tensor]

UNIPC_VARIANTS = ("bh1", "bh2")
UNIPC_MAX_ORDER = 3


# ----------------------------------------------------------------------------------------------------------------
# Shared plumbing


def _validated_sigmas(sigmas: torch.Tensor) -> list[float]:
    """Sigmas as Python floats (one device sync), after checking what the ODE solvers rely on."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise InputError("sigmas must be a 1-D tensor with at least 2 entries (steps + 1), "
                         "e.g. from schedule.sigma_schedule(steps, ...).")
    values = [float(v) for v in sigmas.detach().to("cpu", torch.float64).tolist()]
    if not all(math.isfinite(v) for v in values):
        raise InputError("sigmas must all be finite numbers.")
    if any(b >= a for a, b in zip(values, values[1:])):
        raise InputError("sigmas must be strictly decreasing (from high noise to low noise).")
    if values[-1] < 0:
        raise InputError("sigmas must not be negative; the schedule should end at 0.")
    return values


def _working_dtype(noise: torch.Tensor) -> torch.dtype:
    # The state is kept in float32 (half-precision noise is promoted); float64 stays float64 for exact tests.
    if not noise.is_floating_point():
        raise InputError(f"noise must be a floating-point tensor, got {noise.dtype}.")
    return torch.promote_types(noise.dtype, torch.float32)


def _denoise(model_fn: ModelFn, x: torch.Tensor, sigma: float, step: int, total_steps: int,
             interrupt: InterruptCheck | None) -> torch.Tensor:
    """One model call at noise level `sigma`, preceded by the interrupt check."""
    if interrupt is not None and interrupt():
        raise Interrupted(f"Sampling was interrupted before step {step + 1} of {total_steps}.")
    sigma_batch = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
    return model_fn(x, sigma_batch).to(x.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Euler


def sample_euler(model_fn: ModelFn, noise: torch.Tensor, sigmas: torch.Tensor, *,
                 callback: StepCallback | None = None, interrupt: InterruptCheck | None = None) -> torch.Tensor:
    """First-order (Euler) integration of dx/dsigma = (x - x0) / sigma; returns x at sigmas[-1].

    Each step keeps the current x0 prediction fixed, so x moves on the straight line through x0:
    x_next = x0 + (sigma_next / sigma) * (x - x0). With sigmas[-1] == 0 the result is exactly the last x0.
    """
    sigma_values = _validated_sigmas(sigmas)
    total_steps = len(sigma_values) - 1
    x = noise.to(_working_dtype(noise))
    for step in range(total_steps):
        sigma, sigma_next = sigma_values[step], sigma_values[step + 1]
        x0 = _denoise(model_fn, x, sigma, step, total_steps, interrupt)
        if callback is not None:
            callback(step, total_steps, x, x0)
        x = x0 + (sigma_next / sigma) * (x - x0)
    return x


# ----------------------------------------------------------------------------------------------------------------
# UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models")
# in the data-prediction form, specialised to the flow ODE above as in the original FramePack ("flow matching
# UniPC"): the noise scale is sigma, the signal scale is taken as 1, and lambda = -log(sigma).
#
# Step from s (the newest evaluated point) to t, with h = lambda_t - lambda_s > 0 and z = -h:
#   r_m  = (lambda_{s_m} - lambda_s) / h            for the m-th older point s_m (m = 1 .. p-1; r_m < 0)
#   D_m  = (x0_{s_m} - x0_s) / r_m                  scaled divided differences (~ h * d x0 / d lambda)
#   base = (sigma_t / sigma_s) x_s - expm1(z) x0_s   the exact step for a constant x0
#   UniP-p  (predictor):  x~_t = base - B(h) * sum_m a_m D_m
#   UniC-p  (corrector):  x_t  = base - B(h) * (sum_m c_m D_m + c_p D_t),  D_t = x0(x~_t, t) - x0_s  (r_p = 1)
# The weights solve the order conditions sum_m w_m r_m^(k-1) = g_k, k = 1 .. (number of weights), with
#   g_k = z * phi_{k+1}(z) * k! / B(h),   phi_0(z) = e^z,  phi_{k+1}(z) = (phi_k(z) - 1/k!) / z,
# and B(h) = z ("bh1") or expm1(z) ("bh2"). When there is a single weight (UniP-2, UniC-1) it is fixed to 1/2,
# the h -> 0 limit of g_1, as in the UniPC authors' code and the original.
#
# Schedule of orders: p = min(step, min(3, steps - 1)) (a warm-up with lower orders while history is short).
# The model output at the predicted x~_t is reused as the next step's history, so each step costs one call. The
# result is the x0 prediction at the last evaluated sigma (sigmas[-2]), not x: sigma = 0 is never evaluated and
# the final corrector update of x is unused.


def _phi(k: int, z: float) -> float:
    """phi_k(z) = sum_{j >= 0} z^j / (j + k)!, the exponential-integrator weight functions."""
    if abs(z) <= 1.0:
        # The power series avoids the cancellation of the recursion for small |z| (short steps); 25 terms is
        # far below float64 precision for |z| <= 1.
        return sum(z ** j / math.factorial(j + k) for j in range(25))
    value = math.exp(z)
    for i in range(k):
        value = (value - 1.0 / math.factorial(i)) / z
    return value


def _solve_order_conditions(nodes: list[float], targets: list[float]) -> list[float]:
    """Weights w with sum_m w_m nodes_m^(k-1) = targets_k for k = 1 .. len(nodes) (a small Vandermonde system)."""
    vandermonde = torch.tensor([[r ** k for r in nodes] for k in range(len(nodes))], dtype=torch.float64)
    return torch.linalg.solve(vandermonde, torch.tensor(targets, dtype=torch.float64)).tolist()


def _weighted_sum(weights: list[float], tensors: list[torch.Tensor]) -> torch.Tensor | float:
    total: torch.Tensor | float = 0.0
    for w, t in zip(weights, tensors):
        total = total + w * t
    return total


def _unipc_step(model_fn: ModelFn, x: torch.Tensor, sigma_s: float, sigma_t: float,
                lambdas: list[float], x0s: list[torch.Tensor], order: int, variant: str,
                step: int, total_steps: int, interrupt: InterruptCheck | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One UniP-p / UniC-p step from sigma_s to sigma_t. `lambdas`/`x0s` are the history, newest last, with at
    least `order` entries. Returns (corrected x at sigma_t, x0 prediction at sigma_t)."""
    lambda_s, x0_s = lambdas[-1], x0s[-1]
    lambda_t = -math.log(sigma_t)
    h = lambda_t - lambda_s
    z = -h

    # Older points, newest first: their relative positions r_m and scaled differences D_m.
    r = [(lambdas[-1 - m] - lambda_s) / h for m in range(1, order)]
    D = [(x0s[-1 - m] - x0_s) / r_m for m, r_m in zip(range(1, order), r)]

    B = z if variant == "bh1" else math.expm1(z)
    g = [z * _phi(k + 1, z) * math.factorial(k) / B for k in range(1, order + 1)]

    if order == 1:
        a: list[float] = []
    elif order == 2:
        a = [0.5]
    else:
        a = _solve_order_conditions(r, g[:-1])
    c = [0.5] if order == 1 else _solve_order_conditions(r + [1.0], g)

    base = (sigma_t / sigma_s) * x - math.expm1(z) * x0_s
    x_pred = base - B * _weighted_sum(a, D)
    x0_t = _denoise(model_fn, x_pred, sigma_t, step, total_steps, interrupt)
    D_t = x0_t - x0_s
    x_corr = base - B * (_weighted_sum(c[:-1], D) + c[-1] * D_t)
    return x_corr, x0_t


def sample_unipc(model_fn: ModelFn, noise: torch.Tensor, sigmas: torch.Tensor, *, variant: str = "bh1",
                 callback: StepCallback | None = None, interrupt: InterruptCheck | None = None) -> torch.Tensor:
    """Flow-matching UniPC (up to 3rd order, B(h) variant "bh1" or "bh2") as in the original FramePack.

    Returns the x0 prediction at sigmas[-2] (the last evaluated noise level), exactly len(sigmas) - 1 model calls.
    """
    if variant not in UNIPC_VARIANTS:
        raise InputError(f"UniPC variant must be one of {', '.join(UNIPC_VARIANTS)}, got {variant!r}.")
    sigma_values = _validated_sigmas(sigmas)  # strictly decreasing to >= 0, so every evaluated sigma is > 0
    total_steps = len(sigma_values) - 1
    max_order = min(UNIPC_MAX_ORDER, total_steps - 1)
    history_size = max(max_order, 1)

    x = noise.to(_working_dtype(noise))
    lambdas: list[float] = []
    x0s: list[torch.Tensor] = []
    for step in range(total_steps):
        sigma = sigma_values[step]
        if step == 0:
            x0 = _denoise(model_fn, x, sigma, step, total_steps, interrupt)
        else:
            order = min(step, max_order)
            x, x0 = _unipc_step(model_fn, x, sigma_values[step - 1], sigma, lambdas, x0s, order, variant,
                                step, total_steps, interrupt)
        lambdas = (lambdas + [-math.log(sigma)])[-history_size:]
        x0s = (x0s + [x0])[-history_size:]
        if callback is not None:
            callback(step, total_steps, x, x0)
    return x0s[-1]


SAMPLERS: dict[str, Sampler] = {
    "unipc_bh1": functools.partial(sample_unipc, variant="bh1"),
    "unipc_bh2": functools.partial(sample_unipc, variant="bh2"),
    "euler": sample_euler,
}


def get_sampler(name: str) -> Sampler:
    """The sampler registered as `name`; all share the signature (model_fn, noise, sigmas, *, callback, interrupt)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise InputError(f"Unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}.") from None
