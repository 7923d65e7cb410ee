"""Autoencoder training: one loop, and Decoupled High-Resolution Adaptation as three phase configs (paper §3.2, Fig. 6).

    "Figure 6 demonstrates the detailed training pipeline. Compared with the conventional single-phase training
     strategy (Rombach et al., 2022), our Decoupled High-Resolution Adaptation has two key differences." (§3.2)

    phase 1  low-resolution full training          all parameters            L1 + LPIPS           no GAN
    phase 2  high-resolution latent adaptation     "middle layers"           L1 + LPIPS           no GAN
    phase 3  low-resolution local refinement       "head layers of decoder"  L1 + LPIPS + GAN     PatchGAN, hinge

The phases are ``PhaseConfig`` instances (STYLE rule 8: phases are data) run by the one ``train_autoencoder`` loop.
An experiment is ``dataclasses.replace(phase1_low_res_full_training, resolution=64, steps=300)``.

Hyper-parameters: the paper gives none. The defaults below are the secondary source's (the appendix as quoted by
third-party reviews; reference/autoencoders.md §9.2). Unknown choices (loss weights, schedule, EMA, batch) are ours and
are recorded in every run's config.

Determinism, resume and DDP rest on ``models/train_state.py``: sample ``p`` of the run is ``permutation(seed,
epoch)[p mod N]`` cropped with seed ``(seed, p)``, so on CPU ``N steps + kill + resume N`` is bit-identical to ``2N``
uninterrupted (tests/test_train_autoencoder.py). Under ``torchrun --nproc_per_node=K python -m
models.train_autoencoder ...``: DDP (gloo on CPU, nccl on GPU), bf16 autocast on GPU; ``PhaseConfig.batch`` is the
global batch of one optimiser step, so K processes with per-rank batch b train exactly like one with batch K·b.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from models import checkpoints, distributed, losses, zoo
from models.data import EmbeddedPhotos, ImageFolderDataset
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

# ---------------------------------------------------------------------------------------------------------------------
# Trainable-set selectors (which parameters a phase updates)
# ---------------------------------------------------------------------------------------------------------------------
# A selector maps (model, extent) to the sorted names of the parameters a phase trains; everything else is frozen
# (requires_grad=False, and BatchNorm layers whose parameters are all frozen are kept in eval mode, so their running
# statistics do not drift either: "freezing" means the frozen function is unchanged).
#
# The paper does not name modules (asked, unanswered, in github.com/mit-han-lab/efficientvit/issues/168), so the
# default extent is the minimal one of the unofficial configs (reference/autoencoders.md §9.3): one named module on
# each side. ``extent=k`` instead takes the first/last k parameterised layers in execution order (the appendix's
# sensitivity study counts layers), traced with a forward hook, so the knob works for any autoencoder with
# ``encode``/``decode``.

# Module-name prefixes of the minimal default, per model family (our models/dc_ae.py and models/sd_vae.py names, with
# the diffusers spellings as fall-backs). The first family whose prefixes all exist in the model is used.
MIDDLE_LAYER_PREFIXES: dict[str, tuple[str, ...]] = {
    "dc-ae": ("encoder.project_out", "decoder.project_in"),
    "sd-vae": ("encoder.conv_out", "quant_conv", "post_quant_conv", "decoder.conv_in"),
    "diffusers": ("encoder.conv_out", "decoder.conv_in"),
}
DECODER_HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    "dc-ae": ("decoder.project_out",),
    "sd-vae": ("decoder.norm_out", "decoder.conv_out"),
    "diffusers": ("decoder.conv_norm_out", "decoder.conv_out"),
}


def all_parameters(model: nn.Module, extent: int | None = None) -> list[str]:
    """Phase 1, "low-resolution full training": every parameter of the autoencoder."""
    return sorted(n for n, _ in model.named_parameters())


def middle_layers(model: nn.Module, extent: int | None = None) -> list[str]:
    """Phase 2, "high-resolution latent adaptation": the middle layers.

    Paper §3.2: "we introduce an additional high-resolution latent adaptation phase (Figure 6, phase 2) that tunes the
    middle layers (i.e., encoder's head layers and decoder's input layers) to adapt the latent space for alleviating
    the generalization penalty."

    ``extent=None``: the modules of ``MIDDLE_LAYER_PREFIXES``. ``extent=k``: the last k parameterised layers run by
    ``encode`` and the first k run by ``decode``.
    """
    if extent is None:
        return _select_by_prefixes(model, MIDDLE_LAYER_PREFIXES, "middle_layers")
    enc, dec = _traced_layers(model)
    return _params_of(model, enc[-extent:] + dec[:extent], "middle_layers", extent)


def decoder_head_layers(model: nn.Module, extent: int | None = None) -> list[str]:
    """Phase 3, "low-resolution local refinement": the decoder's head layers only.

    Paper §3.2: "In the local refinement phase (Figure 6, phase 3), we only tune the head layers of the decoder while
    freezing all the other layers. [...] Moreover, the decoupling prevents the GAN loss training from changing the
    latent space."

    ``extent=None``: the modules of ``DECODER_HEAD_PREFIXES`` (DC-AE: norm + ReLU + conv). ``extent=k``: the last k
    parameterised layers run by ``decode``. The encoder is never selected, so the latent space cannot change.
    """
    if extent is None:
        names = _select_by_prefixes(model, DECODER_HEAD_PREFIXES, "decoder_head_layers")
    else:
        _, dec = _traced_layers(model)
        names = _params_of(model, dec[-extent:], "decoder_head_layers", extent)
    enc, _ = _traced_layers(model)
    enc_params = set(_params_of(model, enc, "encoder", None))
    assert not enc_params & set(names), "decoder_head_layers selected an encoder parameter"
    return names


SELECTORS: dict[str, Callable[[nn.Module, int | None], list[str]]] = {
    "all_parameters": all_parameters, "middle_layers": middle_layers, "decoder_head_layers": decoder_head_layers}


def _select_by_prefixes(model: nn.Module, table: dict[str, tuple[str, ...]], what: str) -> list[str]:
    module_names = {n for n, _ in model.named_modules()}
    for family, prefixes in table.items():
        if all(p in module_names for p in prefixes):
            names = sorted(n for n, _ in model.named_parameters() if any(n.startswith(p + ".") for p in prefixes))
            if not names:
                raise ValueError(f"{what}: modules {prefixes} ({family}) hold no parameters")
            return names
    raise ValueError(f"{what}: {type(model).__name__} has none of the known module layouts "
                     f"{table}; pass extent=k to select by execution order")


def _traced_layers(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the modules that own parameters directly, in the order ``encode`` and ``decode`` run them."""
    cache = getattr(model, "_dcae_traced_layers", None)
    if cache is not None:
        return cache
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: order.append(name))
             for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    f = int(getattr(model, "spatial_compression", 8))
    x = torch.zeros(1, 3, f, f, device=next(model.parameters()).device)
    was_training = {m: m.training for m in model.modules()}
    model.eval()  # no BatchNorm statistics update from the tracing input
    try:
        with torch.no_grad():
            z = model.encode(x)
            n_enc = len(order)
            model.decode(z)
    finally:
        for h in hooks:
            h.remove()
        for m, t in was_training.items():
            m.train(t)
    # dict.fromkeys dedupes in order: a module called twice counts once, at its first call
    result = (list(dict.fromkeys(order[:n_enc])), list(dict.fromkeys(order[n_enc:])))
    object.__setattr__(model, "_dcae_traced_layers", result)
    return result


