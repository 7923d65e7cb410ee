"""Image-quality metrics of the DC-AE reconstruction protocol (Table 2): PSNR, SSIM, LPIPS, Fréchet distance, KID.

Settings follow the official evaluator (efficientvit ``efficientvit/aecore/evaluator.py``; see
``shared/reference/evaluation.md`` §1):

- every metric sees **uint8** images, quantised by rounding ``(255·v + 0.5).clamp(0, 255)`` (``to_uint8``);
- PSNR: per-image MSE over (C, H, W), ``10·log10(255² / MSE)``, then the mean over images (MSE 0 → +inf);
- SSIM: Gaussian window 11×11, σ 1.5, data range 255, k1 0.01, k2 0.03, on RGB, mean over channels then images.
  Computed in float64: float32 ``E[x²] − E[x]²`` at 255² scale loses ~3e-4 to cancellation (evaluation.md §8.5);
- LPIPS: AlexNet backbone, lpips v0.1 heads, inputs uint8/255 in [0, 1] (``normalize=True``);
- FID: Fréchet distance of Gaussians fitted to features, accumulated as float64 sufficient statistics
  (n, Σf, Σffᵀ) so that shards and batches sum exactly; ``scipy.linalg.sqrtm`` with the 1e-6 eps fallback.

Everything here is a pure function or a small accumulator; the protocol that wires them together lives in
``bench/evals/reconstruction.py``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from models.losses import LPIPS_BACKBONE_FILES, display_path, hub_checkpoints_dir

# ----------------------------------------------------------------------------------------------------------------
# Quantisation
# ----------------------------------------------------------------------------------------------------------------


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 by rounding, as the official evaluator: ``(255·v + 0.5).clamp(0, 255)``, v in [0, 1]."""
    v = (x.detach().float() + 1) / 2  # (N, C, H, W) in [0, 1]
    return (255 * v + 0.5).clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------------------------
