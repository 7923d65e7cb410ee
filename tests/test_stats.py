"""The claim statistics of bench/stats.py: the verdict rule, the paired bootstraps against plain reference
computations and normal theory, the seed rule, pairing by image id (issue #11, item 4)."""
from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from bench import stats as S

LOWER = S.Claim("synthetic: A has lower LPIPS than B", metric="lpips", lower_is_better=True)
HIGHER = S.Claim("synthetic: A has higher PSNR than B", metric="psnr", lower_is_better=False)


def _ids(n: int) -> list[str]:
    return [f"img{i:05d}" for i in range(n)]  # sorted order == index order


def _arms(shift: float, data_seed: int, n_seeds: tuple[int, int] = (3, 3), n_images: int = 200,
          ) -> tuple[S.ArmData, S.ArmData]:
    """Arm A = image difficulty + shift + noise, arm B = the same difficulty + noise; noise sd 1 per (seed, image).

    The shared per-image difficulty (sd 3) is what pairing cancels; there is no between-seed effect, so the interval
    over images should have its nominal coverage under a tie.
    """
    rng = np.random.default_rng(data_seed)
    difficulty = rng.normal(0.0, 3.0, n_images)
    a = difficulty + shift + rng.normal(0.0, 1.0, (n_seeds[0], n_images))
    b = difficulty + rng.normal(0.0, 1.0, (n_seeds[1], n_images))
    return S.ArmData(a, _ids(n_images)), S.ArmData(b, _ids(n_images))


# ---------------------------------------------------------------- the verdict rule


@pytest.mark.parametrize("lo, hi, lower_is_better, expected", [
    (-0.3, -0.1, True, "reproduced"),      # a − b < 0, lower is better: the paper's side
    (0.1, 0.3, True, "contradicted"),
    (-0.1, 0.2, True, "inconclusive"),
    (0.1, 0.3, False, "reproduced"),       # mirror: higher is better
    (-0.3, -0.1, False, "contradicted"),
    (-0.2, 0.1, False, "inconclusive"),
    (-0.2, 0.0, True, "inconclusive"),     # an end exactly at 0 does not exclude it
    (0.0, 0.2, False, "inconclusive"),
    (math.nan, 0.2, False, "inconclusive"),
])
def test_verdict_rule_table(lo, hi, lower_is_better, expected):
    assert S.verdict(lo, hi, lower_is_better) == expected


def test_verdict_refuses_reversed_interval():
    with pytest.raises(ValueError, match="out of order"):
        S.verdict(0.3, 0.1, True)


# ---------------------------------------------------------------- synthetic arms with known differences


@pytest.mark.parametrize("claim, shift, expected", [
    (LOWER, -2.0, "reproduced"),    # A lower by 2 noise sd: a clear win where lower is better
    (LOWER, +2.0, "contradicted"),  # a clear loss
    (HIGHER, +2.0, "reproduced"),
    (HIGHER, -2.0, "contradicted"),
    (LOWER, 0.0, "inconclusive"),   # a tie (data seed 0: its interval contains 0)
    (HIGHER, 0.0, "inconclusive"),
])
def test_known_differences(claim, shift, expected):
    a, b = _arms(shift, data_seed=0)
    r = S.paired_bootstrap_mean(a, b, claim)
    assert r.verdict == expected, r.reason
    assert r.n_seeds_a == r.n_seeds_b == 3 and r.n_images == 200
    assert r.lo <= r.diff <= r.hi
    assert r.diff == pytest.approx(shift, abs=0.25)
    assert r.mean_a - r.mean_b == pytest.approx(r.diff, abs=1e-12)


def test_tie_interval_has_about_nominal_coverage():
    """Over 50 data seeds, a tie is called reproduced or contradicted about 10 % of the time (90 % interval)."""
    called = [S.paired_bootstrap_mean(*_arms(0.0, data_seed=k), LOWER).verdict != "inconclusive" for k in range(50)]
    n_called = sum(called)
    # Binomial(50, 0.1): mean 5, sd 2.1. Too many: the interval is too narrow; none at all: suspiciously wide.
    assert 1 <= n_called <= 10, n_called


# ---------------------------------------------------------------- the interval against reference computations


def _linear_quantile(x: list[float], p: float) -> float:
    """numpy's default ('linear', Hyndman-Fan type 7) quantile, written out."""
    xs = sorted(x)
    h = (len(xs) - 1) * p
    k = math.floor(h)
    return xs[k] + (h - k) * (xs[min(k + 1, len(xs) - 1)] - xs[k])