def _params_of(model: nn.Module, modules: Sequence[str], what: str, extent: int | None) -> list[str]:
    wanted = set(modules)
    names = sorted(f"{m}.{p}" if m else p for m, mod in model.named_modules() if m in wanted
                   for p, _ in mod.named_parameters(recurse=False))
    if not names and what != "encoder":
        raise ValueError(f"{what}(extent={extent}) selected no parameter")
    return names


# ---------------------------------------------------------------------------------------------------------------------
# Phase configuration (Decoupled High-Resolution Adaptation = three instances)
# ---------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhaseConfig:
    name: str                        # "phase1" | "phase2" | "phase3" (or an ablation's name)
    resolution: int                  # square training crop size in pixels
    trainable: str                   # key of SELECTORS: which parameters this phase updates
    extent: int | None = None        # selector knob: None = minimal named modules; k = first/last k layers
    steps: int = 1000                # optimiser steps
    batch: int = 8                   # global batch per optimiser step (all ranks, all accumulation micro-batches)
    grad_accum: int = 1              # micro-batches per optimiser step
    l1_weight: float = 1.0           # reconstruction: L1 (maintainers, github.com/mit-han-lab/efficientvit/issues/143)
    perceptual_weight: float = 1.0   # reconstruction: LPIPS; ignored (recorded "none") when LPIPS is unavailable
    gan: bool = False                # adversarial loss with a PatchGAN discriminator (phase 3 only in the paper)
    gan_weight: float = 0.5          # generator adversarial weight (unofficial lavinal712 guess; paper: unknown)
    lr: float = 6.4e-5               # AdamW learning rate (secondary source, phase 1)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.1
    disc_lr: float | None = None     # discriminator AdamW lr (None = lr); betas/wd as the generator's
    disc_width: int = 64             # PatchGAN base width (pix2pix default)
    disc_layers: int = 3             # PatchGAN stride-2 layers (3: 70x70 receptive field, needs >= 32 px)
    disc_norm: str = "batch"         # "batch" (pix2pix) or "group" (independent of the per-rank batch split)
    warmup_steps: int = 0            # linear warm-up, then constant lr (the schedule is not published)
    ema_decay: float | None = None   # weight EMA of the trainable parameters; the EMA weights are saved at the end
    ckpt_every: int = 100            # resumable checkpoint every N steps (and at the end)
    seed: int = 0                    # data order and initialisation of the discriminator


