"""Typed run configs: one frozen dataclass per eval, one comment per field (nanoGPT's ``GPTConfig`` style).

A run is an eval applied to its config; the config and the scale fully determine the result, and the config is
serialised (``to_json``) into the content-derived run id. Values are typed: a data set is a ``Dataset``, a run this
one depends on is that run's own config (``ReconConfig.checkpoint`` is a ``TrainAEConfig``), never a string to parse.
Specs change a config per scale with ``RunRef.at`` (field -> value, applied with ``dataclasses.replace``); a field
that does not exist is a one-line ``ConfigError`` (``python -m bench check`` finds every one without running).

Reading order: ``Dataset`` -> ``PhaseRequest`` / ``TrainAEConfig`` (autoencoder training, models/train_autoencoder)
-> ``ReconConfig`` (reconstruction protocol) -> ``MemoryConfig`` (§3.2 memory) -> ``EfficiencyConfig`` (backbone
profiling) -> ``TrainDiffusionConfig`` / ``GenerateConfig`` (latent diffusion and gFID, §4) -> helpers. No torch
import: ``ls`` and ``check`` stay light.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from bench.errors import UsageError


class ConfigError(UsageError):
    """A config that names a field that does not exist or gives a value of the wrong type (one line, with the fix)."""


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is tuple:
        return isinstance(value, tuple) and all(_matches(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def check_types(cfg: Any) -> None:
    """Raise ConfigError naming the first field whose value does not have the annotated type."""
    hints = typing.get_type_hints(type(cfg))
    for name in _names(type(cfg)):
        value = getattr(cfg, name)
        if not _matches(value, hints[name]):
            raise ConfigError(f"{type(cfg).__name__}.{name} = {value!r} is not a {hints[name]}; fix the spec")


# --------------------------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------------------------

FOLDER_SETS = {  # a named folder data set -> what it is (each resolves to <--data>/<name>, or --data name=PATH)
    "imagenet-val": "ImageNet-1k val (50,000 images)",
    "imagenet-train": "ImageNet-1k train (generation reference statistics)",
    "ffhq": "FFHQ (images1024x1024)",
    "mapillary-vistas": "MapillaryVistas (validation/images)",
    "mjhq-30k": "MJHQ-30K (30,000 images, Table 5's FID reference and, here, its training images)",
    "mjhq-30k-t5": "T5-XXL caption features of MJHQ-30K (one .npz per image stem, bench/evals/captions.py)",
}


@dataclass(frozen=True)
class Dataset:
    """Which images a run reads: the embedded offline photos, a named folder data set, a user's image folder, or
    synthetic images."""

    kind: Literal["embedded", "folder", "path", "synthetic"]
    name: str = ""  # embedded: "train" | "test" (split by source photo) | "test-regions" (held-out boxes of one
                    # size, the same at every resolution: Fig. 3b); folder: a key of FOLDER_SETS; path: the folder
    digest: str = ""  # path: identity of the folder's files (models.data.folder_identity); a changed folder is a
                      # new run

    def __post_init__(self) -> None:
        allowed = {"embedded": ("train", "test", "test-regions"), "folder": tuple(FOLDER_SETS), "synthetic": ("",)}
        if self.kind == "path":
            if not self.name or not self.digest:
                raise ConfigError("Dataset('path', ...) needs the folder and its digest; use user_folder(path)")
            return
        if self.kind not in allowed:
            raise ConfigError(f"Dataset kind {self.kind!r} is unknown; use embedded, folder, path or synthetic")
        if self.name not in allowed[self.kind]:
            raise ConfigError(f"Dataset({self.kind!r}, {self.name!r}): name must be one of {allowed[self.kind]}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


EMBEDDED_TRAIN = Dataset("embedded", "train")
EMBEDDED_TEST = Dataset("embedded", "test")
EMBEDDED_TEST_REGIONS = Dataset("embedded", "test-regions")
SYNTHETIC = Dataset("synthetic")


def folder(name: str) -> Dataset:
    """A named folder data set (ImageNet val, FFHQ, ...), resolved against ``--data`` at run time."""
    return Dataset("folder", name)


def user_folder(path: str, digest: str) -> Dataset:
    """A user's image folder (the own-model commands' ``--data``), named by its path and the identity of its files."""
    return Dataset("path", path, digest)


@dataclass(frozen=True)
class DataOption:
    """What ``--data`` gave: a root folder holding the named sets as sub-folders, and/or ``NAME=PATH`` pairs."""

    root: str | None = None                       # --data D: D/imagenet-val, D/ffhq, ...
    sets: tuple[tuple[str, str], ...] = ()        # --data ffhq=PATH: that set's own folder

    @classmethod
    def parse(cls, values: list[str] | None) -> DataOption:
        root, sets = None, []
        for v in values or ():
            name, sep, path = v.partition("=")
            if not sep:
                if root is not None:
                    raise UsageError(f"--data given two root folders ({root}, {v}); give one, and NAME=PATH for "
                                     f"the others")
                root = v
            elif name not in FOLDER_SETS:
                raise UsageError(f"--data {v}: unknown data set {name!r}; use one of {', '.join(FOLDER_SETS)}")
            else:
                sets.append((name, path))
        return cls(root, tuple(sets))

    def resolve(self, ds: Dataset) -> Path | None:
        """The folder of the named set ``ds``: its NAME=PATH, else ``<root>/<name>``; None when neither exists."""
        given = dict(self.sets)
        if ds.name in given:
            return Path(given[ds.name]).expanduser()
        if self.root is not None and (Path(self.root).expanduser() / ds.name).is_dir():
            return Path(self.root).expanduser() / ds.name
        return None

    def __bool__(self) -> bool:
        return self.root is not None or bool(self.sets)


# --------------------------------------------------------------------------------------------------------------
# Eval configs
# --------------------------------------------------------------------------------------------------------------

class EvalConfig:
    """Base of every eval's config: ``EVAL`` names the eval (a key of ``bench.evals.EVALS``), ``run_name`` the
    readable prefix of its run ids, ``LIMIT_FIELD`` the field that ``--limit N`` caps (None: the eval has no subset
    mode). Field types are checked on construction."""

    EVAL: ClassVar[str]
    LIMIT_FIELD: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        check_types(self)

    @property
    def run_name(self) -> str:
        return str(getattr(self, "model", None) or getattr(self, "backbone", None) or self.EVAL)

    def derived(self) -> tuple[EvalConfig, ...]:
        """Runs the runner computes before this one and hands it as inputs, whose configs are functions of this
        one's fields (so they add nothing to its id): work that several runs share, built once (none here)."""
        return ()