def test_bootstrap_mean_equals_a_plain_loop():
    claim = S.Claim("ref", "psnr", lower_is_better=False, n_boot=500, seed=7)
    a, b = _arms(0.1, data_seed=3, n_seeds=(3, 4), n_images=60)
    # the reference: per replicate, the same Generator draw, then mean over (seeds, drawn images) of each arm
    rng = np.random.default_rng(claim.seed)
    reps = []
    for _ in range(claim.n_boot):
        idx = rng.integers(0, 60, size=60)
        reps.append(a.values[:, idx].mean() - b.values[:, idx].mean())
    lo, hi = _linear_quantile(reps, 0.05), _linear_quantile(reps, 0.95)
    # the function sees the images in another order (ids travel with them): pairing is by id, not position
    perm_a, perm_b = np.random.default_rng(1).permutation(60), np.random.default_rng(2).permutation(60)
    shuffled_a = S.ArmData(a.values[:, perm_a], [a.image_ids[i] for i in perm_a])
    shuffled_b = S.ArmData(b.values[:, perm_b], [b.image_ids[i] for i in perm_b])
    r = S.paired_bootstrap_mean(shuffled_a, shuffled_b, claim)
    assert r.lo == pytest.approx(lo, abs=1e-12) and r.hi == pytest.approx(hi, abs=1e-12)
    assert r.mean_a == pytest.approx(a.values.mean(), abs=1e-12)
    assert r.sd_a == pytest.approx(float(np.std(a.values.mean(1), ddof=1)), abs=1e-12)


def test_bootstrap_mean_matches_normal_theory_on_a_large_sample():
    a, b = _arms(0.05, data_seed=11, n_images=20_000)
    r = S.paired_bootstrap_mean(a, b, LOWER)
    d = a.values.mean(0) - b.values.mean(0)
    half = NormalDist().inv_cdf(0.95) * d.std(ddof=1) / math.sqrt(len(d))  # mean ± z·sd/√n
    assert (r.hi - r.lo) / 2 == pytest.approx(half, rel=0.10)
    assert (r.lo + r.hi) / 2 == pytest.approx(d.mean(), abs=0.10 * half)


# ---------------------------------------------------------------- the seed rule, pairing, output


@pytest.mark.parametrize("n_seeds", [(2, 2), (3, 2), (1, 3)])
def test_fewer_than_min_seeds_is_inconclusive_but_reports_the_interval(n_seeds):
    a, b = _arms(-2.0, data_seed=0, n_seeds=n_seeds)
    r = S.paired_bootstrap_mean(a, b, LOWER)
    n = min(n_seeds)
    assert r.verdict == "inconclusive"
    assert r.reason.startswith(f"{n} seeds < 3: inconclusive by rule"), r.reason
    assert "reproduced" in r.reason  # what the interval alone would have said
    assert math.isfinite(r.lo) and r.hi < 0  # still reported: it excludes 0 on the paper's side
    assert r.as_metrics()["n_seeds"] == n
    assert math.isnan(r.sd_a) == (n_seeds[0] == 1)


def test_arms_with_different_image_ids_are_refused():
    a, _ = _arms(0.0, data_seed=0)
    b = S.ArmData(np.zeros((3, 200)), _ids(199) + ["another"])
    with pytest.raises(ValueError, match="not paired: their image ids differ"):
        S.paired_bootstrap_mean(a, b, LOWER)


