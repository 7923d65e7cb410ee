"""Table 5: PixArt-α text-to-image on MJHQ 512x512 (100K iterations from scratch): efficiency, FID and CLIP score.

Caption (paper): PixArt-α with SD-VAE-f8 p2 vs DC-AE-f32 p1; FID and CLIP score on MJHQ-30K; efficiency protocol as
Table 3. PixArt-α's FLOPs exclude the T5-XXL text encoder.

Ours:
- efficiency: backbone only, measured by the ``efficiency`` eval with random 120×4096 caption features in place of
  T5-XXL outputs (as DC-Gen's SANA harness: text encoder excluded). DC-Gen defines no PixArt batches; DiT-XL's are
  used (same width and depth).
- FID / CLIP score: each paper row's "· FID" row, from one ``generate`` run of a PixArt-α that eval
  ``train-diffusion`` trains from scratch on precomputed T5-XXL caption features (T5-XXL cannot run here; the folder
  format is PixArt-α's own extraction layout, ``bench/evals/captions.py``). CLIP score is an explicit
  ``unavailable`` cell at every scale: it needs the prompt texts and CLIP weights, which are not here.

Scales of the FID rows:
- ``paper``: --data D with D/mjhq-30k (the images) and D/mjhq-30k-t5 (their caption features, one .npz per image
  stem; or --data mjhq-30k=PATH --data mjhq-30k-t5=PATH), --weights W for the autoencoders; our PixArt recipe
  (``models.train_diffusion.PIXART_RECIPE``) for the paper's 100K steps, then one sample per MJHQ-30K prompt at
  CFG ``CFG_SCALE`` (IDDPM, 250 steps) scored against the MJHQ-30K images. A folder that is not given makes the row
  ``unavailable`` with where it goes.
- ``small``: not run: no captions offline (the embedded photos have none, and T5-XXL cannot run here).
- ``smoke``: tiny PixArt (``pixart-alpha-tiny``) on tiny untrained autoencoders at 64 px, trained 2 steps on the
  embedded crops with SYNTHETIC caption features (random, written in the folder format under runs/_cache and read
  back by the same loader), 4 samples from synthetic prompts: a pipeline check, never a result.

Commands and expected runtime:
    python -m bench table5 --scale smoke    # well under a minute
    python -m bench table5 --scale small    # a couple of minutes on 2 CPU cores (efficiency rows only)
    python -m bench table5 --scale paper --device cuda --weights W --data D   # efficiency: one H100; FID: 100K
                                            # training steps per row on GPUs (torchrun), then 30K samples
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.parts.efficiency_rows import (
    COST_COLUMNS,
    SCALES_TEXT,
    SPEED_COLUMNS,
    SPEEDUP_COLUMNS,
    Entry,
    speedup_row,
)
from bench.configs import (
    EMBEDDED_TRAIN,
    SYNTHETIC,
    GenerateConfig,
    TrainDiffusionConfig,
    folder,
)
from bench.spec import Column, PaperRef, Row, RunRef, Spec

ID = "table5"
SETTING = "MJHQ 512x512 text-to-image (100K iterations from scratch)"
CFG_SCALE = 4.5              # PixArt-α's default guidance scale; the paper does not state Table 5's
MJHQ_PROMPTS = 30_000        # MJHQ-30K: one sample per prompt, scored against its 30,000 images
IMAGES, CAPTIONS = folder("mjhq-30k"), folder("mjhq-30k-t5")
SMOKE = {"resolution": 64, "n_images": 16, "n_samples": 4, "n_reference": 8, "sample_steps": 4}
NO_CAPTIONS = ("small: not run: no captions offline (the embedded photos have no captions and T5-XXL cannot run "
               "here; synthetic features would measure nothing)")

ENTRIES = (
    Entry("PixArt-α SD-VAE-f8 p2", "pixart-alpha", "SD-VAE-f8", 4, 64, 2,
          PaperRef(setting=SETTING, backbone="PixArt-alpha", autoencoder="SD-VAE-f8", patch="2", tokens="1024")),
    Entry("PixArt-α DC-AE-f32 p1", "pixart-alpha", "DC-AE-f32", 32, 16, 1,
          PaperRef(setting=SETTING, backbone="PixArt-alpha", autoencoder="DC-AE-f32", patch="1", tokens="256")),
)


# ---- FID / CLIP: a PixArt-α trained on caption features, sampled once per prompt ----------------------------------

@dataclass(frozen=True)
class TextToImage:
    """What one Table 5 row trains and samples: the autoencoder per scale and the patch size per scale."""

    entry: Entry           # the efficiency row (label, paper selection)
    autoencoder: str       # registry name at paper scale (official weights, --weights)
    patch: int             # the paper's patch size
    smoke_ae: str          # tiny untrained stand-in at smoke scale (64 px)
    smoke_patch: int       # patch at smoke scale (>= 1 token)

    @property
    def sample_label(self) -> str:
        return f"{self.entry.label} · sample CFG {CFG_SCALE}"


T2I = (TextToImage(ENTRIES[0], "sd-vae-f8", 2, "sd-vae-f8c4-tiny", 2),
       TextToImage(ENTRIES[1], "dc-ae-f32c32-in-1.0", 1, "dc-ae-f32c32-tiny", 1))


def train_run(t: TextToImage) -> RunRef:
    """PixArt-α from scratch on the autoencoder's latents of MJHQ-30K and their T5 features (our recipe)."""
    return RunRef(TrainDiffusionConfig("pixart-alpha", t.autoencoder, 512, patch_size=t.patch, weights=True,
                                       dataset=IMAGES, captions=CAPTIONS),
                  at={"small": None,
                      "smoke": {"backbone": "pixart-alpha-tiny", "autoencoder": t.smoke_ae,
                                "resolution": SMOKE["resolution"], "patch_size": t.smoke_patch, "weights": False,
                                "dataset": EMBEDDED_TRAIN, "n_images": SMOKE["n_images"], "captions": SYNTHETIC}})