phase1_low_res_full_training = PhaseConfig(
    name="phase1", resolution=256, trainable="all_parameters",
    lr=6.4e-5, betas=(0.9, 0.999), weight_decay=0.1)
phase2_high_res_latent_adaptation = PhaseConfig(
    name="phase2", resolution=1024, trainable="middle_layers",
    lr=1.6e-5, betas=(0.9, 0.999), weight_decay=0.001)
phase3_low_res_local_refinement = PhaseConfig(
    name="phase3", resolution=256, trainable="decoder_head_layers", gan=True,
    lr=5.4e-5, betas=(0.5, 0.9), weight_decay=0.0)  # wd not given by the secondary source: 0

# Where each value of the three phases comes from (shared/reference/autoencoders.md §9.2): the paper, the paper's
# appendix as quoted by secondary sources, unofficial re-implementations' guesses, or this harness's choice.
RECIPE_SOURCES: dict[str, str] = {
    "resolution": "paper §3.2 (phases 1 and 3 at low, phase 2 at high resolution)",
    "trainable": "paper §3.2 (which modules: the minimal named ones of the unofficial configs)",
    "gan": "paper §3.2 (GAN loss in phase 3 only)",
    "lr": "secondary source (the appendix as quoted)",
    "betas": "secondary source (the appendix as quoted)",
    "weight_decay": "secondary source (phase 3: not given, 0)",
    "l1_weight": "maintainers (github.com/mit-han-lab/efficientvit/issues/143: L1 + LPIPS)",
    "perceptual_weight": "maintainers (github.com/mit-han-lab/efficientvit/issues/143; weight unknown, 1)",
    "gan_weight": "unofficial guess (lavinal712)",
    "steps": "ours (the paper publishes none)",
    "batch": "ours (the paper publishes none)",
    "warmup_steps": "ours (the schedule is not published)",
}


PHASES: dict[str, PhaseConfig] = {p.name: p for p in (
    phase1_low_res_full_training, phase2_high_res_latent_adaptation, phase3_low_res_local_refinement)}


# ---------------------------------------------------------------------------------------------------------------------
# Data: a deterministic function of (seed, step)
# ---------------------------------------------------------------------------------------------------------------------

class CropSource(Protocol):
    """What the loop needs from a dataset: its size and a deterministic crop of one image."""

    def __len__(self) -> int: ...

    def crop(self, index: int, resolution: int, seed: int) -> torch.Tensor:  # (3, r, r) float in [-1, 1]
        ...


