"""Table 3: ImageNet 512x512 class-conditional generation with UViT-S, DiT-XL and UViT-H: efficiency and gFID.

Caption (paper): "Class-conditional image generation results on ImageNet 512×512"; training/inference throughput on
H100 (PyTorch / TensorRT, fp16), latency on RTX 3090 at batch 2, training memory at batch 256; one sampling step;
† = 4× training iterations. Headline (abstract): UViT-H with DC-AE-f64 p1 vs SD-VAE-f8 p2 gives 19.1x inference
and 17.9x training throughput.

Ours: the efficiency columns are measured by the ``efficiency`` eval (backbone only, random latents of each
autoencoder's shape); speed-up rows divide two measured rows and show the FLOP ratio beside them; the paper's own
ratios are in each speed-up row's note (the headline row has them in the paper column). gFID: each row's
"· gFID" row, from two sampling runs (``bench/parts/gfid_rows.py``): at paper scale the released checkpoints
(``--weights W --data D`` with D/imagenet-train for the reference statistics) or, for unreleased rows, a
paper-scale training run; at small scale Table 1's reduced runs where one matches the row (plus DiT-XL on
DC-AE-f32), at smoke scale tiny pipeline checks.

Commands and expected runtime:
    python -m bench table3 --scale smoke    # seconds (tiny backbones)
    python -m bench table3 --scale small    # ~5 min on an idle 2-core CPU (1 thread), 3-4x that on a busy one
    python -m bench table3 --scale paper --device cuda   # one H100, ~1.5-2 h (20 + 100 steps at DC-Gen's batches)
                                                         # compare the ratios with 19.1x / 17.9x
"""
from bench import paper
from bench import catalogue
from bench.parts.efficiency_rows import (
    COST_COLUMNS,
    DAGGER,
    SCALES_TEXT,
    SMALL_DEPTH,
    SPEED_COLUMNS,
    SPEEDUP_COLUMNS,
    Entry,
    speedup_row,
)
from bench.parts.gfid_rows import GFID_COLUMNS, GfidRow, gfid_rows
from bench.spec import PaperRef, Spec

ID = "table3"