def test_arm_data_validation():
    with pytest.raises(ValueError, match="image ids"):
        S.ArmData(np.zeros((3, 4)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="not unique"):
        S.ArmData(np.zeros((3, 3)), ["a", "b", "a"])
    with pytest.raises(ValueError, match="non-finite"):
        S.ArmData(np.array([[1.0, np.inf]]), ["a", "b"])


def test_summarise_seeds():
    assert S.summarise_seeds(np.array([1.0, 2.0, 4.0])) == pytest.approx((7 / 3, math.sqrt(7 / 3)))
    mean, sd = S.summarise_seeds(np.array([5.0]))
    assert mean == 5.0 and math.isnan(sd)


def test_as_metrics_keys_and_types():
    a, b = _arms(-2.0, data_seed=0)
    m = S.paired_bootstrap_mean(a, b, LOWER).as_metrics()
    assert set(m) == {"verdict", "diff", "ci_lo", "ci_hi", "ci_level", "n_seeds", "n_images",
                      "mean_a", "sd_a", "mean_b", "sd_b"}
    assert m["verdict"] in S.VERDICTS and m["ci_level"] == 0.90 and m["n_seeds"] == 3 and m["n_images"] == 200
    assert all(type(v) is (str if k == "verdict" else int if k.startswith("n_") else float) for k, v in m.items())
    assert json.loads(json.dumps(m, allow_nan=False)) == m


# ---------------------------------------------------------------- set-level metrics (rFID, KID)


def _mean_sq_distance(rec: np.ndarray, ref: np.ndarray) -> float:
    """A cheap set metric: squared distance of the two sets' means (FID's first term)."""
    return float(((rec.mean(0) - ref.mean(0)) ** 2).sum())


def _row_distance(rec: np.ndarray, ref: np.ndarray) -> float:
    """A set metric that is small only if row i of rec is the reconstruction of row i of ref."""
    return float(((rec - ref) ** 2).sum(1).mean())


def _feature_arms(n: int = 80, d: int = 5, seed: int = 0):
    """Reference features and two arms of reconstructions: A close to them, B noisier and biased."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, d))
    a = ref + rng.normal(0.0, 0.05, (3, n, d))
    b = ref + 0.2 + rng.normal(0.0, 0.3, (3, n, d))
    return S.ArmData(a, _ids(n)), S.ArmData(b, _ids(n)), ref, _ids(n)


def test_set_metric_clear_win_and_determinism():
    a, b, ref, ref_ids = _feature_arms()
    claim = S.Claim("synthetic: A has lower rFID", "rfid", lower_is_better=True, n_boot_set=100)
    r1 = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _mean_sq_distance, claim)
    r2 = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _mean_sq_distance, claim)
    assert r1 == r2  # deterministic
    assert r1.verdict == "reproduced" and r1.hi < 0
    per_seed_a = [_mean_sq_distance(f, ref) for f in a.values]
    assert r1.mean_a == pytest.approx(np.mean(per_seed_a), abs=1e-12)
    assert r1.sd_a == pytest.approx(np.std(per_seed_a, ddof=1), abs=1e-12)


class _Prepared:
    """A set metric that says it is unbiased on resampled rows (as metrics.FullSetKID): bootstrapped, not
    jackknifed."""

    resamples_unbiased = True

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x, y):
        return self.fn(x, y)

    def prepare(self, x, y):
        return lambda i, j: self.fn(x[i], y[j])


Z90 = 1.6448536269514722  # standard normal quantile of 0.95


def test_set_metric_without_prepare_gets_the_delete_one_jackknife():
    """FID-like metrics (no unbiased resampled form): estimate ± z·se of the paired leave-one-out differences."""
    a, b, ref, ref_ids = _feature_arms(n=30)
    claim = S.Claim("ref", "rfid", lower_is_better=True, n_boot_set=50, seed=3)
    thetas = []
    for i in range(30):
        idx = np.delete(np.arange(30), i)  # the same image left out of both arms and of the reference
        fa = sum(_mean_sq_distance(a.values[s][idx], ref[idx]) for s in range(3)) / 3
        fb = sum(_mean_sq_distance(b.values[s][idx], ref[idx]) for s in range(3)) / 3
        thetas.append(fa - fb)
    se = np.sqrt(29 / 30 * np.sum((np.array(thetas) - np.mean(thetas)) ** 2))
    r = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _mean_sq_distance, claim)
    diff = (sum(_mean_sq_distance(a.values[s], ref) for s in range(3)) - sum(
        _mean_sq_distance(b.values[s], ref) for s in range(3))) / 3
    assert r.diff == pytest.approx(diff, abs=1e-12)
    assert (r.lo, r.hi) == pytest.approx((diff - Z90 * se, diff + Z90 * se), abs=1e-12)
    assert r.lo < r.diff < r.hi  # centred on its own estimate (the basic bootstrap interval was not, claim v3)


def test_the_jackknife_se_of_a_mean_is_the_textbook_one():
    x = np.random.default_rng(1).normal(size=50)
    lo, hi = S._jackknife_interval(lambda idx: float(x[idx].mean()), 50, float(x.mean()), 0.90)
    assert (hi - lo) / 2 == pytest.approx(Z90 * x.std(ddof=1) / np.sqrt(50), rel=1e-10)


def test_set_metric_with_prepare_equals_a_plain_bootstrap_loop():
    a, b, ref, ref_ids = _feature_arms(n=30)
    claim = S.Claim("ref", "kid", lower_is_better=True, n_boot_set=50, seed=3)
    rng = np.random.default_rng(claim.seed)
    reps = []
    for _ in range(claim.n_boot_set):
        idx = rng.integers(0, 30, size=30)  # the same rows of both arms and of the reference
        fa = sum(_mean_sq_distance(a.values[s][idx], ref[idx]) for s in range(3)) / 3
        fb = sum(_mean_sq_distance(b.values[s][idx], ref[idx]) for s in range(3)) / 3
        reps.append(fa - fb)
    r = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _Prepared(_mean_sq_distance), claim)
    assert r.lo == pytest.approx(_linear_quantile(reps, 0.05), abs=1e-12)  # percentile interval
    assert r.hi == pytest.approx(_linear_quantile(reps, 0.95), abs=1e-12)


def test_set_metric_is_paired_by_image_id():
    a, b, ref, ref_ids = _feature_arms()
    claim = S.Claim("paired", "rfid", lower_is_better=True, n_boot_set=60)
    base = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _row_distance, claim)
    # each input in its own order, ids travelling with the rows: the identical result
    perms = [np.random.default_rng(k).permutation(80) for k in range(3)]
    sa = S.ArmData(a.values[:, perms[0]], [a.image_ids[i] for i in perms[0]])
    sb = S.ArmData(b.values[:, perms[1]], [b.image_ids[i] for i in perms[1]])
    shuffled = S.paired_bootstrap_set_metric(sa, sb, ref[perms[2]], [ref_ids[i] for i in perms[2]], _row_distance,
                                             claim)
    assert shuffled == base
    assert base.mean_a == pytest.approx(5 * 0.05**2, rel=0.1)  # rows matched: only the reconstruction noise
    with pytest.raises(ValueError, match="not paired"):
        S.paired_bootstrap_set_metric(a, b, ref, _ids(79) + ["x"], _row_distance, claim)


# ---------------------------------------------------------------- set metrics of generated samples (gFID, KID)


def _generated_arms(shift_b: float, n: int = 120, n_ref: int = 90, d: int = 4, seed: int = 0):
    """A reference set and two arms of samples (3 seeds each); B's samples are shifted by ``shift_b``."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n_ref, d))
    a = rng.normal(size=(3, n, d))
    b = rng.normal(size=(3, n, d)) + shift_b
    return S.ArmData(a, list(range(n))), S.ArmData(b, list(range(n))), ref


@pytest.mark.parametrize("shift_b, expected", [(0.8, "reproduced"), (-0.8, "reproduced"), (0.0, "inconclusive")])
def test_generated_set_metric_known_differences(shift_b, expected):
    """A clear win (B's samples far from the reference, either side), and a tie (both arms drawn alike)."""
    a, b, ref = _generated_arms(shift_b)
    claim = S.Claim("A's samples are closer to the data", "gfid", lower_is_better=True, n_boot_set=100)
    r = S.bootstrap_generated_set_metric(a, b, ref, ref, _mean_sq_distance, claim)
    assert r.verdict == expected, r.reason
    loss = S.bootstrap_generated_set_metric(b, a, ref, ref, _mean_sq_distance, claim)  # arms swapped: a clear loss
    assert loss.verdict == ("contradicted" if shift_b else "inconclusive")


def test_generated_set_metric_equals_a_plain_loop():
    """Sample indices shared by both arms, the reference drawn from its own stream (seed + 1), percentile interval."""
    a, b, ref = _generated_arms(0.3, n=25, n_ref=20)
    ref_b = ref + 0.1  # e.g. arm B's autoencoder's reconstructions of the same reference images
    claim = S.Claim("ref", "kid", lower_is_better=True, n_boot_set=40, seed=5)
    rs, rr = np.random.default_rng(5), np.random.default_rng(6)
    reps = []
    for _ in range(claim.n_boot_set):
        idx, ridx = rs.integers(0, 25, size=25), rr.integers(0, 20, size=20)
        fa = np.mean([_mean_sq_distance(a.values[s][idx], ref[ridx]) for s in range(3)])
        fb = np.mean([_mean_sq_distance(b.values[s][idx], ref_b[ridx]) for s in range(3)])
        reps.append(fa - fb)
    diff = np.mean([_mean_sq_distance(a.values[s], ref) - _mean_sq_distance(b.values[s], ref_b) for s in range(3)])
    r = S.bootstrap_generated_set_metric(a, b, ref, ref_b, _Prepared(_mean_sq_distance), claim)
    assert r.diff == pytest.approx(diff, abs=1e-12) and r.n_images == 25
    assert r.lo == pytest.approx(_linear_quantile(reps, 0.05), abs=1e-12)
    assert r.hi == pytest.approx(_linear_quantile(reps, 0.95), abs=1e-12)


def test_generated_gfid_adds_the_jackknife_variances_of_samples_and_reference():
    a, b, ref = _generated_arms(0.3, n=25, n_ref=20)
    claim = S.Claim("ref", "gfid", lower_is_better=True)

    def d(idx, ridx):
        return np.mean([_mean_sq_distance(a.values[s][idx], ref[ridx]) - _mean_sq_distance(b.values[s][idx],
                                                                                          ref[ridx])
                        for s in range(3)])
    full = d(np.arange(25), np.arange(20))
    var = 0.0
    for n, leave in ((25, lambda i: d(np.delete(np.arange(25), i), np.arange(20))),
                     (20, lambda i: d(np.arange(25), np.delete(np.arange(20), i)))):
        th = np.array([leave(i) for i in range(n)])
        var += (n - 1) / n * np.sum((th - th.mean()) ** 2)
    r = S.bootstrap_generated_set_metric(a, b, ref, ref, _mean_sq_distance, claim)
    assert (r.lo, r.hi) == pytest.approx((full - Z90 * np.sqrt(var), full + Z90 * np.sqrt(var)), abs=1e-12)


def test_generated_set_metric_refuses_references_of_different_sets():
    a, b, ref = _generated_arms(0.0)
    claim = S.Claim("x", "kid", lower_is_better=True, n_boot_set=5)
    with pytest.raises(ValueError, match="same images"):
        S.bootstrap_generated_set_metric(a, b, ref, ref[:-1], _mean_sq_distance, claim)


def test_set_metric_scores_arm_b_against_its_own_reference_when_given():
    """Figure 3b: the same regions at two resolutions, each arm's rFID against its own originals."""
    a, b, ref, ref_ids = _feature_arms(n=20)
    ref_b = ref + 1.0
    claim = S.Claim("two refs", "rfid", lower_is_better=True)
    r = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _mean_sq_distance, claim, ref_b=ref_b)
    assert r.mean_b == pytest.approx(np.mean([_mean_sq_distance(f, ref_b) for f in b.values]), abs=1e-12)
    assert r.mean_a == pytest.approx(np.mean([_mean_sq_distance(f, ref) for f in a.values]), abs=1e-12)
    with pytest.raises(ValueError, match="same images"):
        S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _mean_sq_distance, claim, ref_b=ref_b[:-1])