# Per-scale defaults of each phase (merged under a phase dict of the config). The paper publishes no batch sizes or
# step counts; the learning rates of the small scale are raised from the paper's 6.4e-5 / 1.6e-5 / 5.4e-5 because a
# few hundred steps at batch 8 are ~1e-4 of the paper's schedule (a stated deviation). Phase 1 uses 2e-4 for both
# families: in a sweep over 3e-5..3e-3 on f32c32-tiny (`python scripts/lr_sweep.py`), 1e-3 was too high
# for both DC-AE and the stacked SD-VAE (whose loss then stalled near a flat-colour output), and 1e-4..3e-4 were
# best for both.
SCALE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {  # scale -> phase -> PhaseConfig fields
    "smoke": {  # resolution: max(32, f) for phases 1 and 3, twice that for phase 2 (see phase_configs)
        "phase1": {"steps": 2, "batch": 2, "lr": 1e-3, "ckpt_every": 1},
        "phase2": {"steps": 2, "batch": 2, "lr": 1e-3, "ckpt_every": 1},
        "phase3": {"steps": 2, "batch": 2, "lr": 1e-3, "ckpt_every": 1, "disc_width": 16},
    },
    "small": {
        "phase1": {"resolution": 64, "steps": 300, "batch": 8, "lr": 2e-4, "warmup_steps": 20, "ckpt_every": 50},
        "phase2": {"resolution": 256, "steps": 60, "batch": 2, "lr": 3e-4, "ckpt_every": 20},
        "phase3": {"resolution": 64, "steps": 120, "batch": 8, "lr": 2e-4, "ckpt_every": 40, "disc_width": 32,
                   "gan_weight": 0.1},
    },
    "paper": {  # the secondary-source optimiser settings of PhaseConfig; batch/steps are ours (unpublished)
        "phase1": {"resolution": 256, "batch": 32, "steps": 100_000, "ckpt_every": 1000, "ema_decay": 0.9998},
        "phase2": {"resolution": 1024, "batch": 12, "steps": 20_000, "ckpt_every": 1000, "ema_decay": 0.9998},
        "phase3": {"resolution": 256, "batch": 32, "steps": 20_000, "ckpt_every": 1000, "ema_decay": 0.9998},
    },
}


@dataclass(frozen=True)
class PhaseRequest:
    """One phase of a train-ae run: a phase of ``models.train_autoencoder.PHASES`` with fields changed.

    None keeps the scale's default (``SCALE_DEFAULTS``), then the paper's ``PhaseConfig``."""

    phase: Literal["phase1", "phase2", "phase3"]  # Decoupled High-Resolution Adaptation phase (paper §3.2)
    steps: int | None = None                       # optimiser steps
    resolution: int | None = None                  # training crop size (px)
    batch: int | None = None                       # images per step
    lr: float | None = None                        # AdamW learning rate
    trainable: str | None = None                   # a selector of models.train_autoencoder.SELECTORS
    gan: bool | None = None                        # GAN loss on (phase 3) or off

    def __post_init__(self) -> None:
        check_types(self)


