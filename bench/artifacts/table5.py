"""Table 5: PixArt-α text-to-image on MJHQ 512x512 (100K iterations from scratch): efficiency (and the paper's FID).

Caption (paper): PixArt-α with SD-VAE-f8 p2 vs DC-AE-f32 p1; FID and CLIP score on MJHQ-30K; efficiency protocol as
Table 3. PixArt-α's FLOPs exclude the T5-XXL text encoder.

Ours: backbone-only efficiency measured by the ``efficiency`` eval with random 120×4096 caption features in place of
T5-XXL outputs (as DC-Gen's SANA harness: text encoder excluded). DC-Gen defines no PixArt batches; DiT-XL's are used
(same width and depth). FID and CLIP score are the paper's only.

Commands and expected runtime:
    python -m bench table5 --scale smoke    # seconds
    python -m bench table5 --scale small    # a couple of minutes on 2 CPU cores
    python -m bench table5 --scale paper --device cuda   # one H100
"""
from bench.artifacts._efficiency import (
    COST_COLUMNS,
    SCALES_TEXT,
    SPEED_COLUMNS,
    SPEEDUP_COLUMNS,
    Entry,
    speedup_row,
)
from bench.spec import Column, PaperRef, Spec

ID = "table5"
SETTING = "MJHQ 512x512 text-to-image (100K iterations from scratch)"

ENTRIES = (
    Entry("PixArt-α SD-VAE-f8 p2", "pixart-alpha", "SD-VAE-f8", 4, 64, 2,
          PaperRef(setting=SETTING, backbone="PixArt-alpha", autoencoder="SD-VAE-f8", patch="2", tokens="1024")),
    Entry("PixArt-α DC-AE-f32 p1", "pixart-alpha", "DC-AE-f32", 32, 16, 1,
          PaperRef(setting=SETTING, backbone="PixArt-alpha", autoencoder="DC-AE-f32", patch="1", tokens="256")),
)

SPECS = {"": Spec(
    id=ID,
    title="Table 5: PixArt-α text-to-image, MJHQ 512x512: efficiency (and the paper's FID / CLIP score)",
    caption="Backbone-only efficiency (random caption features, T5-XXL excluded). The speed-up row divides the two "
            "measured rows and shows the FLOP ratio; the paper's ratios are in its note.",
    columns=COST_COLUMNS + SPEED_COLUMNS + (Column("fid", "MJHQ FID", True),
                                            Column("clip_score", "CLIP score", False)) + SPEEDUP_COLUMNS,
    rows=tuple(e.row() for e in ENTRIES) + (speedup_row(ID, ENTRIES[0], ENTRIES[1]),),
    version=1,
    scales=SCALES_TEXT,
    deviations=("Inference is PyTorch eager, not TensorRT; latency is measured on the run's device, not an RTX 3090.",
                "FID / CLIP score are not measured at any scale: PixArt-α is text-to-image and needs T5-XXL caption "
                "features, which cannot be computed here (no network, no T5 weights); no substitute conditioning is "
                "run at small scale, and reading precomputed caption features at paper scale is not implemented.",
                "PixArt-α batches: DiT-XL's (DC-Gen defines none for PixArt).",
                "small scale: PixArt-α keeps fewer blocks at full width and token count."),
)}
