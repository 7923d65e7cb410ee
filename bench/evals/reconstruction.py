"""Reconstruction protocol ``dcae-recon`` (version in ``bench.evals``): rFID / PSNR / SSIM / LPIPS of an autoencoder (paper Table 2).

The official evaluator (efficientvit ``aecore/evaluator.py``, ``shared/reference/evaluation.md`` §1) as a named,
frozen preset that is stored with every number (``_protocol``). In short: ADM centre crop, [-1, 1] input, fp32
model, x and x̂ rounded to uint8, FID of reconstructions vs the *same* originals (Inception pool3, PyTorch bilinear
resize to 299), PSNR/SSIM/LPIPS per image on uint8 then averaged.

Sharding and resume (evaluation.md §9): the image index range [0, N) is cut into n contiguous shards (about 4 per
rank, ≥ 256 images each; ``shard_images`` sets the size). A process, or each torchrun rank (one contiguous block of
shards per rank), reconstructs its shards and writes, per shard, an atomic ``<run_dir>/shards/<k>-of-<n>.npz``
with its indices, per-image metrics and float64 feature statistics (n, Σf, Σffᵀ). A finished shard file is skipped
on restart, so a killed evaluation resumes where it stopped, with or without torchrun (one process simply computes
every shard in turn). Rank 0 then sums the shards in float64 and computes the metrics; there is no padding, so no
image counts twice; the shard files are then replaced by ``shards/index.json`` (indices, ranks, timings).
Under torchrun the ranks meet through files in the run folder, so all ranks must share that folder (one node).

The originals' statistics are a run of their own, ``fid-ref`` (``run_reference``; ``ReconConfig.derived``), that the
runner computes once before the evaluations of the same images and hands to them; an evaluation without one (torchrun,
``evaluate`` called directly) builds them itself, cached in ``runs/_cache/fid-ref-<key>.npz`` under a lock, keyed by
the images, the feature network's sha256 and the protocol.

``evaluate(model, dataset, ...)`` is the protocol on objects (tests inject a stand-in autoencoder and a tiny
feature network); ``run(cfg, ctx)`` is the registered eval ``recon`` that builds them from a config.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import models
import models.zoo
from bench.configs import EMBEDDED_TEST, FidReferenceConfig, ReconConfig
from bench.errors import Unavailable, UsageError
from bench.evals import metrics as M
from bench.evals import JACKKNIFE_FILE, PER_IMAGE_FILE, ProtocolPreset, protocol_id
from bench.evals.image_groups import OutputSpread, image_groups, recon_jackknife
from bench.evals.inception import feature_network
from bench.evals.inputs import build_dataset, is_released, load_model, registry_fc
from bench.evals.shards import (
    ShardSet,
    default_shard_count,
    load_npz,
    save_npz,
    save_png,
    shard_ranges,
    state_digest,
    stats_arrays,
    stats_from,
)
from bench.outputs import TrainedAutoencoder
from bench.provenance import atomic_write_json
from models import data, distributed
from models.io import file_lock

# ----------------------------------------------------------------------------------------------------------------
# The protocol preset
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconProtocol(ProtocolPreset):
    """Every setting that changes a reconstruction number. Bump ``id`` when one changes."""

    id: str  # the registered protocol id (bench.evals.EVALS["recon"]): part of the reference-statistics key
    crop: str = "ADM center_crop_arr (BOX halving while short side >= 2r, BICUBIC to r, centre crop)"
    model_input: str = "float32 in [-1, 1] (ToTensor, Normalize(0.5, 0.5)); model in fp32, eval mode"
    quantisation: str = "x, x_hat -> v in [0, 1] -> uint8 (255*v + 0.5).clamp(0, 255) (round), for all metrics"
    fid_network: str = "TF inception-2015-12-05 pool3 2048-d (sha256 recorded per run)"
    fid_input: str = "u/127.5 - 1, F.interpolate 299x299 bilinear align_corners=False, no antialias"
    fid_statistics: str = ("float64 n, sum f, sum f f^T; cov ddof=1; scipy.linalg.sqrtm (eps 1e-6 fallback); N < D: "
                           "exact low-rank form (nuclear norm) on kept features")
    fid_reference: str = "the same images (originals) under the same crop and quantisation"
    psnr: str = "per image on uint8 over (C, H, W), 10 log10(255^2/MSE), mean over images (MSE 0 -> inf)"
    ssim: M.SSIMSettings = field(default_factory=M.SSIMSettings)
    lpips: str = "lpips v0.1 AlexNet, inputs uint8/255 (normalize=True), mean over images"


DCAE_RECON = ReconProtocol(protocol_id("recon"))

SMALL_N_FID_NOTE = ("small-N FID: N={n} images < {d} feature dims, so the covariance is rank-deficient and FID is "
                    "biased upward; compare only within one table (KID is unbiased)")

# ----------------------------------------------------------------------------------------------------------------
# The protocol on objects
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    shard_files: list[Path]


@dataclass(frozen=True)
class ReconPlan:
    """How one evaluation is cut into resumable shards, and where the originals' reference statistics live."""

    shards: ShardSet            # the images' shards; key: images + feature network + protocol + weights
    ref_key: str                # images + feature network + protocol: the cached reference statistics
    ref_path: Path | None       # where those statistics are cached (None: no cache)
    ref_cached: bool            # the originals' statistics exist already: shards skip them
    keep: bool                  # keep raw features (KID) as well as the moments
    fdim: int                   # feature dimension (0: no feature network)