@dataclass(frozen=True)
class Plateau:
    """Train a one-phase run to a plateau: train the phase's steps, then keep doubling them while the
    doubling raised the held-out PSNR by at least ``min_gain_db``, up to ``max_steps``. The probe is the first
    ``probe_images`` embedded held-out crops at the phase's resolution (small / smoke scale); the run records the
    curve (steps, probe PSNR) and whether the plateau was reached before ``max_steps``."""

    min_gain_db: float = 0.3                       # a doubling that gains less than this is the plateau
    max_steps: int = 1200                          # the budget: no doubling beyond this many steps
    probe_images: int = 64                         # held-out crops of the probe

    def __post_init__(self) -> None:
        check_types(self)
        if self.min_gain_db <= 0 or self.max_steps < 1 or self.probe_images < 2:
            raise ConfigError(f"Plateau({self.min_gain_db}, {self.max_steps}, {self.probe_images}): use "
                              f"min_gain_db > 0, max_steps >= 1, probe_images >= 2")


@dataclass(frozen=True)
class TrainAEConfig(EvalConfig):
    """Eval ``train-ae``: train an autoencoder through one or more phases; output ``ckpt/model.safetensors``."""

    EVAL: ClassVar[str] = "train-ae"
    model: str                                     # models.build name, e.g. "dc-ae-f32c32-tiny"
    phases: tuple[PhaseRequest, ...] = (PhaseRequest("phase1"),)  # run in order
    seed: int = 0                                  # model init, data order, discriminator init
    residual_autoencoding: bool | None = None      # None: the model's own setting; False: the Fig. 3a ablation
    init_from: TrainAEConfig | None = None         # start from that run's final weights (same architecture)
    plateau: Plateau | None = None                 # train the (single) phase to a plateau; None: its fixed steps
    data: str = ""                                 # an image folder to train on (absolute path); "": the scale's
                                                   # data (embedded photos; --data at paper scale)
    data_digest: str = ""                          # identity of that folder's files (paths, sizes, times)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.plateau is not None and len(self.phases) != 1:
            raise ConfigError(f"TrainAEConfig({self.model}): plateau applies to a one-phase run, not "
                              f"{len(self.phases)} phases; split the phases into runs chained by init_from")


@dataclass(frozen=True)
class ReconConfig(EvalConfig):
    """Eval ``recon``: the reconstruction protocol (rFID, PSNR, SSIM, LPIPS, KID) of one autoencoder."""

    EVAL: ClassVar[str] = "recon"
    LIMIT_FIELD: ClassVar[str | None] = "n_images"
    model: str                                     # registry name, e.g. "dc-ae-f64c128-in-1.0"
    resolution: int                                # evaluation crop size (px)
    dataset: Dataset = EMBEDDED_TEST               # which images
    checkpoint: TrainAEConfig | None = None        # evaluate that training run's weights
    weights: bool = False                          # evaluate the official checkpoint (--weights); else untrained
    n_images: int | None = None                    # first N images of the set (None: all)
    batch_size: int = 16                           # images per forward (halved on CUDA out-of-memory)
    features: Literal["inception", "tiny"] = "inception"  # FID network ("tiny": tests only)
    shard_images: int | None = None                # images per resumable shard (None: ~4 shards per rank)
    n_samples: int = 8                             # reconstructions kept as PNGs
    seed: int = 0                                  # embedded / synthetic image selection

    def derived(self) -> tuple[EvalConfig, ...]:
        """The FID statistics of the originals, shared by every autoencoder evaluated on the same images."""
        return (FidReferenceConfig(self.dataset, self.resolution, self.n_images, self.seed, self.features,
                                   self.batch_size, self.shard_images),)


@dataclass(frozen=True)
class FidReferenceConfig(EvalConfig):
    """Eval ``fid-ref``: the FID feature statistics of a reconstruction set's originals (``ReconConfig.derived``),
    built once before the evaluations that share them. Its fields are the ones of ``ReconConfig`` that choose the
    images and cut them into shards and batches (the sums are those the shards would add up, bit for bit)."""

    EVAL: ClassVar[str] = "fid-ref"
    dataset: Dataset                               # which images (as ReconConfig)
    resolution: int                                # crop size (px)
    n_images: int | None = None                    # first N images (None: all)
    seed: int = 0                                  # embedded / synthetic image selection
    features: Literal["inception", "tiny"] = "inception"  # FID network ("tiny": tests only)
    batch_size: int = 16                           # images per forward (the evaluations' batches)
    shard_images: int | None = None                # images per shard (the evaluations' shards)

    @property
    def run_name(self) -> str:
        return f"{Path(self.dataset.name).name or self.dataset.kind}-{self.resolution}"


