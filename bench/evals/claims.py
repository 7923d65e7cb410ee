"""Eval ``claim``: one claim of the paper decided by the one rule of ``bench/stats.py`` (issue #11).

A claim names two arms (``ClaimConfig.arm_a``: the arm the paper says is better, ``arm_b``), each a tuple of
reconstruction runs, one per training seed, evaluated on the same images. The eval reads every arm run's per-image
values (``per_image.json``) or, for rFID / KID, the reconstructions' features (``features.npz``) and the reference
features of the originals (``runs/_cache``), and returns the verdict, the difference with its paired bootstrap
interval over images, mean ± sd per arm, n_seeds and n_images. A run whose files are missing (runs made before
per-image values were kept, or a fresh clone without the gitignored features) is recomputed first, with the same
config, so the claim is always decided on the numbers of the table beside it.

A contrast (``base_a`` / ``base_b``, reconstruction arms only) adds a base to each arm, evaluated on the same images
as that arm (checked), and decides (a − base_a) − (b − base_b) seed by seed.

Arms of generate runs (Table 1 at small scale) are decided by ``stats.bootstrap_generated_set_metric`` on the
samples' features (``features.npz`` of each generate run, by sample index) against each arm's reference features.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import stats
from bench.configs import ClaimConfig, GenerateConfig, ReconConfig
from bench.errors import Unavailable
from bench.evals import generation as G
from bench.evals import metrics as M
from bench.evals import reconstruction as R
from bench.evals.reconstruction import FEATURES_FILE, PER_IMAGE_FILE
from bench.spec import RunRef

PER_IMAGE_METRICS = ("psnr", "ssim", "lpips")
SET_METRICS = {"rfid": M.GramFID(), "kid": M.FullSetKID()}  # KID: resampled rows as a multiset
# Generated samples (hundreds, not tens): KID on the full sets, kernels computed once per seed (a bootstrap
# replicate gathers); the run's own "kid" averages subsets (the same expectation). gFID: the exact low-rank form.
GENERATED_METRICS = {"kid": M.FullSetKID(), "kid_vs_recon": M.FullSetKID(), "gfid": M.GramFID(),
                     "gfid_vs_recon": M.GramFID()}


def _arm_runs(configs: tuple[ReconConfig, ...], ctx, need: str):
    """Each seed's completed run, recomputed once when the file the claim needs is not in its folder."""
    out = []
    for cfg in configs:
        res = ctx.ensure(cfg)
        if not (Path(res.dir) / need).exists():
            ctx.log(f"{res.run_id} has no {need}: recomputing it (same config, same numbers)")
            res = ctx.runner.ensure(RunRef(cfg), ctx.scale.name, force=True)
        out.append(res)
    return out


def _check_paired(a, b) -> bool:
    """The rule pairs images: both arms must have scored the same images (one data set identity) or the same
    source regions at two resolutions (one ``_regions_id``; True: then each arm has its own reference)."""
    if len({r.metrics.get("_dataset_id") for r in a + b}) == 1:
        return False
    regions = {r.metrics.get("_regions_id") for r in a + b}
    if len(regions) == 1 and None not in regions:
        return True
    raise Unavailable("not decidable by the paired rule: the two arms were evaluated on different images (give "
                      "both the same data set, or the embedded 'test-regions' set at two resolutions)")


def _check_bases(arm, base, name: str) -> None:
    """A base is scored on its arm's own images: one data set identity (which names the images, their crop plan and
    resolution). The regions id is not compared: it pairs two resolutions, and runs made before it was recorded lack
    it while holding the same images."""
    if base and len({r.metrics.get("_dataset_id") for r in arm + base}) != 1:
        raise Unavailable(f"not decidable as a contrast: the base of arm {name} was evaluated on other images than "
                          f"arm {name} (give the base its arm's data set and resolution)")