@dataclass(frozen=True)
class SharedReference:
    """The originals' statistics a ``fid-ref`` run built (``REFERENCE_FILE`` in its folder) and their key."""

    key: str
    path: Path


REFERENCE_FILE = "reference.npz"


def reference_key(dataset, feature_net, protocol: ReconProtocol, keep: bool) -> str:
    """What the originals' statistics depend on: the images, the feature network's weights, the protocol."""
    fsha = getattr(feature_net, "sha256", "") if feature_net is not None else ""
    return hashlib.sha256(json.dumps([dataset.identity, len(dataset), fsha, protocol.digest(), keep]).encode()
                          ).hexdigest()[:16]


def _plan_shards(model, dataset, work_dir: Path, feature_net, protocol: ReconProtocol, *, world: int,
                 n_shards: int | None, shard_images: int | None, cache_dir: Path | None, weights_id: str,
                 keep_features: bool | None, reference: SharedReference | None) -> ReconPlan:
    n = len(dataset)
    if n == 0:
        raise UsageError("the evaluation set is empty")
    ranges = shard_ranges(n, n_shards or default_shard_count(n, world, shard_images))
    keep = keep_features if keep_features is not None else n <= M.KEEP_FEATURES_UP_TO  # raw features: KID
    ref_key = reference_key(dataset, feature_net, protocol, keep)
    if reference is not None and reference.key == ref_key and reference.path.exists():
        ref_path = reference.path  # built by the fid-ref run the runner computed first
    else:  # cached across runs of one process tree (same images + feature weights + protocol)
        ref_path = (cache_dir / f"fid-ref-{ref_key}.npz") if cache_dir is not None else None
    shard_key = hashlib.sha256(json.dumps([ref_key, weights_id, state_digest(model), len(ranges)]).encode()
                               ).hexdigest()[:16]
    return ReconPlan(ShardSet(ranges, Path(work_dir) / "shards", shard_key), ref_key, ref_path,
                     feature_net is not None and ref_path is not None and ref_path.exists(), keep,
                     getattr(feature_net, "dim", 0) if feature_net is not None else 0)


def originals_stats(dataset, feature_net, ranges: list[range], batch_size: int, device: str, keep: bool
                    ) -> M.FeatureStats:
    """The originals' feature statistics shard by shard in the shards' own batches: the sums the shards would have
    added up, bit for bit."""
    ref = M.FeatureStats(int(feature_net.dim), keep)
    for idx in ranges:
        ref.merge(_reference_stats(dataset, np.arange(idx.start, idx.stop), feature_net, batch_size, device, keep,
                                   int(feature_net.dim)))
    return ref