# ---------------------------------------------------------------- contrasts: (a − base_a) − (b − base_b)


def test_a_per_image_contrast_is_the_difference_of_the_two_gaps():
    """'With shortcuts the f32 − f8 gap is smaller': a contrast of four arms, seed s minus seed s on each side. A
    gap of 1 against a gap of 3 is a clear win for lower-is-better; equal gaps are a tie; an uncontrasted claim on
    the same arms would see only a − b."""
    rng = np.random.default_rng(5)
    difficulty = rng.normal(0, 3, 200)
    arm = lambda shift: S.ArmData(difficulty + shift + rng.normal(0, 0.5, (3, 200)), _ids(200))  # noqa: E731
    a0, b0 = arm(0.0), arm(10.0)  # the bases differ a lot: a plain a − b would be dominated by it
    a, b = S.ArmData(a0.values + 1.0, _ids(200)), S.ArmData(b0.values + 3.0, _ids(200))
    r = S.paired_bootstrap_mean(a, b, LOWER, base_a=a0, base_b=b0)
    assert r.diff == pytest.approx(-2.0, abs=1e-9) and r.verdict == "reproduced"
    assert r.mean_a == pytest.approx(1.0, abs=1e-9) and r.mean_b == pytest.approx(3.0, abs=1e-9)  # the gaps
    tie = S.paired_bootstrap_mean(S.ArmData(a0.values + 2, _ids(200)), S.ArmData(b0.values + 2, _ids(200)), LOWER,
                                  base_a=a0, base_b=b0)
    assert tie.diff == pytest.approx(0.0, abs=1e-9) and tie.verdict == "inconclusive"
    with pytest.raises(ValueError, match="seed s"):
        S.paired_bootstrap_mean(a, b, LOWER, base_a=S.ArmData(a0.values[:2], _ids(200)))


