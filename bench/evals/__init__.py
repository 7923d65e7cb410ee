"""Eval protocols by name: ``EVALS[name] = Eval(config class, run function, protocol, version)``.

Imports of the run functions are lazy (a string, not a module) so that ``python -m bench ls`` and ``check`` never
import torch. Bump a protocol's version when its numbers would change: the version is part of every run id (old runs
are not reused for the new protocol) and the runner stamps ``_protocol`` (``<protocol>-v<version>``) into every
run's metrics from here, so it is written once. Read top to bottom: these are all the ways the harness computes a
number.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.configs import (
    AutoencoderEvalConfig,
    ProtocolConfig,
    ClaimConfig,
    EfficiencyConfig,
    EvalConfig,
    FidReferenceConfig,
    GenReferenceConfig,
    GenerateConfig,
    MemoryConfig,
    ReconConfig,
    TrainAEConfig,
    TrainDiffusionConfig,
)


# Files that the claims read from recon / generate runs (committed with them): their one home.
JACKKNIFE_FILE = "jackknife.json"  # per run: groups and each metric with each group left out
PER_IMAGE_FILE = "per_image.json"  # per-image PSNR / SSIM / LPIPS by image index (claims pair arms on it)


@dataclass(frozen=True)
class Eval:
    config: type[EvalConfig]  # the typed config (bench/configs.py)
    target: str               # "module:function" computing run(cfg, ctx) -> metrics
    protocol: str             # protocol name, e.g. "dcae-recon"
    version: int              # bump when the numbers would change
    parallel_safe: bool       # numbers independent of wall-clock time: several may run at once (--jobs N)
    paper_gpu: str = ""       # why it needs a GPU at paper scale (refused before any run folder); "": it does not
    cpu_subset: bool = False  # at paper scale, --limit N runs the same protocol on a labelled subset on a CPU
    files: tuple[str, ...] = ()  # files every complete run has (committed; a run without one is recomputed)

    @property
    def protocol_id(self) -> str:
        return f"{self.protocol}-v{self.version}"


EVALS: dict[str, Eval] = {
    # Reconstruction protocol: rFID / PSNR / SSIM / LPIPS of an autoencoder (Table 2, Fig. 2a, 3, 5, 7), each metric
    # with each source photo left out (the claims' image jackknife), and whether the model collapsed.
    "recon": Eval(ReconConfig, "bench.evals.reconstruction:run", "dcae-recon", 4, parallel_safe=True,
                  files=(JACKKNIFE_FILE, PER_IMAGE_FILE),
                  paper_gpu="paper-scale reconstruction (50k images) needs a GPU; use --device cuda, or --device cpu "
                            "--limit N for the same protocol on the first N images (labelled as a subset)",
                  cpu_subset=True),
    # The originals' FID statistics of a reconstruction set, built once before the evaluations that share them.
    "fid-ref": Eval(FidReferenceConfig, "bench.evals.reconstruction:run_reference", "dcae-fid-ref", 1,
                    parallel_safe=True, cpu_subset=True,
                    paper_gpu="paper-scale FID statistics (50k images) need a GPU; use --device cuda, or --device cpu "
                              "--limit N"),
    # The same reconstruction protocol on any autoencoder (a diffusers folder, a file of ours, module:function, a
    # registered name), with the statistics of its latents: per-channel mean and std, 1/std, shift and scale.
    "eval-ae": Eval(AutoencoderEvalConfig, "bench.evals.own_autoencoder:run", "dcae-eval-ae", 1, parallel_safe=True,
                    paper_gpu="", cpu_subset=True),
    # How far each common protocol choice moves rFID / PSNR for one autoencoder (resize, rounding, crop, reference, N).
    "protocol": Eval(ProtocolConfig, "bench.evals.protocol_choices:run", "dcae-protocol-choices", 1,
                     parallel_safe=True, cpu_subset=True),
    # Autoencoder training: Decoupled High-Resolution Adaptation phases (Fig. 3, Fig. 5); a plateau-trained run
    # records its probe's output spread, and a collapsed model never counts as having reached its plateau.
    "train-ae": Eval(TrainAEConfig, "bench.evals.training:run", "dcae-train-ae", 3, parallel_safe=True,
                      paper_gpu="paper-scale autoencoder training needs GPUs (weeks of GPU time on the paper's data "
                                "mixture); run with --device cuda --data TRAIN_FOLDER under torchrun"),
    # A claim of the paper decided by the one rule of bench/stats.py: a t interval over training seeds and source
    # photos; a claim with a collapsed arm is invalid.
    "claim": Eval(ClaimConfig, "bench.evals.claims:run", "dcae-claim", 5, parallel_safe=True),
    # Section 3.2 memory claim: peak training memory of full training vs phase-2 adaptation (timed: runs alone).
    "ae-memory": Eval(MemoryConfig, "bench.evals.training:run_memory", "dcae-ae-memory", 1, parallel_safe=False),
    # Backbone efficiency profiling: throughput, latency, memory, FLOPs (Tables 3-5, Fig. 2c; timed: runs alone).
    "efficiency": Eval(EfficiencyConfig, "bench.evals.efficiency:run", "dcae-efficiency", 1, parallel_safe=False,
                        paper_gpu="paper-scale efficiency needs a CUDA GPU; run `python -m bench <table> --scale "
                                  "paper --device cuda` on an H100, or use --scale small for CPU ratios"),
    # Latent diffusion training on an autoencoder's latents: the official UViT / DiT recipes (Tables 1, 3, 4); a
    # released SD-VAE's latents are one seeded posterior sample per image, as the official latent script.
    "train-diffusion": Eval(TrainDiffusionConfig, "bench.evals.diffusion_training:run_train", "dcae-train-diffusion", 1,
                            parallel_safe=True,
                            paper_gpu="paper-scale diffusion training needs GPUs (500k steps at batch 1024 for UViT); "
                                      "run with --device cuda under torchrun"),
    # The FID statistics of a generation reference (the images, or an autoencoder's reconstructions of them), built
    # once before the generate runs scored against it.
    "fid-ref-gen": Eval(GenReferenceConfig, "bench.evals.generation:run_reference", "dcae-fid-ref-gen", 1,
                        parallel_safe=True, cpu_subset=True,
                        paper_gpu="paper-scale FID statistics (50k images) need a GPU; use --device cuda, or --device "
                                  "cpu --limit N"),
    # Generation protocol: sample (EMA, CFG), decode / scaling factor in fp32, gFID / KID / IS (Tables 1, 3, 4), each
    # score with each block of samples and each reference photo left out (the claims' image jackknife); the Inception
    # Score on torch-fidelity's own input path (TF1-compatible resize, (x - 128)/128), as the official one.
    "generate": Eval(GenerateConfig, "bench.evals.generation:run_generate", "dcae-generate", 4, parallel_safe=True,
                     files=(JACKKNIFE_FILE,),
                      paper_gpu="paper-scale generation (50k samples) needs a GPU; use --device cuda, or --limit N for "
                                "the same protocol on N samples (labelled as a subset)", cpu_subset=True),
}


def get(name: str) -> Eval:
    try:
        return EVALS[name]
    except KeyError:
        raise KeyError(f"unknown eval {name!r}; known: {sorted(EVALS)}") from None


def load(name: str) -> Callable[[Any, Any], dict]:
    module, func = get(name).target.split(":")
    return getattr(importlib.import_module(module), func)


def device_refusal(name: str, needs_gpu: bool, device: str, limit: int | None) -> str | None:
    """Why eval ``name`` cannot run on ``device`` at a scale that ``needs_gpu`` (None: it can). The runner asks before
    it makes a run folder, so a refused command leaves nothing behind."""
    e = get(name)
    if not needs_gpu or not e.paper_gpu or str(device).startswith("cuda") or (e.cpu_subset and limit):
        return None
    return e.paper_gpu


def version(name: str) -> int:
    return get(name).version


def protocol_id(name: str) -> str:
    return get(name).protocol_id


class ProtocolPreset:
    """Base of a frozen dataclass holding every setting that changes an eval's numbers besides its config (the
    reconstruction and generation protocols): recorded with each run, and digested into cache keys."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]
