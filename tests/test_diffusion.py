"""models/diffusion.py: schedules, CFG, DPM-Solver++ (U-ViT) and IDDPM (DiT) against closed forms and oracles.

Every reference below is written here from the papers' formulas (DPM-Solver++ arXiv 2211.01095; IDDPM arXiv
2102.09672), with numpy/torch.distributions doing the arithmetic, not by calling the module under test. The Gaussian
toy (data x0 ~ N(μ, s²) per dimension) has everything in closed form:
    x_t ~ N(α_t μ, v_t),  v_t = α_t² s² + σ_t²,   ε*(x_t, t) = σ_t (x_t − α_t μ) / v_t,
    E[x0 | x_t] = μ + α_t s² (x_t − α_t μ) / v_t,
and the probability-flow ODE keeps z = (x_t − α_t μ)/√v_t fixed, so x_{t0} = α_{t0} μ + √(v_{t0}/v_{t1})(x_{t1} − α_{t1} μ).
"""
import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from models import diffusion as D
from models.dit import DiT, DiTConfig
from models.uvit import UViT, UViTConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

T = 1000


# ----------------------------------------------------------------------------------------------------------------
# Independent helpers (numpy): the continuous-time discrete VP and the toy's closed forms
# ----------------------------------------------------------------------------------------------------------------

def _abar_numpy(kind: str, start: float, end: float) -> np.ndarray:
    betas = np.linspace(start, end, T) if kind == "linear" else np.linspace(start ** 0.5, end ** 0.5, T) ** 2
    out, prod = np.empty(T), 1.0
    for i, b in enumerate(betas):  # the cumulative product written out, not np.cumprod/torch.cumprod
        prod *= 1.0 - b
        out[i] = prod
    return out


UVIT_ABAR = _abar_numpy("scaled-linear", 0.00085, 0.012)
DIT_ABAR = _abar_numpy("linear", 1e-4, 0.02)
T_KNOTS = np.arange(1, T + 1) / T  # DPM-Solver NoiseScheduleVP('discrete'): t = k/T <-> ᾱ_k (1-based)


def vp_numpy(t: float) -> tuple[float, float, float]:
    """(α, σ, λ) at continuous t for the U-ViT schedule: log α linear between (k/T, ½ log ᾱ_k)."""
    log_alpha = float(np.interp(t, T_KNOTS, 0.5 * np.log(UVIT_ABAR)))
    alpha, sigma = math.exp(log_alpha), math.sqrt(1.0 - math.exp(2 * log_alpha))
    return alpha, sigma, math.log(alpha / sigma)


def t_of_lambda(lam: float) -> float:
    """Inverse of λ(t) by bisection (λ decreases in t)."""
    lo, hi = 1e-3, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if vp_numpy(mid)[2] > lam else (lo, mid)
    return 0.5 * (lo + hi)


MU, S = 0.0, 0.5  # the toy the reference measured (generation.md §2: 4e-2 time-uniform, 3e-5 logSNR)


def toy_eps_uvit(x: torch.Tensor, t_in: torch.Tensor, y) -> torch.Tensor:
    """Exact ε of the toy for a network fed t·1000 (the U-ViT convention)."""
    alpha, sigma, _ = vp_numpy(float(t_in[0]) / T)
    return sigma * (x - alpha * MU) / (alpha ** 2 * S ** 2 + sigma ** 2)


def toy_ode_solution(x1: torch.Tensor, t1: float, t0: float) -> torch.Tensor:
    (a1, s1, _), (a0, s0, _) = vp_numpy(t1), vp_numpy(t0)
    return a0 * MU + math.sqrt((a0 ** 2 * S ** 2 + s0 ** 2) / (a1 ** 2 * S ** 2 + s1 ** 2)) * (x1 - a1 * MU)


# ----------------------------------------------------------------------------------------------------------------
# 1. Schedules
# ----------------------------------------------------------------------------------------------------------------

