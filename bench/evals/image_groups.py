"""What a claim needs from one evaluation run besides its headline numbers: each metric with one group of images
left out (the image part of the claim's interval, ``bench/stats.py``), and whether the model collapsed.

**Groups.** The embedded images are overlapping crops (each also mirrored) of a few source photos, so a crop is not
an independent draw: a group is a *source photo*. Any other data set is cut into ``BLOCKS`` contiguous blocks of
image indices (its images are taken as independent). Generated samples are grouped by sample index modulo
``BLOCKS`` (sample i has the same label and noise in every arm, so the groups pair across arms).

**Collapse.** A model that outputs one image whatever it is given has reconstructions that vary across inputs far
less than the inputs do. ``OutputSpread`` works on a ``SPREAD_SIDE`` x ``SPREAD_SIDE`` average-pooled copy of each
uint8 image (layout and colour, not texture) and gives two numbers: ``ratio``, the root-mean-square over pixels of
the outputs' spread across images over the originals' (1 for a perfect autoencoder, near 1 for a blurry but working
one, 0 for a constant output), and ``explained``, the share of the originals' variation across images that the
outputs reproduce, 1 − Σ(y − x)² / Σ(x − x̄)² (1 perfect, 0 for outputting the data set's mean image, below 0 for
outputs further from their inputs than that mean is: e.g. a blob whose brightness follows the input). A model is
``collapsed`` when ``ratio < COLLAPSED_BELOW`` or ``explained < EXPLAINED_BELOW``: either way its output says
little about its input.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bench.evals import metrics as M

BLOCKS = 16             # groups of a data set without source photos, and of generated samples
SPREAD_SIDE = 32        # the collapse measure looks at images pooled to this side
COLLAPSED_BELOW = 0.25  # output spread / input spread below this: the model ignores its input
EXPLAINED_BELOW = 0.0   # reconstructions no nearer their inputs than the data set's mean image is


def image_groups(dataset: Any, indices: Sequence[int]) -> tuple[list[str], str]:
    """The group of each image index and what a group is: the source photo of an embedded crop or region, else a
    block of indices."""
    plan = getattr(dataset, "plan", None)
    if plan is not None:
        return [str(plan[i].source) for i in indices], "photos"
    n = len(dataset)
    size = max(1, math.ceil(n / BLOCKS))
    return [f"images {(i // size) * size}-{min(n, (i // size + 1) * size) - 1}" for i in indices], "index blocks"


def sample_groups(n: int) -> list[str]:
    """Generated sample i's group: its index modulo ``BLOCKS`` (the same in every arm and seed)."""
    return [f"samples = {i % BLOCKS} mod {BLOCKS}" for i in range(n)]


def leave_one_out(groups: Sequence[str], value: Callable[[np.ndarray], float]) -> tuple[list[str], list[float]]:
    """``value(rows)`` with each group's rows left out, groups in sorted order."""
    g = np.asarray(groups, dtype=object)
    names = sorted(set(groups))
    return names, [float(value(np.flatnonzero(g != k))) for k in names]


GRAM_FID_UP_TO = 4000  # rows per set up to which FID subsets use the Gram form (n x n matrices), else statistics