def _build_reference(plan: ReconPlan, dataset, feature_net, batch_size: int, device: str,
                     log: Callable[[str], None]) -> ReconPlan:
    """In one process (not torchrun), when no fid-ref run built them: the originals' statistics built before the
    shards and cached, under a lock on the cache entry, so that concurrent evaluations of the same images build them
    once. Under torchrun the shards compute them beside the reconstructions instead (each rank its share)."""
    if plan.ref_cached or plan.ref_path is None or feature_net is None or distributed.world_size() > 1:
        return plan
    with file_lock(plan.ref_path.with_name(plan.ref_path.name + ".lock")):
        if not plan.ref_path.exists():
            log(f"reference statistics fid-ref-{plan.ref_key}: {len(dataset)} originals")
            save_npz(plan.ref_path, originals_stats(dataset, feature_net, plan.shards.ranges, batch_size, device,
                                                    plan.keep).to_arrays())
    return dataclasses.replace(plan, ref_cached=True)


def _feature_metrics(plan: ReconPlan, shards: list[dict], n_ok: int, dataset, feature_net,
                     feature_unavailable: str | None, batch_size: int, device: str
                     ) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """rFID (and KID on small sets) from the shards' float64 statistics against the originals' statistics, and
    the two feature sets in image order when they were kept (None otherwise)."""
    if feature_net is None:
        return {"rfid": feature_unavailable or "unavailable (no feature network)"}, None
    if n_ok < 2:
        return {"rfid": "unavailable (FID needs at least 2 images)"}, None
    rec = stats_from("rec", shards[0])
    for s in shards[1:]:
        rec.merge(stats_from("rec", s))
    ref = M.FeatureStats.from_arrays(load_npz(plan.ref_path)) if plan.ref_cached else None
    if ref is None:
        parts = [stats_from("ref", s) for s in shards]
        if any(p is None for p in parts):  # the cache vanished after some shards skipped the originals
            parts = [_reference_stats(dataset, s["indices"], feature_net, batch_size, device, plan.keep, plan.fdim)
                     for s in shards]
        ref = parts[0]
        for p in parts[1:]:
            ref.merge(p)
        if plan.ref_path is not None:
            save_npz(plan.ref_path, ref.to_arrays())
    try:
        out: dict[str, Any] = {"rfid": M.fid_from_stats(rec, ref), "_how_rfid": M.fid_form(rec, ref)}
    except M.ImaginaryComponentError as e:
        out = {"rfid": f"failed ({e})", "_how_rfid": M.fid_form(rec, ref)}
    features = None
    if plan.keep and rec.features is not None and ref.features is not None:
        features = (rec.all_features(), ref.all_features())
        out["kid"] = M.kid(*features, subset_size=min(1000, n_ok))
    if n_ok < plan.fdim:
        out["_fid_note"] = SMALL_N_FID_NOTE.format(n=n_ok, d=plan.fdim)
    return out, features


def _timing_metrics(shards: list[dict], n_ok: int) -> dict[str, Any]:
    """Images/s and where the time went: the autoencoder, the FID network, the pixel metrics, the rest."""
    wall, model_s, fid_s, pixel_s = (float(sum(float(s.get(k, 0.0)) for s in shards))
                                     for k in ("wall_s", "model_s", "fid_s", "pixel_s"))
    return {
        "images_per_s": n_ok / wall if wall > 0 else math.nan,
        "outside_model_share": 1 - model_s / wall if wall > 0 else math.nan,
        # The same share without the FID network's own forward passes (Inception-v3 at 299 px, ~11 GFLOP per image
        # whatever the autoencoder): what is left is data loading, uint8 conversion, PSNR/SSIM/LPIPS and samples.
        "outside_model_share_excl_fid": (1 - model_s / (wall - fid_s)) if wall - fid_s > 0 else math.nan,
        "_time_breakdown_s": json.dumps({"wall": round(wall, 3), "model": round(model_s, 3),
                                         "fid_network": round(fid_s, 3), "psnr_ssim_lpips": round(pixel_s, 3),
                                         "data_and_other": round(wall - model_s - fid_s - pixel_s, 3)}),
    }


PSNR_CAP_DB = 100.0  # an exact reconstruction's PSNR (+inf) counts as this in the claims' jackknife
FEATURES_FILE = "features.npz"     # the reconstructions' FID features by image index (gitignored)