def test_schedules_match_closed_form_and_diffusers():
    for schedule, abar, name in ((D.UVIT_SCHEDULE, UVIT_ABAR, "scaled_linear"), (D.DIT_SCHEDULE, DIT_ABAR, "linear")):
        ours = schedule.alphas_cumprod()
        assert ours.dtype == torch.float64 and ours.shape == (T,)
        np.testing.assert_allclose(ours.numpy(), abar, rtol=1e-12)
        oracle = DDPMScheduler(num_train_timesteps=T, beta_schedule=name, beta_start=schedule.beta_start,
                               beta_end=schedule.beta_end).alphas_cumprod  # float32
        np.testing.assert_allclose(ours.numpy()[[0, 499, 999]], oracle.numpy()[[0, 499, 999]], rtol=2e-5)
    assert D.UVIT_SCHEDULE.alphas_cumprod()[999].item() == pytest.approx(0.004660098513077238, rel=1e-12)
    assert D.DIT_SCHEDULE.alphas_cumprod()[999].item() == pytest.approx(4.0358297653756754e-05, rel=1e-12)
    assert D.UVIT_SCHEDULE.betas()[0].item() == pytest.approx(0.00085, rel=1e-12)


def test_discrete_vp_matches_the_uvit_training_convention():
    """Continuous t = k/1000 has α_t² = ᾱ_k (1-based), which the loss uses for the integer t = k it feeds the net."""
    vp = D.DiscreteVP(D.UVIT_SCHEDULE)
    k = torch.tensor([1, 2, 500, 1000])
    np.testing.assert_allclose(vp.alpha(k.double() / T).numpy() ** 2, UVIT_ABAR[k.numpy() - 1], rtol=1e-12)
    mid = vp_numpy(0.0345)  # between knots: the interpolation is linear in log α
    assert vp.alpha(torch.tensor(0.0345, dtype=torch.float64)).item() == pytest.approx(mid[0], rel=1e-12)
    assert vp.lambda_(vp.inverse_lambda(torch.tensor(1.5, dtype=torch.float64))).item() == pytest.approx(1.5)

    seen = {}

    def net(x, t, y):
        seen.update(x=x, t=t)
        return torch.zeros_like(x)

    x0, noise = torch.randn(4, 2, 2, 2, dtype=torch.float64), torch.randn(4, 2, 2, 2, dtype=torch.float64)
    out = D.uvit_loss(net, x0, None, t=k, noise=noise)
    abar = torch.from_numpy(UVIT_ABAR[k.numpy() - 1]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(seen["x"], abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    assert torch.equal(seen["t"], k)
    torch.testing.assert_close(out["loss"], (noise ** 2).mean(dim=(1, 2, 3)))
    x0 = torch.zeros(20000, 1, 1, 1, dtype=torch.float64)
    drawn = D.uvit_loss(net, x0, None, generator=torch.Generator().manual_seed(0))["t"]
    assert drawn.min() == 1 and drawn.max() == T and drawn.dtype == torch.long  # U{1..1000}


# ----------------------------------------------------------------------------------------------------------------
# 2. Gaussian toy: DPM-Solver++ and IDDPM against closed forms
# ----------------------------------------------------------------------------------------------------------------

def test_dpm_solver_pp_on_the_gaussian_toy():
    x1 = torch.randn(64, 4, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = toy_ode_solution(x1, 1.0, 1e-3)
    errors = {}
    for grid in ("time-uniform", "logsnr"):
        sample = D.dpm_solver_pp_sample(toy_eps_uvit, x1, None, nfe=30, grid=grid)
        errors[grid] = ((sample - exact).norm() / exact.norm()).item()
    # Measured: time-uniform 4.32e-2 (the official grid; generation.md's 4e-2), logSNR 2.71e-5 (its 3e-5).
    assert 1e-3 < errors["time-uniform"] < 1e-1
    assert errors["logsnr"] < 1e-3


def _toy_iddpm_fn(v: float):
    def net(x, t, y):  # exact ε of the toy at the ORIGINAL timestep t (0-based ᾱ), constant variance output v
        abar = torch.from_numpy(DIT_ABAR).to(x)[t].reshape(-1, 1, 1, 1)
        eps = (1 - abar).sqrt() * (x - abar.sqrt() * 0.5) / (abar * 0.5 ** 2 + 1 - abar)
        return torch.cat([eps, torch.full_like(eps, v)], dim=1)
    return net


def test_iddpm_ancestral_sampling_on_the_gaussian_toy():
    """Data N(0.5, 0.5²): 250 respaced steps with the exact ε give samples with that mean and std."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(4096, 2, 1, 1, generator=gen, dtype=torch.float64)
    sample = D.iddpm_sample(_toy_iddpm_fn(1.0), noise, None, steps=250, generator=gen)
    # Measured (8192 values, standard errors 0.0055 / 0.004): v = +1 (σ² = β_t) mean 0.5086, std 0.5004;
    # v = −1 (σ² = β̃_t, the posterior variance) gives std 0.483, since β̃ under-estimates this toy's reverse variance.
    assert sample.mean().item() == pytest.approx(0.5, abs=0.02)
    assert sample.std().item() == pytest.approx(0.5, abs=0.012)


# ----------------------------------------------------------------------------------------------------------------
# 3. DPM-Solver++ steps against the paper's formulas, written out independently
# ----------------------------------------------------------------------------------------------------------------

def _reference_step(data_fn, x, times):
    """Singlestep DPM-Solver++ from the exponential-integrator form x_t = σ_t/σ_s x_s + σ_t ∫ e^λ x0(λ) dλ with x0
    expanded to first order in λ: ∫ gives α_t(1 − e^{−h}) x0_s + α_t(h − 1 + e^{−h}) x0'. Order 2 is Alg. 1 (2S)."""
    (a_s, s_s, l_s), (a_t, s_t, l_t) = vp_numpy(times[0]), vp_numpy(times[-1])
    h = l_t - l_s
    m_s = data_fn(x, torch.tensor(times[0], dtype=torch.float64))
    if len(times) == 2:  # DDIM: x_t = α_t x0 + σ_t ε̂ with ε̂ = (x_s − α_s x0)/σ_s
        return a_t * m_s + s_t * (x - a_s * m_s) / s_s
    a_1, s_1, l_1 = vp_numpy(times[1])
    r1 = (l_1 - l_s) / h
    u1 = s_1 / s_s * x + a_1 * (1 - math.exp(-r1 * h)) * m_s
    m_1 = data_fn(u1, torch.tensor(times[1], dtype=torch.float64))
    if len(times) == 3:
        d = (1 - 1 / (2 * r1)) * m_s + m_1 / (2 * r1)
        return s_t / s_s * x + a_t * (1 - math.exp(-h)) * d
    a_2, s_2, l_2 = vp_numpy(times[2])
    r2 = (l_2 - l_s) / h
    u2 = (s_2 / s_s * x + a_2 * (1 - math.exp(-r2 * h)) * m_s
          + a_2 * (r2 * h - 1 + math.exp(-r2 * h)) * (m_1 - m_s) / (r1 * h))
    m_2 = data_fn(u2, torch.tensor(times[2], dtype=torch.float64))
    return s_t / s_s * x + a_t * (1 - math.exp(-h)) * m_s + a_t * (h - 1 + math.exp(-h)) * (m_2 - m_s) / (r2 * h)


def _random_linear_data_fn(seed: int):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(3, 3, generator=g, dtype=torch.float64) / 3, torch.randn(3, generator=g, dtype=torch.float64)

    def data_fn(x, t):
        return torch.einsum("dc,nchw->ndhw", a, x) + float(t) * b.reshape(1, 3, 1, 1)
    return data_fn


def test_dpm_solver_pp_steps_match_the_paper_formulas():
    vp, data_fn = D.DiscreteVP(D.UVIT_SCHEDULE), _random_linear_data_fn(0)
    x = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    l_s, l_t = vp_numpy(0.7)[2], vp_numpy(0.4)[2]
    for ratios in ([], [0.5], [1 / 3, 2 / 3], [0.2, 0.9]):  # official defaults, and uneven grid-point ratios
        times = [0.7] + [t_of_lambda(l_s + r * (l_t - l_s)) for r in ratios] + [0.4]
        torch.testing.assert_close(D.dpm_solver_pp_update(data_fn, x, times, vp), _reference_step(data_fn, x, times),
                                   rtol=1e-10, atol=1e-10)


def test_dpm_solver_pp_local_error_has_the_stated_order():
    """One step of order k on the toy's exact x0 predictor: halving h divides the local error by ~2^(k+1)."""
    vp = D.DiscreteVP(D.UVIT_SCHEDULE)

    def f64(v):
        return torch.tensor(v, dtype=torch.float64)

    def data_fn(x, t):
        alpha, sigma = vp.alpha(t).item(), vp.sigma(t).item()
        return 0.3 + alpha * S ** 2 * (x - alpha * 0.3) / (alpha ** 2 * S ** 2 + sigma ** 2)

    def exact(x, t0, t1):
        (a0, s0), (a1, s1) = (vp.alpha(f64(t0)).item(), vp.sigma(f64(t0)).item()), (vp.alpha(f64(t1)).item(),
                                                                                   vp.sigma(f64(t1)).item())
        return a1 * 0.3 + math.sqrt((a1 ** 2 * S ** 2 + s1 ** 2) / (a0 ** 2 * S ** 2 + s0 ** 2)) * (x - a0 * 0.3)

    x, l_s = torch.linspace(-2, 2, 9, dtype=torch.float64).reshape(9, 1, 1, 1), vp.lambda_(f64(0.6)).item()
    for order, ratios in ((1, [0, 1]), (2, [0, 0.5, 1]), (3, [0, 1 / 3, 2 / 3, 1])):
        err = []
        for h in (0.2, 0.1):
            times = [0.6] + [vp.inverse_lambda(f64(l_s + r * h)).item() for r in ratios[1:]]
            err.append((D.dpm_solver_pp_update(data_fn, x, times, vp) - exact(x, 0.6, times[-1])).abs().max().item())
        # Measured ratios 4.3, 8.6, 15.9.
        assert 0.75 * 2 ** (order + 1) < err[0] / err[1] < 1.5 * 2 ** (order + 1)


def test_full_sampler_walks_the_official_fast_grid():
    """30 NFE = one 31-point time-uniform grid 1 -> 1e-3 walked by steps of orders [3]*9 + [2, 1], each step's
    intermediate points being the grid points it spans (efficientvit dpm_solver_pp.py, method='fast')."""
    vp = D.DiscreteVP(D.UVIT_SCHEDULE)
    assert D.fast_orders(30) == [3] * 9 + [2, 1]
    assert D.fast_orders(31) == [3] * 10 + [1] and D.fast_orders(32) == [3] * 10 + [2] and D.fast_orders(1) == [1]
    g = torch.Generator().manual_seed(2)
    w = torch.randn(3, 3, generator=g, dtype=torch.float64) / 3

    def eps_fn(x, t_in, y):  # a random linear ε model with a time dependence
        return torch.einsum("dc,nchw->ndhw", w, x) * (1 + float(t_in[0]) / T)

    def data_fn(x, t):
        alpha, sigma, _ = vp_numpy(float(t))
        return (x - sigma * eps_fn(x, torch.tensor([float(t) * T], dtype=torch.float64), None)) / alpha

    noise = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    grid, x, i = np.linspace(1.0, 1e-3, 31), noise, 0
    for order in [3] * 9 + [2, 1]:
        x = _reference_step(data_fn, x, list(grid[i:i + order + 1]))
        i += order
    torch.testing.assert_close(D.dpm_solver_pp_sample(eps_fn, noise, None), x, rtol=1e-10, atol=1e-10)
    logsnr = D.time_grid(vp, 30, "logsnr")
    lams = np.array([vp_numpy(t)[2] for t in logsnr.tolist()])
    np.testing.assert_allclose(np.diff(lams), (lams[-1] - lams[0]) / 30, rtol=1e-9)


def test_sampler_counts_function_evaluations_and_feeds_t_times_1000():
    fed = []

    def net(x, t, y):
        fed.append(t[0].item())
        assert t.shape == (x.shape[0],)
        return torch.zeros_like(x)

    for nfe in (30, 31, 32, 1, 2):
        fed.clear()
        D.dpm_solver_pp_sample(net, torch.randn(2, 1, 1, 1, dtype=torch.float64), None, nfe=nfe)
        assert len(fed) == nfe
        np.testing.assert_allclose(fed, np.linspace(1.0, 1e-3, nfe + 1)[:-1] * T, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# 4. IDDPM loss terms against closed forms
# ----------------------------------------------------------------------------------------------------------------

def _posterior_numpy(t: np.ndarray):
    betas = np.linspace(1e-4, 0.02, T)
    abar, abar_prev = DIT_ABAR[t], np.where(t > 0, DIT_ABAR[np.maximum(t - 1, 0)], 1.0)
    coef_x0 = betas[t] * np.sqrt(abar_prev) / (1 - abar)
    coef_xt = (1 - abar_prev) * np.sqrt(1 - betas[t]) / (1 - abar)
    var = betas[1] * (1 - DIT_ABAR[0]) / (1 - DIT_ABAR[1])  # clipped: β̃_0 = 0 is replaced by β̃_1
    post_var = np.where(t > 0, betas[t] * (1 - abar_prev) / (1 - abar), var)
    return [torch.from_numpy(a).reshape(-1, 1, 1, 1) for a in (abar, coef_x0, coef_xt, post_var, betas[t])]


def _model_gaussian(out, x_t, t):
    abar, coef_x0, coef_xt, post_var, beta = _posterior_numpy(t.numpy())
    eps, v = out.chunk(2, dim=1)
    x0_hat = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    frac = (v + 1) / 2
    std = torch.exp(0.5 * (frac * beta.log() + (1 - frac) * post_var.log()))
    return coef_x0 * x0_hat + coef_xt * x_t, std


def test_vb_term_is_the_gaussian_kl_in_bits():
    g = torch.Generator().manual_seed(3)
    t = torch.tensor([1, 10, 500, 999])
    x0, x_t = (torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    out = torch.cat([torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64),
                     torch.rand(4, 2, 3, 3, generator=g, dtype=torch.float64) * 2 - 1], dim=1)
    _, coef_x0, coef_xt, post_var, _ = _posterior_numpy(t.numpy())
    true = torch.distributions.Normal(coef_x0 * x0 + coef_xt * x_t, post_var.sqrt().expand_as(x0))
    model = torch.distributions.Normal(*_model_gaussian(out, x_t, t))
    expected = torch.distributions.kl_divergence(true, model).mean(dim=(1, 2, 3)) / math.log(2)
    coef, _ = D.iddpm_coefficients(D.DIT_SCHEDULE)
    torch.testing.assert_close(D.vb_bits(out, x0, x_t, t, coef), expected, rtol=1e-10, atol=1e-12)


def test_decoder_nll_at_t0_matches_the_normal_cdf():
    g = torch.Generator().manual_seed(4)
    x0 = torch.cat([torch.tensor([-1.0, 1.0]), torch.rand(16, generator=g) * 1.8 - 0.9]).double().reshape(2, 1, 3, 3)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.zeros(2, dtype=torch.long)
    abar0 = DIT_ABAR[0]
    x_t = math.sqrt(abar0) * x0 + math.sqrt(1 - abar0) * noise
    out = torch.cat([noise + 0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64),
                     torch.rand(x0.shape, generator=g, dtype=torch.float64) * 2 - 1], dim=1)
    mean, std = _model_gaussian(out, x_t, t)
    normal = torch.distributions.Normal(mean, std)
    upper = torch.where(x0 > 0.999, torch.ones_like(x0), normal.cdf(x0 + 1 / 255))
    lower = torch.where(x0 < -0.999, torch.zeros_like(x0), normal.cdf(x0 - 1 / 255))
    expected = -(upper - lower).log().mean(dim=(1, 2, 3)) / math.log(2)
    coef, _ = D.iddpm_coefficients(D.DIT_SCHEDULE)
    # IDDPM uses a tanh approximation of Φ (error ~3e-4), hence the loose tolerance.
    torch.testing.assert_close(D.vb_bits(out, x0, x_t, t, coef), expected, rtol=1e-2, atol=0)


def test_iddpm_loss_is_mse_plus_vb_with_the_mean_detached():
    g = torch.Generator().manual_seed(5)
    x0, noise = (torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0, 7, 999])
    out = torch.cat([torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64),
                     torch.rand(3, 2, 2, 2, generator=g, dtype=torch.float64) * 2 - 1], dim=1).requires_grad_()
    seen = {}

    def net(x, t_in, y):
        seen["t"] = t_in
        return out

    terms = D.iddpm_loss(net, x0, None, t=t, noise=noise)
    assert torch.equal(seen["t"], t)  # DiT is fed the 0-based timestep itself
    mse = ((out[:, :2] - noise) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(terms["mse"], mse)
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])  # not rescaled (DiT: LossType.MSE)
    terms["loss"].sum().backward()
    torch.testing.assert_close(out.grad[:, :2], 2 * (out[:, :2] - noise).detach() / 8)  # ε gets only MSE gradients
    assert out.grad[:, 2:].abs().min() > 0  # the variance channels are trained by vb

    def zeros(x, t_in, y):
        return torch.zeros(x.shape[0], 2, 1, 1, dtype=x.dtype)

    x0 = torch.zeros(20000, 1, 1, 1, dtype=torch.float64)
    drawn = D.iddpm_loss(zeros, x0, None, generator=torch.Generator().manual_seed(0))["t"]
    assert drawn.min() == 0 and drawn.max() == T - 1  # U{0..999}


