"""The one verdict rule (bench/stats.py): its coverage by simulation, verdicts on synthetic arms, clustering by
source photo, pairing, contrasts, power and the family-wise rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench import stats as S

# ---- a simulated claim: seeds x images with known variances ------------------------------------------------------


def _simulate(rng, n_seeds: int, seed_sd: float, n_groups: int = 8, per_group: int = 5, group_sd: float = 1.0,
              image_sd: float = 1.0, reps: int = 2000, true_diff: float = 0.0, dup: int = 1):
    """``reps`` independent replications of a two-arm claim on a per-image metric: arm value of seed s on image i
    of group g = mu + seed effect (sd ``seed_sd``) + group effect + image effect (each arm its own effects), every
    replication with new seeds and new images. Returns per-seed set values (reps, 2, S) and leave-one-group-out
    values (reps, 2, S, G). ``dup`` repeats every image inside its group (the same information counted twice)."""
    seeds = rng.normal(0, seed_sd, (reps, 2, n_seeds, 1))
    groups = np.repeat(rng.normal(0, group_sd, (reps, 2, 1, n_groups)), per_group * dup, axis=3)
    images = np.repeat(rng.normal(0, image_sd, (reps, 2, 1, n_groups * per_group)), dup, axis=3)
    y = seeds + groups + images + rng.normal(0, 0.3, (reps, 2, n_seeds, n_groups * per_group * dup))
    y[:, 0] += true_diff
    g = np.repeat(np.arange(n_groups), per_group * dup)
    total = y.mean(-1)
    loo = np.stack([y[..., g != k].mean(-1) for k in range(n_groups)], axis=-1)
    return total, loo


def _interval(total, loo, r, level=0.90):
    names = tuple(f"photo{k}" for k in range(loo.shape[-1]))
    a = S.ArmValues(total[r, 0], (S.GroupJackknife("photos", names, loo[r, 0]),))
    b = S.ArmValues(total[r, 1], (S.GroupJackknife("photos", names, loo[r, 1]),))
    return S.decide(S.Claim("sim", "psnr", False, level=level), a, b)


def _image_only_interval(total, loo, r, level=0.90):
    """The rule this replaces: the image interval of the seed-averaged difference, seeds held fixed."""
    d = total[r, 0].mean() - total[r, 1].mean()
    se = math.sqrt(S.jackknife_variance(loo[r, 0].mean(0) - loo[r, 1].mean(0)))
    z = sps.norm.ppf((1 + level) / 2)
    return d - z * se, d + z * se


def _ratio_sd(n_seeds: int, ratio: float, n_groups: int = 8, per_group: int = 5) -> float:
    """The seed sd whose seed standard error of a − b is ``ratio`` times the image standard error."""
    img_var_mean = 2 * (1.0 / n_groups + (1.0 + 0.09 / n_seeds) / (n_groups * per_group))
    return ratio * math.sqrt(img_var_mean) / math.sqrt(2 / n_seeds)


@pytest.mark.parametrize("n_seeds", [3, 5, 10])
@pytest.mark.parametrize("ratio", [0.25, 1.0, 5.0])
def test_the_interval_covers_its_level_over_seeds_and_images(n_seeds, ratio):
    """Nominal 90 % covers 87-93 % of new seeds and new images, from image-dominated to seed-dominated spreads."""
    rng = np.random.default_rng(1000 * n_seeds + int(100 * ratio))
    total, loo = _simulate(rng, n_seeds, _ratio_sd(n_seeds, ratio), reps=1500)
    hits = [(lambda res: res.lo <= 0 <= res.hi)(_interval(total, loo, r)) for r in range(total.shape[0])]
    assert 0.87 <= np.mean(hits) <= 0.93


def test_the_image_only_interval_fails_the_coverage_test_when_seeds_dominate():
    rng = np.random.default_rng(7)
    total, loo = _simulate(rng, 3, _ratio_sd(3, 5.0), reps=1500)
    hits = [(lambda lo_hi: lo_hi[0] <= 0 <= lo_hi[1])(_image_only_interval(total, loo, r))
            for r in range(total.shape[0])]
    assert np.mean(hits) < 0.6


# ---- verdicts on synthetic arms ------------------------------------------------------------------------------------


def _arm(values, loo=None, groups=8):
    values = np.asarray(values, float)
    if loo is None:
        return S.ArmValues(values)
    names = tuple(f"p{k}" for k in range(groups))
    return S.ArmValues(values, (S.GroupJackknife("photos", names, loo),))


def _loo(values, spread, groups=8, seed=0):
    """Leave-one-group-out values around each seed's value with a given jackknife spread."""
    rng = np.random.default_rng(seed)
    dev = rng.normal(0, 1, groups)
    dev = (dev - dev.mean()) / dev.std() * spread
    return np.asarray(values, float)[:, None] + dev[None, :]


