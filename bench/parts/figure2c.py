"""Figure 2c: UViT variants on ImageNet 512x512, inference throughput vs gFID, SD-VAE-f8 p2 vs DC-AE-f64 p1.

Caption (paper): "Comparison to SD-VAE-f8 on ImageNet 512×512 with UViT Variants. DC-AE-f64p1 provides 19.1× higher
inference throughput and 0.54 better ImageNet FID than SD-VAE-f8p2 on UViT-H."

The paper's points are Table 3's UViT-S and UViT-H rows (H100 TensorRT throughput, gFID w/ CFG). Ours: the same
``efficiency`` runs as table3 (identical configs, so the runs are shared), with the paper's FIDs, because generation
FID needs latent diffusion training, which this harness does not run. Left panel: the paper's throughput; right
panel: ours at the built scale (CPU numbers at `small`: compare the horizontal gaps, not the positions).

Command: ``python -m bench figure2 --ablation c --scale small`` (reuses table3's runs; ~4 min if none exist yet).
"""
from __future__ import annotations

from bench.parts.efficiency_rows import SCALES_TEXT, Entry, speedup_row
from bench.emit import new_figure, save_figure
from bench.spec import Column, PaperRef, Spec

_POINTS = (
    Entry("UViT-S SD-VAE-f8 p2", "uvit-s", "SD-VAE-f8", 4, 64, 2,
          PaperRef(artifact="table3", backbone="UViT-S", autoencoder="SD-VAE-f8", patch="2", note="")),
    Entry("UViT-S DC-AE-f64 p1", "uvit-s", "DC-AE-f64", 128, 8, 1,
          PaperRef(artifact="table3", backbone="UViT-S", autoencoder="DC-AE-f64", patch="1", note="")),
    Entry("UViT-H SD-VAE-f8 p2", "uvit-h", "SD-VAE-f8", 4, 64, 2,
          PaperRef(artifact="table3", backbone="UViT-H", autoencoder="SD-VAE-f8", patch="2", note="")),
    Entry("UViT-H DC-AE-f64 p1", "uvit-h", "DC-AE-f64", 128, 8, 1,
          PaperRef(artifact="table3", backbone="UViT-H", autoencoder="DC-AE-f64", patch="1", note="")),
)


def _plot(df, results, out_png) -> None:
    """Two panels (paper throughput | ours), x = inference img/s (log), y = paper gFID w/ CFG; one line per variant."""
    import matplotlib.ticker  # here, like bench.emit.new_figure: ls and check import this module

    def value(row: str, metric: str, which: str) -> float | None:
        sel = df[(df["row"] == row) & (df["metric"] == metric)]
        text = str(sel[which].iloc[0]) if len(sel) else ""
        try:
            return float(text)
        except ValueError:
            return None

    scale = str(df["scale"].iloc[0]) if len(df) else ""
    fig, axes = new_figure(1, 2, figsize=(10, 4), sharey=True)
    for ax, which, title in ((axes[0], "paper", "paper (H100, TensorRT fp16)"),
                             (axes[1], "ours", f"ours ({scale} scale)")):
        for variant, colour in (("UViT-S", "tab:blue"), ("UViT-H", "tab:red")):
            pts = []
            for ae, marker in (("SD-VAE-f8 p2", "o"), ("DC-AE-f64 p1", "*")):
                label = f"{variant} {ae}"
                x, y = value(label, "infer_throughput_img_s", which), value(label, "fid_cfg", "paper")
                if x is not None and y is not None:
                    ax.scatter([x], [y], marker=marker, s=90, color=colour, label=label, zorder=3)
                    pts.append((x, y))
            if len(pts) == 2:
                ax.plot(*zip(*pts), color=colour, alpha=0.5)
                ax.annotate(f"{pts[1][0] / pts[0][0]:.1f}x", xy=pts[1], xytext=(5, 5), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no overlapping 2x10^0 labels
        ax.set_xlabel("inference throughput (img/s, one forward = one step)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("ImageNet 512 gFID w/ CFG (paper)")
    axes[0].legend(fontsize=7, loc="center right")
    save_figure(fig, out_png, "Figure 2c: UViT variants, SD-VAE-f8 p2 vs DC-AE-f64 p1", title_size=None)


FIGURE2C = Spec(
    id="figure2",
    title="Figure 2c: UViT variants, inference throughput vs gFID (SD-VAE-f8 p2 vs DC-AE-f64 p1)",
    caption="Measured backbone inference throughput (one forward = one sampling step) beside the paper's; gFID w/ CFG "
            "is the paper's (500K-iteration rows). The speed-up rows divide the two measured throughputs.",
    columns=(Column("infer_throughput_img_s", "Infer (img/s)", False), Column("fid_cfg", "gFID w/ CFG", True),
             Column("inference_speedup", "Inference speed-up (x)", False, ".2f"),
             Column("flop_ratio", "FLOP ratio, timed models (x)", None, ".2f")),
    rows=tuple(e.row() for e in _POINTS) + (
        speedup_row("table3", _POINTS[0], _POINTS[1], label="UViT-S speed-up DC-AE-f64p1 / SD-VAE-f8p2"),
        speedup_row("table3", _POINTS[2], _POINTS[3], label="UViT-H speed-up DC-AE-f64p1 / SD-VAE-f8p2",
                    paper_ref=PaperRef(artifact="abstract", backbone="UViT-H"))),
    version=1,
    scales=SCALES_TEXT,
    plot=_plot,
)