@dataclass(frozen=True)
class AutoencoderEvalConfig(EvalConfig):
    """Eval ``eval-ae``: the reconstruction protocol of ``recon`` on any autoencoder (a registered name with
    --weights, a file of this harness, a diffusers folder or module:function; bench/evals/autoencoder_sources.py),
    plus the statistics of its latents on the same images. The run id follows the weights' and images' digests."""

    EVAL: ClassVar[str] = "eval-ae"
    LIMIT_FIELD: ClassVar[str | None] = "n_images"
    model: str                                     # as given: name, file, diffusers folder or module:function
    kind: Literal["registered", "harness-file", "diffusers", "factory"]
    weights_digest: str                            # sha256[:16] of the weights
    resolution: int                                # evaluation crop size (px): a multiple of the model's factor
    data: str = str(EMBEDDED_TEST)                 # "embedded:test" or an image folder's absolute path
    data_name: str = ""                            # the data set's name in tables (a folder's name, or NAME=PATH)
    data_digest: str = ""                          # identity of the folder's files (paths, sizes, times)
    n_images: int | None = None                    # first N images (None: all)
    batch_size: int = 16                           # images per forward
    features: Literal["inception", "tiny"] = "inception"  # FID network ("tiny": tests only)
    n_samples: int = 8                             # reconstructions kept as PNGs

    @property
    def run_name(self) -> str:
        """A folder's or file's name; a run's ``ckpt/model.safetensors`` is named by its run folder."""
        if self.kind not in ("diffusers", "harness-file"):
            return self.model
        path = Path(self.model)
        return path.parent.parent.name if path.parent.name == "ckpt" else path.name


@dataclass(frozen=True)
class ProtocolConfig(AutoencoderEvalConfig):
    """Eval ``protocol``: how far each common protocol choice (resize before the FID network, uint8 conversion, crop,
    reference set, N) moves rFID and PSNR for one autoencoder on one image set (bench/evals/protocol_choices.py)."""

    EVAL: ClassVar[str] = "protocol"
    seed: int = 0                                  # the N-subset draws


@dataclass(frozen=True)
class MemoryConfig(EvalConfig):
    """Eval ``ae-memory``: peak training memory of one trainable set (paper §3.2)."""

    EVAL: ClassVar[str] = "ae-memory"
    model: str                                     # registry name
    trainable: str                                 # "all_parameters" | "middle_layers" (phase 2)
    resolution: int                                # training crop size (px)
    method: Literal["cuda", "saved-tensors"] = "cuda"  # measured GPU peak, or the CPU saved-tensor estimate
    batches: tuple[int, ...] = (1, 2, 4)           # batch sizes measured, then fitted a + b*B
    target_batch: int = 12                         # the fit is reported at this batch (the paper's 12)
    direct_target: bool = False                    # also measure at target_batch on CPU
    lpips: bool = True                             # include the LPIPS network when its weights are cached


@dataclass(frozen=True)
class ClaimConfig(EvalConfig):
    """Eval ``claim``: one claim of the paper decided by the one rule of bench/stats.py on two arms of runs, one run
    per training seed: reconstruction runs on the same images or generate runs on the same labels and reference (a
    t interval over seeds and source photos). Verdict, interval, mean ± sd per arm, power. With
    ``base_a`` / ``base_b`` (reconstruction arms only) the claim is a contrast, (a − base_a) − (b − base_b), seed by
    seed on the same images (e.g. "with shortcuts the f32 − f8 gap is smaller")."""

    EVAL: ClassVar[str] = "claim"
    statement: str                                 # the paper's claim, in its words
    metric: Literal["rfid", "kid", "psnr", "ssim", "lpips", "gfid", "kid_vs_recon", "gfid_vs_recon"]  # compared
    lower_is_better: bool                          # the paper's direction: arm_a better means lower (rFID) or higher
    arm_a: tuple[ReconConfig | GenerateConfig, ...]  # the arm the paper says is better, one run per training seed
    arm_b: tuple[ReconConfig | GenerateConfig, ...]  # the arm it is compared with (the same eval as arm_a)
    level: float = 0.90                            # the t interval's two-sided level
    min_seeds: int = 3                             # fewer seeds in either arm: inconclusive by rule
    design: Literal["independent", "paired"] = "independent"  # seeds of the two arms: separate or matched units
    pairing: str = ""                              # why seed s of both arms is one unit (a paired design says)
    kind: Literal["paper", "diagnostic", "extension"] = "paper"  # the paper's claim, our diagnostic, or our extension
    base_a: tuple[ReconConfig, ...] = ()           # a contrast: arm_a minus these, seed by seed (() : none)
    base_b: tuple[ReconConfig, ...] = ()           # ... and arm_b minus these: (a - base_a) - (b - base_b)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.arm_a or not self.arm_b:
            raise ConfigError("ClaimConfig: each arm needs at least one run (one per training seed)")
        for arm, base, name in ((self.arm_a, self.base_a, "a"), (self.arm_b, self.base_b, "b")):
            if base and not isinstance(arm[0], ReconConfig):
                raise ConfigError(f"ClaimConfig: base_{name}: contrasts take reconstruction arms only")
            if base and len(base) != len(arm):
                raise ConfigError(f"ClaimConfig: base_{name} pairs seed s with seed s of arm_{name}: give it one "
                                  f"reconstruction run per run of arm_{name} ({len(arm)}), not {len(base)}")
        kinds = {type(c) for c in self.arm_a + self.arm_b}
        if self.metric.endswith("_vs_recon") and not all(
                getattr(c, "also_vs_reconstructions", False) for c in self.arm_a + self.arm_b):
            raise ConfigError(f"ClaimConfig: metric {self.metric!r} needs every arm run with "
                              f"also_vs_reconstructions=True")
        if len(kinds) > 1:
            raise ConfigError("ClaimConfig: both arms must be runs of one eval (all ReconConfig or all "
                              "GenerateConfig)")
        per_eval = {ReconConfig: ("rfid", "kid", "psnr", "ssim", "lpips"), GenerateConfig: ("gfid", "kid", "gfid_vs_recon", "kid_vs_recon")}
        if kinds and self.metric not in per_eval[kinds.pop()]:
            raise ConfigError(f"ClaimConfig: metric {self.metric!r} is not measured by the arms' eval")
        arms = [self.arm_a, self.arm_b] + [x for x in (self.base_a, self.base_b) if x]
        if self.design == "paired" and (len({len(x) for x in arms}) != 1 or not self.pairing):
            raise ConfigError("ClaimConfig: a paired design needs one run per seed in every arm and a 'pairing' "
                              "saying why seed s of the arms is one unit")

    @property
    def run_name(self) -> str:
        return f"claim-{self.metric}-{self.statement}"