def _per_image(runs, metric: str) -> stats.ArmData:
    rows, ids = [], None
    for r in runs:
        per = json.loads((Path(r.dir) / PER_IMAGE_FILE).read_text())
        values = per[metric]
        if any(v is None for v in values):  # PSNR +inf of an exact reconstruction: capped at 100 dB, as stated
            values = [100.0 if v is None else v for v in values]
        rows.append(values)
        ids = ids or tuple(per["image_ids"])
    return stats.ArmData(np.array(rows), ids)


def _features(runs) -> stats.ArmData:
    feats, ids = [], None
    for r in runs:
        with np.load(Path(r.dir) / FEATURES_FILE) as z:
            feats.append(z["features"].astype(np.float64))
            ids = ids or tuple(z["image_ids"].tolist())
    return stats.ArmData(np.stack(feats), ids)


def _reference(cfg: ReconConfig, run, ctx) -> tuple[np.ndarray, tuple]:
    """The originals' features (the FID reference of every arm), from the reconstruction eval's cache (gitignored:
    recomputed with its run when absent)."""
    path = Path(ctx.run_dir).parent / "_cache" / f"{run.metrics['_reference_id']}.npz"
    if not path.exists():
        ctx.log(f"{path.name} is not cached: recomputing {run.run_id}")
        run = ctx.runner.ensure(RunRef(cfg), ctx.scale.name, force=True)
    stats_ref = M.FeatureStats.from_arrays(dict(np.load(path)))
    return stats_ref.all_features(), tuple(json.loads((Path(run.dir) / PER_IMAGE_FILE).read_text())["image_ids"])


def _generated(configs: tuple[GenerateConfig, ...], runs, ctx, metric: str) -> tuple[stats.ArmData, np.ndarray]:
    """An arm of generate runs: the samples' features (n_seeds, n, d) by sample index, and the features of the
    reference its first run was scored against (every seed of an arm shares one autoencoder, so one reference;
    gitignored, rebuilt by recomputing that run when absent)."""
    key = "_reference_recon_id" if metric.endswith("_vs_recon") else "_reference_id"
    if len({r.metrics.get(key) for r in runs}) != 1:
        raise Unavailable("the seeds of one arm were scored against different references; give them one")
    if str(runs[0].metrics[key]).startswith("user-"):
        raise Unavailable("a claim on generated samples resamples the reference's features; a --fid-reference "
                          ".npz holds only its statistics (run without --fid-reference for the claim rows)")
    path = Path(ctx.run_dir).parent / "_cache" / f"{runs[0].metrics[key]}.npz"
    if not path.exists():
        ctx.log(f"{path.name} is not cached: recomputing {runs[0].run_id}")
        ctx.runner.ensure(RunRef(configs[0]), ctx.scale.name, force=True)
    ref = R._load_npz(path)
    if ref is None or "features" not in ref:
        raise Unavailable(f"the reference {path.name} of {runs[0].run_id} keeps no features (more than "
                          f"10,000 images?): a claim on generated samples resamples them")
    return _features(runs), M.FeatureStats.from_arrays(ref).all_features()


def _check_same_samples(runs, metric: str) -> None:
    """Pairing by sample index needs the same label at each index in every run; a reference of images must be one
    and the same set for both arms (a reference of reconstructions differs per autoencoder by design)."""
    labels = []
    for r in runs:
        with np.load(Path(r.dir) / FEATURES_FILE) as z:
            labels.append(z["labels"] if "labels" in z.files else None)
    if any(lab is None or not np.array_equal(lab, labels[0]) for lab in labels):
        raise Unavailable("the generate runs of this claim drew different labels per sample index; give them one "
                          "seed and sample count")
    if not metric.endswith("_vs_recon") and len({r.metrics.get("_reference_id") for r in runs}) != 1:
        raise Unavailable("the arms were scored against different reference statistics; give them one reference")