def test_a_set_metric_contrast_equals_the_per_seed_differences_and_its_jackknife():
    """rFID contrast: each seed's FID minus its base seed's, averaged; the jackknife leaves each image out of all
    four arms and the reference (checked against a plain loop)."""
    a, b, ref, ref_ids = _feature_arms(n=24)
    rng = np.random.default_rng(9)
    a0, b0 = (S.ArmData(ref + rng.normal(0.0, sd, (3, 24, 5)), ref_ids) for sd in (0.1, 0.2))
    claim = S.Claim("contrast", "rfid", lower_is_better=True)
    r = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _mean_sq_distance, claim, base_a=a0, base_b=b0)

    def contrast(idx):
        side = lambda x, x0: np.mean([_mean_sq_distance(x.values[s][idx], ref[idx])  # noqa: E731
                                      - _mean_sq_distance(x0.values[s][idx], ref[idx]) for s in range(3)])
        return side(a, a0) - side(b, b0)
    every = np.arange(24)
    thetas = np.array([contrast(np.delete(every, i)) for i in range(24)])
    se = np.sqrt(23 / 24 * np.sum((thetas - thetas.mean()) ** 2))
    assert r.diff == pytest.approx(contrast(every), abs=1e-12)
    assert (r.lo, r.hi) == pytest.approx((r.diff - Z90 * se, r.diff + Z90 * se), abs=1e-12)


