"""Table 1: patch size vs autoencoder spatial compression at equal token count (ImageNet 512, DiT-XL and UViT-S).

Caption (paper): moving compression from the patch embedding into the autoencoder, at an equal number of tokens,
improves gFID. Each row trains a latent diffusion model (eval ``train-diffusion``) on one autoencoder's latents and
samples it twice (eval ``generate``): without guidance and with CFG (U-ViT 1.5, DiT-XL 1.3: the released models'
scales; the paper's Table 1 scales are not stated). The row's two gFIDs sit beside the paper's; claim rows ask the
paper's direction within each backbone (the deepest autoencoder compression with patch 1 vs the f8 autoencoder
with the largest patch).

Scales:
- ``paper``: ImageNet-train at 512 px (--data D with D/imagenet-train), the official recipes, 50,000 samples
  scored against ImageNet-train's Inception statistics, GPUs. The SD-VAE-f16 / f32 of the paper are unreleased
  (the stacked baselines sd-vae-f16c16 / sd-vae-f32c64 stand in; their channels are assumed).
- ``small``: not run yet: a reduced (~1.5 M-parameter) UViT / DiT per row needs ~1000 steps (3-4 min each on one
  core) plus sampling; the small-scale budget is being re-planned (issue #11) before these rows join it.
- ``smoke``: tiny backbones on tiny untrained autoencoders, 64 px, 2 training steps, 4 samples: a pipeline check.

Commands:
    python -m bench table1 --scale smoke      # ~1-2 min
    python -m bench table1 --scale paper --device cuda --weights W --data D   # weeks of GPU time (bench needs)
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.configs import (
    EMBEDDED_TEST,
    EMBEDDED_TRAIN,
    GenerateConfig,
    TrainDiffusionConfig,
    folder,
)
from bench.spec import Column, PaperRef, Row, RunRef, Spec

ID = "table1"
CFG_SCALE = {"uvit": 1.5, "dit": 1.3}  # the released models' guidance scales (generation.md §2-3)


@dataclass(frozen=True)
class Entry:
    """One Table 1 row: backbone, the paper's autoencoder label, our registry name at paper and smoke scale, patch."""

    backbone: str          # models.backbones name
    paper_backbone: str    # = paper_numbers.csv "backbone"
    paper_ae: str          # = paper_numbers.csv "autoencoder"
    autoencoder: str       # registry name at paper scale
    weights: bool          # the autoencoder has released weights (else it must be trained or supplied)
    smoke_ae: str          # reduced stand-in at smoke scale
    patch: int

    @property
    def label(self) -> str:
        return f"{self.paper_backbone} {self.paper_ae} p{self.patch}"

    @property
    def family(self) -> str:
        return "uvit" if self.backbone.startswith("uvit") else "dit"


ENTRIES = (
    Entry("dit-xl", "DiT-XL", "SD-VAE-f8", "sd-vae-f8", True, "sd-vae-f8c4-tiny", 4),
    Entry("dit-xl", "DiT-XL", "SD-VAE-f16", "sd-vae-f16c16", False, "sd-vae-f16c16-tiny", 2),
    Entry("dit-xl", "DiT-XL", "SD-VAE-f32", "sd-vae-f32c64", False, "sd-vae-f32c64-tiny", 1),
    Entry("uvit-s", "UViT-S", "SD-VAE-f8", "sd-vae-f8", True, "sd-vae-f8c4-tiny", 8),
    Entry("uvit-s", "UViT-S", "SD-VAE-f16", "sd-vae-f16c16", False, "sd-vae-f16c16-tiny", 4),
    Entry("uvit-s", "UViT-S", "SD-VAE-f32", "sd-vae-f32c64", False, "sd-vae-f32c64-tiny", 2),
    Entry("uvit-s", "UViT-S", "DC-AE-f64", "dc-ae-f64c128-in-1.0", True, "dc-ae-f64c128-tiny", 1),
)
SMOKE_PATCH = {8: 4, 4: 2, 2: 1, 1: 1}  # at 64 px the f8 latent is 8x8: patches shrink so every row has >= 1 token