def _generated_claim(cfg: ClaimConfig, claim: stats.Claim, ctx) -> tuple[stats.ClaimResult, list]:
    """Generate arms: samples paired by index (the same labels), each arm against its own reference features of the
    same reference images (the images themselves, or the arm's own autoencoder's reconstructions of them)."""
    limit = M.FULL_SET_KID_UP_TO if cfg.metric.startswith("kid") else G.KEEP_FEATURES_UP_TO
    if any(c.n_samples > limit for c in cfg.arm_a + cfg.arm_b):  # before any (expensive) recomputation
        raise Unavailable(f"a claim on generated samples resamples their features: at most {limit:,} samples "
                          f"per run for {cfg.metric} (these arms draw {max(c.n_samples for c in cfg.arm_a)})")
    if len({(c.reference, c.n_reference, c.reference_kind) for c in cfg.arm_a + cfg.arm_b}) != 1:
        raise Unavailable("the arms are scored against different reference sets; give both one reference")
    a, b = (_arm_runs(arm, ctx, FEATURES_FILE) for arm in (cfg.arm_a, cfg.arm_b))
    _check_same_samples(a + b, cfg.metric)
    (fa, ra), (fb, rb) = (_generated(cfg.arm_a, a, ctx, cfg.metric), _generated(cfg.arm_b, b, ctx, cfg.metric))
    return stats.bootstrap_generated_set_metric(fa, fb, ra, rb, GENERATED_METRICS[cfg.metric], claim), a + b


def run(cfg: ClaimConfig, ctx) -> dict[str, Any]:
    """Eval ``claim`` (fields: ``bench.configs.ClaimConfig``)."""
    claim = stats.Claim(cfg.statement, cfg.metric, cfg.lower_is_better, level=cfg.level, min_seeds=cfg.min_seeds,
                        n_boot=cfg.n_boot, n_boot_set=cfg.n_boot_set)
    if isinstance(cfg.arm_a[0], GenerateConfig):
        result, runs = _generated_claim(cfg, claim, ctx)
        return {**result.as_metrics(), "_how_verdict": result.reason, "_statement": cfg.statement,
                "_from": [r.run_id for r in runs]}
    if cfg.metric in PER_IMAGE_METRICS:
        a, b, a0, b0 = (_arm_runs(arm, ctx, PER_IMAGE_FILE) for arm in (cfg.arm_a, cfg.arm_b, cfg.base_a, cfg.base_b))
        _check_paired(a + a0, b + b0)
        _check_bases(a, a0, "A")
        _check_bases(b, b0, "B")
        result = stats.paired_bootstrap_mean(_per_image(a, cfg.metric), _per_image(b, cfg.metric), claim,
                                             *(_per_image(x, cfg.metric) if x else None for x in (a0, b0)))
    else:
        a, b, a0, b0 = (_arm_runs(arm, ctx, FEATURES_FILE) for arm in (cfg.arm_a, cfg.arm_b, cfg.base_a, cfg.base_b))
        two_refs = _check_paired(a + a0, b + b0)
        _check_bases(a, a0, "A")
        _check_bases(b, b0, "B")
        ref, ref_ids = _reference(cfg.arm_a[0], a[0], ctx)
        ref_b = None
        if two_refs:  # the same regions at another resolution: B's originals, put in A's image order
            rb, rb_ids = _reference(cfg.arm_b[0], b[0], ctx)
            pos = {k: i for i, k in enumerate(rb_ids)}
            ref_b = rb[[pos[k] for k in ref_ids]]
        result = stats.paired_bootstrap_set_metric(_features(a), _features(b), ref, ref_ids,
                                                   SET_METRICS[cfg.metric], claim, ref_b=ref_b,
                                                   base_a=_features(a0) if a0 else None,
                                                   base_b=_features(b0) if b0 else None)
    return {**result.as_metrics(), "_how_verdict": result.reason, "_statement": cfg.statement,
            "_from": [r.run_id for r in a + b + a0 + b0]}