def sample_run(t: TextToImage) -> RunRef:
    """One sample per prompt of the caption-features folder, CFG against the null caption, FID vs the images."""
    train = train_run(t)
    return RunRef(GenerateConfig(model=train.resolve("paper"), n_samples=MJHQ_PROMPTS, cfg_scale=CFG_SCALE,
                                 reference=IMAGES, prompts=CAPTIONS),
                  at={"small": None,
                      "smoke": {"model": train.resolve("smoke"), "n_samples": SMOKE["n_samples"],
                                "steps": SMOKE["sample_steps"], "reference": EMBEDDED_TRAIN,
                                "n_reference": SMOKE["n_reference"], "batch_size": SMOKE["n_samples"],
                                "prompts": SYNTHETIC}})


def fid_row(t: TextToImage) -> Row:
    """The paper row's FID and CLIP score, read from its sampling run, beside the paper's."""
    label = t.sample_label
    return Row(f"{t.entry.label} · FID", paper=t.entry.paper,
               derive=lambda m: {"fid": m[label]["gfid"], "clip_score": m[label]["clip_score"], "_from": [label]},
               note=f"paper: PixArt-α trained here (--data {IMAGES.name}, {CAPTIONS.name}), CFG {CFG_SCALE}, one "
                    f"sample per prompt; {NO_CAPTIONS}; smoke: tiny PixArt, synthetic caption features")


SPECS = {"": Spec(
    id=ID,
    title="Table 5: PixArt-α text-to-image, MJHQ 512x512: efficiency, FID (CLIP score unavailable here)",
    caption="Backbone-only efficiency (random caption features, T5-XXL excluded); the speed-up row divides the two "
            "measured rows and shows the FLOP ratio (the paper's ratios are in its note). FID rows: PixArt-α "
            f"trained on precomputed T5-XXL caption features, sampled with CFG {CFG_SCALE} against the null caption; "
            "CLIP score needs the prompt texts and CLIP weights (unavailable).",
    columns=COST_COLUMNS + SPEED_COLUMNS + (Column("fid", "MJHQ FID", True),
                                            Column("clip_score", "CLIP score", False),
                                            Column("gfid", "FID of this sampling run", True, ".3g"),
                                            Column("kid", "KID", True, ".3g")) + SPEEDUP_COLUMNS,
    rows=tuple(e.row() for e in ENTRIES) + (speedup_row(ID, ENTRIES[0], ENTRIES[1]),)
    + tuple(fid_row(t) for t in T2I) + tuple(Row(t.sample_label, run=sample_run(t)) for t in T2I),
    version=1,
    scales={**SCALES_TEXT,
            "smoke": SCALES_TEXT["smoke"] + " FID rows: tiny PixArt on tiny untrained autoencoders at 64 px, 2 "
                                            "training steps on synthetic caption features, 4 samples from "
                                            "synthetic prompts; a pipeline check.",
            "small": SCALES_TEXT["small"] + " FID rows: not run (no captions offline).",
            "paper": SCALES_TEXT["paper"] + " FID rows: --data with mjhq-30k and mjhq-30k-t5 (T5-XXL features, "
                                            "bench/evals/captions.py), --weights, GPUs for the 100K training "
                                            "steps."},
    deviations=("Inference is PyTorch eager, not TensorRT; latency is measured on the run's device, not an RTX 3090.",
                "PixArt-α batches: DiT-XL's (DC-Gen defines none for PixArt).",
                "small scale: PixArt-α keeps fewer blocks at full width and token count.",
                "FID: the DC-AE text-to-image recipe and sampler are not public; ours: IDDPM with learned sigma and "
                "PixArt-α's published AdamW settings (models.train_diffusion.PIXART_RECIPE, which lists what is not "
                "carried over: gradient clipping, AdamW eps, the per-GPU batch), the generate eval's IDDPM sampler "
                f"(models.backbones.BACKBONE_FAMILIES), CFG {CFG_SCALE} (PixArt-α's default).",
                "FID: the paper's training set is not stated; ours trains on the MJHQ-30K images given by --data and "
                "their T5-XXL features (any image folder with features can stand in), and scores one sample per "
                "MJHQ-30K prompt against those images.",
                "CLIP score is not measured at any scale: it needs the prompt texts and CLIP weights (the paper's "
                "CLIP model is not stated), neither available offline, and nothing is downloaded.",
                "FID is not measured at small scale: no captions offline (T5-XXL cannot run here)."),
)}