class TensorCropSource:
    """Random crops (+ horizontal flips) from a tensor of images (N, 3, H, W) in [-1, 1]; upsamples if too small."""

    def __init__(self, images: torch.Tensor, flip: bool = True):
        self.images = images
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, index: int, resolution: int, seed: int) -> torch.Tensor:
        img = self.images[index]
        g = torch.Generator().manual_seed(seed)
        h, w = img.shape[-2:]
        if min(h, w) < resolution:  # bilinear upscale of the short side to the crop size
            s = resolution / min(h, w)
            img = F.interpolate(img[None], size=(math.ceil(h * s), math.ceil(w * s)), mode="bilinear",
                                align_corners=False, antialias=False)[0]
            h, w = img.shape[-2:]
        top = int(torch.randint(0, h - resolution + 1, (1,), generator=g))
        left = int(torch.randint(0, w - resolution + 1, (1,), generator=g))
        out = img[:, top:top + resolution, left:left + resolution]
        if self.flip and bool(torch.randint(0, 2, (1,), generator=g)):
            out = out.flip(-1)
        return out.contiguous()


class DatasetCropSource:
    """A ``models.data`` data set (``ds[i]`` -> (3, r, r) in [-1, 1]) at a fixed resolution as a ``CropSource``.

    The embedded photo set already serves deterministic multi-scale, flipped crops (``models/data.py``), so no further
    augmentation is applied and the crop seed is unused; the order still comes from ``sample_plan``.
    """

    def __init__(self, dataset, resolution: int):
        self.dataset, self.resolution = dataset, resolution

    def __len__(self) -> int:
        return len(self.dataset)

    def crop(self, index: int, resolution: int, seed: int) -> torch.Tensor:
        if resolution != self.resolution:
            raise ValueError(f"this source serves {self.resolution} px crops, {resolution} px requested")
        return self.dataset[index]


# ---------------------------------------------------------------------------------------------------------------------
# Freezing
# ---------------------------------------------------------------------------------------------------------------------

def apply_trainable(model: nn.Module, phase: PhaseConfig) -> list[str]:
    """Set requires_grad per the phase's selector; returns the trainable names (asserts there is at least one)."""
    names = SELECTORS[phase.trainable](model, phase.extent)
    assert names, f"{phase.name}: selector {phase.trainable} selected no parameter"
    wanted = set(names)
    for n, p in model.named_parameters():
        p.requires_grad_(n in wanted)
    return names


