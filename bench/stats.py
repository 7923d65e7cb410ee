"""Statistics and the one verdict rule for every claim row.

A claim compares two arms (e.g. "with Residual Autoencoding" vs "no shortcut") on one metric. Each arm is a set of
models trained with different seeds and evaluated on one image set. What the claim is about is the arms'
difference on *another* set of training seeds and *another* sample of images, so the interval of ``a − b`` counts
both sources of variation:

- **seeds**: a t interval on the per-seed set-level values (the rFID, or the mean PSNR, of one trained model):
  Welch's variance ``s_a²/n_a + s_b²/n_b`` for independently trained arms, or the paired variance ``s_d²/n`` of
  the per-seed differences where the claim's design pairs seed s of both arms (they continue one parent checkpoint,
  or share initial weights and data order). A contrast (``(a − a0) − (b − b0)``) uses the same two forms on the
  per-seed contrasts, or, unpaired, the four-group sum ``Σ s_g²/n_g``. The design is declared in the claim's
  definition (``Claim.design``), never chosen from the data.
- **images**: the delete-one-group jackknife variance of ``a − b`` where a group is a *source photo* (the
  embedded images are overlapping crops of a few photos, so crops are not independent draws; duplicating every
  image inside its group leaves this variance unchanged). Each evaluation run records its metric with each group
  left out (``GroupJackknife``), so a claim needs no features. Generation claims have two image sources (the
  samples, grouped by sample index; the reference images, grouped by photo): their variances add.

``se² = v_seed + v_image``, degrees of freedom by Welch–Satterthwaite (a jackknife over G groups has G − 1), a
two-sided Student t interval at ``level`` (90 %). ``reproduced`` when it lies on the paper's side of 0,
``contradicted`` when on the other, ``inconclusive`` when it contains 0 or either arm has fewer than
``min_seeds`` seeds. ``tests/test_stats.py`` checks the coverage by simulation with known seed and image
variances.

Each result also says how many seeds per arm would decide the claim with 80 % power at the measured spread
(``seeds_for_power``), or that no number of seeds would on these images. ``holm`` and ``benjamini_hochberg`` give
the family-wise view over a set of distinct claims.

Only numpy, scipy and the standard library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from scipy import stats as sps

VERDICTS = ("reproduced", "contradicted", "inconclusive")
Design = Literal["independent", "paired"]
POWER = 0.8              # the power ``seeds_for_power`` asks for
MAX_SEEDS_SEARCHED = 200  # beyond this many seeds per arm a claim counts as not decidable by seeds


# ---- inputs --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GroupJackknife:
    """One source of image variation of one arm: per seed, the set-level value with each group left out.

    ``groups[g]`` names group g (a source photo, or a block of sample indices); ``values`` is (n_seeds, n_groups).
    Two arms are paired by group name, never by position."""

    source: str                    # what was resampled, e.g. "photos", "samples", "reference photos"
    groups: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        v = np.array(self.values, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != len(self.groups) or len(self.groups) < 2:
            raise ValueError(f"GroupJackknife({self.source}): values must be (n_seeds, n_groups >= 2) with one "
                             f"name per group, got shape {v.shape} and {len(self.groups)} names")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"GroupJackknife({self.source}): group names repeat")
        order = np.argsort(np.array(self.groups, dtype=object).astype(str), kind="stable")
        v = v[:, order]
        v.setflags(write=False)
        object.__setattr__(self, "groups", tuple(str(self.groups[i]) for i in order))
        object.__setattr__(self, "values", v)


@dataclass(frozen=True, eq=False)
class ArmValues:
    """One arm of a claim on one metric: each seed's set-level value on all images (``values``, (n_seeds,)) and,
    per source of image variation, its leave-one-group-out values (empty: the image part is unknown, then the
    interval is the seed part alone and the result says so)."""

    values: np.ndarray
    jackknife: tuple[GroupJackknife, ...] = ()

    def __post_init__(self) -> None:
        v = np.array(self.values, dtype=np.float64).reshape(-1)
        if v.size < 1 or not np.isfinite(v).all():
            raise ValueError(f"ArmValues.values must be finite and non-empty, got {v}")
        for j in self.jackknife:
            if j.values.shape[0] != v.size:
                raise ValueError(f"ArmValues: {j.source} jackknife has {j.values.shape[0]} seeds, values {v.size}")
        v.setflags(write=False)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "jackknife", tuple(self.jackknife))

    @property
    def n_seeds(self) -> int:
        return int(self.values.size)

    def minus(self, base: ArmValues) -> ArmValues:
        """Seed s minus seed s of ``base`` (a contrast arm), for the values and every jackknife source."""
        if base.n_seeds != self.n_seeds:
            raise ValueError(f"a contrast pairs seed s with seed s: {self.n_seeds} seeds vs a base of "
                             f"{base.n_seeds}")
        jk = _paired_sources(self, base)
        return ArmValues(self.values - base.values,
                         tuple(GroupJackknife(x.source, x.groups, x.values - y.values) for x, y in jk))


def _paired_sources(a: ArmValues, b: ArmValues) -> list[tuple[GroupJackknife, GroupJackknife]]:
    """The jackknife sources of two arms, matched by name; a ValueError if they hold different groups."""
    if {j.source for j in a.jackknife} != {j.source for j in b.jackknife}:
        raise ValueError(f"the arms resample different image sources: {[j.source for j in a.jackknife]} vs "
                         f"{[j.source for j in b.jackknife]}")
    by_name = {j.source: j for j in b.jackknife}
    pairs = [(j, by_name[j.source]) for j in a.jackknife]
    for x, y in pairs:
        if x.groups != y.groups:
            raise ValueError(f"the arms are not paired: their {x.source} groups differ "
                             f"({sorted(set(x.groups) ^ set(y.groups))[:3]} ...)")
    return pairs


@dataclass(frozen=True)
class Claim:
    """One claim of the paper as the harness decides it. Arm a is the arm the paper says is better:
    ``lower_is_better=True`` (rFID, KID) means the paper claims a < b, ``False`` (PSNR) that a > b."""

    statement: str               # what is compared, in words
    metric: str                  # the metric key of the runs, e.g. "rfid", "psnr"
    lower_is_better: bool        # the paper's direction (see above)
    design: Design = "independent"  # "paired": seed s of both arms is one unit (declared, never from the data)
    level: float = 0.90          # two-sided level of the t interval of a − b
    min_seeds: int = 3           # fewer seeds in either arm: "inconclusive" by rule

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"Claim.level must be in (0, 1), got {self.level}")
        if self.design not in ("independent", "paired"):
            raise ValueError(f"Claim.design must be 'independent' or 'paired', got {self.design!r}")
        if self.min_seeds < 2:
            raise ValueError("Claim.min_seeds must be >= 2 (a seed spread needs two seeds)")


# ---- result --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimResult:
    """The statistics of one claim. Means/sds are across seeds of the per-seed set-level value (sd: ddof=1, NaN for
    one seed); ``diff = mean_a − mean_b``; ``[lo, hi]`` is the t interval of ``diff`` at ``level`` with ``df``
    degrees of freedom; ``se_seed`` / ``se_image`` its two parts; ``p_value`` two-sided, from the same t."""

    mean_a: float
    sd_a: float
    mean_b: float
    sd_b: float
    diff: float
    lo: float
    hi: float
    level: float
    se_seed: float
    se_image: float
    df: float
    p_value: float
    n_seeds_a: int
    n_seeds_b: int
    design: str
    image_groups: str            # e.g. "8 photos"; "" when the image part is unknown
    seeds_for_power: int         # seeds per arm for 80 % power at the measured spread; -1: not by seeds
    verdict: str
    reason: str
    power_note: str = field(default="")

    def as_metrics(self) -> dict[str, float | int | str]:
        """Flat CSV/metrics.json keys. ``n_seeds`` is the smaller arm's (the one the seed rule looks at)."""
        return {"verdict": self.verdict, "diff": float(self.diff), "ci_lo": float(self.lo), "ci_hi": float(self.hi),
                "ci_level": float(self.level), "n_seeds": int(min(self.n_seeds_a, self.n_seeds_b)),
                "mean_a": float(self.mean_a), "sd_a": float(self.sd_a), "mean_b": float(self.mean_b),
                "sd_b": float(self.sd_b), "se_seed": float(self.se_seed), "se_image": float(self.se_image),
                "df": float(self.df), "p_value": float(self.p_value), "design": self.design,
                "image_groups": self.image_groups, "seeds_for_power": int(self.seeds_for_power),
                "power": self.power_note}