def _entry(backbone: str, paper_backbone: str, ae: str, c: int, f: int, p: int, dagger: bool = False) -> Entry:
    tokens = (512 // f // p) ** 2
    label = f"{paper_backbone} {ae} p{p}" + (" †" if dagger else "")
    return Entry(label, backbone, ae, c, 512 // f, p,
                 PaperRef(backbone=paper_backbone, autoencoder=ae, patch=str(p), tokens=str(tokens),
                          note=DAGGER if dagger else ""))


# Latent channels: SD-VAE-f8 c4, Flux-VAE-f8 c16, DC-AE-f32 c32, DC-AE-f64 c128; SD-VAE-f16 c16 and SD-VAE-f32 c64
# are assumptions (backbones.md §6 "c?": they move params/MACs by < 0.5 %).
UVIT_S = (_entry("uvit-s", "UViT-S", "Flux-VAE-f8", 16, 8, 2), _entry("uvit-s", "UViT-S", "SD-VAE-f8", 4, 8, 2),
          _entry("uvit-s", "UViT-S", "SD-VAE-f16", 16, 16, 2), _entry("uvit-s", "UViT-S", "SD-VAE-f32", 64, 32, 1),
          _entry("uvit-s", "UViT-S", "DC-AE-f32", 32, 32, 1), _entry("uvit-s", "UViT-S", "DC-AE-f64", 128, 64, 1),
          _entry("uvit-s", "UViT-S", "DC-AE-f64", 128, 64, 1, dagger=True))
DIT_XL = (_entry("dit-xl", "DiT-XL", "SD-VAE-f8", 4, 8, 2), _entry("dit-xl", "DiT-XL", "DC-AE-f32", 32, 32, 1))
UVIT_H = (_entry("uvit-h", "UViT-H", "SD-VAE-f8", 4, 8, 2), _entry("uvit-h", "UViT-H", "DC-AE-f32", 32, 32, 1),
          _entry("uvit-h", "UViT-H", "DC-AE-f64", 128, 64, 1),
          _entry("uvit-h", "UViT-H", "DC-AE-f64", 128, 64, 1, dagger=True))
ENTRIES = UVIT_S + DIT_XL + UVIT_H

# ---- gFID: a sampling-run pair per row (bench/parts/gfid_rows.py) ------------------------------------------------

# paper row -> (registry name at paper scale, released weights, tiny stand-in at smoke scale)
_AUTOENCODERS = {"SD-VAE-f8": ("sd-vae-f8", True, "sd-vae-f8c4-tiny"),
                 "SD-VAE-f16": ("sd-vae-f16c16", False, "sd-vae-f16c16-tiny"),
                 "SD-VAE-f32": ("sd-vae-f32c64", False, "sd-vae-f32c64-tiny"),
                 "DC-AE-f32": ("dc-ae-f32c32-in-1.0", True, "dc-ae-f32c32-tiny"),
                 "DC-AE-f64": ("dc-ae-f64c128-in-1.0", True, "dc-ae-f64c128-tiny")}
# (backbone, autoencoder) -> (reduced autoencoder, patch) at small scale: Table 1's small runs (16 tokens at 128 px)
_SMALL = {("UViT-S", "SD-VAE-f8"): ("sd-vae-f8c4-tiny", 4), ("UViT-S", "SD-VAE-f16"): ("sd-vae-f16c16-tiny", 2),
          ("UViT-S", "SD-VAE-f32"): ("sd-vae-f32c64-tiny", 1), ("UViT-S", "DC-AE-f32"): ("dc-ae-f32c32-tiny", 1),
          ("DiT-XL", "SD-VAE-f8"): ("sd-vae-f8c4-tiny", 4), ("DiT-XL", "DC-AE-f32"): ("dc-ae-f32c32-tiny", 1)}
# (backbone, autoencoder, † row) -> released diffusion checkpoint (models.backbones.RELEASED_DIFFUSION)
_RELEASED = {("UViT-S", "DC-AE-f32", False): "dc-ae-f32c32-in-1.0-uvit-s-in-512px",
             ("DiT-XL", "DC-AE-f32", False): "dc-ae-f32c32-in-1.0-dit-xl-in-512px",
             ("UViT-H", "DC-AE-f32", False): "dc-ae-f32c32-in-1.0-uvit-h-in-512px",
             ("UViT-H", "DC-AE-f64", False): "dc-ae-f64c128-in-1.0-uvit-h-in-512px",
             ("UViT-H", "DC-AE-f64", True): "dc-ae-f64c128-in-1.0-uvit-h-in-512px-train2000k"}


def _gfid(e: Entry) -> GfidRow:
    bb, ae = e.paper.backbone, e.paper.autoencoder
    dagger = "†" in e.label
    if ae not in _AUTOENCODERS:
        return GfidRow(e.label, e.paper, None, note=f"{ae} is not in this harness's registry: the paper's gFID only")
    name, weights, smoke_ae = _AUTOENCODERS[ae]
    small_ae, small_patch = _SMALL.get((bb, ae), (None, e.patch_size))
    released = _RELEASED.get((bb, ae, dagger))
    if dagger and released is None:
        return GfidRow(e.label, e.paper, None, note="the 4x-iteration run is released for UViT-H only")
    entry = catalogue.Entry(backbone=e.backbone, paper_backbone=bb, paper_ae=ae, autoencoder=name, weights=weights,
                            smoke_ae=smoke_ae, patch=e.patch_size, small_ae=small_ae, small_patch=small_patch)
    why = [] if small_ae else ["small: not run (" + ("the reduced UViT-H is the reduced UViT-S" if bb == "UViT-H"
                                                     else "an f64 latent of a 128-px image is 2x2") + ")"]
    if small_ae and small_patch != e.patch_size:
        why.append(f"small: p{small_patch} (16 tokens at 128 px; Table 1's run)")
    why.append(f"paper: released {released}" if released else "paper: no released checkpoint, trained here (GPUs)")
    scale = catalogue.CFG_SCALE[entry.family]
    why.append(f"w/ CFG {scale}: " + ("the released model's own scale (efficientvit README) at paper scale, ours for "
                                      "the reduced runs" if released and entry.family == "dit"
                                      else f"{catalogue.CFG_SOURCE[entry.family]} (the paper states none)"))
    return GfidRow(e.label, e.paper, entry, released, "; ".join(why))


GFID = tuple(_gfid(e) for e in ENTRIES)

# The key claim first, then every other row of a backbone against its SD-VAE-f8 p2 baseline († rows share runs).
HEADLINE = speedup_row(ID, UVIT_H[0], UVIT_H[2], label="UViT-H speed-up DC-AE-f64p1 / SD-VAE-f8p2 (abstract)",
                       paper_ref=PaperRef(artifact="abstract", backbone="UViT-H"))
_PAIRS = [(UVIT_S[1], e) for e in UVIT_S if e is not UVIT_S[1] and "†" not in e.label]
_PAIRS += [(DIT_XL[0], DIT_XL[1]), (UVIT_H[0], UVIT_H[1])]
PAIRS = tuple(speedup_row(ID, base, other) for base, other in _PAIRS)

SPECS = {"": Spec(
    id=ID,
    title="Table 3: ImageNet 512x512 class-conditional, UViT-S / DiT-XL / UViT-H efficiency (and the paper's gFID)",
    caption="Backbone-only efficiency on each autoencoder's latent shape (one forward = one sampling step). Speed-up "
            "rows: measured throughput ratio vs the backbone's SD-VAE-f8 p2 row, beside the FLOP ratio; the paper's "
            "ratios are in the notes, and in the paper column of the abstract row ({inference_speedup}x inference, "
            "{training_speedup}x training).".format(**paper.values("abstract", backbone="UViT-H")),
    columns=COST_COLUMNS + SPEED_COLUMNS + GFID_COLUMNS + SPEEDUP_COLUMNS,
    rows=tuple(e.row() for e in ENTRIES) + (HEADLINE,) + PAIRS + gfid_rows(GFID),
    version=1,
    scales={**SCALES_TEXT, "small": SCALES_TEXT["small"] + " gFID rows: Table 1's reduced diffusion runs (16 tokens at 128 px, hidden-128 depth-6 backbones, " f"{catalogue.SMALL_DIFFUSION['n_samples']} samples vs the embedded training crops) where one matches the row; the rest say why not."},
    deviations=("Inference is PyTorch eager, not TensorRT; latency is measured on the run's device, not an RTX 3090.",
                f"small scale: every backbone keeps {SMALL_DEPTH} blocks (U-ViT depth {SMALL_DEPTH}: in, mid and out "
                f"block) at full width and token count.",
                "SD-VAE-f16 / SD-VAE-f32 latent channels (16 / 64) are assumed.",
                "gFID w/ CFG: the paper states no scales; U-ViT rows use 1.5 (the official U-ViT scale), DiT-XL rows "
                "1.3 (the released DC-AE-f32 DiT-XL's scale; ours for the SD-VAE-f8 row and every reduced run)."),
)}