def _write_per_image(work_dir: Path, plan: ReconPlan, shards: list[dict], dataset,
                     features: tuple[np.ndarray, np.ndarray] | None) -> None:
    """What the claim statistics need (bench/stats.py), by image index: per-image values, each metric with each
    image group left out (``JACKKNIFE_FILE``), and the features."""
    ids = np.concatenate([s["indices"] for s in shards])
    values = {k: np.concatenate([s[k] for s in shards]) for k in ("psnr", "ssim", "lpips")}
    groups, kind = image_groups(dataset, ids.tolist())
    per_metric = {"psnr": np.minimum(values["psnr"], PSNR_CAP_DB), "ssim": values["ssim"],
                  **({"lpips": values["lpips"]} if len(values["lpips"]) == len(ids) else {})}
    atomic_write_json(Path(work_dir) / JACKKNIFE_FILE, recon_jackknife(
        groups, kind, per_metric, *(features if features is not None else (None, None))))
    per_image = {k: [float(x) if np.isfinite(x) else None for x in v] for k, v in values.items()}
    atomic_write_json(Path(work_dir) / PER_IMAGE_FILE, {"image_ids": ids.tolist(), **per_image})
    rec = [stats_from("rec", s) for s in shards]
    if plan.keep and all(r is not None and r.features is not None for r in rec):
        save_npz(Path(work_dir) / FEATURES_FILE, {
            "image_ids": ids, "features": np.concatenate([r.all_features() for r in rec]).astype(np.float32)})


def _reduced_metrics(plan: ReconPlan, shards: list[dict], dataset, feature_net, feature_unavailable: str | None,
                     lpips, lpips_unavailable: str | None, *, batch_size: int, device: str, protocol: ReconProtocol,
                     world: int) -> tuple[dict[str, Any], Any]:
    """Every shard computed: reduce them (float64) into the run's metrics, and the reconstructions' features."""
    psnr, ssim, lp, indices, skipped = (np.concatenate([s[k] for s in shards])
                                        for k in ("psnr", "ssim", "lpips", "indices", "skipped"))
    if not np.array_equal(np.sort(np.concatenate([indices, skipped])), np.arange(len(dataset))):
        raise RuntimeError("shards do not cover every image exactly once (a bug)")
    n_ok = len(indices)
    none = "unavailable (no readable images)"
    feature_out, features = _feature_metrics(plan, shards, n_ok, dataset, feature_net, feature_unavailable,
                                             batch_size, device)
    spread = OutputSpread({k: sum(s[k] for s in shards) for k in OutputSpread.KEYS})  # do outputs follow inputs
    out: dict[str, Any] = {
        **feature_out,
        "output_spread": spread.ratio(), "explained_variance": spread.explained(), "collapsed": int(spread.collapsed()),
        "psnr": float(psnr.mean()) if n_ok else none,
        "ssim": float(ssim.mean()) if n_ok else none,
        "lpips": float(lp.mean()) if lpips is not None and n_ok else (lpips_unavailable or "unavailable"),
        **_timing_metrics(shards, n_ok),
        "_protocol": protocol.id,
        "_protocol_settings": json.dumps(protocol.as_dict(), sort_keys=True),
        "_inception_sha256": getattr(feature_net, "sha256", "") or "none" if feature_net is not None else "none",
        "_fid_features": getattr(feature_net, "name", "none") if feature_net is not None else "none",
        "_reference_id": f"fid-ref-{plan.ref_key}",
        "_n_images": int(n_ok), "_n_skipped": len(skipped), "_n_shards": len(shards), "_world_size": world,
        "_batch_size": min(int(s.get("batch_size", batch_size)) for s in shards),  # after any out-of-memory halving
        "_psnr_inf_images": int(np.isinf(psnr).sum()),
        "_complete": True,
    }
    return out, features