# ---- the rule ------------------------------------------------------------------------------------------------------


def verdict(lo: float, hi: float, lower_is_better: bool) -> str:
    """The one verdict rule. ``[lo, hi]`` is an interval for a − b, a being the arm the paper says is better.

    "reproduced": the interval lies strictly on the paper's side of 0 (below it when lower is better);
    "contradicted": strictly on the other side; "inconclusive": it contains 0 (an end at 0 counts), or an end is
    NaN.
    """
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"interval ends out of order: lo {lo} > hi {hi}")
    below, above = hi < 0, lo > 0
    if not (below or above):
        return "inconclusive"
    return "reproduced" if below == lower_is_better else "contradicted"


def summarise_seeds(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample sd (ddof=1) of per-seed values, shape (n_seeds,); the sd is NaN for a single seed."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 1:
        raise ValueError(f"summarise_seeds takes a non-empty (n_seeds,) array, got shape {v.shape}")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


@dataclass(frozen=True)
class Variance:
    """A variance estimate of ``a − b`` and the Satterthwaite pieces: ``parts`` (v_k, df_k) that add to it."""

    parts: tuple[tuple[float, float], ...]

    @property
    def value(self) -> float:
        return float(sum(v for v, _ in self.parts))

    @property
    def df(self) -> float:
        """Welch–Satterthwaite: (Σ v_k)² / Σ v_k² / df_k; inf when every part has infinite df or all are 0."""
        den = sum(v * v / d for v, d in self.parts if v > 0 and math.isfinite(d))
        total = self.value
        return total * total / den if den > 0 else math.inf

    def __add__(self, other: Variance) -> Variance:
        return Variance(self.parts + other.parts)


def seed_variance(groups: Sequence[np.ndarray], signs: Sequence[int], design: Design) -> Variance:
    """The seed part of Var(Σ sign_k · mean(group_k)): per-group ``s²/n`` (independent arms; Welch), or, paired,
    the variance of the per-seed combination Σ sign_k · x_k[s] over n (all groups must have n seeds)."""
    if design == "paired":
        n = {len(g) for g in groups}
        if len(n) != 1:
            raise ValueError(f"a paired design needs the same seeds in every arm, got {sorted(len(g) for g in groups)}")
        d = sum(s * np.asarray(g, np.float64) for s, g in zip(signs, groups))
        m = len(d)
        return Variance(((float(d.var(ddof=1)) / m if m > 1 else math.nan, m - 1.0),))
    return Variance(tuple((float(np.var(g, ddof=1)) / len(g) if len(g) > 1 else math.nan, len(g) - 1.0)
                          for g in groups))


def jackknife_variance(theta: np.ndarray) -> float:
    """Delete-one-group jackknife variance of a statistic from its G leave-one-out values:
    (G − 1)/G · Σ (θ₍g₎ − θ̄)²."""
    t = np.asarray(theta, np.float64)
    g = t.size
    return float((g - 1) / g * ((t - t.mean()) ** 2).sum())


def image_variance(arms: Sequence[ArmValues], signs: Sequence[int]) -> tuple[Variance, str]:
    """The image part of Var(Σ sign_k · mean_s(arm_k)): per source, the jackknife of the seed-averaged
    combination with each group left out of every arm at once (df G − 1), and a description of the groups."""
    if any(not a.jackknife for a in arms):
        return Variance(()), ""
    first = arms[0]
    parts, names = [], []
    for j0 in first.jackknife:
        per_arm = [dict((j.source, j) for j in a.jackknife)[j0.source] for a in arms]
        if any(j.groups != j0.groups for j in per_arm):
            raise ValueError(f"the arms are not paired: their {j0.source} groups differ")
        theta = sum(s * j.values.mean(0) for s, j in zip(signs, per_arm))  # (G,)
        parts.append((jackknife_variance(theta), len(j0.groups) - 1.0))
        names.append(f"{len(j0.groups)} {j0.source}")
    return Variance(tuple(parts)), ", ".join(names)


def t_interval(diff: float, var: Variance, level: float) -> tuple[float, float, float, float]:
    """(lo, hi, df, two-sided p) of a Student t interval ``diff ± t·sqrt(var)``; NaNs when var is unknown."""
    v, df = var.value, var.df
    if not math.isfinite(v) or not var.parts:
        return math.nan, math.nan, math.nan, math.nan
    se = math.sqrt(v)
    q = float(sps.t.ppf((1 + level) / 2, df)) if math.isfinite(df) else float(sps.norm.ppf((1 + level) / 2))
    if se == 0:
        return diff, diff, df, (0.0 if diff != 0 else 1.0)
    p = float(2 * sps.t.sf(abs(diff) / se, df)) if math.isfinite(df) else float(2 * sps.norm.sf(abs(diff) / se))
    return diff - q * se, diff + q * se, df, p


# ---- a claim's decision --------------------------------------------------------------------------------------------


def _terms(a: ArmValues, b: ArmValues, base_a: ArmValues | None,
           base_b: ArmValues | None) -> tuple[list[ArmValues], list[int]]:
    """The arms of ``Σ sign_k · mean(arm_k)``: a − b, or the contrast (a − a0) − (b − b0)."""
    if (base_a is None) != (base_b is None):
        raise ValueError("a contrast needs a base for both arms")
    if base_a is None:
        return [a, b], [1, -1]
    return [a, base_a, b, base_b], [1, -1, -1, 1]


def seed_variance_at(arms: Sequence[ArmValues], signs: Sequence[int], design: Design, n: int) -> Variance:
    """The seed part if every arm had ``n`` seeds with the spreads measured now (the power calculation)."""
    now = seed_variance([a.values for a in arms], signs, design)
    return Variance(tuple((v * len_now / n, n - 1.0) for (v, _), len_now in
                          zip(now.parts, [arms[0].n_seeds] if design == "paired" else [a.n_seeds for a in arms])))


def power_at(diff: float, var: Variance, level: float) -> float:
    """Probability that the t interval at ``level`` excludes 0 on diff's side when the true difference is ``diff``
    and the variance ``var`` (noncentral t)."""
    v, df = var.value, var.df
    if not math.isfinite(v) or v <= 0:
        return math.nan if not math.isfinite(v) else 1.0
    df = df if math.isfinite(df) else 1e6
    q = float(sps.t.ppf((1 + level) / 2, df))
    return float(sps.nct.sf(q, df, abs(diff) / math.sqrt(v)))


def seeds_for_power(diff: float, arms: Sequence[ArmValues], signs: Sequence[int], design: Design,
                    v_image: Variance, level: float) -> tuple[int, str]:
    """Seeds per arm for ``POWER`` at the measured difference and spreads (taken as true: an optimistic, "observed"
    power); (-1, why) when even unlimited seeds would leave the power under ``POWER`` on these images (a claim may
    still be decided on them, less reliably), or the spread is unknown."""
    if min(a.n_seeds for a in arms) < 2:
        return -1, "unknown (a seed spread needs 2 seeds per arm)"
    if v_image.parts and power_at(diff, v_image, level) < POWER:
        return -1, f"under {POWER:.0%} power at any number of seeds on these images (more source photos would help)"
    for n in range(2, MAX_SEEDS_SEARCHED + 1):
        if power_at(diff, seed_variance_at(arms, signs, design, n) + v_image, level) >= POWER:
            return n, f"{n} seeds per arm for {POWER:.0%} power at this spread"
    return -1, f"more than {MAX_SEEDS_SEARCHED} seeds per arm at this spread"


def decide(claim: Claim, a: ArmValues, b: ArmValues, base_a: ArmValues | None = None,
           base_b: ArmValues | None = None) -> ClaimResult:
    """The claim's statistic ``a − b`` (or ``(a − a0) − (b − b0)``), its t interval over seeds and images, the
    verdict, and the seeds the power calculation asks for."""
    arms, signs = _terms(a, b, base_a, base_b)
    if claim.design == "paired" and len({x.n_seeds for x in arms}) != 1:
        raise ValueError(f"claim {claim.statement!r} is declared paired but its arms have "
                         f"{[x.n_seeds for x in arms]} seeds")
    xa = a.minus(base_a) if base_a is not None else a
    xb = b.minus(base_b) if base_b is not None else b
    (mean_a, sd_a), (mean_b, sd_b) = summarise_seeds(xa.values), summarise_seeds(xb.values)
    diff = mean_a - mean_b
    v_seed = seed_variance([x.values for x in arms], signs, claim.design)
    v_img, groups = image_variance(arms, signs)
    lo, hi, df, p = t_interval(diff, v_seed + v_img, claim.level)
    n_seeds = min(x.n_seeds for x in arms)
    need, power_note = seeds_for_power(diff, arms, signs, claim.design, v_img, claim.level)
    v, reason = _verdict_and_reason(claim, lo, hi, df, n_seeds, groups)
    return ClaimResult(mean_a, sd_a, mean_b, sd_b, diff, lo, hi, claim.level, math.sqrt(v_seed.value)
                       if math.isfinite(v_seed.value) else math.nan, math.sqrt(v_img.value), df, p,
                       xa.n_seeds, xb.n_seeds, claim.design, groups, need, v, reason, power_note)


def _verdict_and_reason(claim: Claim, lo: float, hi: float, df: float, n_seeds: int,
                        groups: str) -> tuple[str, str]:
    images = f"over seeds and {groups}" if groups else "over seeds only (no image jackknife recorded)"
    interval = (f"the {claim.level:.0%} t interval ({claim.design} seeds, {images}, df {df:.1f}) of a - b "
                f"[{lo:.4g}, {hi:.4g}]")
    by_interval = verdict(lo, hi, claim.lower_is_better)
    if n_seeds < claim.min_seeds:
        return "inconclusive", f"{n_seeds} seeds < {claim.min_seeds}: inconclusive by rule ({interval}: {by_interval})"
    side = "a lower" if claim.lower_is_better else "a higher"
    return by_interval, {"reproduced": f"{interval} excludes 0 in the paper's direction ({side})",
                         "contradicted": f"{interval} excludes 0 against the paper's direction ({side})",
                         "inconclusive": f"{interval} contains 0"}[by_interval]


# ---- several claims ------------------------------------------------------------------------------------------------


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rule: which hypotheses are rejected at family-wise error ``alpha`` (NaN: never)."""
    p = [math.inf if math.isnan(x) else x for x in p_values]
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        out[i] = True
    return out


def benjamini_hochberg(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Benjamini–Hochberg: which hypotheses are rejected at false-discovery rate ``alpha`` (NaN: never)."""
    p = [math.inf if math.isnan(x) else x for x in p_values]
    order = sorted(range(len(p)), key=lambda i: p[i])
    k = max((r + 1 for r, i in enumerate(order) if p[i] <= alpha * (r + 1) / len(p)), default=0)
    out = [False] * len(p)
    for i in order[:k]:
        out[i] = True
    return out