@dataclass(frozen=True)
class PerMeasure:
    """One integer per timed measurement of the efficiency eval (None: DC-Gen's token rule decides)."""

    train: int | None
    infer: int | None
    latency: int | None
    memory: int | None

    def __post_init__(self) -> None:
        check_types(self)

    def __getitem__(self, kind: str) -> int | None:
        return getattr(self, kind)


@dataclass(frozen=True)
class EfficiencyConfig(EvalConfig):
    """Eval ``efficiency``: training / inference throughput, latency, memory and FLOPs of one backbone."""

    EVAL: ClassVar[str] = "efficiency"
    backbone: str                                  # models.backbones name, e.g. "uvit-h"
    latent_channels: int                           # the autoencoder's c
    latent_size: int                               # latent height = width
    patch_size: int                                # the backbone's patch size p
    autoencoder: str = ""                          # label only (the autoencoder is not run)
    depth: int | None = None                       # fewer blocks than the paper's (small scale); None: the paper's
    measure: tuple[Literal["train", "infer", "latency", "memory"], ...] = ("train", "infer", "latency", "memory")
    batch: PerMeasure = PerMeasure(None, None, 2, 256)  # None: DC-Gen's batch for the token count
    batch_divisor: PerMeasure = PerMeasure(1, 1, 1, 1)  # CPU only: rule batches divided by this (>= 1 image)
    warmup: PerMeasure = PerMeasure(20, 20, 20, 5)  # untimed calls first
    iters: PerMeasure = PerMeasure(100, 100, 100, 10)  # timed calls
    min_seconds: float = 0.0                       # keep timing (up to 10x iters) until this much time is sampled
    dtype: Literal["fp16", "bf16"] = "fp16"        # GPU autocast / inference dtype (fp16 as the paper)
    threads: int | None = None                     # CPU: torch.set_num_threads(k); None keeps torch's default
    activation_checkpointing: bool = True          # per block, as DC-Gen's training harness


# Per-scale defaults of a train-diffusion recipe (merged over the official recipe of the backbone's formulation,
# models.train_diffusion.RECIPES; the config's non-None recipe fields go on top). The paper's recipes are 500k (U-ViT)
# or up to 3M (DiT) steps at batch 1024 / 256; the small scale keeps reference/generation.md §6's CPU budget (a ~1.5
# M-parameter backbone, 16 tokens): 1000 steps at batch 32 (64 did not fit the whole small scale's 2-hour budget).
DIFFUSION_SCALE_DEFAULTS: dict[str, dict[str, Any]] = {  # scale -> DiffusionRecipe fields
    "smoke": {"steps": 2, "batch": 4, "warmup_steps": 0, "ckpt_every": 1},
    "small": {"steps": 1000, "batch": 32, "warmup_steps": 50, "ckpt_every": 100},
    "paper": {"ckpt_every": 1000},  # the official recipe as it is
}


@dataclass(frozen=True)
class OwnAutoencoder:
    """An autoencoder the user gives by path (bench/evals/autoencoder_sources.py): a file of this harness, a diffusers
    folder or ``module:function``, named in run ids by the digest of its weights."""

    spec: str                                      # as given (a path relative to the working directory when inside)
    kind: Literal["harness-file", "diffusers", "factory"]
    weights_digest: str                            # sha256[:16] of the weights