def set_train_mode(model: nn.Module) -> None:
    """model.train(), but BatchNorm layers with only frozen parameters stay in eval mode (recorded: frozen_bn=eval)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in m.parameters(recurse=False)):
            m.eval()


# ---------------------------------------------------------------------------------------------------------------------
# The loop: build -> restore -> step ... (save every ckpt_every) -> finish
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    steps: int                        # optimiser steps done in total (including resumed ones)
    resumed_from: int                 # step the run resumed from (0 = fresh)
    s_per_step: float                 # mean wall time per step in this call, first step excluded when possible
    trainable_params: int
    frozen_params: int
    perceptual: str                   # "lpips-alex" or "none"
    final: dict[str, float] = field(default_factory=dict)  # mean of each loss over the last <= 10 steps
    history: list[dict[str, float]] = field(default_factory=list)  # per-step losses of this call

    def metrics(self, prefix: str = "") -> dict[str, float | int | str]:
        return {f"{prefix}steps": self.steps, f"{prefix}s_per_step": round(self.s_per_step, 4),
                f"{prefix}trainable_params": self.trainable_params, f"{prefix}frozen_params": self.frozen_params,
                **{f"{prefix}{k}_final": round(v, 6) for k, v in self.final.items()}}


@dataclass(frozen=True)
class _Run(Placement):
    """The fixed facts of one ``train_autoencoder`` call: where it runs, the phase, the perceptual loss."""

    phase: PhaseConfig
    perc: nn.Module | None                      # perceptual loss, None when unavailable or weighted 0


@dataclass
class _TrainState:
    """What the steps change and ``train_state.pt`` holds: model, discriminator, optimisers, schedulers, EMA."""

    model: nn.Module
    trainable: list[str]                        # names of the parameters this phase updates
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    disc: nn.Module | None                      # PatchGAN discriminator when phase.gan
    disc_opt: torch.optim.Optimizer | None
    disc_sched: torch.optim.lr_scheduler.LambdaLR | None
    ema: dict[str, torch.Tensor] | None         # EMA of the trainable parameters when phase.ema_decay
    trainable_params: int
    frozen_params: int
    net: nn.Module | None = None                # what the forward runs through: model, or its DDP wrapper
    dnet: nn.Module | None = None               # the same for the discriminator


def _setup(model: nn.Module, phase: PhaseConfig, ckpt_dir, device, perceptual, log) -> _Run:
    """Ranks (process group under torchrun), batch split and its checks, then the perceptual loss."""
    run = placed(_Run, device, phase.batch, phase.grad_accum, ckpt_dir, log or print, f"{phase.name}: ",
                 phase=phase, perc=None)
    f = int(getattr(model, "spatial_compression", 1))
    if phase.resolution % f:
        raise ValueError(f"{phase.name}: resolution {phase.resolution} is not a multiple of the model's f={f}")
    if perceptual == "auto":
        perceptual = losses.build_perceptual_loss()
    if perceptual is None or phase.perceptual_weight <= 0:
        return run
    return dataclasses.replace(run, perc=perceptual.to(run.device))


def _build(model: nn.Module, run: _Run) -> _TrainState:
    """Freeze per the phase; the discriminator (seeded by the phase seed), AdamW + warm-up schedules, the EMA."""
    phase = run.phase
    model.to(run.device)
    trainable = apply_trainable(model, phase)
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    torch.manual_seed(mix_seed(phase.seed, "disc-init"))  # discriminator init is a function of the seed
    disc = (losses.PatchDiscriminator(width=phase.disc_width, n_layers=phase.disc_layers, norm=phase.disc_norm)
            .to(run.device) if phase.gan else None)
    opt = torch.optim.AdamW(params, lr=phase.lr, betas=phase.betas, weight_decay=phase.weight_decay)
    sched = warmup_schedule(opt, phase.warmup_steps)  # linear warm-up, then constant (the schedule is not published)
    disc_opt = disc_sched = None
    if disc is not None:
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=phase.disc_lr or phase.lr, betas=phase.betas,
                                     weight_decay=phase.weight_decay)
        disc_sched = warmup_schedule(disc_opt, phase.warmup_steps)
    ema = ({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
           if phase.ema_decay else None)
    return _TrainState(model=model, trainable=trainable, opt=opt, sched=sched, disc=disc, disc_opt=disc_opt,
                       disc_sched=disc_sched, ema=ema, trainable_params=n_train,
                       frozen_params=sum(p.numel() for p in model.parameters()) - n_train)


def _restore(s: _TrainState, run: _Run) -> int:
    """Load ``train_state.pt`` if there is one (same phase config required); returns the step to continue from."""
    state = saved_state(run, "phase", resume_fingerprint(run.phase), "phase config")
    if state is None:
        return 0
    if s.disc is not None:
        s.disc.load_state_dict(state["disc"])
        s.disc_opt.load_state_dict(state["disc_opt"])
        s.disc_sched.load_state_dict(state["disc_sched"])
    return restore_training_state(run, s, state, run.phase.name)


def _save_state(s: _TrainState, run: _Run, step: int) -> None:
    """``train_state.pt`` with the discriminator, its optimiser and schedule, and the trainable set."""
    save_state(run, s, step, phase=resume_fingerprint(run.phase), trainable=s.trainable,
               disc=s.disc.state_dict() if s.disc is not None else None,
               disc_opt=s.disc_opt.state_dict() if s.disc_opt is not None else None,
               disc_sched=s.disc_sched.state_dict() if s.disc_sched is not None else None)


def _micro_step(s: _TrainState, run: _Run, x: torch.Tensor, sync: bool) -> tuple[dict[str, float], bool]:
    """Forward + backward of one micro-batch (generator side, then the discriminator on detached reconstructions);
    returns its share of each loss and whether every loss was finite. ``sync``: DDP all-reduces the gradients of this
    micro-batch (the last one of the step)."""
    phase, zero = run.phase, torch.zeros((), device=run.device)
    with (nullcontext() if sync else s.net.no_sync()):
        with run.autocast():
            x_hat = s.net(x)  # (b, 3, r, r)
            l1 = losses.l1_loss(x_hat, x)
            lp = run.perc(x_hat, x) if run.perc is not None else zero
            loss = phase.l1_weight * l1 + phase.perceptual_weight * lp
            g = zero
            if s.disc is not None:  # generator side: D is used but not updated by this loss
                s.disc.requires_grad_(False)
                g = losses.generator_adversarial_loss(s.disc(x_hat))
                s.disc.requires_grad_(True)
                loss = loss + phase.gan_weight * g
        finite = bool(torch.isfinite(loss))
        (loss / phase.grad_accum).backward()
    d = zero
    if s.disc is not None:  # discriminator side, on detached reconstructions
        with (nullcontext() if sync else s.dnet.no_sync()):
            with run.autocast():
                d = losses.discriminator_hinge_loss(s.dnet(x), s.dnet(x_hat.detach()))
            finite &= bool(torch.isfinite(d))
            (d / phase.grad_accum).backward()
    return {k: float(v.detach()) / phase.grad_accum
            for k, v in (("l1", l1), ("perceptual", lp), ("gan_g", g), ("disc", d), ("loss", loss))}, finite


def _diverged(run: _Run, step: int, sums: dict[str, float]) -> TrainingDiverged:
    return TrainingDiverged(f"{run.phase.name}: non-finite loss at step {step + 1} (losses {sums}); stopped before "
                            f"the optimiser step; last good checkpoint: {last_good_checkpoint(run.state_path)}")


def _optimiser_step(s: _TrainState, run: _Run) -> None:
    """AdamW + schedule steps (generator, then discriminator), then the EMA update."""
    s.opt.step()
    s.sched.step()
    s.opt.zero_grad(set_to_none=True)
    if s.disc is not None:
        s.disc_opt.step()
        s.disc_sched.step()
        s.disc_opt.zero_grad(set_to_none=True)
    if s.ema is not None:
        with torch.no_grad():
            for n, p in s.model.named_parameters():
                if n in s.ema:
                    s.ema[n].lerp_(p.detach(), 1.0 - run.phase.ema_decay)


def _train_step(s: _TrainState, run: _Run, data: CropSource, step: int) -> dict[str, float]:
    """Optimiser step ``step`` on this rank's share of the batch (``accumulate``); returns the step's losses."""
    phase = run.phase
    plan = sample_plan(phase.seed, step, phase.batch, len(data))

    def micro(lo: int, sync: bool) -> tuple[dict[str, float], bool]:
        x = torch.stack([data.crop(i, phase.resolution, seed) for i, seed in plan[lo:lo + run.micro]])  # (b, 3, r, r)
        return _micro_step(s, run, x.to(run.device), sync)
    sums = accumulate(run, phase.grad_accum, micro, lambda sums: _diverged(run, step, sums))
    _optimiser_step(s, run)
    return sums


def _progress(s: _TrainState, run: _Run, done: int, recent: list[dict], per_step: float) -> str:
    """The progress line of a checkpoint: mean L1 and time per step since the previous one."""
    return (f"{run.phase.name} step {done}/{run.phase.steps}: l1 {sum(h['l1'] for h in recent) / len(recent):.4f}, "
            f"{per_step:.3f} s/step" + (f", disc {recent[-1]['disc']:.3f}" if s.disc is not None else ""))


def _finish(s: _TrainState, run: _Run, start: int, stop: int, history: list[dict], times: list[float]
            ) -> TrainResult:
    """After the last step of the phase: EMA weights into the model, ``model.safetensors``; always: unfreeze,
    eval mode, and the result (mean of each loss over the last <= 10 steps)."""
    phase, model = run.phase, s.model
    end = max(start, stop)
    if end >= phase.steps and s.ema is not None:  # the run's output is the EMA weights
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in s.ema:
                    p.copy_(s.ema[n])
    if end >= phase.steps and run.ckpt_dir is not None and run.rank == 0:
        # a registry autoencoder in our format (config in the metadata); a toy AE without a config, bare
        if hasattr(model, "config"):
            checkpoints.save(model, run.ckpt_dir / FINAL_MODEL)
        else:
            save_bare_state_dict(model.state_dict(), run.ckpt_dir / FINAL_MODEL)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    tail = history[-10:]
    final = {k: sum(h[k] for h in tail) / len(tail) for k in (tail[0] if tail else {})}
    if not phase.gan:
        final = {k: v for k, v in final.items() if k not in ("gan_g", "disc")}
    if run.perc is None:
        final.pop("perceptual", None)
    return TrainResult(steps=end, resumed_from=start, s_per_step=seconds_per_step(times),
                       trainable_params=s.trainable_params, frozen_params=s.frozen_params,
                       perceptual=losses.perceptual_status(run.perc), final=final, history=history)


def train_autoencoder(model: nn.Module, phase: PhaseConfig, data: CropSource, *,
                      ckpt_dir: str | os.PathLike | None = None, resume: bool = True,
                      device: str | torch.device = "cpu", perceptual: losses.PerceptualLoss | None | str = "auto",
                      until_step: int | None = None, progress: bool = True,
                      log: Callable[[str], None] | None = None) -> TrainResult:
    """Run ``phase`` on ``model`` (in place) with crops of ``data``; returns losses and timings.

    ckpt_dir: where ``train_state.pt`` is written every ``phase.ckpt_every`` steps and at the end, and where
        ``model.safetensors`` (the final weights, EMA if enabled) is saved; None = no checkpoints.
    resume: continue from ``ckpt_dir/train_state.pt`` if it exists (it must come from the same phase config).
    device: under torchrun the process group is set up here if it is not yet (``models.distributed``), and a CUDA
        device becomes this rank's ``cuda:LOCAL_RANK``.
    perceptual: "auto" = LPIPS if its weights are cached (else none, recorded); or a module; or None.
    until_step: stop after this step as if preempted (checkpoint written, no final model): used by the resume test
        and for time-boxed jobs.
    Raises TrainingDiverged on a NaN/inf loss, before touching any weights or checkpoints of that step.
    """
    run = _setup(model, phase, ckpt_dir, device, perceptual, log)
    s = _build(model, run)
    start = _restore(s, run) if resume else 0
    s.net, s.dnet = run.wrap(s.model), run.wrap(s.disc)
    set_train_mode(model)
    if s.disc is not None:
        s.disc.train()
    stop = phase.steps if until_step is None else min(until_step, phase.steps)
    history, times = run_steps(start, stop, phase.steps, phase.ckpt_every, functools.partial(_train_step, s, run, data),
                               lambda done: _save_state(s, run, done),
                               lambda done, recent, per_step: _progress(s, run, done, recent, per_step), run.log,
                               name=phase.name, bar=progress and run.rank == 0)
    return _finish(s, run, start, stop, history, times)


# ---------------------------------------------------------------------------------------------------------------------
# Command line (torchrun entry point)
# ---------------------------------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> None:
    """``torchrun --nproc_per_node=K -m models.train_autoencoder --model dc-ae-f32c32-small --phase phase1 ...``"""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="example: torchrun --nproc_per_node=2 -m models.train_autoencoder "
                                        "--model dc-ae-f32c32-small --phase phase1 --set resolution=64 steps=200 "
                                        "batch=8 --ckpt-dir runs/x/ckpt")
    ap.add_argument("--model", required=True, help="models.build name, or a .safetensors file saved by models.save")
    ap.add_argument("--phase", default="phase1", choices=sorted(PHASES))
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                    help="PhaseConfig overrides, e.g. resolution=64 steps=200 batch=8 lr=1e-3")
    ap.add_argument("--data", default=None, help="image folder (default: the embedded training photos)")
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args(argv)

    _, world, device = distributed.init_distributed("cuda" if torch.cuda.is_available() else "cpu")
    overrides = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.set)}
    if "betas" in overrides:
        overrides["betas"] = tuple(overrides["betas"])
    phase = dataclasses.replace(PHASES[args.phase], **overrides)
    model = checkpoints.load(args.model) if args.model.endswith(".safetensors") else zoo.build(args.model)
    dataset = (ImageFolderDataset(args.data, phase.resolution) if args.data
               else EmbeddedPhotos("train", phase.resolution))
    result = train_autoencoder(model, phase, DatasetCropSource(dataset, phase.resolution), ckpt_dir=args.ckpt_dir,
                               resume=not args.no_resume, device=device)
    if distributed.is_main_process():
        print(json.dumps({**result.metrics(), "perceptual": result.perceptual}, indent=2))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