def evaluate(model: torch.nn.Module, dataset: Any, work_dir: Path, *,
             feature_net: torch.nn.Module | None, feature_unavailable: str | None = None,
             lpips: M.LPIPSAlex | None = None, lpips_unavailable: str | None = None,
             batch_size: int = 16, device: str = "cpu", n_shards: int | None = None,
             shard_images: int | None = None, max_shards: int | None = None, cache_dir: Path | None = None,
             n_samples: int = 8, weights_id: str = "", keep_features: bool | None = None,
             keep_shards: bool = False, protocol: ReconProtocol = DCAE_RECON,
             reference: SharedReference | None = None, log: Callable[[str], None] = print) -> EvalResult:
    """Reconstruct ``dataset`` with ``model`` and compute the protocol's metrics: shards -> reduce -> metrics.

    ``dataset`` serves ``len()``, ``get_uint8(i)`` (uint8 (3, r, r) or None if unreadable) and ``identity``.
    ``max_shards`` stops after computing that many new shards in this process (to simulate a kill in tests); the
    result is then ``{"_complete": False, ...}``. Shard files are keyed by the images, the feature network, the
    protocol and a digest of the model's weights (plus ``weights_id``): shards of other weights are recomputed.
    Once the metrics are complete the shard files are replaced by ``shards/index.json`` (indices, ranks, timings)
    unless ``keep_shards``: they are only needed to resume, and hold 2 × 32 MB of 2048² statistics each.
    ``reference``: the originals' statistics built by a ``fid-ref`` run, used when its key is this evaluation's.
    """
    world = distributed.world_size()
    plan = _plan_shards(model, dataset, work_dir, feature_net, protocol, world=world, n_shards=n_shards,
                        shard_images=shard_images, cache_dir=cache_dir, weights_id=weights_id,
                        keep_features=keep_features, reference=reference)
    plan = _build_reference(plan, dataset, feature_net, batch_size, device, log)
    model = model.to(device).eval()

    work = functools.partial(_evaluate_shard, plan=plan, model=model, dataset=dataset, feature_net=feature_net,
                             lpips=lpips, device=device, sample_dir=Path(work_dir) / "samples", n_samples=n_samples)
    plan.shards.compute(work, batch_size=batch_size, oom_halving=True, max_shards=max_shards, log=log, noun="images")
    shards, incomplete = plan.shards.gather()
    if shards is None:
        return EvalResult(incomplete, plan.shards.files)

    out, features = _reduced_metrics(plan, shards, dataset, feature_net, feature_unavailable, lpips,
                                     lpips_unavailable, batch_size=batch_size, device=device, protocol=protocol,
                                     world=world)
    _write_per_image(work_dir, plan, shards, dataset, features)
    if not keep_shards:
        plan.shards.replace_by_index(shards, lambda sh: {"skipped": sh["skipped"].tolist(),
                                                         "wall_s": float(sh["wall_s"]), "model_s": float(sh["model_s"])})
    return EvalResult(out, plan.shards.files)


@torch.no_grad()
def _reference_stats(dataset, indices: np.ndarray, feature_net, batch_size: int, device: str, keep: bool,
                     fdim: int) -> M.FeatureStats:
    """Features of the readable originals at ``indices``, ``batch_size`` indices at a time (unreadable ones left out
    of their batch, as in the shards)."""
    ref = M.FeatureStats(fdim, keep)
    for start in range(0, len(indices), batch_size):
        u = [x for x in (dataset.get_uint8(int(i)) for i in indices[start:start + batch_size]) if x is not None]
        if u:
            ref.add(feature_net(torch.stack(u).to(device)).double())
    return ref


def _read_batch(dataset, idx: range, skipped: list[int]) -> tuple[list[int], torch.Tensor | None]:
    """The readable images of ``idx`` as one (B, 3, r, r) uint8 batch and their indices; unreadable ones are
    appended to ``skipped``."""
    read = {i: dataset.get_uint8(i) for i in idx}
    skipped.extend(i for i, u in read.items() if u is None)
    batch_idx = [i for i, u in read.items() if u is not None]
    return batch_idx, (torch.stack([read[i] for i in batch_idx]) if batch_idx else None)


