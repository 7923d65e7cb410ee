"""``python -m bench needs``: what each paper-scale row needs before it can give a number.

Per row: the official checkpoints it loads (by released name, under ``--weights``), the data sets it reads (under
``--data``), the training runs it depends on, and an estimate of the GPU hours of the whole chain. The estimate is
arithmetic, not a measurement: FLOPs (counted on the meta device with ``torch.utils.flop_counter`` for the
autoencoders, closed form for the backbones) over an H100's dense bf16 peak at an assumed model FLOP utilisation
(``ASSUMED_MFU``), so it says which rows take minutes and which take weeks, no more. Imports torch: a command of its
own, not part of the light ``ls`` / ``check``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

import models
import models.zoo
from bench import artifacts
from bench.configs import (
    SCALE_DEFAULTS,
    EfficiencyConfig,
    EvalConfig,
    MemoryConfig,
    ReconConfig,
    TrainAEConfig,
    dependencies,
)
from bench.evals.efficiency import PEAK_TFLOPS, rule_batch
from bench.evals.training import phase_configs
from models import costs
from models.backbones import backbone_config

H100_TFLOPS = dict(PEAK_TFLOPS)["H100 SXM"]  # dense bf16, the paper's throughput GPU
ASSUMED_MFU = 0.35                           # model FLOP utilisation assumed for every estimate
INCEPTION_GFLOP = 11.5                       # FID network per image at 299 px (both originals and reconstructions)
SET_IMAGES = {  # images the paper's protocol reads from each named set (FFHQ: every image; splits unstated)
    "imagenet-val": 50_000, "imagenet-train": 1_281_167, "ffhq": 70_000, "mapillary-vistas": 2_000,
}


@dataclass
class Needs:
    """What one row's run chain needs at paper scale."""

    weights: set[str] = field(default_factory=set)     # released checkpoints loaded from --weights
    unreleased: set[str] = field(default_factory=set)  # loaded by name, but never released (must be trained)
    data: set[str] = field(default_factory=set)        # named folder data sets read from --data
    training: list[str] = field(default_factory=list)  # the training runs in the chain
    flops: float = 0.0                                 # total FLOPs of the chain
    unknown: list[str] = field(default_factory=list)   # parts no estimate covers

    @property
    def gpu_hours(self) -> float:
        return self.flops / (H100_TFLOPS * 1e12 * ASSUMED_MFU) / 3600


@functools.cache
def autoencoder_gflop(name: str, resolution: int) -> float:
    """Forward (encode + decode) GFLOPs of one image, counted on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        model = models.build(name)
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, resolution, resolution))
    return counter.get_total_flops() / 1e9


def _add_recon(cfg: ReconConfig, out: Needs) -> None:
    if cfg.weights:
        (out.weights if models.zoo.official_params(cfg.model) is not None else out.unreleased).add(cfg.model)
    if cfg.dataset.kind != "folder":
        return
    out.data.add(cfg.dataset.name)
    n = cfg.n_images or SET_IMAGES[cfg.dataset.name]
    out.flops += n * (autoencoder_gflop(cfg.model, cfg.resolution) + 2 * INCEPTION_GFLOP) * 1e9


def _add_train_ae(cfg: TrainAEConfig, out: Needs) -> None:
    f = models.zoo.info(cfg.model).spatial_compression
    out.data.add("a training image folder (--data)")
    for phase in phase_configs(cfg, "paper", f):
        out.training.append(f"train-ae {cfg.model} {phase.name}: {phase.steps:,} steps x {phase.batch} at "
                            f"{phase.resolution} px")
        out.flops += 3 * phase.steps * phase.batch * autoencoder_gflop(cfg.model, phase.resolution) * 1e9


def _add_efficiency(cfg: EfficiencyConfig, out: Needs) -> None:
    full = backbone_config(cfg.backbone, cfg.latent_channels, cfg.latent_size, cfg.patch_size)
    n = costs.tokens(full)
    train = (cfg.warmup.train + cfg.iters.train) * (cfg.batch.train or rule_batch(cfg.backbone, n, "train"))
    infer = (cfg.warmup.infer + cfg.iters.infer) * (cfg.batch.infer or rule_batch(cfg.backbone, n, "infer"))
    out.flops += train * costs.train_flops_per_image(full, recompute=True) + infer * costs.gflops(full) * 1e9


def _walk(cfg: EvalConfig, out: Needs) -> None:
    if isinstance(cfg, ReconConfig):
        _add_recon(cfg, out)
    elif isinstance(cfg, TrainAEConfig):
        _add_train_ae(cfg, out)
    elif isinstance(cfg, EfficiencyConfig):
        _add_efficiency(cfg, out)
    elif not isinstance(cfg, MemoryConfig):  # memory: a few steps per batch size, negligible
        out.unknown.append(cfg.EVAL)
    for dep in dependencies(cfg):
        _walk(dep, out)


def rows() -> list[dict[str, str]]:
    """One record per paper-scale run row of every artefact."""
    out = []
    for name in artifacts.names():
        for panel, spec in artifacts.load(name).SPECS.items():
            for row in spec.rows:
                if row.run is None or not row.run.runs_at("paper"):
                    continue
                needs = Needs()
                _walk(row.run.resolve("paper"), needs)
                out.append({
                    "artefact": f"{name}{' ' + panel if panel else ''}", "row": row.label,
                    "weights": ", ".join(sorted(needs.weights)) or "-",
                    "unreleased (train or supply)": ", ".join(sorted(needs.unreleased)) or "-",
                    "data": ", ".join(sorted(needs.data)) or "-",
                    "training": "; ".join(needs.training) or "-",
                    "GPU-h (est.)": "?" if needs.unknown else f"{needs.gpu_hours:.3g}",
                })
    return out


HEADER = (f"Paper-scale needs per row. Every row needs a CUDA GPU (--device cuda; reconstruction rows also run on "
          f"CPU over a labelled subset with --device cpu --limit N). GPU-h (est.) = FLOPs / (H100 {H100_TFLOPS:g} TFLOP/s dense bf16 x "
          f"{ASSUMED_MFU:.0%} utilisation); training steps and batches are this harness's paper-scale choices "
          f"(bench.configs.SCALE_DEFAULTS['paper'], unpublished by the paper): {SCALE_DEFAULTS['paper']}")