@pytest.mark.parametrize("a, b, lower, expected", [
    ([10.0, 10.2, 9.9], [20.0, 20.1, 19.8], True, "reproduced"),     # clear win (lower rFID)
    ([30.0, 30.2, 29.9], [20.0, 20.1, 19.8], True, "contradicted"),  # clear loss
    ([20.0, 20.5, 19.6], [20.1, 19.7, 20.3], True, "inconclusive"),  # tie
    ([10.0, 30.0, 50.0], [20.0, 40.0, 60.0], True, "inconclusive"),  # large seed spread, tiny image spread
])
def test_verdicts_on_synthetic_arms(a, b, lower, expected):
    res = S.decide(S.Claim("x", "rfid", lower), _arm(a, _loo(a, 0.01)), _arm(b, _loo(b, 0.01, seed=1)))
    assert res.verdict == expected


def test_a_large_seed_spread_is_inconclusive_though_the_image_interval_excludes_zero():
    a, b = np.array([10.0, 30.0, 50.0]), np.array([20.0, 40.0, 60.0])
    la, lb = _loo(a, 0.01), _loo(b, 0.01, seed=1)
    res = S.decide(S.Claim("x", "rfid", True), _arm(a, la), _arm(b, lb))
    se_img = math.sqrt(S.jackknife_variance(la.mean(0) - lb.mean(0)))
    assert abs(res.diff) > 3 * se_img  # the image-only rule would have decided
    assert res.verdict == "inconclusive" and res.se_seed > 100 * res.se_image


def test_a_large_image_spread_makes_a_clear_seed_difference_inconclusive():
    a, b = np.array([10.0, 10.1, 9.9]), np.array([11.0, 11.1, 10.9])
    res = S.decide(S.Claim("x", "rfid", True), _arm(a, _loo(a, 3.0)), _arm(b, _loo(b, 3.0, seed=5)))
    assert res.verdict == "inconclusive" and res.se_image > res.se_seed


def test_fewer_than_min_seeds_is_inconclusive_by_rule():
    res = S.decide(S.Claim("x", "rfid", True), _arm([1.0, 1.1]), _arm([5.0, 5.1]))
    assert res.lo < res.hi < 0 and res.verdict == "inconclusive" and "by rule" in res.reason


def test_t_interval_with_seeds_only_is_welch():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([5.0, 7.0, 6.5, 8.0])
    res = S.decide(S.Claim("x", "rfid", True), _arm(a), _arm(b))
    w = sps.ttest_ind(a, b, equal_var=False)
    ci = w.confidence_interval(0.90)
    assert res.lo == pytest.approx(ci.low) and res.hi == pytest.approx(ci.high)
    assert res.p_value == pytest.approx(w.pvalue)
    assert res.image_groups == "" and "seeds only" in res.reason


def test_a_paired_design_uses_the_per_seed_differences():
    a, b = np.array([10.0, 20.0, 30.0, 40.0]), np.array([11.0, 21.2, 30.9, 41.1])
    paired = S.decide(S.Claim("x", "rfid", True, design="paired"), _arm(a), _arm(b))
    t = sps.ttest_rel(a, b)
    assert paired.lo == pytest.approx(t.confidence_interval(0.90).low)
    assert paired.verdict == "reproduced"
    assert S.decide(S.Claim("x", "rfid", True), _arm(a), _arm(b)).verdict == "inconclusive"  # Welch ignores pairs