def test_a_contrast_scores_each_base_against_its_own_arms_reference():
    """Two references (Figure 3b style: the same regions at two resolutions): base_b is scored against ref_b, as
    arm B is; scored against arm A's reference it would be far off."""
    rng = np.random.default_rng(4)
    ids = _ids(30)
    ref, ref_b = rng.normal(size=(30, 5)), 5.0 + rng.normal(size=(30, 5))
    near = lambda r, sd: S.ArmData(r + rng.normal(0.0, sd, (3, 30, 5)), ids)  # noqa: E731
    a, a0, b, b0 = near(ref, 0.1), near(ref, 0.2), near(ref_b, 0.1), near(ref_b, 0.3)
    claim = S.Claim("contrast", "rfid", lower_is_better=True)
    r = S.paired_bootstrap_set_metric(a, b, ref, ids, _mean_sq_distance, claim, ref_b=ref_b, base_a=a0, base_b=b0)
    gap_b = np.mean([_mean_sq_distance(b.values[s], ref_b) - _mean_sq_distance(b0.values[s], ref_b) for s in range(3)])
    assert r.mean_b == pytest.approx(gap_b, abs=1e-12)


def test_a_kid_contrast_is_bootstrapped_like_a_plain_loop():
    """A metric that resamples unbiased (KID): the contrast of each replicate, the same image draw for all four arms
    and the reference; the percentile interval of a plain loop."""
    a, b, ref, ref_ids = _feature_arms(n=20)
    rng = np.random.default_rng(2)
    a0, b0 = (S.ArmData(ref + rng.normal(0.0, sd, (3, 20, 5)), ref_ids) for sd in (0.1, 0.2))
    claim = S.Claim("kid contrast", "kid", lower_is_better=True, n_boot_set=60, seed=1)
    r = S.paired_bootstrap_set_metric(a, b, ref, ref_ids, _Prepared(_mean_sq_distance), claim, base_a=a0, base_b=b0)

    def contrast(idx):
        side = lambda x, x0: np.mean([_mean_sq_distance(x.values[s][idx], ref[idx])  # noqa: E731
                                      - _mean_sq_distance(x0.values[s][idx], ref[idx]) for s in range(3)])
        return side(a, a0) - side(b, b0)
    reps = np.array([contrast(idx) for idx in S._bootstrap_indices(20, 60, 1)])
    assert (r.lo, r.hi) == pytest.approx(tuple(np.quantile(reps, [0.05, 0.95])), abs=1e-12)
    assert r.diff == pytest.approx(contrast(np.arange(20)), abs=1e-12)