@dataclass(frozen=True)
class TrainDiffusionConfig(EvalConfig):
    """Eval ``train-diffusion``: a latent diffusion backbone trained on one autoencoder's latents (paper §4.1);
    output ``ckpt/model.safetensors`` (EMA weights) and ``ckpt/train_state.pt`` (raw weights, resumable)."""

    EVAL: ClassVar[str] = "train-diffusion"
    backbone: str                                  # models.backbones name: "uvit-*", "dit-*" or "pixart-*"
    autoencoder: str                               # registry name of the latents, e.g. "dc-ae-f32c32-in-1.0"; with
                                                   # own_autoencoder, the name it is shown by
    resolution: int                                # image side (px); latent side = resolution / f
    patch_size: int = 1                            # the backbone's patch size p (DC-AE rows: 1)
    autoencoder_checkpoint: TrainAEConfig | None = None  # encode with that train-ae run's weights; None: official
    weights: bool = False                          # no checkpoint: official weights (--weights); else untrained (smoke)
    dataset: Dataset = EMBEDDED_TRAIN              # training images (embedded: class = source photo)
    n_images: int | None = None                    # first N images of the set (None: all)
    conditional: bool = True                       # class labels; False: unconditional (Table 4: FFHQ, MapillaryVistas)
    latent_scale: Literal["autoencoder", "unit-rms"] = "autoencoder"  # AE's factor, or 1/RMS of these latents
    depth: int | None = None                       # backbone override: blocks (small scale: a reduced UViT/DiT)
    hidden_size: int | None = None                 # backbone override: width D; None keeps the backbone's
    num_heads: int | None = None                   # backbone override: attention heads
    steps: int | None = None                       # recipe override; None: DIFFUSION_SCALE_DEFAULTS, then official
    batch: int | None = None                       # recipe override: global batch per optimiser step
    lr: float | None = None                        # recipe override: AdamW learning rate
    warmup_steps: int | None = None                # recipe override: linear lr warm-up steps
    ema_decay: float | None = None                 # recipe override: EMA decay (0 = no EMA)
    grad_accum: int | None = None                  # recipe override: micro-batches per optimiser step
    seed: int | None = None                        # recipe override: data order, t, noise, label dropout
    captions: Dataset | None = None                # pixart-*: T5 caption features paired with `dataset` by file stem
                                                   # (paper: folder("mjhq-30k-t5"); SYNTHETIC: generated, smoke only)
    own_autoencoder: OwnAutoencoder | None = None  # the latents of a user's autoencoder (python -m bench
                                                   # train-diffusion --autoencoder PATH) instead of a registered one

    @property
    def run_name(self) -> str:
        return f"{self.backbone}-{self.autoencoder}"


@dataclass(frozen=True)
class GenerateConfig(EvalConfig):
    """Eval ``generate``: sample a trained diffusion model, decode, and score gFID / KID / IS against a reference."""

    EVAL: ClassVar[str] = "generate"
    LIMIT_FIELD: ClassVar[str | None] = "n_samples"
    model: TrainDiffusionConfig | None = None      # the training run whose checkpoint is sampled
    released: str | None = None                    # or a released diffusion checkpoint name (generation.md §4)
    n_samples: int = 50_000                        # generated images scored (the paper: 50,000)
    cfg_scale: float = 1.0                         # classifier-free guidance s >= 1 (1 = none; UViT 1.5, DiT-XL 1.3)
    sampler: Literal["dpm-solver++", "iddpm"] | None = None  # None: the formulation's own (uvit / dit)
    steps: int | None = None                       # NFE (dpm-solver++, 30) or respaced steps (iddpm, 250); None: those
    grid: Literal["time-uniform", "logsnr"] = "time-uniform"  # DPM-Solver++ grid; the paper ran time-uniform
    ema: bool = True                               # sample the EMA weights (as the paper); False: the raw weights
    reference: Dataset = EMBEDDED_TRAIN            # FID reference images (paper: folder("imagenet-train"))
    n_reference: int | None = None                 # first N reference images (None: all)
    reference_kind: Literal["images", "reconstructions"] = "images"  # or the same AE's reconstructions of them
    also_vs_reconstructions: bool = False          # also score against the AE's reconstructions of the reference
                                                   # (gfid_vs_recon, kid_vs_recon: the model's error without the
                                                   # decoder's floor; small scale)
    user_reference: str | None = None              # sha256[:16] of a user's reference .npz (--fid-reference)
    features: Literal["inception", "tiny"] = "inception"  # FID network ("tiny": tests only)
    batch_size: int = 64                           # samples per backbone batch (a sample depends on it via IDDPM noise)
    shard_samples: int | None = None               # samples per resumable shard (None: ~4 shards per rank)
    n_png: int = 16                                # first N samples kept as PNGs (samples/)
    seed: int = 0                                  # labels (seeded randint, not balanced) and per-sample noise
    prompts: Dataset | None = None                 # text-to-image: caption features of the prompts, sample i = the
                                                   # i-th by stem (paper: folder("mjhq-30k-t5"); SYNTHETIC: smoke)

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = [
            ((self.model is None) == (self.released is None), "give exactly one of 'model' and 'released'"),
            (self.cfg_scale < 1, f"cfg_scale = {self.cfg_scale} < 1; use 1.0 for no guidance"),
            (self.n_samples < 2, f"n_samples = {self.n_samples}: FID needs at least 2 samples"),
            (self.steps is not None and self.steps < 1, f"steps = {self.steps}; use >= 1 (or None)"),
            (self.batch_size < 1, f"batch_size = {self.batch_size}; use >= 1"),
            (self.also_vs_reconstructions and self.reference_kind == "reconstructions",
             "also_vs_reconstructions needs reference_kind 'images' (it adds the reconstructions)"),
            (self.sampler == "iddpm" and self.grid != "time-uniform",
             "grid applies to dpm-solver++ only; leave it 'time-uniform' with sampler 'iddpm'"),
            (self.prompts is not None and self.released is not None,
             "prompts apply to a trained text-to-image model ('model'); the released models are class-conditional"),
        ]
        for bad, message in problems:
            if bad:
                raise ConfigError(f"GenerateConfig: {message}")

    @property
    def run_name(self) -> str:
        return self.released or (self.model.run_name if self.model is not None else "generate")

    def reference_config(self, kind: str) -> GenReferenceConfig | None:
        """The ``fid-ref-gen`` run of this run's reference of ``kind`` (None: a user's .npz, a released model or a
        user's autoencoder, whose statistics the run builds itself)."""
        train = self.model
        if train is None or train.own_autoencoder is not None or (self.user_reference and kind == self.reference_kind):
            return None
        ae = {"autoencoder": train.autoencoder, "autoencoder_checkpoint": train.autoencoder_checkpoint,
              "weights": train.weights} if kind == "reconstructions" else {}
        return GenReferenceConfig(self.reference, train.resolution, self.n_reference, self.features, self.batch_size,
                                  kind, **ae)

    def derived(self) -> tuple[EvalConfig, ...]:
        """The statistics of the reference images (and of their reconstructions), shared by every run scored
        against them."""
        kinds = (self.reference_kind, *(("reconstructions",) if self.also_vs_reconstructions else ()))
        return tuple(c for c in map(self.reference_config, kinds) if c is not None)