@torch.no_grad()
def _evaluate_shard(idx: range, batch_size: int, *, plan: ReconPlan, model, dataset, feature_net, lpips,
                    device: str, sample_dir: Path, n_samples: int) -> dict[str, np.ndarray]:
    t0 = time.perf_counter()
    model_s = fid_s = pixel_s = 0.0  # wall time in the autoencoder, the FID network, PSNR/SSIM/LPIPS
    rec = M.FeatureStats(plan.fdim, plan.keep) if plan.fdim else None
    ref = M.FeatureStats(plan.fdim, plan.keep) if (plan.fdim and not plan.ref_cached) else None
    psnr, ssim, lp, done, skipped = [], [], [], [], []
    spread = OutputSpread()
    for start in range(idx.start, idx.stop, batch_size):
        batch_idx, u = _read_batch(dataset, range(start, min(start + batch_size, idx.stop)), skipped)
        if u is None:
            continue
        x = (u.float() / 127.5 - 1).to(device)  # [-1, 1]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        tm = time.perf_counter()
        x_hat = model(x)  # (B, 3, r, r)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        model_s += time.perf_counter() - tm
        if x_hat.shape != x.shape:
            raise RuntimeError(f"the autoencoder returned {tuple(x_hat.shape)} for input {tuple(x.shape)}")
        tp = time.perf_counter()
        v = M.to_uint8(x_hat).cpu()  # (B, 3, r, r) uint8 reconstructions
        psnr.append(M.psnr_per_image(u, v).numpy())
        spread.add(u, v)
        ssim.append(M.ssim_per_image(u, v).numpy())
        if lpips is not None:
            lp.append(lpips.per_image(u, v).numpy())
        tf = time.perf_counter()
        pixel_s += tf - tp
        if rec is not None:
            rec.add(feature_net(v.to(device)).double())
            if ref is not None:
                ref.add(feature_net(u.to(device)).double())
        fid_s += time.perf_counter() - tf
        for j, i in enumerate(batch_idx):
            if i < n_samples:
                save_png(sample_dir / f"{i:04d}-orig.png", u[j])
                save_png(sample_dir / f"{i:04d}-recon.png", v[j])
        done.extend(batch_idx)
    out = {
        "key": np.array(plan.shards.key),
        "indices": np.array(done, np.int64),
        "skipped": np.array(skipped, np.int64),
        "psnr": np.concatenate(psnr) if psnr else np.zeros(0),
        "ssim": np.concatenate(ssim) if ssim else np.zeros(0),
        "lpips": np.concatenate(lp) if lp else np.zeros(0),
        "wall_s": np.array(time.perf_counter() - t0),
        "model_s": np.array(model_s), "fid_s": np.array(fid_s), "pixel_s": np.array(pixel_s),
        **spread.arrays,
    }
    if rec is not None:
        out.update(stats_arrays("rec", rec))
    if ref is not None:
        out.update(stats_arrays("ref", ref))
    return out


@torch.no_grad()
def save_showcase(model: torch.nn.Module, resolution: int, out_dir: Path, device: str) -> list[str]:
    """The Fig. 7 crops (faces, small text) of the held-out photos and their reconstructions, as PNGs
    ``showcase/<name>-{orig,recon}.png``."""
    names, u = data.showcase_images(resolution)
    v = M.to_uint8(model.eval()(u.float().to(device) / 127.5 - 1)).cpu()
    for name, a, b in zip(names, u, v):
        save_png(out_dir / f"{name}-orig.png", a)
        save_png(out_dir / f"{name}-recon.png", b)
    return names


# ----------------------------------------------------------------------------------------------------------------
# The registered eval: config -> objects -> evaluate
# ----------------------------------------------------------------------------------------------------------------

def _check_preconditions(cfg: ReconConfig, ctx: Any) -> None:
    """What a run needs before any work: a one-line UsageError or Unavailable naming what is missing."""
    name = cfg.model
    if ctx.scale.full_protocol:
        if is_released(name) and not cfg.weights and cfg.checkpoint is None:
            raise UsageError(f"{name} at paper scale needs its official checkpoint: set 'weights' and pass --weights")
        if cfg.weights and not ctx.options.get("weights"):
            raise UsageError(f"{name} needs its official checkpoint: pass --weights FOLDER")
        if cfg.dataset.kind == "folder" and not ctx.options.get("data"):
            build_dataset(cfg, ctx)  # raises the UsageError naming the data set
    if name not in {m.name for m in models.list_models()}:
        raise Unavailable(f"{name} is not in the model registry (an unreleased configuration)")
    f = registry_fc(name)[0]
    if cfg.resolution % f:
        raise UsageError(f"resolution {cfg.resolution} is not divisible by {name}'s spatial compression f={f}")


