"""Latent-diffusion training: one loop for every backbone, the official recipes as data (arXiv 2410.10733 §4.1).

    "We follow the same training settings as the original papers." (§4.1)

    recipe         formulation            optimiser                                 warm-up  EMA
    UVIT_RECIPE    U-ViT ε-MSE            AdamW 2e-4, wd 0.03, betas (0.99, 0.99)   5k       0.9999
    DIT_RECIPE     IDDPM MSE + vb (DiT)   AdamW 1e-4, wd 0,    betas (0.9, 0.999)   none     0.9999
    PIXART_RECIPE  IDDPM MSE + vb (DiT)   AdamW 2e-5, wd 0.03, betas (0.9, 0.999)   none     0.9999   (ours, below)

Both EMAs warm up as efficientvit's ``apps/utils/ema.py``: effective decay = decay × (1 − exp(−step/2000))
(``ema_decay_at``). The lr warm-up is efficientvit's ``ConstantLRwithWarmup(optimizer, warmup_steps, 0)``: lr·(s +
1)/warmup_steps at step s, then lr (our ``LambdaLR``, tested). Facts from ``reference/generation.md`` §1-3 and
``reference/backbones.md`` §4.2; the losses are ``models/diffusion.py``'s. A reduced run is
``dataclasses.replace(UVIT_RECIPE, steps=200, batch=64)``.

Conditions: class labels (U-ViT, DiT), or for PixArt-α (Table 5) caption features (``captions``: a ``CaptionSource``
read by sample index, e.g. bench/evals/captions.py's .npz folder, or ``CaptionTensors`` in memory). The backbone drops
a label to the null class, or a caption to its null caption, with probability 0.1 from the global RNG.

Latents: ``encode_latents`` stores them already × the autoencoder's scaling factor, as the official
``dc_ae_generate_latent.py``; a variational autoencoder (SD-VAE) gives one posterior sample per image, as that
script's ``latent_dist.sample()``, from a generator seeded by (``posterior_seed``, image index), so the latents do not
depend on the batch size. ``cached_latents`` keeps them in a safetensors file keyed by what made them.

Determinism, resume and DDP rest on ``models/train_state.py``: the latents of step ``s`` are ``sample_plan(seed, s,
batch, N)`` and each sample's t and ε come from a generator seeded by its position in the run's sample stream, so on
CPU ``N steps + kill + resume`` is bit-identical to an uninterrupted run (tests/test_train_diffusion.py), and K ranks
at batch b each train like one process at batch K·b, up to the float order of the gradient all-reduce and which labels
the backbone drops (its own ``torch.rand`` on each rank).

Deviations, stated: fp32 on CPU and bf16 autocast on GPU for both backbones (official: U-ViT bf16, DiT fp16 with a
GradScaler); an unconditional run (Table 4) feeds the backbone's null class (the official DiT's unconditional mode
has no label embedder; ours learns one constant row).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from models.diffusion import (
    DIT_SCHEDULE,
    UVIT_SCHEDULE,
    NoiseSchedule,
    iddpm_loss,
    uvit_loss,
)
from models.io import atomic_write_bytes, file_lock
from models.pixart import Caption
from models.train_state import (
    FINAL_MODEL,
    Placement,
    TrainingDiverged,
    accumulate,
    last_good_checkpoint,
    mix_seed,
    placed,
    restore_training_state,
    resume_fingerprint,
    run_steps,
    sample_plan,
    save_bare_state_dict,
    save_state,
    saved_state,
    seconds_per_step,
    warmup_schedule,
)

LATENT_CACHE_FORMAT = "dcae-bench-latents-v1"  # metadata tag of cached latent files


# ---------------------------------------------------------------------------------------------------------------------
# Formulations: which loss, on which schedule, with which training timesteps
# ---------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Formulation:
    """One of ``models/diffusion.py``'s training losses with the timesteps it samples, t ~ U{first_t .. first_t+T−1}."""
    loss: Callable[..., dict[str, torch.Tensor]]  # uvit_loss or iddpm_loss: (model_fn, x0, y, schedule, t=, noise=)
    schedule: NoiseSchedule                       # the formulation's β schedule
    first_t: int                                  # U-ViT trains on t ∈ {1..T}, IDDPM (DiT) on {0..T−1}