@dataclass(frozen=True)
class GenReferenceConfig(EvalConfig):
    """Eval ``fid-ref-gen``: the FID statistics of a generation reference (``GenerateConfig.derived``): the reference
    images at the model's resolution, or an autoencoder's reconstructions of them; built once before the runs
    scored against it. A valid ``--fid-reference`` file (mu, sigma, resolution, feature network)."""

    EVAL: ClassVar[str] = "fid-ref-gen"
    reference: Dataset                             # the reference images (as GenerateConfig.reference)
    resolution: int                                # image side (px)
    n_reference: int | None = None                 # first N reference images (None: all)
    features: Literal["inception", "tiny"] = "inception"  # FID network ("tiny": tests only)
    batch_size: int = 64                           # images per forward (the generate run's)
    kind: Literal["images", "reconstructions"] = "images"  # the images, or the autoencoder's reconstructions
    autoencoder: str = ""                          # reconstructions: the autoencoder's registry name
    autoencoder_checkpoint: TrainAEConfig | None = None  # its train-ae run (None: official or untrained weights)
    weights: bool = False                          # its official weights (--weights); else untrained (smoke)

    @property
    def run_name(self) -> str:
        source = Path(self.reference.name).name or self.reference.kind
        return f"{source}-{self.resolution}" + (f"-{self.autoencoder}" if self.kind == "reconstructions" else "")


# --------------------------------------------------------------------------------------------------------------
# Helpers: overrides, dependencies, serialisation
# --------------------------------------------------------------------------------------------------------------

def from_json(cls: type, data: Mapping[str, Any], deps: typing.Sequence[EvalConfig] = ()) -> Any:
    """The inverse of ``to_json`` for a config class: its stored fields (``config.json``'s "config") and, for each
    field that names another run (stored as that run's id, not as a field), the next of ``deps`` in
    ``dependencies`` order; a tuple of runs takes all that are left."""
    hints, pending, kwargs = typing.get_type_hints(cls), list(deps), {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _from_json_value(data[f.name], hints[f.name])
        elif _names_runs(hints[f.name]):
            if not pending:
                raise ConfigError(f"{cls.__name__}.{f.name} names a run, but the stored config lists no run left for "
                                  f"it; the run folder is damaged: run its command again")
            is_tuple = typing.get_origin(hints[f.name]) is tuple
            later = [g.name for g in dataclasses.fields(cls)
                     if _names_runs(hints[g.name]) and g.name not in data]
            if is_tuple and later[-1] != f.name:
                raise ConfigError(f"a {cls.EVAL} run cannot be rebuilt from its config.json: {f.name} is one of "
                                  f"several lists of runs ({', '.join(later)}), stored as one list of ids")
            kwargs[f.name], pending = (tuple(pending), []) if is_tuple else (pending[0], pending[1:])
    return cls(**kwargs)


def _names_runs(hint: Any) -> bool:
    """A field type that holds another eval's config (or a tuple of them)."""
    args = typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, EvalConfig):
        return True
    return any(_names_runs(a) for a in args if a is not type(None) and a is not Ellipsis)