def _train(e: Entry) -> RunRef:
    return RunRef(TrainDiffusionConfig(e.backbone, e.autoencoder, 512, patch_size=e.patch, weights=e.weights,
                                       dataset=folder("imagenet-train")),
                  at={"small": None,
                      "smoke": {"backbone": f"{e.backbone}-tiny", "autoencoder": e.smoke_ae, "resolution": 64,
                                "patch_size": SMOKE_PATCH[e.patch], "weights": False, "dataset": EMBEDDED_TRAIN,
                                "n_images": 16}})


def _generate(e: Entry, guided: bool) -> Row:
    train = _train(e)
    at = {s: (None if train.at.get(s, {}) is None else {"model": train.resolve(s)}) for s in ("small", "smoke")}
    at["smoke"] = {**at["smoke"], "n_samples": 4, "reference": EMBEDDED_TEST, "n_reference": 8, "batch_size": 4}
    cfg = GenerateConfig(model=train.resolve("paper"), cfg_scale=CFG_SCALE[e.family] if guided else 1.0,
                         reference=folder("imagenet-train"))
    tag = f"CFG {CFG_SCALE[e.family]}" if guided else "no CFG"
    return Row(f"{e.label} · sample {tag}", run=RunRef(cfg, at=at))


def _row(e: Entry) -> Row:
    """The paper's row: our two gFIDs (derived from the two sampling runs) beside the paper's."""
    plain, guided = f"{e.label} · sample no CFG", f"{e.label} · sample CFG {CFG_SCALE[e.family]}"
    return Row(e.label, paper=PaperRef(artifact=ID, backbone=e.paper_backbone, autoencoder=e.paper_ae,
                                       patch=str(e.patch)),
               derive=lambda m: {"fid_no_cfg": m[plain]["gfid"], "fid_cfg": m[guided]["gfid"],
                                 "_from": [plain, guided]})


RUNS = tuple(_generate(e, g) for e in ENTRIES for g in (False, True))
ROWS = tuple(_row(e) for e in ENTRIES)

SPECS = {"": Spec(
    id=ID,
    title="Table 1: patch size vs autoencoder compression (ImageNet 512x512, gFID)",
    caption="gFID without / with CFG of DiT-XL and UViT-S at equal token count, varying where spatial compression "
            "happens (patch embedding vs autoencoder). CFG scales: " + ", ".join(
                f"{k} {v}" for k, v in CFG_SCALE.items()) + " (the released models'; not stated for Table 1).",
    columns=(Column("fid_no_cfg", "gFID w/o CFG", True, ".3g"), Column("fid_cfg", "gFID w/ CFG", True, ".3g"),
             Column("gfid", "gFID of this sampling run", True, ".3g"), Column("kid", "KID", True, ".3g"),
             Column("images_per_s", "samples/s", False, ".3g")),
    rows=ROWS + RUNS,
    scales={"smoke": "tiny backbones on tiny untrained autoencoders at 64 px, 2 training steps, 4 samples scored "
                     "against 8 embedded crops; a pipeline check, never a result",
            "small": "not run yet (the small-scale budget is being re-planned, issue #11)",
            "paper": "ImageNet-train 512 px (--data), official recipes, 50k samples vs ImageNet-train statistics, "
                     "GPUs; SD-VAE-f16/f32 are unreleased (stacked stand-ins, channels assumed)"},
    deviations=("CFG scales of Table 1 are not stated; the released models' (U-ViT 1.5, DiT-XL 1.3) are used.",
                "SD-VAE-f16 / SD-VAE-f32 are the stacked stand-ins sd-vae-f16c16 / sd-vae-f32c64 (unreleased; "
                "channels assumed, as in Table 3)."),
)}