FORMULATIONS: dict[str, Formulation] = {
    "uvit": Formulation(loss=uvit_loss, schedule=UVIT_SCHEDULE, first_t=1),
    "dit": Formulation(loss=iddpm_loss, schedule=DIT_SCHEDULE, first_t=0),
}


# ---------------------------------------------------------------------------------------------------------------------
# Recipes (the official settings are the named instances)
# ---------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffusionRecipe:
    formulation: str                     # key of FORMULATIONS: "uvit" (ε-MSE) or "dit" (IDDPM MSE + vb)
    steps: int                           # optimiser steps
    batch: int                           # global batch per optimiser step (all ranks, all accumulation micro-batches)
    lr: float                            # AdamW learning rate after the warm-up (constant)
    weight_decay: float = 0.0            # AdamW weight decay, on every parameter (official: no exclusions)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    warmup_steps: int = 0                # linear lr warm-up over this many steps, then constant; 0 = none
    ema_decay: float = 0.9999            # weight EMA decay; 0 = no EMA (the final weights are then the raw ones)
    ema_warmup_steps: int = 2000         # effective decay = ema_decay × (1 − exp(−step/this)); 0 = no EMA warm-up
    grad_accum: int = 1                  # micro-batches per optimiser step
    ckpt_every: int = 1000               # resumable checkpoint every N steps (and at the end)
    seed: int = 0                        # data order, per-sample t and ε, and the label-dropout RNG

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))  # a JSON list becomes the tuple
        checks = [
            (self.formulation in FORMULATIONS, f"formulation {self.formulation!r} is unknown; use one of "
                                               f"{sorted(FORMULATIONS)}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.batch % self.grad_accum == 0, f"batch {self.batch} must be a multiple of grad_accum "
                                                f"{self.grad_accum}; change one of them"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0 (0 = no warm-up), got {self.warmup_steps}"),
            (0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1) (0 = no EMA), got {self.ema_decay}"),
            (self.ema_warmup_steps >= 0, f"ema_warmup_steps must be >= 0 (0 = none), got {self.ema_warmup_steps}"),
            (self.ckpt_every >= 1, f"ckpt_every must be >= 1, got {self.ckpt_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DiffusionRecipe: {message}")


# efficientvit applications/dc_ae/README.md and assets/train_diffusion_with_sd_vae_f8.md (= U-ViT's ImageNet-512
# recipe): 128/GPU × 8 = 1024, 500K steps (Table 3's † rows: 2,000K), constant lr after 5000 warm-up steps.
UVIT_RECIPE = DiffusionRecipe(
    formulation="uvit", steps=500_000, batch=1024, lr=2e-4, weight_decay=0.03, betas=(0.99, 0.99),
    warmup_steps=5000, ema_decay=0.9999, ema_warmup_steps=2000)
# efficientvit README (DiT-XL + DC-AE-f32): 32/GPU × 8 = 256, constant lr; the command caps training at 3M steps
# (the paper's DiT-XL step counts are not published). DiT train.py: AdamW 1e-4, wd 0, EMA 0.9999.
DIT_RECIPE = DiffusionRecipe(
    formulation="dit", steps=3_000_000, batch=256, lr=1e-4, weight_decay=0.0, betas=(0.9, 0.999),
    warmup_steps=0, ema_decay=0.9999, ema_warmup_steps=2000)

# PixArt-α for DC-AE's Table 5 ("100K iterations from scratch"). The DC-AE text-to-image recipe is not public
# (reference/generation.md §3: "not found anywhere"), so this is OUR choice, a stated deviation: PixArt-α's own
# 512-px settings (reference/backbones.md §2.4: IDDPM with learned σ on the linear β schedule, AdamW lr 2e-5, weight
# decay 0.03, EMA 0.9999) for the paper's 100K steps. Not carried over: PixArt-α's AdamW eps 1e-10 (ours: torch's
# 1e-8), its gradient clipping at 0.01 (ours: none, as the other recipes), fp16 (ours: bf16 autocast on GPU). Its
# batch (38 per GPU) times a GPU count the reference does not give is replaced by DiT's global 256; no warm-up.
PIXART_RECIPE = DiffusionRecipe(
    formulation="dit", steps=100_000, batch=256, lr=2e-5, weight_decay=0.03, betas=(0.9, 0.999),
    warmup_steps=0, ema_decay=0.9999, ema_warmup_steps=2000)

RECIPES: dict[str, DiffusionRecipe] = {"uvit": UVIT_RECIPE, "dit": DIT_RECIPE, "pixart": PIXART_RECIPE}  # by family


# ---------------------------------------------------------------------------------------------------------------------
# Caption features by sample index (text-to-image)
# ---------------------------------------------------------------------------------------------------------------------

class CaptionSource(Protocol):
    """Caption features of a data set, one per latent, read a batch at a time (a 30k-image set of 120x4096 T5
    features is ~30 GB in fp16: a folder source reads only the batch)."""

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int]) -> Caption: ...  # CPU (b, S, E) float32 features, (b, S) bool mask

    @property
    def identity(self) -> str: ...  # a digest of what the features are (keys generation shards)