def _from_json_value(value: Any, hint: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if dataclasses.is_dataclass(a) and isinstance(value, Mapping):
                return from_json(a, value)
        tuples = [a for a in args if typing.get_origin(a) is tuple]
        return _from_json_value(value, tuples[0]) if tuples and isinstance(value, list) else value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_json(hint, value)
    if origin is tuple and isinstance(value, list):
        return tuple(_from_json_value(v, args[0]) for v in value)
    return value


def with_changes(cfg: Any, changes: Mapping[str, Any] | None) -> Any:
    """``dataclasses.replace`` that names a misspelled field and its closest match in one line."""
    if not changes:
        return cfg
    unknown = sorted(set(changes) - set(_names(type(cfg))))
    if unknown:
        close = difflib.get_close_matches(unknown[0], _names(type(cfg)), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{type(cfg).__name__} has no field {unknown[0]!r}{hint}; fields: "
                          f"{', '.join(_names(type(cfg)))}")
    return dataclasses.replace(cfg, **changes)


def limited(cfg: EvalConfig, limit: int | None) -> EvalConfig:
    """``cfg`` on at most ``limit`` items (``--limit N``: the first N images of each set), where the eval allows it."""
    if limit is None or cfg.LIMIT_FIELD is None:
        return cfg
    current = getattr(cfg, cfg.LIMIT_FIELD)
    return with_changes(cfg, {cfg.LIMIT_FIELD: limit if current is None else min(current, limit)})


def with_user_reference(cfg: EvalConfig, digest: str | None) -> EvalConfig:
    """A generate config scored against the user's reference .npz of this content digest (``--fid-reference``): the
    digest is part of the run id, so a run scored against another reference is never reused."""
    if digest is None or not isinstance(cfg, GenerateConfig):
        return cfg
    return with_changes(cfg, {"user_reference": digest})


def map_configs(cfg: EvalConfig, fn: typing.Callable[[EvalConfig], EvalConfig]) -> EvalConfig:
    """``fn`` applied to ``cfg`` and to every run it depends on (fields holding a config or a tuple of them),
    innermost first: a per-invocation change (``--limit``, ``--fid-reference``) reaches a claim's arms and a
    generate run's training run, so the ids that name them change with it."""
    changes: dict[str, Any] = {}
    for name in _names(type(cfg)):
        value = getattr(cfg, name)
        if isinstance(value, EvalConfig):
            changes[name] = map_configs(value, fn)
        elif is_dependency(value):
            changes[name] = tuple(map_configs(v, fn) for v in value)
    changed = {k: v for k, v in changes.items() if v != getattr(cfg, k)}
    return fn(dataclasses.replace(cfg, **changed) if changed else cfg)


def is_dependency(value: Any) -> bool:
    """A field value that names other runs: an eval config, or a tuple of them (a claim's arms)."""
    return isinstance(value, EvalConfig) or (isinstance(value, tuple) and len(value) > 0
                                             and all(isinstance(v, EvalConfig) for v in value))


def training_steps(cfg: EvalConfig | None, scale: str) -> int:
    """Optimiser steps behind a run at ``scale``: its train-ae chain (phases and ``init_from``s; 0 for official or
    untrained weights), plus the diffusion model's steps for a generate run. Claims compare arms trained for the same number of steps (spec validation).
    A run trained to a plateau (``TrainAEConfig.plateau``) counts its first stage: its arms share one rule and each
    stops at its own plateau or the rule's cap (the tables show where), so equal counts here mean equal rules."""
    if isinstance(cfg, ReconConfig):
        return training_steps(cfg.checkpoint, scale)
    if isinstance(cfg, TrainAEConfig):
        own = sum(r.steps if r.steps is not None else SCALE_DEFAULTS[scale][r.phase]["steps"] for r in cfg.phases)
        return own + training_steps(cfg.init_from, scale)
    if isinstance(cfg, GenerateConfig):
        return training_steps(cfg.model, scale)
    if isinstance(cfg, TrainDiffusionConfig):  # 0 for the official recipe's count (equal within one backbone)
        own = cfg.steps if cfg.steps is not None else DIFFUSION_SCALE_DEFAULTS[scale].get("steps", 0)
        return own + training_steps(cfg.autoencoder_checkpoint, scale)
    return 0


def dependencies(cfg: EvalConfig) -> list[EvalConfig]:
    """The runs this config needs first: every field whose value is another eval's config (or a tuple of them)."""
    out: list[EvalConfig] = []
    for value in (getattr(cfg, n) for n in _names(type(cfg))):
        if is_dependency(value):
            out += [value] if isinstance(value, EvalConfig) else list(value)
    return out


def fields_json(cfg: EvalConfig) -> dict[str, Any]:
    """A config's fields as plain JSON data (what ``config.json`` stores and the run id hashes)."""
    return to_json(cfg)["config"]


def to_json_fields(value: Any) -> dict[str, Any]:
    """Every field of a dataclass as plain JSON data."""
    return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}


def to_json(value: Any) -> Any:
    """Plain JSON data: an eval config as ``{"eval": ..., "config": {fields}}``, other dataclasses as dicts of all
    their fields, tuples as lists."""
    if isinstance(value, EvalConfig):
        return {"eval": value.EVAL, "config": to_json_fields(value)}
    if dataclasses.is_dataclass(value):
        return to_json_fields(value)
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    return value
