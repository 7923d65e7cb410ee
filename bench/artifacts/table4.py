"""Table 4: DiT-S on FFHQ 1024x1024, MJHQ 1024x1024 and MapillaryVistas 2048x2048: efficiency (and the paper's FID).

Caption (paper): high-resolution generation with DiT-S; the efficiency columns are shared by the FFHQ (unconditional)
and MJHQ (class-conditional) FID columns; at 2048 px SD-VAE-f8 needs p4 to keep 4096 tokens. Efficiency protocol as
Table 3 (H100 throughput, RTX 3090 latency at batch 2, memory at batch 256, one sampling step).

Ours: backbone-only efficiency measured by the ``efficiency`` eval on each latent shape (class-conditional DiT-S; the
label embedding is a lookup, so the unconditional FFHQ model costs the same). Speed-up rows divide two measured rows;
the paper's ratios are in their notes. FIDs are the paper's only.

Commands and expected runtime:
    python -m bench table4 --scale smoke    # seconds
    python -m bench table4 --scale small    # a few minutes on 2 CPU cores
    python -m bench table4 --scale paper --device cuda   # one H100
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

ID = "table4"
HIGH_RES = "FFHQ 1024x1024 unconditional and MJHQ 1024x1024 class-conditional"
MAPILLARY = "MapillaryVistas 2048x2048 unconditional"


def _entry(setting: str, res: int, ae: str, c: int, f: int, p: int) -> Entry:
    tokens = (res // f // p) ** 2
    return Entry(f"DiT-S {res}px {ae} p{p}", "dit-s", ae, c, res // f, p,
                 PaperRef(setting=setting, backbone="DiT-S", autoencoder=ae, patch=str(p), tokens=str(tokens)))


AT_1024 = (_entry(HIGH_RES, 1024, "SD-VAE-f8", 4, 8, 2), _entry(HIGH_RES, 1024, "SD-VAE-f8", 4, 8, 4),
           _entry(HIGH_RES, 1024, "DC-AE-f32", 32, 32, 1), _entry(HIGH_RES, 1024, "DC-AE-f64", 128, 64, 1))
AT_2048 = (_entry(MAPILLARY, 2048, "SD-VAE-f8", 4, 8, 4), _entry(MAPILLARY, 2048, "DC-AE-f64", 128, 64, 1))
# Baselines: SD-VAE-f8 p2 at 1024 px (4096 tokens), SD-VAE-f8 p4 at 2048 px (4096 tokens).
PAIRS = tuple(speedup_row(ID, AT_1024[0], e) for e in AT_1024[1:]) + (speedup_row(ID, AT_2048[0], AT_2048[1]),)

SPECS = {"": Spec(
    id=ID,
    title="Table 4: DiT-S at 1024x1024 (FFHQ, MJHQ) and 2048x2048 (MapillaryVistas): efficiency (and the paper's FID)",
    caption="Backbone-only efficiency on each autoencoder's latent shape. Rows with equal token counts (4096: 1024 px "
            "p2 and 2048 px p4; 1024: SD-VAE-f8 p4, DC-AE-f32 p1, 2048 px DC-AE-f64 p1) should agree within a few %. "
            "Speed-up rows: measured ratio vs the SD-VAE-f8 baseline of the same resolution, beside the FLOP ratio; "
            "the paper's ratios are in the notes.",
    columns=COST_COLUMNS + SPEED_COLUMNS + (Column("ffhq_fid", "FFHQ FID", True),
                                            Column("mjhq_fid_no_cfg", "MJHQ FID w/o CFG", True),
                                            Column("mjhq_fid_cfg", "MJHQ FID w/ CFG", True),
                                            Column("fid", "MapillaryVistas FID", True)) + SPEEDUP_COLUMNS,
    rows=tuple(e.row() for e in AT_1024 + AT_2048) + PAIRS,
    version=1,
    scales=SCALES_TEXT,
    deviations=("Inference is PyTorch eager, not TensorRT; latency is measured on the run's device, not an RTX 3090.",
                "The paper's Table 4 row layout was reconstructed from a garbled text extraction (paper_numbers.csv).",
                "small scale: DiT-S keeps fewer blocks at full width and token count."),
)}