# PSNR
# ----------------------------------------------------------------------------------------------------------------


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of each image pair, uint8 (N, C, H, W) inputs; identical images give +inf. Returns float64 (N,)."""
    _check_uint8_pair(a, b)
    diff = a.double() - b.double()
    mse = diff.pow(2).flatten(1).mean(1)  # (N,)
    return 10 * torch.log10(255.0**2 / mse)  # mse 0 -> 255²/0 = +inf -> +inf dB


# ----------------------------------------------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSIMSettings:
    """The official SSIM settings (torchmetrics ``StructuralSimilarityIndexMeasure(data_range=(0, 255))``)."""

    window: int = 11  # Gaussian window side
    sigma: float = 1.5  # Gaussian σ
    data_range: float = 255.0  # uint8 images
    k1: float = 0.01
    k2: float = 0.03
    # "reflect": torchmetrics (the official evaluator) reflect-pads by (window-1)/2 and averages the whole SSIM map;
    # "crop": scikit-image / Wang et al. average only the windows inside the image (higher than "reflect" on small
    # crops: tests/test_metrics.py).
    border: str = "reflect"


SSIM_OFFICIAL = SSIMSettings()


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (d / sigma) ** 2)
    return g / g.sum()  # (size,)


def _band_matrix(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n − k + 1, n) matrix whose row i holds the k taps of ``g`` at columns i … i+k−1: ``m @ v`` filters v with g
    without padding ('valid', as ``conv2d``)."""
    m = torch.zeros(n - len(g) + 1, n, dtype=g.dtype, device=g.device)
    for j, tap in enumerate(g):
        m.diagonal(j).fill_(tap)
    return m


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, s: SSIMSettings = SSIM_OFFICIAL) -> torch.Tensor:
    """SSIM of each uint8 (N, C, H, W) pair, mean over channels and pixels. float64 (N,).

    ``border="reflect"`` (default, the official evaluator's torchmetrics ``StructuralSimilarityIndexMeasure(
    data_range=(0, 255))``): the images are reflect-padded by (window−1)/2 and the whole map is averaged.
    ``border="crop"``: scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255, channel_axis=-1)``, which drops the border windows instead.
    Both equalities are tested in tests/test_metrics.py.
    """
    _check_uint8_pair(a, b)
    h, w = a.shape[-2:]
    if min(h, w) < s.window:
        raise ValueError(f"SSIM needs images of at least {s.window}x{s.window} px, got {h}x{w}")
    x, y = a.double(), b.double()
    if s.border == "reflect":
        p = (s.window - 1) // 2
        x, y = F.pad(x, (p, p, p, p), mode="reflect"), F.pad(y, (p, p, p, p), mode="reflect")
    elif s.border != "crop":
        raise ValueError(f"SSIM border must be 'reflect' or 'crop', got {s.border!r}")
    # The separable Gaussian as two matrix products (along rows, then columns): as fast as float64 grouped conv2d on
    # CPU or faster (tables/perf-*.csv), and equal to it up to float64 rounding (tests/test_metrics.py)
    g = _gaussian_window(s.window, s.sigma).to(a.device)
    bh, bw = _band_matrix(x.shape[-2], g), _band_matrix(x.shape[-1], g)

    def blur(t: torch.Tensor) -> torch.Tensor:  # 'valid' filtering: (N, C, H, W) -> (N, C, H - k + 1, W - k + 1)
        return bh @ (t @ bw.T)

    mx, my = blur(x), blur(y)
    vx = (blur(x * x) - mx * mx).clamp_min(0)  # rounding can make a flat patch's variance slightly negative
    vy = (blur(y * y) - my * my).clamp_min(0)
    cxy = blur(x * y) - mx * my
    c1, c2 = (s.k1 * s.data_range) ** 2, (s.k2 * s.data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.flatten(1).mean(1)  # (N,)


# ----------------------------------------------------------------------------------------------------------------
# LPIPS (AlexNet), offline only
# ----------------------------------------------------------------------------------------------------------------

# The weight-cache location and the backbone file are those the training loss checks (one preflight, models/losses.py).

ALEXNET_FILE = LPIPS_BACKBONE_FILES["alex"]


def lpips_unavailable_reason() -> str | None:
    """Why LPIPS-AlexNet cannot run here (None when it can). A path check only: nothing is built or downloaded."""
    path = hub_checkpoints_dir() / ALEXNET_FILE
    if path.is_file() and path.stat().st_size > 0:
        return None
    try:
        import lpips  # noqa: F401 (only probes that the optional package is installed)
    except ImportError:
        return "unavailable (the lpips package is not installed; pip install lpips)"
    return (f"unavailable (no AlexNet weights at {display_path(path)}; place torchvision's {ALEXNET_FILE} (~233 MB) there "
            "to enable LPIPS)")


class LPIPSAlex:
    """LPIPS with the AlexNet backbone on [0, 1] inputs (the torchmetrics path the official evaluator uses).

    Construct only after ``lpips_unavailable_reason()`` returned None: the backbone then loads from the torch hub
    cache, so torchvision never reaches its download code.
    """

    def __init__(self, device: str = "cpu"):
        reason = lpips_unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        import lpips  # here: an optional package; lpips_unavailable_reason says when it is missing
        with warnings.catch_warnings():  # torchvision's "'pretrained' is deprecated" warning from inside lpips
            warnings.simplefilter("ignore")
            self.net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
        self.device = device

    @torch.no_grad()
    def per_image(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS of each uint8 (N, 3, H, W) pair, float64 (N,)."""
        _check_uint8_pair(a, b)
        fa = a.to(self.device).float() / 255
        fb = b.to(self.device).float() / 255
        return self.net(fa, fb, normalize=True).flatten().double().cpu()


# ----------------------------------------------------------------------------------------------------------------
# Fréchet distance from float64 sufficient statistics
# ----------------------------------------------------------------------------------------------------------------


class FeatureStats:
    """Running float64 sufficient statistics of a feature set: n, Σf, Σffᵀ (and, optionally, the features).

    Statistics of disjoint shards add up exactly (``merge``), which is what sharded evaluation relies on.
    ``keep_features`` also stores the raw features (for KID on small sets).
    """

    def __init__(self, dim: int, keep_features: bool = False):
        self.dim = dim
        self.n = 0
        self.sum = np.zeros(dim, np.float64)
        self.sum_outer = np.zeros((dim, dim), np.float64)
        self.features: list[np.ndarray] | None = [] if keep_features else None

    def add(self, feats: torch.Tensor | np.ndarray) -> None:
        f = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {f.shape}")
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.sum_outer += f.T @ f
        if self.features is not None:
            self.features.append(f)

    def merge(self, other: FeatureStats) -> None:
        if other.dim != self.dim:
            raise ValueError("cannot merge statistics of different feature dimensions")
        self.n += other.n
        self.sum += other.sum
        self.sum_outer += other.sum_outer
        if self.features is not None and other.features is not None:
            self.features.extend(other.features)

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """μ and the unbiased covariance (np.cov's ddof=1, as pytorch-fid and the official evaluator)."""
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, have {self.n}")
        mu = self.sum / self.n
        cov = (self.sum_outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov

    def all_features(self) -> np.ndarray:
        if self.features is None:
            raise ValueError("features were not kept (keep_features=False)")
        return np.concatenate(self.features) if self.features else np.zeros((0, self.dim))

    # plain arrays for .npz / torch.save (shard files, reference caches)
    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"n": np.array(self.n, np.int64), "sum": self.sum, "sum_outer": self.sum_outer}
        if self.features is not None:
            out["features"] = self.all_features()
        return out

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> FeatureStats:
        s = cls(int(d["sum"].shape[0]), keep_features="features" in d)
        s.n = int(d["n"])
        s.sum = np.array(d["sum"], np.float64)
        s.sum_outer = np.array(d["sum_outer"], np.float64)
        if "features" in d:
            s.features = [np.array(d["features"], np.float64)]
        return s


IMAGINARY_ATOL = 1e-3  # efficientvit apps/metrics/fid/fid.py (pytorch-fid): larger imaginary diagonals raise


class ImaginaryComponentError(ValueError):
    """The square root of Σ1Σ2 is not real to the official tolerance: the FID of these statistics is not defined."""


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), as pytorch-fid / the official evaluator (sqrtm, eps fallback)."""

    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(cov1.dot(cov2), disp=False)
    if not np.isfinite(covmean).all():  # singular product: add eps to the diagonals (pytorch-fid's fallback)
        offset = np.eye(cov1.shape[0]) * eps
        covmean = linalg.sqrtm((cov1 + offset).dot(cov2 + offset))
    if np.iscomplexobj(covmean):  # as the official evaluator: tiny imaginary parts are numerical error, large fail
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_ATOL):
            raise ImaginaryComponentError(f"the matrix square root has an imaginary component of "
                                          f"{np.max(np.abs(covmean.imag)):.3g} (> {IMAGINARY_ATOL} on the diagonal); "
                                          f"the official evaluator raises here too")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def fid_form(a: FeatureStats, b: FeatureStats) -> str:
    """Which form ``fid_from_stats`` uses for these sets (recorded beside every FID)."""
    if a.features is not None and b.features is not None and max(a.n, b.n) < a.dim:
        return f"exact low-rank form (N = {max(a.n, b.n)} < {a.dim} feature dims)"
    return "scipy.linalg.sqrtm (eps 1e-6 fallback), as the official evaluator"


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID of two feature sets. With raw features of fewer samples than dimensions, the exact low-rank form is used
    (``frechet_distance_low_rank``): sqrtm of a rank-deficient 2048×2048 product is slow (~1 min on 2 cores, twice
    with the eps fallback) and numerically poor."""
    if fid_form(a, b).startswith("exact low-rank"):
        return frechet_distance_low_rank(a.all_features(), b.all_features())
    mu1, c1 = a.mean_cov()
    mu2, c2 = b.mean_cov()
    return frechet_distance(mu1, c1, mu2, c2)


def frechet_distance_low_rank(f1: np.ndarray, f2: np.ndarray) -> float:
    """Exact FID from raw features when N < D: with Σi = AiᵀAi (Ai = centred features / sqrt(Ni − 1)), the nonzero
    eigenvalues of Σ1Σ2 are the squared singular values of A1A2ᵀ, so Tr((Σ1Σ2)^½) is the nuclear norm of A1A2ᵀ."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    a1 = (f1 - mu1) / np.sqrt(len(f1) - 1)  # (N1, D)
    a2 = (f2 - mu2) / np.sqrt(len(f2) - 1)  # (N2, D)
    tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + (a1 * a1).sum() + (a2 * a2).sum() - 2 * tr_covmean)


class GramFID:
    """``frechet_distance_low_rank`` on row subsets, from Gram matrices computed once: the claims' jackknife calls
    the FID of every leave-one-out set (~2 000 per rFID claim), and forming (N, 2048) products each time cost ~0.3 s
    a call. ``prepare(x, y)`` returns ``value(idx, ridx)``: the exact low-rank FID of rows ``idx`` of x against rows
    ``ridx`` of y (distinct rows; a multiset would bias it, so duplicates are refused), with the centring done in
    row space: A1A2ᵀ = H1 G12 H2 / sqrt((m1 − 1)(m2 − 1)) for centring matrices H. Equal to the direct form up to
    float64 rounding. Not unbiased on resampled rows: claims jackknife it rather than bootstrap it."""

    resamples_unbiased = False

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        return frechet_distance_low_rank(x, y)

    @staticmethod
    def prepare(x: np.ndarray, y: np.ndarray):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        gxx, gyy, gxy = x @ x.T, y @ y.T, x @ y.T

        def centred_trace(g: np.ndarray) -> float:  # Σ‖row − mean‖² from the Gram matrix of the rows
            return float(np.trace(g) - g.sum() / len(g))

        def value(idx: np.ndarray, ridx: np.ndarray) -> float:
            if len(np.unique(idx)) != len(idx) or len(np.unique(ridx)) != len(ridx):
                raise ValueError("GramFID takes distinct rows: the FID of a multiset is biased (use the jackknife)")
            g11, g22, g12 = gxx[np.ix_(idx, idx)], gyy[np.ix_(ridx, ridx)], gxy[np.ix_(idx, ridx)]
            m1, m2 = len(idx), len(ridx)
            c12 = g12 - g12.mean(1, keepdims=True) - g12.mean(0, keepdims=True) + g12.mean()
            tr_covmean = np.linalg.svd(c12, compute_uv=False).sum() / math.sqrt((m1 - 1) * (m2 - 1))
            mean_gap = g11.sum() / m1 ** 2 + g22.sum() / m2 ** 2 - 2 * g12.sum() / (m1 * m2)
            traces = centred_trace(g11) / (m1 - 1) + centred_trace(g22) / (m2 - 1)
            return float(mean_gap + traces - 2 * tr_covmean)
        return value


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's cubic polynomial kernel (x·y / d + 1)³."""
    return (x @ y.T / x.shape[1] + 1) ** 3


class FullSetKID:
    """Unbiased MMD² with KID's kernel on the whole two sets (no subsets): the same expectation as ``kid``, lower
    variance, and cheap to bootstrap. ``prepare(x, y)`` computes the three kernel matrices once and returns
    ``value(idx, ridx)``: the estimate on the multisets of rows ``idx`` of x and ``ridx`` of y (a bootstrap
    replicate, rows drawn with replacement) as a count-weighted U-statistic that leaves out every pair of copies of
    one row, not only the diagonal: k(x, x) of a duplicated row would otherwise inflate each replicate by about
    (k_self - k_cross) / n, far more than the estimate's own spread. Without duplicates it is the plain unbiased
    estimator."""

    resamples_unbiased = True

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.prepare(x, y)(np.arange(len(x)), np.arange(len(y)))

    @staticmethod
    def prepare(x: np.ndarray, y: np.ndarray):
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        dxx, dyy = np.diag(kxx).copy(), np.diag(kyy).copy()

        def within(k: np.ndarray, diag: np.ndarray, w: np.ndarray) -> float:
            # Σ over pairs of draws from different rows: wᵀKw − Σ w_i² K_ii, over m² − Σ w_i² such pairs
            m2, same = float(w.sum()) ** 2, float((w * w).sum())
            return float((w @ k @ w - (w * w) @ diag) / (m2 - same))

        def value(idx: np.ndarray, ridx: np.ndarray) -> float:
            wx = np.bincount(idx, minlength=len(x)).astype(np.float64)
            wy = np.bincount(ridx, minlength=len(y)).astype(np.float64)
            cross = float(wx @ kxy @ wy) / (wx.sum() * wy.sum())
            return within(kxx, dxx, wx) + within(kyy, dyy, wy) - 2 * cross
        return value


KEEP_FEATURES_UP_TO = 10_000  # raw features kept (exact low-rank FID, KID) for sets up to this size
FULL_SET_KID_UP_TO = 2000  # both sets at most this large: KID on the full sets (FullSetKID), else subset means


def kid_of_sets(f1: np.ndarray, f2: np.ndarray) -> tuple[float, str]:
    """KID of two feature sets and how it was computed: ``FullSetKID`` up to ``FULL_SET_KID_UP_TO`` rows each (the
    claims' statistic; three n x n kernels), else ``kid``'s mean over 100 subsets of 1000 (torch-fidelity's)."""
    if max(len(f1), len(f2)) <= FULL_SET_KID_UP_TO:
        return FullSetKID()(f1, f2), "unbiased MMD² on the full sets"
    return kid(f1, f2), "mean unbiased MMD² of 100 subsets of 1000"


def kid(f1: np.ndarray, f2: np.ndarray, subset_size: int | None = None, subsets: int = 100, seed: int = 0) -> float:
    """Kernel Inception Distance (unbiased MMD², cubic polynomial kernel), mean over random subsets.

    Unlike FID it is unbiased for small N, so it is the meaningful set-level number on the small embedded set.
    """
    n = min(len(f1), len(f2))
    m = min(subset_size or 1000, n)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    if m == len(f1) == len(f2):  # every subset is the whole of both sets, reordered: the same MMD² each time
        return float(mmd2_unbiased(f1, f2))
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)])
            for _ in range(subsets)]
    return float(np.mean(vals))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-size sets with KID's kernel (the diagonals of the within-set kernels left out)."""
    m = len(x)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()


# ----------------------------------------------------------------------------------------------------------------


def _check_uint8_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise TypeError(f"metrics take uint8 images (quantise with to_uint8 first), got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two (N, C, H, W) batches of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