@dataclass(frozen=True)
class CaptionTensors:
    """A ``CaptionSource`` held in memory: features (N, S, E) and mask (N, S) (tests, small sets)."""

    features: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, indices: Sequence[int]) -> Caption:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return Caption(self.features[idx].float(), self.mask[idx].bool())

    @property
    def identity(self) -> str:
        data = self.features.float().contiguous().numpy().tobytes() + self.mask.bool().contiguous().numpy().tobytes()
        return hashlib.sha256(data).hexdigest()[:16]


def ema_decay_at(step: int, decay: float, warmup: int) -> float:
    """Effective EMA decay after optimiser step ``step`` (1-based: the first update uses step 1), as efficientvit
    ``EMA.step(model, global_step)``: decay × (1 − exp(−step/warmup)); ``warmup=0`` gives the constant ``decay``."""
    return decay if warmup <= 0 else decay * (1.0 - math.exp(-step / warmup))


# ---------------------------------------------------------------------------------------------------------------------
# Latent cache
# ---------------------------------------------------------------------------------------------------------------------

def _posterior_sample(autoencoder: nn.Module, x: torch.Tensor, indices: range, seed: int) -> torch.Tensor | None:
    """One posterior sample per image of a variational autoencoder (``encode_posterior`` -> mean, logvar), the noise
    of image i from a generator seeded ``mix_seed(seed, "posterior", i)``; None for a deterministic encoder."""
    if not hasattr(autoencoder, "encode_posterior"):
        return None
    mean, logvar = autoencoder.encode_posterior(x)                               # (b, C, h, w) each
    if logvar is None:
        return None
    noise = torch.stack([torch.randn(mean.shape[1:], generator=torch.Generator().manual_seed(
        mix_seed(seed, "posterior", i))) for i in indices]).to(mean.device, mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise                               # (b, C, h, w)


@torch.no_grad()
def encode_latents(autoencoder: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], scaling_factor: float,
                   batch_size: int = 64, device: str | torch.device = "cpu",
                   posterior_seed: int | None = None) -> torch.Tensor:
    """uint8 images (N, 3, r, r), or an iterable of such batches, -> float32 latents (N, C, r/f, r/f) on the CPU,
    multiplied by ``scaling_factor`` (the official latent files are stored scaled; samples are divided by it before
    decoding). Pixels map to [-1, 1]; the autoencoder runs in eval mode and fp32, ``batch_size`` at a time.
    ``posterior_seed``: a variational autoencoder gives one seeded posterior sample per image (the official latent
    script); None: ``autoencoder.encode`` (its posterior mean)."""
    batches = torch.split(images, batch_size) if isinstance(images, torch.Tensor) else images
    was_training = autoencoder.training
    autoencoder.eval()
    out, start = [], 0
    try:
        for batch in batches:
            if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != 3:
                raise ValueError(f"encode_latents expects uint8 images (N, 3, r, r), got {batch.dtype} "
                                 f"{tuple(batch.shape)}; convert with (x * 255).round().to(torch.uint8)")
            for chunk in torch.split(batch, batch_size):
                x = chunk.to(device).float() / 127.5 - 1.0                       # (b, 3, r, r) in [-1, 1]
                z = None if posterior_seed is None else _posterior_sample(
                    autoencoder, x, range(start, start + len(chunk)), posterior_seed)
                z = (autoencoder.encode(x) if z is None else z).float() * scaling_factor  # (b, C, h, w), scaled
                out.append(z.cpu())
                start += len(chunk)
    finally:
        autoencoder.train(was_training)
    if not out:
        raise ValueError("encode_latents got no images")
    return torch.cat(out).contiguous()                                           # (N, C, h, w) float32