# ----------------------------------------------------------------------------------------------------------------
# 5. Classifier-free guidance
# ----------------------------------------------------------------------------------------------------------------

class _CountingNet:
    """(N, C, H, W) -> (N, 2C, H, W): ε = x·(1 + y) + t, v = y - x, and counts calls and batch sizes."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, t, y):
        self.batches.append(x.shape[0])
        yy = y.to(x).reshape(-1, 1, 1, 1)
        return torch.cat([x * (1 + yy) + t.to(x).reshape(-1, 1, 1, 1), yy - x], dim=1)


def test_cfg_scale_one_is_the_conditional_model():
    net = _CountingNet()
    assert D.guided(net, 1.0, null_label=10) is net
    x, t, y = torch.randn(3, 2, 2, 2), torch.full((3,), 5.0), torch.tensor([1, 2, 3])
    D.guided(net, 1.0, null_label=10)(x, t, y)
    assert net.batches == [3]


def test_cfg_guides_all_eps_channels_in_one_batched_forward():
    x, t, y = torch.randn(3, 4, 2, 2), torch.full((3,), 5.0), torch.tensor([1, 2, 3])
    reference = _CountingNet()
    cond, uncond = reference(x, t, y), reference(x, t, torch.full_like(y, 10))
    net = _CountingNet()
    out = D.guided(net, 2.0, null_label=10, eps_channels=4)(x, t, y)
    assert net.batches == [6]  # conditional and unconditional halves together
    torch.testing.assert_close(out[:, :4], 2 * cond[:, :4] - uncond[:, :4])  # all 4 latent channels, not DiT's 3
    torch.testing.assert_close(out[:, 4:], cond[:, 4:])  # the conditional half's variance channels
    full = D.guided(_CountingNet(), 2.0, null_label=10)(x, t, y)  # eps_channels=None: every channel is guided
    torch.testing.assert_close(full, 2 * cond - uncond)


# ----------------------------------------------------------------------------------------------------------------
# 6. Respacing
# ----------------------------------------------------------------------------------------------------------------

def test_respacing_keeps_iddpm_timesteps_and_alphas_cumprod():
    kept = D.space_timesteps(T, 250)
    assert len(kept) == 250 and kept[:5] == [0, 4, 8, 12, 16] and kept[-3:] == [991, 995, 999]
    gaps = np.diff(kept)
    assert set(gaps) == {4, 5} and (gaps == 5).sum() == 3  # stride 999/249: not every 4th
    stride, position, loop = 999 / 249, 0.0, []
    for _ in range(250):  # IDDPM's accumulate-and-round loop, written here
        loop.append(round(position))
        position += stride
    assert kept == loop
    assert D.space_timesteps(T, T) == list(range(T)) and D.space_timesteps(T, 1) == [0]
    with pytest.raises(ValueError, match="at least 2"):
        D.iddpm_coefficients(D.DIT_SCHEDULE, 1)  # IDDPM's clipped posterior variance needs a step 1
    sections = D.space_timesteps(300, [10, 15, 20])  # IDDPM docstring example: 100 steps per section
    assert len(sections) == 45 and sections[9] == 99 and sections[10] == 100 and sections[-1] == 299
    coef, kept_again = D.iddpm_coefficients(D.DIT_SCHEDULE, 250)
    assert list(kept_again) == kept
    np.testing.assert_allclose(coef.alphas_cumprod.numpy(), DIT_ABAR[kept], rtol=1e-12)


def test_iddpm_sampler_feeds_original_timesteps_and_skips_last_noise():
    fed, noise = [], torch.randn(2, 1, 2, 2, dtype=torch.float64)

    def net(x, t, y):
        fed.append(t[0].item())
        assert t.dtype == torch.long
        return torch.cat([torch.zeros_like(x), torch.full_like(x, -1.0)], dim=1)

    D.iddpm_sample(net, noise, None, steps=250)
    assert fed == D.space_timesteps(T, 250)[::-1]

    def gen():
        return torch.Generator().manual_seed(0)

    a = D.iddpm_sample(_toy_iddpm_fn(1.0), noise, None, steps=5, generator=gen())
    b = D.iddpm_sample(_toy_iddpm_fn(1.0), noise, None, steps=5, generator=gen())
    assert torch.equal(a, b)  # the generator makes sampling reproducible
    # Two kept steps (0 and 999): noise after step 999 only, drawn first from the generator.
    coef, kept = D.iddpm_coefficients(D.DIT_SCHEDULE, 2)
    assert kept == (0, 999)
    net = _toy_iddpm_fn(1.0)
    mean, log_var = D.p_mean_log_variance(net(noise, torch.full((2,), 999), None), noise, 1, coef)
    x1 = mean + (0.5 * log_var).exp() * torch.randn(noise.shape, generator=gen(), dtype=torch.float64)
    expected, _ = D.p_mean_log_variance(net(x1, torch.zeros(2, dtype=torch.long), None), x1, 0, coef)
    torch.testing.assert_close(D.iddpm_sample(net, noise, None, steps=2, generator=gen()), expected)


# ----------------------------------------------------------------------------------------------------------------
# 7. Errors, and 8. the configs with the project's backbones
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: D.dpm_solver_pp_sample(toy_eps_uvit, torch.zeros(1, 1, 1, 1), None, grid="karras"),
    lambda: D.dpm_solver_pp_sample(toy_eps_uvit, torch.zeros(1, 1, 1, 1), None, nfe=0),
    lambda: D.dpm_solver_pp_sample(toy_eps_uvit, torch.zeros(1, 1, 1, 1), None, t_end=0.0),
    lambda: D.guided(toy_eps_uvit, 0.5, null_label=1000),
    lambda: D.guided(_CountingNet(), 2.0, null_label=10)(torch.zeros(1, 1, 1, 1), torch.zeros(1), None),
    lambda: D.space_timesteps(T, 0),
    lambda: D.iddpm_sample(_toy_iddpm_fn(1.0), torch.zeros(1, 1, 1, 1), None, steps=1001),
    lambda: D.iddpm_sample(toy_eps_uvit, torch.zeros(1, 1, 1, 1), None, steps=2),  # C, not 2C, channels
    lambda: D.NoiseSchedule(kind="cosine"),
    lambda: D.NoiseSchedule(beta_start=0.02, beta_end=1e-4),
    lambda: D.UViTDiffusion(grid="uniform"),
    lambda: D.DiTDiffusion(steps=0),
], ids=["grid", "nfe", "t_end", "cfg", "cfg-no-labels", "respace-0", "respace-1001", "channels", "kind", "betas",
        "uvit-config", "dit-config"])
def test_bad_input_raises_one_line_value_error(make):
    with pytest.raises(ValueError) as info:
        make()
    assert "\n" not in str(info.value) and str(info.value)


def test_configs_train_and_sample_the_project_backbones():
    torch.manual_seed(0)
    uvit = UViT(UViTConfig(hidden_size=32, depth=2, num_heads=2, num_classes=10, in_channels=4, input_size=4))
    dit = DiT(DiTConfig(hidden_size=32, depth=2, num_heads=2, num_classes=10, in_channels=4, input_size=4))
    x0, y, gen = torch.randn(4, 4, 4, 4), torch.tensor([0, 3, 5, 9]), torch.Generator().manual_seed(0)
    for model, formulation in ((uvit, D.UViTDiffusion(nfe=3)), (dit, D.DiTDiffusion(steps=3))):
        terms = formulation.loss(model, x0, y, generator=gen)
        terms["loss"].mean().backward()
        assert terms["loss"].shape == (4,) and torch.isfinite(terms["loss"]).all()
        model.eval()
        eps_channels = 4 if model is dit else None
        fn = D.guided(model, 1.5, null_label=10, eps_channels=eps_channels)
        sample = formulation.sample(fn, torch.randn(4, 4, 4, 4), y)
        assert sample.shape == (4, 4, 4, 4) and torch.isfinite(sample).all()
    assert D.UViTDiffusion() == D.UViTDiffusion(D.UVIT_SCHEDULE, 30, "time-uniform", 1.0, 1e-3)
    assert D.DiTDiffusion().steps == 250 and D.DiTDiffusion().schedule == D.DIT_SCHEDULE
