"""The two diffusion formulations DC-AE trains on its latents (arXiv 2410.10733 §4.1, Tables 1, 3, 4): schedules,
losses and samplers, in pure torch.

    U-ViT  ε-prediction, plain MSE, scaled-linear β, t ~ U{1..1000};  DPM-Solver++ (data prediction, singlestep
           "fast", order 3), 30 function evaluations on the time-uniform grid t ∈ [1e-3, 1].
    DiT    ε-prediction + learned-range variance (IDDPM), loss MSE + variational bound, linear β, t ~ U{0..999};
           ancestral sampling respaced to 250 steps, no clipping of x0.

Facts from `reference/generation.md` §2-3. The maths follows, written from reading, not copied:
- mit-han-lab/efficientvit:efficientvit/diffusioncore/models/uvit.py (training schedule, `generate`) and
  efficientvit/diffusioncore/models/uvit_sampler/dpm_solver_pp.py (the DPM-Solver++ the paper ran; it is the U-ViT
  repository's copy, baofff/U-ViT:dpm_solver_pp.py, an early version of LuChengTHU/dpm-solver:dpm_solver_pytorch.py);
- mit-han-lab/efficientvit:efficientvit/diffusioncore/models/dit.py and dit_sampler/{gaussian_diffusion, respace,
  diffusion_utils}.py, which are facebookresearch/DiT:diffusion/*.py, themselves openai/improved-diffusion (IDDPM).

Model-function convention: ``model_fn(x, t, y) -> output`` with x (N, C, H, W), t (N,) the time the *network* is fed
(U-ViT: t_continuous·1000; DiT: the original integer timestep), y (N,) long labels or None, or for a text-to-image
model (PixArt-α, which trains and samples with the IDDPM formulation) a ``models.pixart.Caption`` (T5 features and
mask). ``models/uvit.py``, ``models/dit.py`` and ``models/pixart.py`` backbones are such functions; call
``model.eval()`` before sampling, since they drop labels to the null class (index ``num_classes``), or captions to
the null caption, in train mode.

Shapes: N = batch, C = latent channels, T = num_timesteps (1000). Schedules are computed in float64 and cast to the
sample's dtype where they meet it (the official code casts to float32 at the same places).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from models.pixart import Caption

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | Caption | None], torch.Tensor]  # model_fn(x, t, y)
GRIDS = ("time-uniform", "logsnr")  # DPM-Solver++ time grids: the official one, and uniform-in-λ (ours, labelled)


# ----------------------------------------------------------------------------------------------------------------
# Noise schedules
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoiseSchedule:
    """Discrete VP schedule: β_1..β_T, ᾱ_k = Π_{j≤k}(1 − β_j). The arrays are 0-based: index i holds step i + 1, so
    U-ViT's 1-based training t reads index t − 1 and IDDPM's 0-based t reads index t."""
    kind: str = "linear"            # "linear" (DDPM/IDDPM, DiT) or "scaled-linear" (β = linspace(√β0, √β1)², U-ViT)
    num_timesteps: int = 1000       # T
    beta_start: float = 1e-4        # β_1
    beta_end: float = 0.02          # β_T

    def __post_init__(self):
        if self.kind not in ("linear", "scaled-linear"):
            raise ValueError(f"unknown schedule kind {self.kind!r}; use 'linear' or 'scaled-linear'")
        if self.num_timesteps < 2:
            raise ValueError(f"num_timesteps must be >= 2 (the posterior variance needs t=1), got {self.num_timesteps}")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")

    def betas(self) -> torch.Tensor:
        """(T,) float64. IDDPM's named "linear" also rescales β by 1000/T; here β_1, β_T are given explicitly."""
        if self.kind == "linear":
            return torch.linspace(self.beta_start, self.beta_end, self.num_timesteps, dtype=torch.float64)
        root = torch.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, self.num_timesteps, dtype=torch.float64)
        return root ** 2

    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) float64 ᾱ."""
        return torch.cumprod(1.0 - self.betas(), dim=0)


# efficientvit uvit.py: betas = linspace(0.00085**0.5, 0.012**0.5, 1000, float64)**2 (the Stable Diffusion schedule).
UVIT_SCHEDULE = NoiseSchedule(kind="scaled-linear", num_timesteps=1000, beta_start=0.00085, beta_end=0.012)
# IDDPM get_named_beta_schedule("linear", 1000): Ho et al.'s 1e-4 -> 0.02.
DIT_SCHEDULE = NoiseSchedule(kind="linear", num_timesteps=1000, beta_start=1e-4, beta_end=0.02)


def _at(values: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """values[t] in x's dtype/device, shaped to broadcast over x: (N, 1, 1, 1) for a (N,) t, a 0-d tensor for an int."""
    v = values.to(dtype=x.dtype, device=x.device)[t]
    return v.reshape(-1, *([1] * (x.dim() - 1))) if v.dim() else v


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every non-batch dimension: (N, ...) -> (N,)."""
    return x.mean(dim=tuple(range(1, x.dim())))


# ----------------------------------------------------------------------------------------------------------------
# Classifier-free guidance
# ----------------------------------------------------------------------------------------------------------------

def with_null(y: torch.Tensor | Caption, null: int | torch.Tensor) -> torch.Tensor | Caption:
    """The batch ``y`` followed by its unconditional twin: labels then ``null`` labels (2N,), or captions then the
    null caption ``null`` (S, E) under the same masks (as training's caption dropout, which replaces the features
    only)."""
    if isinstance(y, Caption):
        if not isinstance(null, torch.Tensor) or null.shape != y.features.shape[1:]:
            raise ValueError(f"a caption batch {tuple(y.features.shape)} needs the null caption (S, E) = "
                             f"{tuple(y.features.shape[1:])} as its null; got {getattr(null, 'shape', null)}")
        blank = null.to(y.features).expand_as(y.features)                            # (N, S, E)
        return Caption(torch.cat([y.features, blank]), torch.cat([y.mask, y.mask]))  # (2N, S, E), (2N, S)
    return torch.cat([y, torch.full_like(y, int(null))])                             # (2N,)


def guided(model_fn: ModelFn, cfg_scale: float, null_label: int | torch.Tensor,
           eps_channels: int | None = None) -> ModelFn:
    """Classifier-free guidance ε = ε_u + s(ε_c − ε_u), both halves in ONE batched forward (DiT ``forward_with_cfg``).

    U-ViT writes the same ε as ε_c + (s − 1)(ε_c − ε_u) with two forwards (efficientvit uvit.py ``generate``). With
    ``eps_channels=C`` (DiT's 2C-channel learned-sigma output) the first C channels, i.e. ALL latent channels, are
    guided (efficientvit dit.py; the original DiT guides only 3) and the conditional half's variance channels are kept.
    ``null_label``: the null class, or for a text model (y a ``Caption``) its null caption features (S, E)
    (``models.pixart.CaptionEmbedder.null_caption``). ``cfg_scale == 1`` returns ``model_fn`` itself: one forward,
    no null pass.
    """
    if cfg_scale < 1:
        raise ValueError(f"cfg_scale must be >= 1 (1 = no guidance), got {cfg_scale}")
    if cfg_scale == 1:
        return model_fn

    def guided_fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | Caption | None) -> torch.Tensor:
        if y is None:
            raise ValueError("classifier-free guidance needs labels y; use cfg_scale=1 for an unconditional model")
        out = model_fn(torch.cat([x, x]), torch.cat([t, t]), with_null(y, null_label))  # (2N, C_out, H, W)
        cond, uncond = out.chunk(2)                                                  # 2×(N, C_out, H, W)
        c = out.shape[1] if eps_channels is None else eps_channels
        eps = uncond[:, :c] + cfg_scale * (cond[:, :c] - uncond[:, :c])              # (N, C, H, W)
        return torch.cat([eps, cond[:, c:]], dim=1)                                  # (N, C_out, H, W)

    return guided_fn


# ----------------------------------------------------------------------------------------------------------------
# U-ViT: ε-prediction MSE (efficientvit uvit.py ``UViTSchedule.sample`` and ``forward``)
# ----------------------------------------------------------------------------------------------------------------

def uvit_loss(model_fn: ModelFn, x0: torch.Tensor, y: torch.Tensor | None, schedule: NoiseSchedule = UVIT_SCHEDULE,
              generator: torch.Generator | None = None, t: torch.Tensor | None = None,
              noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-sample plain ε-MSE with t ~ U{1..T}: x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, ᾱ_t 1-based, the network fed integer t.

    U-ViT's ``UViTSchedule`` prepends β_0 = 0, so its ``cum_alphas[t]`` is our ᾱ index t − 1; t = k here matches
    continuous time k/T in the sampler (``DiscreteVP``), which feeds the network t·T. The official loss is the batch
    mean of the squared error, i.e. ``loss.mean()`` of ours. ``generator`` (on x0's device) draws t and ε.
    """
    n = x0.shape[0]
    if t is None:
        t = torch.randint(1, schedule.num_timesteps + 1, (n,), generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    abar = _at(schedule.alphas_cumprod(), t - 1, x0)                 # (N, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise               # (N, C, H, W)
    mse = _mean_flat((model_fn(x_t, t, y) - noise) ** 2)             # (N,)
    return {"loss": mse, "mse": mse, "t": t}


# ----------------------------------------------------------------------------------------------------------------
# U-ViT sampler: DPM-Solver++ (Lu et al., arXiv 2211.01095) on the continuous-time view of the discrete schedule
# ----------------------------------------------------------------------------------------------------------------

def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear f(x) through increasing knots (xp, fp), extended linearly beyond the ends (``interpolate_fn``)."""
    i = torch.searchsorted(xp, x).clamp(1, xp.numel() - 1)
    x_lo, x_hi, f_lo, f_hi = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f_lo + (x - x_lo) * (f_hi - f_lo) / (x_hi - x_lo)


class DiscreteVP:
    """DPM-Solver's ``NoiseScheduleVP('discrete')``: log α(t) linear between knots (k/T, ½ log ᾱ_k), k = 1..T.

    α_t, σ_t = √(1 − α_t²), λ_t = log α_t − log σ_t (half log-SNR) and its inverse; all float64, t in (0, 1].
    """

    def __init__(self, schedule: NoiseSchedule):
        n = schedule.num_timesteps
        self.num_timesteps = n
        self.t_knots = torch.linspace(1.0 / n, 1.0, n, dtype=torch.float64)    # (T,) official t_discrete
        self.log_alpha_knots = 0.5 * torch.log(schedule.alphas_cumprod())      # (T,) decreasing in t

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return _interp(torch.as_tensor(t, dtype=torch.float64), self.t_knots, self.log_alpha_knots)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.log_alpha(t).exp()

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - (2.0 * self.log_alpha(t)).exp()).sqrt()

    def lambda_(self, t: torch.Tensor) -> torch.Tensor:
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(1.0 - (2.0 * log_alpha).exp())

    def inverse_lambda(self, lam: torch.Tensor) -> torch.Tensor:
        """t(λ): log α = −½ log(1 + e^{−2λ}), then the knots read backwards (log α increases as t decreases)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        return _interp(log_alpha, self.log_alpha_knots.flip(0), self.t_knots.flip(0))


def fast_orders(nfe: int) -> list[int]:
    """Step orders of DPM-Solver "fast" with order 3 (``get_time_steps_for_dpm_solver_fast``); they sum to ``nfe``.

    K = nfe // 3 + 1 steps: nfe % 3 == 0 -> [3]·(K − 2) + [2, 1]; == 1 -> [3]·(K − 1) + [1]; == 2 -> [3]·(K − 1) + [2].
    30 NFE -> nine 3rd-order steps, one 2nd-order, one 1st-order (11 steps).
    """
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    k = nfe // 3 + 1
    return {0: [3] * (k - 2) + [2, 1], 1: [3] * (k - 1) + [1], 2: [3] * (k - 1) + [2]}[nfe % 3]


def time_grid(vp: DiscreteVP, n: int, grid: str = "time-uniform", t_start: float = 1.0,
              t_end: float = 1e-3) -> torch.Tensor:
    """(n + 1,) float64 times from t_start down to t_end, uniform in t (official ``skip_type='time_uniform'``) or in λ
    (``'logSNR'``, DPM-Solver's recommendation; not what the paper ran)."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; use one of {GRIDS}")
    if not 0 < t_end < t_start <= 1:
        raise ValueError(f"need 0 < t_end < t_start <= 1, got t_start={t_start}, t_end={t_end}")
    if grid == "time-uniform":
        return torch.linspace(t_start, t_end, n + 1, dtype=torch.float64)
    lam = torch.linspace(vp.lambda_(t_start).item(), vp.lambda_(t_end).item(), n + 1, dtype=torch.float64)
    return vp.inverse_lambda(lam)


def dpm_solver_pp_update(data_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                         times: Sequence[float], vp: DiscreteVP) -> torch.Tensor:
    """One singlestep DPM-Solver++ update of order k = len(times) − 1 from s = times[0] to t = times[-1].

    ``data_fn(x, t)`` predicts x0; it is called k times, at s and at the intermediate times times[1:-1]. With
    h = λ_t − λ_s, r_i = (λ_{s_i} − λ_s)/h, φ1 = e^{−h} − 1, φ2 = φ1/h + 1 and m_i the x0 predictions
    (dpm_solver_pp.py ``dpm_solver_{first,second,third}_update``, predict_x0=True, solver_type='dpm_solver'):
        order 1  x_t = σ_t/σ_s·x − α_t φ1 m_s                                   (DDIM)
        order 2  x_t = σ_t/σ_s·x − α_t φ1 m_s − α_t φ1 (m_1 − m_s)/(2 r1)         (DPM-Solver++(2S))
        order 3  x_2 = σ_2/σ_s·x − α_2 (e^{−r2 h} − 1) m_s + (r2/r1) α_2 φ22 (m_1 − m_s),  φ22 = (e^{−r2 h} − 1)/(r2 h) + 1
                 x_t = σ_t/σ_s·x − α_t φ1 m_s + α_t φ2 (m_2 − m_s)/r2
    The official code receives r1, r2 and recovers s_i = t(λ_s + r_i h); we take the s_i themselves (equal up to
    rounding). Its defaults r1 = 1/2 (order 2) and 1/3, 2/3 (order 3) correspond to s_i = ``vp.inverse_lambda`` of
    λ_s + r_i h; the sampler passes grid points instead (see ``dpm_solver_pp_sample``).
    """
    order = len(times) - 1
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver++ steps have order 1, 2 or 3 (2-4 times), got {len(times)} times")
    ts = torch.tensor([float(v) for v in times], dtype=torch.float64)
    lam, alpha, sigma = vp.lambda_(ts).tolist(), vp.alpha(ts).tolist(), vp.sigma(ts).tolist()
    h = lam[-1] - lam[0]
    phi1 = math.expm1(-h)
    m_s = data_fn(x, ts[0])                                                        # (N, C, H, W)
    base = (sigma[-1] / sigma[0]) * x - (alpha[-1] * phi1) * m_s                   # first-order part, (N, C, H, W)
    if order == 1:
        return base
    r1 = (lam[1] - lam[0]) / h
    x_1 = (sigma[1] / sigma[0]) * x - (alpha[1] * math.expm1(-r1 * h)) * m_s       # first-order step to s1
    m_1 = data_fn(x_1, ts[1])
    if order == 2:
        return base - (0.5 / r1) * (alpha[-1] * phi1) * (m_1 - m_s)
    r2 = (lam[2] - lam[0]) / h
    phi22 = math.expm1(-r2 * h) / (r2 * h) + 1.0
    x_2 = ((sigma[2] / sigma[0]) * x - (alpha[2] * math.expm1(-r2 * h)) * m_s
           + (r2 / r1) * (alpha[2] * phi22) * (m_1 - m_s))                         # second-order step to s2
    m_2 = data_fn(x_2, ts[2])
    phi2 = phi1 / h + 1.0
    return base + (1.0 / r2) * (alpha[-1] * phi2) * (m_2 - m_s)


@torch.no_grad()
def dpm_solver_pp_sample(model_fn: ModelFn, noise: torch.Tensor, y: torch.Tensor | None,
                         schedule: NoiseSchedule = UVIT_SCHEDULE, nfe: int = 30, grid: str = "time-uniform",
                         t_start: float = 1.0, t_end: float = 1e-3) -> torch.Tensor:
    """DPM-Solver++ as U-ViT/efficientvit sample (``DPM_Solver(predict_x0=True).sample(steps=30, eps=1/N, T=1)``:
    method 'fast', order 3, skip_type 'time_uniform', solver_type 'dpm_solver', no thresholding, no final denoise).

    That 'fast' method lays ONE grid of ``nfe`` intervals from t_start to t_end and walks it with the steps of
    ``fast_orders(nfe)``: a step of order k spans k intervals and evaluates the model at its k grid points, so the
    model sees exactly the grid's first ``nfe`` times, each once; r1, r2 are then the λ-ratios of those grid points,
    not 1/3, 2/3. Newer LuChengTHU/dpm-solver (method 'singlestep', skip_type 'time_uniform') picks the same points;
    with 'logSNR' it would instead take K = nfe//3 + 1 equal λ-steps, whereas ``grid="logsnr"`` here is the 'fast'
    walk of an nfe-interval λ-uniform grid. The network is fed t·T (float32, or float64 for float64 samples); ε
    becomes the data prediction x0 = (x_t − σ_t ε)/α_t. ``noise`` is x at t_start.
    """
    orders = fast_orders(nfe)
    vp = DiscreteVP(schedule)
    grid_t = time_grid(vp, nfe, grid, t_start, t_end).tolist()                     # nfe + 1 times, descending
    n = noise.shape[0]

    def data_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32     # bf16 would round t·T
        t_in = (t * vp.num_timesteps).to(t_dtype).expand(n).to(x.device)           # (N,), network time t·T
        eps = model_fn(x, t_in, y)                                                 # (N, C, H, W)
        return (x - vp.sigma(t).item() * eps) / vp.alpha(t).item()                 # x0 prediction

    x, i = noise, 0
    for order in orders:
        x = dpm_solver_pp_update(data_fn, x, grid_t[i:i + order + 1], vp)          # (N, C, H, W)
        i += order
    return x


# ----------------------------------------------------------------------------------------------------------------
# DiT: IDDPM Gaussian diffusion with learned-range variance (Nichol & Dhariwal, arXiv 2102.09672)
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PosteriorCoefficients:
    """IDDPM ``GaussianDiffusion.__init__`` arrays for a β sequence, all (T',) float64 (T' = kept timesteps)."""
    betas: torch.Tensor                           # β_t
    alphas_cumprod: torch.Tensor                  # ᾱ_t
    posterior_variance: torch.Tensor              # β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), 0 at t = 0
    posterior_log_variance_clipped: torch.Tensor  # log β̃_t with β̃_0 replaced by β̃_1 (log 0 otherwise)
    posterior_mean_coef1: torch.Tensor            # of x0:  β_t √ᾱ_{t−1} / (1 − ᾱ_t)
    posterior_mean_coef2: torch.Tensor            # of x_t: (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t)

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> PosteriorCoefficients:
        betas = betas.to(torch.float64)
        abar = torch.cumprod(1.0 - betas, dim=0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        var = betas * (1.0 - abar_prev) / (1.0 - abar)
        return cls(betas=betas, alphas_cumprod=abar, posterior_variance=var,
                   posterior_log_variance_clipped=torch.log(torch.cat([var[1:2], var[1:]])),
                   posterior_mean_coef1=betas * abar_prev.sqrt() / (1.0 - abar),
                   posterior_mean_coef2=(1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar))


def space_timesteps(num_timesteps: int, section_counts: int | Sequence[int]) -> list[int]:
    """IDDPM ``respace.space_timesteps``: the sorted timesteps kept from 0..T−1.

    T is cut into len(section_counts) near-equal sections; a section of `size` steps keeps `count` of them, at the
    rounded running sums of the stride (size − 1)/(count − 1). For (1000, 250): 0, 4, 8, 12, ..., 995, 999 (stride
    999/249: 246 gaps of 4 and 3 of 5, so not every 4th). DiT passes the string "250"; give the int. The "ddimN"
    variant is not used by DiT and not offered.
    """
    counts = [section_counts] if isinstance(section_counts, int) else list(section_counts)
    size_per, extra = divmod(num_timesteps, len(counts))
    kept, start = [], 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(f"cannot keep {count} of a {size}-step section; use 1 <= steps <= {size}")
        stride = 1 if count == 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):  # accumulated, not j·stride, so float rounding matches IDDPM's loop
            kept.append(start + round(position))  # Python round (half to even), as IDDPM
            position += stride
        start += size
    return sorted(set(kept))


def respaced_betas(schedule: NoiseSchedule, kept: Sequence[int]) -> torch.Tensor:
    """IDDPM ``SpacedDiffusion``: β'_j = 1 − ᾱ_{kept[j]}/ᾱ_{kept[j−1]} (ᾱ before the first = 1), so ᾱ' = ᾱ[kept]."""
    abar = schedule.alphas_cumprod()[list(kept)]
    return 1.0 - abar / torch.cat([abar.new_ones(1), abar[:-1]])


@functools.lru_cache(maxsize=16)
def iddpm_coefficients(schedule: NoiseSchedule, steps: int | None = None) -> tuple[PosteriorCoefficients, tuple[int, ...]]:
    """Coefficients of the full (steps=None) or respaced process, and the original timestep of each index (cached:
    treat the tensors as read-only)."""
    if steps is None:
        return PosteriorCoefficients.from_betas(schedule.betas()), tuple(range(schedule.num_timesteps))
    kept = space_timesteps(schedule.num_timesteps, steps)
    if len(kept) < 2:  # IDDPM would index an empty array here
        raise ValueError(f"IDDPM respacing needs at least 2 kept timesteps (clipped posterior variance), got {steps}")
    return PosteriorCoefficients.from_betas(respaced_betas(schedule, kept)), tuple(kept)


def p_mean_log_variance(out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                        coef: PosteriorCoefficients) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance of p_θ(x_{t−1} | x_t) from a 2C-channel (ε, v) output (``p_mean_variance``, LEARNED_RANGE).

    log σ² = frac·log β_t + (1 − frac)·log β̃_t (clipped), frac = (v + 1)/2; the mean is the posterior mean at
    x0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t, not clipped (DiT samples and trains with clip_denoised=False).
    """
    c = x_t.shape[1]
    if out.shape[1] != 2 * c:
        raise ValueError(f"IDDPM needs a 2C = {2 * c}-channel (ε, v) output (learn_sigma=True), got {out.shape[1]}")
    eps, v = out[:, :c], out[:, c:]                                                  # 2×(N, C, H, W)
    frac = (v + 1) / 2
    log_var = frac * _at(coef.betas.log(), t, x_t) + (1 - frac) * _at(coef.posterior_log_variance_clipped, t, x_t)
    abar = _at(coef.alphas_cumprod, t, x_t)
    x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()                               # (N, C, H, W)
    mean = _at(coef.posterior_mean_coef1, t, x_t) * x0 + _at(coef.posterior_mean_coef2, t, x_t) * x_t
    return mean, log_var


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats (IDDPM ``normal_kl``)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + (logvar1 - logvar2).exp() + (mean1 - mean2) ** 2 * (-logvar2).exp())


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """IDDPM's tanh approximation of Φ (max error ~3e-4); kept because the official loss uses it."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of N(mean, e^{2·log_scale}) integrated over x's bin of width 2/255 on [−1, 1], the outer bins open to
    ±∞ (IDDPM ``discretized_gaussian_log_likelihood``, nats, elementwise). DiT applies it to latents unchanged."""
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (x - mean + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (x - mean - 1.0 / 255.0))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = (1.0 - cdf_min).clamp(min=1e-12).log()
    log_delta = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def vb_bits(out: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
            coef: PosteriorCoefficients) -> torch.Tensor:
    """Per-sample variational-bound term in bits (``_vb_terms_bpd``): KL(q(x_{t−1}|x_t, x0) || p_θ(x_{t−1}|x_t)) for
    t > 0, the decoder NLL −log p_θ(x0|x_1) for t = 0; both averaged over dimensions and divided by log 2. (N,)"""
    true_mean = _at(coef.posterior_mean_coef1, t, x_t) * x0 + _at(coef.posterior_mean_coef2, t, x_t) * x_t
    true_log_var = _at(coef.posterior_log_variance_clipped, t, x_t)
    mean, log_var = p_mean_log_variance(out, x_t, t, coef)
    kl = _mean_flat(normal_kl(true_mean, true_log_var, mean, log_var)) / math.log(2.0)
    nll = -_mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var)) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def iddpm_loss(model_fn: ModelFn, x0: torch.Tensor, y: torch.Tensor | None, schedule: NoiseSchedule = DIT_SCHEDULE,
               generator: torch.Generator | None = None, t: torch.Tensor | None = None,
               noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """DiT's training loss, per sample: MSE(ε) + vb, t ~ U{0..T−1} (``training_losses``, LossType.MSE, LEARNED_RANGE).

    The vb term sees the ε channels DETACHED, so it trains only the variance ("Learn the variance using the
    variational bound, but don't let it affect our mean prediction"). DiT's ``create_diffusion`` uses LossType.MSE
    (rescale_learned_sigmas=False), so vb is NOT multiplied by T/1000 (that is RESCALED_MSE; a no-op at T = 1000
    anyway). The official step loss is ``loss.mean()``. ``generator`` (on x0's device) draws t and ε.
    """
    n = x0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.num_timesteps, (n,), generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    coef, _ = iddpm_coefficients(schedule)
    abar = _at(coef.alphas_cumprod, t, x0)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise                               # (N, C, H, W)
    out = model_fn(x_t, t, y)                                                        # (N, 2C, H, W)
    c = x0.shape[1]
    frozen = torch.cat([out[:, :c].detach(), out[:, c:]], dim=1)                     # ε detached, v live
    vb = vb_bits(frozen, x0, x_t, t, coef)                                           # (N,)
    mse = _mean_flat((noise - out[:, :c]) ** 2)                                      # (N,)
    return {"loss": mse + vb, "mse": mse, "vb": vb, "t": t}


@torch.no_grad()
def iddpm_sample(model_fn: ModelFn, noise: torch.Tensor, y: torch.Tensor | None,
                 schedule: NoiseSchedule = DIT_SCHEDULE, steps: int = 250,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestral sampling (``p_sample_loop``) over the respaced process of ``steps`` kept timesteps, as DiT sample.py
    (``create_diffusion("250")``, clip_denoised=False): x ← mean + σ·z at every step but the last (index 0), where
    x ← mean. The network is fed the ORIGINAL timestep (``_WrappedModel``: timestep_map, no rescaling). ``noise`` is
    x_T; ``generator`` (on noise's device) draws z (the official code uses the global RNG).
    """
    coef, kept = iddpm_coefficients(schedule, steps)
    x, n = noise, noise.shape[0]
    for i in reversed(range(len(kept))):
        t_in = torch.full((n,), kept[i], dtype=torch.long, device=x.device)          # (N,) original timestep
        mean, log_var = p_mean_log_variance(model_fn(x, t_in, y), x, i, coef)        # 2×(N, C, H, W)
        if i > 0:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = mean + (0.5 * log_var).exp() * z
        else:
            x = mean
    return x


# ----------------------------------------------------------------------------------------------------------------
# The two formulations as configs (the paper's settings are the defaults)
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UViTDiffusion:
    """U-ViT's diffusion: ε-MSE training (``uvit_loss``) and DPM-Solver++ sampling (``dpm_solver_pp_sample``)."""
    schedule: NoiseSchedule = UVIT_SCHEDULE  # scaled-linear β 0.00085 -> 0.012, T = 1000
    nfe: int = 30                            # function evaluations (efficientvit num_inference_steps)
    grid: str = "time-uniform"               # the paper's grid; "logsnr" is more accurate but NOT what the paper ran
    t_start: float = 1.0                     # T of the official sample()
    t_end: float = 1e-3                      # eps = 1/N of the official sample()

    def __post_init__(self):
        fast_orders(self.nfe)                                   # validates nfe
        time_grid(DiscreteVP(self.schedule), 1, self.grid, self.t_start, self.t_end)  # validates grid and times

    def loss(self, model_fn: ModelFn, x0: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return uvit_loss(model_fn, x0, y, self.schedule, generator)

    def sample(self, model_fn: ModelFn, noise: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return dpm_solver_pp_sample(model_fn, noise, y, self.schedule, self.nfe, self.grid, self.t_start, self.t_end)


@dataclass(frozen=True)
class DiTDiffusion:
    """DiT's diffusion: MSE + vb training (``iddpm_loss``) and 250-step ancestral sampling (``iddpm_sample``)."""
    schedule: NoiseSchedule = DIT_SCHEDULE   # linear β 1e-4 -> 0.02, T = 1000
    steps: int = 250                         # respaced sampling steps (DiT sample.py --num-sampling-steps)

    def __post_init__(self):
        iddpm_coefficients(self.schedule, self.steps)  # validates steps

    def loss(self, model_fn: ModelFn, x0: torch.Tensor, y: torch.Tensor | None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return iddpm_loss(model_fn, x0, y, self.schedule, generator)

    def sample(self, model_fn: ModelFn, noise: torch.Tensor, y: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return iddpm_sample(model_fn, noise, y, self.schedule, self.steps, generator)