def latent_cache_path(cache_dir: str | Path, key_parts: dict) -> Path:
    """``cache_dir/latents-<sha16>.safetensors``, sha16 = the first 16 hex digits of sha256(JSON of key_parts)."""
    digest = hashlib.sha256(_key_json(key_parts).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"latents-{digest}.safetensors"


def _key_json(key_parts: dict) -> str:
    return json.dumps(key_parts, sort_keys=True, separators=(",", ":"), default=str)


def cached_latents(cache_dir: str | Path, key_parts: dict, compute: Callable[[], torch.Tensor],
                   log: Callable[[str], None] = print) -> torch.Tensor:
    """The latents for ``key_parts`` (autoencoder checkpoint id, data set identity, resolution, scaling factor...):
    read from the cache, or ``compute()``d once and written atomically (``models.io``) with key_parts in the file's
    metadata. A damaged (e.g. truncated) file is recomputed and replaced; a file whose stored key_parts differ from
    the request is refused. Concurrent callers (runs of ``--jobs N``, torchrun ranks) compute it once: the others
    wait on the entry's lock file and read what the first wrote."""
    path = latent_cache_path(cache_dir, key_parts)
    with file_lock(path.with_name(path.name + ".lock")):
        return _cached_latents_locked(path, key_parts, compute, log)


def _cached_latents_locked(path: Path, key_parts: dict, compute: Callable[[], torch.Tensor],
                           log: Callable[[str], None]) -> torch.Tensor:
    wanted = json.loads(_key_json(key_parts))  # the request as JSON sees it (tuples become lists)
    if path.exists():
        try:
            with safe_open(str(path), "pt") as f:
                meta, latents = f.metadata() or {}, f.get_tensor("latents")
            stored = json.loads(meta["key_parts"])
        except (SafetensorError, KeyError, ValueError) as e:
            log(f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); recomputing the latents")
        else:
            if stored != wanted:
                diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
                raise ValueError(f"{path} was made by another autoencoder checkpoint or data set (key fields {diff} "
                                 f"differ: stored {stored}, requested {wanted}); delete it or use another cache folder")
            return latents
    latents = compute()
    if not (isinstance(latents, torch.Tensor) and latents.is_floating_point() and latents.dim() == 4):
        raise ValueError(f"compute() must return float latents (N, C, h, w), got {getattr(latents, 'shape', latents)}")
    latents = latents.detach().to("cpu", torch.float32).contiguous()
    atomic_write_bytes(path, safetensors_bytes(
        {"latents": latents}, metadata={"format": LATENT_CACHE_FORMAT, "key_parts": _key_json(key_parts)}))
    return latents


# ---------------------------------------------------------------------------------------------------------------------
# The loop: setup -> build -> restore -> step ... (save every ckpt_every) -> finish
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class DiffusionTrainResult:
    steps: int                             # optimiser steps done in total (including resumed ones)
    resumed_from: int                      # step the run resumed from (0 = fresh)
    final_loss: float                      # mean loss of the last <= 10 steps of this call (nan when none ran)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) of this call, step 1-based
    s_per_step: float = 0.0                # mean wall time per step in this call, first step excluded when possible
    steps_per_s: float = 0.0               # 1 / s_per_step (0 when no step ran)

    def metrics(self, prefix: str = "") -> dict[str, float | int]:
        return {f"{prefix}steps": self.steps, f"{prefix}loss_final": round(self.final_loss, 6),
                f"{prefix}s_per_step": round(self.s_per_step, 4), f"{prefix}steps_per_s": round(self.steps_per_s, 3)}


@dataclass(frozen=True)
class _Run(Placement):
    """The fixed facts of one ``train_diffusion`` call: where it runs, the recipe, the data."""

    recipe: DiffusionRecipe
    formulation: Formulation
    latents: torch.Tensor                       # (N, C, h, w) float, already × scaling factor; stays on the CPU
    labels: torch.Tensor | None                 # (N,) int64, or None = unconditional (or captions)
    null_class: int                             # the backbone's null label (= num_classes), fed when unconditional
    captions: CaptionSource | None              # text-to-image: caption features of latent i (labels is None)

    def data_fingerprint(self) -> dict:
        """What a resumed run must train on: as many latents of the same shape, with or without labels."""
        out = {"n": len(self.latents), "latent_shape": list(self.latents.shape[1:]),
               "conditional": self.labels is not None}
        return {**out, "captions": len(self.captions)} if self.captions is not None else out


@dataclass
class _TrainState:
    """What the steps change and ``train_state.pt`` holds: backbone, optimiser, scheduler, EMA."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    ema: dict[str, torch.Tensor] | None         # EMA of every floating state-dict entry, when recipe.ema_decay > 0
    net: nn.Module | None = None                # what the forward runs through: model, or its DDP wrapper


def _check_labels(cfg, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Class labels of a class-conditional backbone: int64 (N,) in [0, num_classes), or None (unconditional)."""
    if not hasattr(cfg, "num_classes"):
        raise ValueError(f"{type(cfg).__name__} has no num_classes; train_diffusion needs a class-conditional "
                         f"backbone (models.build_backbone 'uvit-*' or 'dit-*') or captions for a 'pixart-*' one")
    if labels is None:
        return None
    if labels.dtype.is_floating_point or labels.dim() != 1 or len(labels) != n:
        raise ValueError(f"labels must be int64 (N,) = ({n},), got {labels.dtype} {tuple(labels.shape)}; pass "
                         f"labels=None for an unconditional run")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < cfg.num_classes:
        raise ValueError(f"labels must lie in [0, {cfg.num_classes}); the null class {cfg.num_classes} is fed by "
                         f"labels=None")
    return labels.long()


def _check_captions(cfg, labels: torch.Tensor | None, captions: CaptionSource, n: int) -> None:
    """Caption features of a text-to-image backbone: one per latent, (S, E) = its text_tokens x caption_channels."""
    if not hasattr(cfg, "caption_channels"):
        raise ValueError(f"{type(cfg).__name__} takes class labels, not captions; pass captions=None")
    if labels is not None:
        raise ValueError("give labels or captions, not both (a text-to-image backbone takes captions only)")
    if len(captions) != n:
        raise ValueError(f"{len(captions)} captions for {n} latents; give one caption per latent")
    first = captions.batch([0]).features
    if tuple(first.shape[1:]) != (cfg.text_tokens, cfg.caption_channels):
        raise ValueError(f"caption features {tuple(first.shape[1:])} do not fit the backbone's (text_tokens, "
                         f"caption_channels) = {(cfg.text_tokens, cfg.caption_channels)}")


def _setup(backbone: nn.Module, recipe: DiffusionRecipe, latents: torch.Tensor, labels: torch.Tensor | None,
           captions: CaptionSource | None, ckpt_dir, device, log) -> _Run:
    """Checks of the latents and conditions; ranks (process group under torchrun) and the batch split."""
    cfg = getattr(backbone, "config", None)
    if cfg is None or not hasattr(cfg, "in_channels"):
        raise ValueError(f"{type(backbone).__name__} has no backbone config; build it with models.build_backbone")
    if latents.dim() != 4 or not latents.is_floating_point():
        raise ValueError(f"latents must be a float tensor (N, C, h, w), got {latents.dtype} {tuple(latents.shape)}")
    expected = (cfg.in_channels, cfg.input_size, cfg.input_size)
    if tuple(latents.shape[1:]) != expected:
        raise ValueError(f"latents {tuple(latents.shape[1:])} do not fit the backbone's {expected}; build it with "
                         f"latent_channels={latents.shape[1]}, latent_size={latents.shape[2]}")
    if captions is None:
        labels = _check_labels(cfg, labels, len(latents))
    else:
        _check_captions(cfg, labels, captions, len(latents))
    return placed(_Run, device, recipe.batch, recipe.grad_accum, ckpt_dir, log, recipe=recipe,
                  formulation=FORMULATIONS[recipe.formulation], latents=latents, labels=labels,
                  null_class=getattr(cfg, "num_classes", -1), captions=captions)


def _build(model: nn.Module, run: _Run) -> _TrainState:
    """AdamW on every parameter, the linear warm-up schedule, the EMA copy; seeds the label-dropout RNG per rank."""
    recipe = run.recipe
    model.to(run.device)
    # The backbones drop labels with torch.rand on the global RNG: make its stream a function of (seed, rank).
    torch.manual_seed(mix_seed(recipe.seed, "label-dropout", run.rank))
    # fused: one kernel for the whole update (the same AdamW; parameters move by rounding only, ~1e-7 relative)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay,
                            fused=True)
    sched = warmup_schedule(opt, recipe.warmup_steps)
    # efficientvit EMA: a copy of the whole model; every floating state-dict entry is averaged.
    ema = ({k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
           if recipe.ema_decay > 0 else None)
    return _TrainState(model=model, opt=opt, sched=sched, ema=ema)


def _restore(s: _TrainState, run: _Run) -> int:
    """Load ``train_state.pt`` if there is one (same recipe and data shape required); returns the step to continue
    from."""
    state = saved_state(run, "recipe", resume_fingerprint(run.recipe), "recipe")
    if state is None:
        return 0
    if state["data"] != run.data_fingerprint():
        raise ValueError(f"{run.state_path} was trained on other latents ({state['data']}, now "
                         f"{run.data_fingerprint()}); use another checkpoint folder or resume=False")
    return restore_training_state(run, s, state, run.recipe.formulation)


def _micro_batch(run: _Run, plan: list[tuple[int, int]]) -> tuple[torch.Tensor, ...]:
    """(x0, y, t, ε) of one micro-batch; t and ε of each sample come from a generator seeded by the sample's own seed
    (its position in the run's sample stream), so they do not depend on the world size or the accumulation split.
    y: the class labels (b,), or the ``Caption`` of the batch ((b, S, E) features, (b, S) mask)."""
    idx = torch.tensor([i for i, _ in plan], dtype=torch.long)
    x0 = run.latents[idx].to(run.device, torch.float32)                             # (b, C, h, w)
    if run.captions is not None:
        y = run.captions.batch(idx.tolist()).to(run.device)                          # (b, S, E), (b, S)
    else:
        y = (run.labels[idx] if run.labels is not None
             else torch.full((len(plan),), run.null_class, dtype=torch.long)).to(run.device)  # (b,)
    f, ts, noises = run.formulation, [], []
    for _, sample_seed in plan:  # CPU generators: the same numbers on every device type
        g = torch.Generator().manual_seed(sample_seed)
        ts.append(torch.randint(f.first_t, f.first_t + f.schedule.num_timesteps, (1,), generator=g))
        noises.append(torch.randn(x0.shape[1:], generator=g))
    return x0, y, torch.cat(ts).to(run.device), torch.stack(noises).to(run.device)


def _micro_step(s: _TrainState, run: _Run, plan: list[tuple[int, int]], sync: bool) -> tuple[dict[str, float], bool]:
    """Forward + backward of one micro-batch; returns its share of the step loss and whether the loss was finite.
    ``sync``: DDP all-reduces the gradients of this micro-batch (the last one of the step)."""
    x0, y, t, noise = _micro_batch(run, plan)

    def model_fn(x: torch.Tensor, t_in: torch.Tensor, y_in: torch.Tensor | Caption | None) -> torch.Tensor:
        with run.autocast():
            return s.net(x, t_in, y_in).float()                                      # (b, C or 2C, h, w)

    with (nullcontext() if sync else s.net.no_sync()):
        f = run.formulation
        loss = f.loss(model_fn, x0, y, f.schedule, t=t, noise=noise)["loss"].mean()  # batch mean, as official
        finite = bool(torch.isfinite(loss))
        (loss / run.recipe.grad_accum).backward()
    return {"loss": float(loss.detach()) / run.recipe.grad_accum}, finite


def _optimiser_step(s: _TrainState, run: _Run, step: int) -> None:
    """AdamW + schedule step, then the EMA update with the official warm-up (global step = step + 1)."""
    s.opt.step()
    s.sched.step()
    s.opt.zero_grad(set_to_none=True)
    if s.ema is not None:
        d = ema_decay_at(step + 1, run.recipe.ema_decay, run.recipe.ema_warmup_steps)
        with torch.no_grad():
            for k, v in s.model.state_dict().items():
                if k in s.ema:
                    s.ema[k].lerp_(v.detach(), 1.0 - d)  # ema -= (1 − d)(ema − v), efficientvit update_ema


def _diverged(run: _Run, step: int, loss: float) -> TrainingDiverged:
    return TrainingDiverged(f"{run.recipe.formulation}: non-finite loss {loss} at step {step + 1}; stopped before "
                            f"the optimiser step; last good checkpoint: {last_good_checkpoint(run.state_path)}")


def _train_step(s: _TrainState, run: _Run, step: int) -> float:
    """Optimiser step ``step`` on this rank's share of the batch (``accumulate``); returns the step's loss."""
    recipe = run.recipe
    plan = sample_plan(recipe.seed, step, recipe.batch, len(run.latents))  # (index, per-sample seed) of the batch
    loss = accumulate(run, recipe.grad_accum, lambda lo, sync: _micro_step(s, run, plan[lo:lo + run.micro], sync),
                      lambda sums: _diverged(run, step, sums["loss"]))["loss"]
    _optimiser_step(s, run, step)
    return loss


def _finish(s: _TrainState, run: _Run, start: int, stop: int, curve: list[tuple[int, float]], times: list[float]
            ) -> DiffusionTrainResult:
    """After the last step: the EMA weights (if on) into the backbone and ``model.safetensors``; always: eval mode
    and the result. The raw weights stay in ``train_state.pt``."""
    recipe, model = run.recipe, s.model
    end = max(start, stop)
    if end >= recipe.steps:
        if s.ema is not None:  # the run's output is the EMA weights (evaluation uses them, generation.md §1)
            model.load_state_dict({**model.state_dict(), **s.ema})
        if run.ckpt_dir is not None and run.rank == 0:
            save_bare_state_dict(model.state_dict(), run.ckpt_dir / FINAL_MODEL,
                                 weights="ema" if s.ema is not None else "raw", steps=str(end),
                                 recipe=json.dumps(resume_fingerprint(recipe), sort_keys=True))
    model.eval()
    s_per_step = seconds_per_step(times)
    tail = [loss for _, loss in curve[-10:]]
    return DiffusionTrainResult(steps=end, resumed_from=start,
                                final_loss=sum(tail) / len(tail) if tail else float("nan"), loss_curve=curve,
                                s_per_step=s_per_step, steps_per_s=1.0 / s_per_step if s_per_step > 0 else 0.0)


def train_diffusion(backbone: nn.Module, recipe: DiffusionRecipe, latents: torch.Tensor, labels: torch.Tensor | None,
                    *, ckpt_dir: str | Path | None, device: str | torch.device = "cpu", resume: bool = True,
                    until_step: int | None = None, log: Callable[[str], None] = print,
                    captions: CaptionSource | None = None) -> DiffusionTrainResult:
    """Train ``backbone`` (in place) on ``latents`` (N, C, h, w), already × the autoencoder's scaling factor.

    labels: (N,) int64 class labels, or None = unconditional (every sample gets the backbone's null class).
    captions: a text-to-image backbone's caption features, one per latent (``CaptionSource``); labels must be None.
    ckpt_dir: where ``train_state.pt`` is written every ``recipe.ckpt_every`` steps and at the end, and where
        ``model.safetensors`` (the final weights: the EMA when on) is saved; None = no files.
    resume: continue from ``ckpt_dir/train_state.pt`` if it exists (same recipe, same latent shape).
    device: under torchrun the process group is set up here if it is not yet (``models.distributed``), and a CUDA
        device becomes this rank's ``cuda:LOCAL_RANK``.
    until_step: stop after this step as if preempted (checkpoint written, no final weights).
    At the end the backbone holds the final weights, in eval mode. Raises TrainingDiverged on a NaN/inf loss, before
    the optimiser step, leaving the last good checkpoint as it was.
    """
    run = _setup(backbone, recipe, latents, labels, captions, ckpt_dir, device, log)
    s = _build(backbone, run)
    start = _restore(s, run) if resume else 0
    s.net = run.wrap(s.model)
    backbone.train()
    stop = recipe.steps if until_step is None else min(until_step, recipe.steps)

    def report(done: int, recent: list[tuple[int, float]], per_step: float) -> str:
        return (f"{recipe.formulation} step {done}/{recipe.steps}: loss "
                f"{sum(v for _, v in recent) / len(recent):.4f}, {per_step:.3f} s/step")
    curve, times = run_steps(start, stop, recipe.steps, recipe.ckpt_every, lambda i: (i + 1, _train_step(s, run, i)),
                             lambda done: save_state(run, s, done, recipe=resume_fingerprint(recipe),
                                                     data=run.data_fingerprint()), report, run.log)
    return _finish(s, run, start, stop, curve, times)