def set_value(x: np.ndarray, y: np.ndarray, metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """``value(idx, ridx)``: FID or full-set KID of rows ``idx`` of x against rows ``ridx`` of y (distinct rows)."""
    if metric == "kid":
        return M.FullSetKID.prepare(x, y)
    if metric != "fid":
        raise ValueError(f"set_value: metric must be 'fid' or 'kid', got {metric!r}")
    if max(len(x), len(y)) <= GRAM_FID_UP_TO:
        return M.GramFID.prepare(x, y)

    def fid(idx: np.ndarray, ridx: np.ndarray) -> float:
        a, b = M.FeatureStats(x.shape[1]), M.FeatureStats(y.shape[1])
        a.add(x[idx])
        b.add(y[ridx])
        return M.fid_from_stats(a, b)
    return fid


def recon_jackknife(groups: Sequence[str], kind: str, per_image: dict[str, np.ndarray],
                    rec: np.ndarray | None, ref: np.ndarray | None) -> dict[str, Any]:
    """Every reconstruction metric with each group left out of both the reconstructions and the originals:
    per-image means from ``per_image``, rFID and KID from the features (None: not kept, e.g. over 10,000 images;
    those metrics then have no jackknife). ``{kind: {"groups": [...], metric: [value per group]}}``."""
    names = sorted(set(groups))
    out: dict[str, Any] = {"groups": names}
    if len(names) < 2:
        return {}
    for k, v in per_image.items():
        if len(v) == len(groups):
            out[k] = leave_one_out(groups, lambda rows, v=v: float(np.mean(v[rows])))[1]
    smallest_left = len(groups) - max(list(groups).count(k) for k in names)
    if rec is not None and ref is not None and smallest_left >= 2:  # a set metric needs 2 rows left
        for key, metric in (("rfid", "fid"), ("kid", "kid")):
            if metric == "kid" and len(rec) > M.FULL_SET_KID_UP_TO:
                continue
            value = set_value(rec, ref, metric)
            out[key] = leave_one_out(groups, lambda rows: value(rows, rows))[1]
    return {kind: out}


def generated_jackknife(samples: np.ndarray, refs: dict[str, np.ndarray], ref_groups: Sequence[str] | None,
                        ref_kind: str) -> dict[str, Any]:
    """gFID and KID of the samples against each reference in ``refs`` (score name -> reference features, e.g.
    {"gfid": images, "gfid_vs_recon": reconstructions}), with each block of samples left out (``sample_groups``)
    and, when the reference's groups are known, each reference group left out. KID keys replace "gfid" by "kid"."""
    s_groups = sample_groups(len(samples))
    out: dict[str, Any] = {"samples": {"groups": sorted(set(s_groups))}}
    if ref_groups is not None and len(set(ref_groups)) >= 2:
        out[f"reference {ref_kind}"] = {"groups": sorted(set(ref_groups))}
    every_s, every_r = np.arange(len(samples)), None
    for name, ref in refs.items():
        every_r = np.arange(len(ref))
        for key, metric in ((name, "fid"), (name.replace("gfid", "kid"), "kid")):
            if metric == "kid" and max(len(samples), len(ref)) > M.FULL_SET_KID_UP_TO:
                continue
            value = set_value(samples, ref, metric)
            out["samples"][key] = leave_one_out(s_groups, lambda rows: value(rows, every_r))[1]
            if f"reference {ref_kind}" in out:
                out[f"reference {ref_kind}"][key] = leave_one_out(ref_groups, lambda rows: value(every_s, rows))[1]
    return out


class OutputSpread:
    """Running per-pixel sums of pooled originals and outputs (float64; shards merge by adding ``arrays``)."""

    KEYS = ("spread_n", "spread_x", "spread_xx", "spread_y", "spread_yy", "spread_dd")

    def __init__(self, arrays: dict[str, np.ndarray] | None = None):
        shape = (3, SPREAD_SIDE, SPREAD_SIDE)
        zero = {"spread_n": np.zeros(()), "spread_x": np.zeros(shape), "spread_xx": np.zeros(shape),
                "spread_y": np.zeros(shape), "spread_yy": np.zeros(shape), "spread_dd": np.zeros(shape)}
        self.arrays = {k: np.array(arrays[k] if arrays is not None else zero[k], np.float64) for k in self.KEYS}

    def add(self, x_uint8: torch.Tensor, y_uint8: torch.Tensor) -> None:
        pooled = {}
        for name, u in (("x", x_uint8), ("y", y_uint8)):
            p = pooled[name] = F.adaptive_avg_pool2d(u.double(), SPREAD_SIDE).numpy()  # (B, 3, s, s)
            self.arrays[f"spread_{name}"] += p.sum(0)
            self.arrays[f"spread_{name}{name}"] += (p * p).sum(0)
        self.arrays["spread_dd"] += ((pooled["y"] - pooled["x"]) ** 2).sum(0)
        self.arrays["spread_n"] += x_uint8.shape[0]

    def merge(self, other: OutputSpread) -> None:
        for k in self.KEYS:
            self.arrays[k] += other.arrays[k]

    def ratio(self) -> float:
        """RMS over pixels of the outputs' spread across images over the originals'; NaN below 2 images or for
        constant originals."""
        n = float(self.arrays["spread_n"])
        if n < 2:
            return math.nan
        var = {k: (self.arrays[f"spread_{k}{k}"] - self.arrays[f"spread_{k}"] ** 2 / n) / (n - 1) for k in "xy"}
        den = float(np.clip(var["x"], 0, None).mean())
        return math.sqrt(float(np.clip(var["y"], 0, None).mean()) / den) if den > 0 else math.nan

    def explained(self) -> float:
        """1 − Σ(y − x)² / Σ(x − x̄)² over images and pooled pixels; NaN below 2 images or constant originals."""
        n = float(self.arrays["spread_n"])
        if n < 2:
            return math.nan
        total = float((self.arrays["spread_xx"] - self.arrays["spread_x"] ** 2 / n).clip(0, None).sum())
        return 1 - float(self.arrays["spread_dd"].sum()) / total if total > 0 else math.nan

    def collapsed(self) -> bool:
        return is_collapsed(self.ratio(), self.explained())


def spread_of(x: torch.Tensor, y: torch.Tensor) -> OutputSpread:
    """``OutputSpread`` of one batch of originals and outputs in [-1, 1] (the training probe's)."""
    s = OutputSpread()
    s.add(M.to_uint8(x.detach().cpu()), M.to_uint8(y.detach().cpu()))
    return s


def is_collapsed(ratio: float, explained: float = math.nan) -> bool:
    """The collapse rule (see the module docstring); an unknown number is no evidence of a collapse."""
    return bool((math.isfinite(ratio) and ratio < COLLAPSED_BELOW)
                or (math.isfinite(explained) and explained < EXPLAINED_BELOW))