def test_paired_design_refuses_unequal_seeds():
    with pytest.raises(ValueError, match="paired"):
        S.decide(S.Claim("x", "rfid", True, design="paired"), _arm([1.0, 2.0, 3.0]), _arm([1.0, 2.0]))


# ---- clustering by source photo ------------------------------------------------------------------------------------


def _per_image_arm(y: np.ndarray, g: np.ndarray) -> S.ArmValues:
    """An arm from per-image values (S, N) and each image's photo: set value = mean, one value per photo left out."""
    names = tuple(f"photo{k}" for k in np.unique(g))
    loo = np.stack([y[:, g != k].mean(1) for k in np.unique(g)], axis=1)
    return S.ArmValues(y.mean(1), (S.GroupJackknife("photos", names, loo),))


def test_duplicating_every_image_does_not_shrink_the_interval():
    """Groups are photos: counting every crop twice adds no information, and the interval must not narrow."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(6), 4)
    ya, yb = rng.normal(0, 1, (3, 24)), rng.normal(0.3, 1, (3, 24))
    claim = S.Claim("x", "psnr", False)
    one = S.decide(claim, _per_image_arm(ya, g), _per_image_arm(yb, g))
    two = S.decide(claim, _per_image_arm(np.repeat(ya, 2, 1), np.repeat(g, 2)),
                   _per_image_arm(np.repeat(yb, 2, 1), np.repeat(g, 2)))
    assert two.se_image == pytest.approx(one.se_image) and two.hi - two.lo == pytest.approx(one.hi - one.lo)
    per_crop = S.decide(claim, _per_image_arm(ya, np.arange(24)), _per_image_arm(yb, np.arange(24)))
    dup_crops = S.decide(claim, _per_image_arm(np.repeat(ya, 2, 1), np.arange(48)),
                         _per_image_arm(np.repeat(yb, 2, 1), np.arange(48)))
    assert dup_crops.se_image < 0.8 * per_crop.se_image  # what grouping by crop would have done


def test_arms_with_different_groups_are_refused():
    a = S.ArmValues([1.0, 2.0, 3.0], (S.GroupJackknife("photos", ("a", "b"), np.ones((3, 2))),))
    b = S.ArmValues([1.0, 2.0, 3.0], (S.GroupJackknife("photos", ("a", "c"), np.ones((3, 2))),))
    with pytest.raises(ValueError, match="not paired"):
        S.decide(S.Claim("x", "rfid", True), a, b)


def test_groups_are_paired_by_name_not_position():
    v = np.array([[1.0, 2.0, 3.0]] * 3)
    a = S.ArmValues([2.0, 2.0, 2.0], (S.GroupJackknife("photos", ("x", "y", "z"), v),))
    b = S.ArmValues([2.0, 2.0, 2.0], (S.GroupJackknife("photos", ("z", "y", "x"), v[:, ::-1]),))
    assert S.decide(S.Claim("x", "rfid", True), a, b).se_image == 0.0


def test_generation_sources_add_their_variances():
    names = ("g0", "g1", "g2", "g3")
    sa = S.GroupJackknife("samples", names, np.array([[1.0, 2.0, 3.0, 4.0]] * 3))
    ra = S.GroupJackknife("reference photos", names, np.array([[0.0, 0.0, 2.0, 2.0]] * 3))
    sb = S.GroupJackknife("samples", names, np.zeros((3, 4)))
    rb = S.GroupJackknife("reference photos", names, np.zeros((3, 4)))
    res = S.decide(S.Claim("x", "kid", True), S.ArmValues([5.0, 5.0, 5.0], (sa, ra)),
                   S.ArmValues([1.0, 1.0, 1.0], (sb, rb)))
    expected = S.jackknife_variance(np.array([1.0, 2, 3, 4])) + S.jackknife_variance(np.array([0.0, 0, 2, 2]))
    assert res.se_image == pytest.approx(math.sqrt(expected))
    assert res.image_groups == "4 samples, 4 reference photos"


# ---- contrasts -----------------------------------------------------------------------------------------------------


def test_a_contrast_is_the_difference_of_the_two_gaps_with_the_four_group_variance():
    a, a0 = np.array([5.0, 6.0, 7.0]), np.array([1.0, 1.5, 2.5])
    b, b0 = np.array([9.0, 11.0, 10.0]), np.array([1.2, 1.0, 1.9])
    res = S.decide(S.Claim("x", "rfid", True), _arm(a), _arm(b), _arm(a0), _arm(b0))
    assert res.diff == pytest.approx((a - a0).mean() - (b - b0).mean())
    var = sum(np.var(x, ddof=1) / 3 for x in (a, a0, b, b0))
    assert res.se_seed == pytest.approx(math.sqrt(var))


def test_a_paired_contrast_uses_the_per_seed_contrasts():
    a, a0, b, b0 = (np.array(v) for v in ([5.0, 6.0, 7.0], [1.0, 1.5, 2.5], [9.0, 11.0, 10.0], [1.2, 1.0, 1.9]))
    res = S.decide(S.Claim("x", "rfid", True, design="paired"), _arm(a), _arm(b), _arm(a0), _arm(b0))
    c = (a - a0) - (b - b0)
    assert res.se_seed == pytest.approx(c.std(ddof=1) / math.sqrt(3))


# ---- power ---------------------------------------------------------------------------------------------------------


def test_power_asks_for_more_seeds_where_the_seed_spread_hides_an_effect():
    a, b = np.array([10.0, 14.0, 6.0]), np.array([13.0, 17.0, 9.0])
    res = S.decide(S.Claim("x", "rfid", True), _arm(a, _loo(a, 0.01)), _arm(b, _loo(b, 0.01, seed=1)))
    assert res.verdict == "inconclusive" and 3 < res.seeds_for_power <= S.MAX_SEEDS_SEARCHED
    more = S.seed_variance_at([_arm(a), _arm(b)], [1, -1], "independent", res.seeds_for_power)
    assert S.power_at(res.diff, more, 0.9) >= S.POWER


def test_power_says_when_no_number_of_seeds_decides_it():
    a, b = np.array([10.0, 10.1, 9.9]), np.array([10.5, 10.6, 10.4])
    res = S.decide(S.Claim("x", "rfid", True), _arm(a, _loo(a, 2.0)), _arm(b, _loo(b, 2.0, seed=2)))
    assert res.seeds_for_power == -1 and "at any number of seeds on these images" in res.power_note


# ---- the rule and the family-wise view -----------------------------------------------------------------------------


@pytest.mark.parametrize("lo, hi, lower, expected", [
    (-2, -1, True, "reproduced"), (1, 2, True, "contradicted"), (-1, 1, True, "inconclusive"),
    (1, 2, False, "reproduced"), (-2, -1, False, "contradicted"), (0, 1, False, "inconclusive"),
    (math.nan, 1, True, "inconclusive"),
])
def test_verdict_rule_table(lo, hi, lower, expected):
    assert S.verdict(lo, hi, lower) == expected


def test_holm_and_benjamini_hochberg():
    p = [0.001, 0.04, 0.03, 0.2, math.nan]
    assert S.holm(p, 0.10) == [True, False, False, False, False]  # 0.03 > 0.1/4
    assert S.benjamini_hochberg(p, 0.10) == [True, True, True, False, False]
    assert S.holm([0.01, 0.02], 0.05) == [True, True]


def test_as_metrics_keys():
    res = S.decide(S.Claim("x", "rfid", True), _arm([1.0, 2, 3], _loo([1.0, 2, 3], 0.1)),
                   _arm([4.0, 5, 6], _loo([4.0, 5, 6], 0.1, seed=1)))
    m = res.as_metrics()
    assert {"verdict", "diff", "ci_lo", "ci_hi", "df", "p_value", "design", "image_groups", "seeds_for_power",
            "se_seed", "se_image", "power"} <= set(m)
    assert m["image_groups"] == "8 photos"
