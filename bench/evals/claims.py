"""Eval ``claim``: one claim of the paper decided by the one rule of ``bench/stats.py``.

A claim names two arms (``ClaimConfig.arm_a``: the arm the paper says is better, ``arm_b``), each a tuple of runs,
one per training seed: reconstruction runs on the same images, or generate runs with the same labels and reference.
Each arm run records its set-level value in ``metrics.json`` and, in ``jackknife.json`` (committed), the same
metric with each source photo (or block of samples) left out; the claim reads those two files only, so it is
decided from committed runs. A run without ``jackknife.json`` is recomputed first, with the same config.

A contrast (``base_a`` / ``base_b``, reconstruction arms only) decides (a − base_a) − (b − base_b) seed by seed.
The claim's design (``independent`` or ``paired`` seeds) is declared in its definition and printed in its row.

A claim whose arm (or, for generation, the autoencoder of an arm) collapsed (``image_groups.is_collapsed``) is
``invalid: <arm> collapsed``: it is neither reproduced nor contradicted by a model that does not work.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import stats
from bench.configs import ClaimConfig, GenerateConfig, ReconConfig
from bench.errors import Unavailable
from bench.evals import JACKKNIFE_FILE, PER_IMAGE_FILE
from bench.evals.reconstruction import PSNR_CAP_DB
from bench.outputs import ScoredImages, TrainedAutoencoder

PER_IMAGE_METRICS = ("psnr", "ssim", "lpips")


def _value(run, metric: str) -> float:
    """A run's set-level value; a per-image mean with +inf PSNR counted as ``PSNR_CAP_DB`` (as its jackknife)."""
    if metric in PER_IMAGE_METRICS:
        per = json.loads((Path(run.dir) / PER_IMAGE_FILE).read_text())[metric]
        if not per:
            raise Unavailable(f"{run.run_id} has no per-image {metric} ({run.metrics.get(metric)})")
        return float(np.mean([PSNR_CAP_DB if v is None else v for v in per]))
    v = run.metrics.get(metric)
    if not isinstance(v, (int, float)):
        raise Unavailable(f"{run.run_id} has no {metric} value ({v})")
    return float(v)


def arm_values(runs, metric: str) -> stats.ArmValues:
    """One arm: per seed the value and, per image source its jackknife holds this metric for, the values with each
    group left out."""
    jks = [json.loads((Path(r.dir) / JACKKNIFE_FILE).read_text()) for r in runs]
    sources = [s for s in jks[0] if all(metric in jk.get(s, {}) for jk in jks)]
    groups = []
    for s in sources:
        names = {tuple(jk[s]["groups"]) for jk in jks}
        if len(names) != 1:
            raise Unavailable(f"the seeds of one arm were evaluated on different {s}; give them one data set")
        groups.append(stats.GroupJackknife(s, names.pop(), np.array([jk[s][metric] for jk in jks])))
    return stats.ArmValues(np.array([_value(r, metric) for r in runs]), tuple(groups))


def _check_paired(runs) -> None:
    """The rule pairs images: every arm scored the same images (one data set identity), or the same source regions
    at two resolutions (one ``_regions_id``)."""
    scored = [ScoredImages.of(r.metrics) for r in runs]
    if len({s.dataset_id for s in scored}) == 1:
        return
    regions = {s.regions_id for s in scored}
    if len(regions) == 1 and None not in regions:
        return
    raise Unavailable("not decidable by the paired rule: the arms were evaluated on different images (give "
                      "them the same data set, or the embedded 'test-regions' set at two resolutions)")


def _check_generated(cfg: ClaimConfig) -> None:
    """Samples pair by index (the same labels: one sampling seed and count) and every arm is scored against one
    reference set."""
    arms = cfg.arm_a + cfg.arm_b
    if len({(c.seed, c.n_samples) for c in arms}) != 1:
        raise Unavailable("the generate runs of this claim draw different labels per sample index; give them one "
                          "sampling seed and sample count")
    if len({(c.reference, c.n_reference, c.reference_kind, c.user_reference) for c in arms}) != 1:
        raise Unavailable("the arms are scored against different reference sets; give both one reference")


def collapsed_arms(cfg: ClaimConfig, ctx) -> list[str]:
    """The arms with a collapsed model: a reconstruction run's own check, or a generate run's autoencoder (its
    training run's probe)."""
    out = []
    for name, arm in (("a", cfg.arm_a), ("b", cfg.arm_b), ("a's base", cfg.base_a), ("b's base", cfg.base_b)):
        for c in arm:
            if isinstance(c, GenerateConfig):
                ae = c.model.autoencoder_checkpoint if c.model is not None else None
                bad = ae is not None and TrainedAutoencoder.of(ctx.recorded(ae)).collapsed
                model = c.model.autoencoder if c.model is not None else "?"
            else:
                bad, model = ScoredImages.of(ctx.input(c).metrics).collapsed, c.model
            if bad and f"{model} (arm {name})" not in out:
                out.append(f"{model} (arm {name})")
    return out


def test_id(metric: str, *arms) -> str:
    """One id per test: the metric and the arm runs, so two artefacts showing the same test count it once."""
    key = json.dumps([metric] + [[r.run_id for r in arm] for arm in arms])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def run(cfg: ClaimConfig, ctx) -> dict[str, Any]:
    """Eval ``claim`` (fields: ``bench.configs.ClaimConfig``)."""
    claim = stats.Claim(cfg.statement, cfg.metric, cfg.lower_is_better, design=cfg.design, level=cfg.level,
                        min_seeds=cfg.min_seeds)
    if isinstance(cfg.arm_a[0], GenerateConfig):
        _check_generated(cfg)
    # each seed's completed run: the runner computed it first, with the jackknife.json its eval declares
    a, b, a0, b0 = ([ctx.input(c) for c in arm] for arm in (cfg.arm_a, cfg.arm_b, cfg.base_a, cfg.base_b))
    if isinstance(cfg.arm_a[0], ReconConfig):
        _check_paired(a + b + a0 + b0)
    result = stats.decide(claim, *(arm_values(x, cfg.metric) if x else None for x in (a, b, a0, b0)))
    out = {**result.as_metrics(), "_how_verdict": result.reason, "_statement": cfg.statement,
           "_from": [r.run_id for r in a + b + a0 + b0], "pairing": cfg.pairing or cfg.design, "kind": cfg.kind,
           "test_id": test_id(cfg.metric, a, b, a0, b0),
           "n_images": ScoredImages.of(a[0].metrics).n_images}
    bad = collapsed_arms(cfg, ctx)
    if bad:
        out["verdict"] = f"invalid: {'; '.join(bad)} collapsed"
        out["_how_verdict"] = (f"a collapsed model (its outputs vary across inputs far less than the inputs) is no "
                               f"arm of a verdict; by the interval alone: {result.verdict} ({result.reason})")
    return out
