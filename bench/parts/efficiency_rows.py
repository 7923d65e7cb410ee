"""Shared pieces of the efficiency artefacts (table3, table4, table5, figure2 panel c).

One row of an efficiency table = one run of the ``efficiency`` eval (bench/evals/efficiency.py) for a backbone on
an autoencoder's latent shape. The paper scale is the full protocol on one GPU; ``small`` and ``smoke`` shrink the
same row (see ``SMALL`` and ``SMOKE`` below). Speed-up rows are derived from two measured rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from bench import paper
from bench.catalogue import REDUCED_BACKBONES
from bench.configs import EfficiencyConfig, PerMeasure
from bench.outputs import ProfiledBackbone
from bench.spec import Column, PaperRef, Row, RunRef

# Generation-FID columns of an efficiency row: the paper's; ours are in the table's "· gFID" rows (Tables 3, 4)
# or "· FID" rows (Table 5).
FID_NOTE = "our gFID / FID of this row: its '· gFID' row (Tables 3, 4) or its '· FID' row (Table 5)"


DAGGER = "4x training iterations (500K->2000K)"

# ------------------------------------------------------------------------------------------------------------------
# Columns
# ------------------------------------------------------------------------------------------------------------------

COST_COLUMNS = (
    Column("tokens", "Tokens", None, "d"),
    Column("params_m", "Params (M)", None, ".2f"),
    Column("gflops_per_forward", "GFLOPs/fwd", True, ".1f"),
)
SPEED_COLUMNS = (
    Column("train_throughput_img_s", "Train (img/s)", False),
    Column("infer_throughput_img_s", "Infer (img/s)", False),
    Column("latency_ms", "Latency (ms)", True),
    Column("train_memory_gb", "Train mem (GB)", True),
    Column("train_memory_gb_analytic", "Train mem, analytic bound (GiB)", True),
    Column("train_mfu", "Train MFU (GPU)", False, ".3f"),
)
SPEEDUP_COLUMNS = (
    Column("training_speedup", "Training speed-up (x)", False, ".2f"),
    Column("inference_speedup", "Inference speed-up (x)", False, ".2f"),
    Column("latency_speedup", "Latency speed-up (x)", False, ".2f"),
    Column("flop_ratio", "FLOP ratio, timed models (x)", None, ".2f"),
    Column("flop_ratio_full_model", "FLOP ratio, full models (x)", None, ".2f"),
)

# ------------------------------------------------------------------------------------------------------------------
# Per-scale configs
# ------------------------------------------------------------------------------------------------------------------

# small (2-core CPU): every backbone at its real width and token count but 2 blocks (U-ViT depth 2 = in, mid and out
# block with one long skip), so that all of table3+4+5 runs in minutes: per-block cost, hence the speed-up ratios,
# is unchanged; only the patch-embed/head share grows a little. Batches = DC-Gen's tokens-per-batch rule divided so that
# the largest-token row of each backbone gets 1 image (efficiency.md §7.3).
SMALL_DEPTH = 2  # blocks of every backbone at small scale (full width and token count)
SMALL_DIVISOR = {  # DC-Gen's rule batches divided by these on CPU (train, infer; latency and memory do not use them)
    "uvit-s": PerMeasure(train=1024, infer=512, latency=1, memory=1),
    "uvit-h": PerMeasure(train=256, infer=128, latency=1, memory=1),
    "dit-xl": PerMeasure(train=256, infer=256, latency=1, memory=1),
    "dit-s": PerMeasure(train=256, infer=128, latency=1, memory=1),
    "pixart-alpha": PerMeasure(train=256, infer=256, latency=1, memory=1),
}
# One thread: on a 2-core machine shared with other jobs, two OpenMP threads wait for each other at every op
# (measured: batch-2 latency 4x worse than with one thread under load), which swamps small-token rows.
SMALL_COMMON = {"measure": ("train", "infer", "latency"), "threads": 1,
                "warmup": PerMeasure(train=1, infer=1, latency=1, memory=5),
                "iters": PerMeasure(train=2, infer=3, latency=3, memory=10), "min_seconds": 3.0}
SMOKE_COMMON = {"measure": ("train", "infer", "latency"), "batch": PerMeasure(train=1, infer=1, latency=2, memory=256),
                "warmup": PerMeasure(train=0, infer=0, latency=0, memory=5),
                "iters": PerMeasure(train=1, infer=1, latency=1, memory=10)}

SCALES_TEXT = {
    "smoke": "CI check: the `-tiny` variant of each backbone (hidden size 32) on the row's latent shape, batch 1, "
             "1 timed iteration, CPU; seconds. Ratios mean nothing here.",
    "small": f"CPU, fp32, 1 thread: every backbone at full width and token count but {SMALL_DEPTH} blocks (U-ViT: "
             f"in, mid and out block), so "
             "params/GFLOPs columns are the full model's (closed form) while timings are of the 2-block model; "
             "DC-Gen's tokens-per-batch rule scaled down (1 image at the largest token count); 1 warm-up, then the "
             "median of >= 2 (train) or >= 3 (infer, latency) timed calls, repeated until 3 s are sampled. No memory "
             "measurement (analytic bound only). Compare the speed-up rows with the timed-model FLOP ratio and the "
             "paper's ratio; absolute numbers mean nothing against an H100. ~5 min for table3+4+5 on an idle 2-core "
             "CPU, ~10-15 min on a busy one.",
    "paper": "One CUDA GPU (H100 in the paper): fp16 autocast training with per-block activation checkpointing, AdamW, "
             "20 warm-up + 100 steps at DC-Gen's batches; inference PyTorch eager fp16 (the paper used TensorRT: "
             "compare ratios); latency at batch 2 (paper: RTX 3090); peak memory at batch 256.",
}


def efficiency_run(backbone: str, autoencoder: str, latent_channels: int, latent_size: int, patch_size: int) -> RunRef:
    """The efficiency run of one table row: paper protocol, with the small and smoke reductions."""
    return RunRef(
        EfficiencyConfig(backbone, latent_channels, latent_size, patch_size, autoencoder=autoencoder),
        at={"small": {**SMALL_COMMON, "depth": SMALL_DEPTH, "batch_divisor": SMALL_DIVISOR[backbone]},
            "smoke": {**SMOKE_COMMON, "backbone": REDUCED_BACKBONES[backbone][1]}},
    )


# ------------------------------------------------------------------------------------------------------------------
# Speed-up rows
# ------------------------------------------------------------------------------------------------------------------

def _ratio(a: Any, b: Any) -> float:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        raise ValueError(f"not numbers: {a!r}, {b!r}")
    return a / b


def speedups(base: str, other: str):
    """``derive`` for a row comparing run row ``other`` to the baseline run row ``base`` (labels of the same spec)."""
    def derive(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        b, o = metrics[base], metrics[other]
        pb, po = ProfiledBackbone.of(b), ProfiledBackbone.of(o)
        out: dict[str, Any] = {"_from": [base, other],
                               "flop_ratio": pb.timed_gflops_per_forward / po.timed_gflops_per_forward,
                               "flop_ratio_full_model": pb.gflops_per_forward / po.gflops_per_forward}
        for key, metric in (("training_speedup", "train_throughput_img_s"),
                            ("inference_speedup", "infer_throughput_img_s")):
            if metric in b and metric in o:
                out[key] = _ratio(o[metric], b[metric])
        if "latency_ms" in b and "latency_ms" in o:
            out["latency_speedup"] = _ratio(b["latency_ms"], o["latency_ms"])
        return out

    return derive


def paper_ratio_note(artifact: str, base: PaperRef, other: PaperRef) -> str:
    """The paper's own speed-ups for a pair of rows, as text (the paper column of a derived row cannot hold them)."""
    pb = paper.values(artifact, **base.filters())
    po = paper.values(artifact, **other.filters())
    tr = po["train_throughput_img_s"] / pb["train_throughput_img_s"]
    inf = po["infer_throughput_img_s"] / pb["infer_throughput_img_s"]
    lat = pb["latency_ms"] / po["latency_ms"]
    return (f"paper: training {po['train_throughput_img_s']:g}/{pb['train_throughput_img_s']:g} = {tr:.2f}x, "
            f"inference {po['infer_throughput_img_s']:g}/{pb['infer_throughput_img_s']:g} = {inf:.2f}x, latency "
            f"{lat:.2f}x")


@dataclass(frozen=True)
class Entry:
    """One paper row of an efficiency table: its label, latent shape and paper selection."""
    label: str
    backbone: str
    autoencoder: str
    latent_channels: int
    latent_size: int
    patch_size: int
    paper: PaperRef
    note: str = ""

    def row(self) -> Row:
        return Row(self.label, run=efficiency_run(self.backbone, self.autoencoder, self.latent_channels,
                                                  self.latent_size, self.patch_size),
                   paper=self.paper, note=self.note or FID_NOTE)

def speedup_row(artifact: str, base: Entry, other: Entry, label: str | None = None,
                paper_ref: PaperRef | None = None) -> Row:
    """Derived row ``other`` vs ``base``: measured speed-ups, FLOP ratio, and the paper's ratios in the note."""
    note = paper_ratio_note(artifact, base.paper, other.paper)
    return Row(label or f"speed-up {other.label} vs {base.label}", derive=speedups(base.label, other.label),
               paper=paper_ref, note=note)