def metric_networks(cfg: ReconConfig, ctx: Any, device: str) -> dict[str, Any]:
    """The FID feature network and LPIPS, or the reason each is unavailable (as evaluate's keyword arguments)."""
    feature_net, feature_why = None, None
    try:
        feature_net = feature_network(cfg.features, ctx.options.get("inception_weights"), device)
    except Unavailable as e:
        feature_why = f"unavailable ({e})"
    lpips_why = M.lpips_unavailable_reason()
    return {"feature_net": feature_net, "feature_unavailable": feature_why, "lpips_unavailable": lpips_why,
            "lpips": M.LPIPSAlex(device) if lpips_why is None else None}


def shared_reference(cfg: ReconConfig, ctx: Any) -> SharedReference | None:
    """The originals' statistics of the ``fid-ref`` run the runner computed before this one (None: it did not,
    e.g. under torchrun, or without the feature network; the evaluation then builds them itself)."""
    done = ctx.derived_input(*cfg.derived())
    return SharedReference(done.metrics["ref_key"], done.dir / REFERENCE_FILE) if done is not None else None


def run_reference(cfg: FidReferenceConfig, ctx: Any) -> dict:
    """Eval ``fid-ref``: the originals' FID statistics of a reconstruction set, in one process, into the run
    folder's ``REFERENCE_FILE`` (the evaluations of the same images receive it from the runner)."""
    if distributed.world_size() > 1:
        raise Unavailable("fid-ref runs in one process; under torchrun the evaluations' shards build the statistics")
    dataset = build_dataset(cfg, ctx)
    feature_net = feature_network(cfg.features, ctx.options.get("inception_weights"), ctx.device)
    keep = len(dataset) <= M.KEEP_FEATURES_UP_TO
    ranges = shard_ranges(len(dataset), default_shard_count(len(dataset), 1, cfg.shard_images))
    ctx.log(f"{len(dataset)} originals of {dataset.description} in {len(ranges)} shard(s)")
    stats = originals_stats(dataset, feature_net, ranges, cfg.batch_size, ctx.device, keep)
    save_npz(Path(ctx.run_dir) / REFERENCE_FILE, stats.to_arrays())
    return {"ref_key": reference_key(dataset, feature_net, DCAE_RECON, keep), "n_images": len(dataset),
            "_features": feature_net.name, "_features_sha256": feature_net.sha256, "_outputs": [REFERENCE_FILE]}


def run(cfg: ReconConfig, ctx: Any) -> dict:
    """Eval ``recon`` (fields: ``bench.configs.ReconConfig``): build the data set, the autoencoder and the metric
    networks from the config, then ``evaluate``; rank 0's metrics are returned on every rank."""
    _check_preconditions(cfg, ctx)
    rank, world, device = distributed.init_distributed(ctx.device)
    dataset = build_dataset(cfg, ctx)
    model, weights_id = load_model(cfg, ctx)
    res = evaluate(model, dataset, ctx.run_dir, **metric_networks(cfg, ctx, device), batch_size=cfg.batch_size,
                   device=device, shard_images=cfg.shard_images, n_samples=cfg.n_samples,
                   cache_dir=Path(ctx.run_dir).parent / "_cache", weights_id=weights_id,
                   reference=shared_reference(cfg, ctx), log=ctx.log)
    out = res.metrics
    if rank == 0:
        out.update(_dataset=dataset.description, _dataset_id=dataset.identity, _weights=weights_id,
                   _regions_id=getattr(dataset, "regions_id", dataset.identity),  # claims pair images by it
                   _dataset_path=str(getattr(dataset, "root", "embedded")),
                   params=sum(p.numel() for p in model.parameters()))  # the table's parameter ratios
        if cfg.checkpoint is not None:  # how it was trained (tables show it): steps, and a plateau run's last gain
            out.update(TrainedAutoencoder.of(ctx.input(cfg.checkpoint).metrics).summary())
        if cfg.dataset == EMBEDDED_TEST:
            save_showcase(model, cfg.resolution, Path(ctx.run_dir) / "showcase", device)
        if getattr(dataset, "skipped", None):
            ctx.log(f"{len(dataset.skipped)} unreadable image(s) skipped, first: {dataset.skipped[0]}")
    if world > 1:  # every rank returns rank 0's metrics
        box = [out]
        dist.broadcast_object_list(box, src=0)
        out = box[0]
    if not out.get("_complete", False):
        raise RuntimeError(f"evaluation incomplete: {out}")
    return out
