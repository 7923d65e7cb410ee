"""Figure 2a: reconstruction rFID (and PSNR) vs spatial compression f, SD-VAE vs DC-AE (ImageNet 256×256).

Paper (§1, Fig. 2a): "the rFID (reconstruction FID) degrades from 0.90 to 28.3 if switching from f8 to f64" for
SD-VAE, while DC-AE stays flat. Only those two SD-VAE points are stated as numbers; the rest of the paper's curve is
read from the plot and not reproduced here. Latent channels per f are the registry's Table 2 configurations
(f8c4, f16c16, f32c32, f64c128): the paper does not state them for this figure.

Commands (``SPECS["a"]`` of ``bench/artifacts/figure2.py``):
    python -m bench figure2 --ablation a --scale smoke   # tiny untrained models, seconds per point
    python -m bench figure2 --ablation a --scale small   # -tiny models trained by train-ae; 128 px, Table 2's runs
    python -m bench figure2 --ablation a --scale paper --weights W --data IMAGENET_VAL   # GPU
Expected (small): DC-AE's rFID grows less with f than SD-VAE's, as in the paper; absolute values differ.
"""
from __future__ import annotations

import pandas as pd

from bench import catalogue, paper
from bench.catalogue import train_ref
from bench.configs import EMBEDDED_TEST, ReconConfig, folder
from bench.emit import new_figure, plot_frame, save_figure
from bench.evals import protocol_id
from bench.spec import CLAIM_COLUMNS, Column, PaperRef, Row, RunRef, Spec, claim_row

FS = ((8, 4), (16, 16), (32, 32), (64, 128))  # (f, c) per point
# Small scale: the -tiny models of the same shapes (Table 2's f32c32 / f64c128 runs, seeds shared) at Table 2's 128 px
# (latents 16x16, 8x8, 4x4, 2x2: no point on a 1x1 latent); 3 training seeds for the claim arms.
FAMILIES = (("sd-vae", "SD-VAE"), ("dc-ae", "DC-AE"))
SMALL_RESOLUTION = catalogue.SMALL_RESOLUTION
SMALL_N_IMAGES = catalogue.SMALL_N_IMAGES
CLAIM_ARMS = {("sd-vae", 8), ("sd-vae", 64), ("dc-ae", 8), ("dc-ae", 64)}  # (family, f) of the claims' arms: 3 seeds


# (family, f) -> the model at paper scale and the reduced model of the smoke and small scales. Released DC-AEs exist
# for f32 / f64 only: the f8 / f16 DC-AEs of the figure are unreleased (the same naming, no weights).
MODELS = {("sd-vae", 8): ("sd-vae-f8", "sd-vae-f8c4-tiny"), ("sd-vae", 16): ("sd-vae-f16c16", "sd-vae-f16c16-tiny"),
          ("sd-vae", 32): ("sd-vae-f32c32", "sd-vae-f32c32-tiny"),
          ("sd-vae", 64): ("sd-vae-f64c128", "sd-vae-f64c128-tiny"),
          ("dc-ae", 8): ("dc-ae-f8c4", "dc-ae-f8c4-tiny"), ("dc-ae", 16): ("dc-ae-f16c16", "dc-ae-f16c16-tiny"),
          ("dc-ae", 32): ("dc-ae-f32c32-in-1.0", "dc-ae-f32c32-tiny"),
          ("dc-ae", 64): ("dc-ae-f64c128-in-1.0", "dc-ae-f64c128-tiny")}


def _label(paper_name: str, f: int, seed: int = 0) -> str:
    return f"{paper_name} f{f}" + (f" · seed {seed}" if seed else "")


def _row(family: str, paper_name: str, f: int, c: int, seed: int = 0) -> Row:
    paper_model, small = MODELS[family, f]
    at = {"small": {"model": small, "resolution": SMALL_RESOLUTION, "dataset": EMBEDDED_TEST,
                    "n_images": SMALL_N_IMAGES, "weights": False, "checkpoint": train_ref(small, seed)},
          "smoke": {"model": small, "resolution": max(32, f), "n_images": 8,
                    "dataset": EMBEDDED_TEST, "weights": False, "batch_size": 8}}
    if seed:
        at = {"small": at["small"], "smoke": None, "paper": None}
    run = RunRef(ReconConfig(paper_model, 256, dataset=folder("imagenet-val"), weights=True, batch_size=16), at=at)
    paper = PaperRef(artifact="figure2a", autoencoder=f"{paper_name}-f{f}") if family == "sd-vae" and f in (8, 64) \
        and not seed else None
    return Row(_label(paper_name, f, seed), run=run, paper=paper)


ROWS = tuple(_row(fam, name, f, c) for fam, name in FAMILIES for f, c in FS)
SEED_ROWS = tuple(_row(fam, name, f, c, k) for fam, name in FAMILIES for f, c in FS if (fam, f) in CLAIM_ARMS
                  for k in range(1, catalogue.SMALL_SEEDS))
_BY = {r.label: r for r in ROWS + SEED_ROWS}


def _arm(name: str, f: int) -> tuple[Row, ...]:
    return tuple(_BY[_label(name, f, k)] for k in range(catalogue.SMALL_SEEDS))


def _small(family: str, f: int) -> str:
    """A point's reduced model and latent grid at small scale, e.g. 'sd-vae-f8c4-tiny (16x16 latent)'."""
    g = SMALL_RESOLUTION // f
    return f"{MODELS[family, f][1]} ({g}x{g} latent)"


_DATA = f"{SMALL_RESOLUTION}-px embedded held-out photos"
CLAIMS = (  # the paper's Fig. 2a: SD-VAE's rFID grows with f, DC-AE's stays low; what ran, then the paper's claim
    claim_row(f"{_small('sd-vae', 8)} has lower rFID than {_small('sd-vae', 64)}, {_DATA}; for the paper's SD-VAE "
              f"f8 vs f64 (ImageNet 256)", "rfid", True, _arm("SD-VAE", 8), _arm("SD-VAE", 64),
              note="small scale: latents 16x16 (f8) and 2x2 (f64) at 128 px; paper: 32x32 and 4x4"),
    claim_row(f"{_small('dc-ae', 64)} has lower rFID than {_small('sd-vae', 64)}, {_DATA}; for the paper's DC-AE "
              f"vs SD-VAE at f64 (ImageNet 256)", "rfid", True, _arm("DC-AE", 64), _arm("SD-VAE", 64),
              note=catalogue.grid_note(64, "4x4")),
    claim_row(f"{_small('dc-ae', 64)} has higher PSNR than {_small('sd-vae', 64)}, {_DATA}; for the paper's DC-AE "
              f"vs SD-VAE at f64 (ImageNet 256)", "psnr", False, _arm("DC-AE", 64), _arm("SD-VAE", 64),
              note=catalogue.grid_note(64, "4x4")),
    # the figure's shape: DC-AE's rFID stays near its f8 level as f grows, SD-VAE's rises (a contrary small-scale
    # curve must show up as a claim row). A contrast, (DC-AE f64 - DC-AE f8) - (SD-VAE f64 - SD-VAE f8), seed by seed
    claim_row(f"rFID rises less from {_small('dc-ae', 8)} to {_small('dc-ae', 64)} than from {_small('sd-vae', 8)} "
              f"to {_small('sd-vae', 64)}, {_DATA}; for the paper's DC-AE vs SD-VAE from f8 to f64 (ImageNet 256)",
              "rfid", True, _arm("DC-AE", 64), _arm("SD-VAE", 64), base_a=_arm("DC-AE", 8), base_b=_arm("SD-VAE", 8),
              note="a - b is (f64 - f8 of DC-AE) - (f64 - f8 of SD-VAE); small scale: latents 16x16 and 2x2 at "
                   "128 px; paper: 32x32 and 4x4"),
)


def plot(df, results, out_png) -> None:
    """Two panels: rFID (log scale) and PSNR vs f, one line per family; the paper's SD-VAE points as crosses."""
    d, scale = plot_frame(df)
    fig, axes = new_figure(1, 2, figsize=(9, 3.6))
    for ax, metric, ylabel in ((axes[0], "rfid", "rFID"), (axes[1], "psnr", "PSNR (dB)")):
        plotted: list[float] = []
        for (_, name), color in zip(FAMILIES, ("tab:blue", "tab:red")):
            xs, ys, px, py = [], [], [], []
            for f, _c in FS:
                sel = d[(d["row"] == _label(name, f)) & (d["metric"] == metric)]
                if len(sel) and pd.notna(sel["v"].iloc[0]):
                    xs.append(f)
                    ys.append(float(sel["v"].iloc[0]))
                if len(sel) and pd.notna(sel["p"].iloc[0]):
                    px.append(f)
                    py.append(float(sel["p"].iloc[0]))
            plotted += ys + py
            if xs:
                ax.plot(xs, ys, "o-", color=color, label=f"{name} (ours, {scale})")
            if px:
                ax.plot(px, py, "x", color=color, markersize=9, mew=2, label=f"{name} (paper)")
        ax.set_xscale("log", base=2)
        ax.set_xticks([f for f, _ in FS], [f"f{f}" for f, _ in FS])
        if metric == "rfid" and plotted and min(plotted) > 0:
            ax.set_yscale("log")  # as the paper's panel
            ylabel += " (log scale)"
        ax.set_xlabel("spatial compression ratio")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, out_png, f"Fig. 2a: reconstruction vs spatial compression ({scale} scale)")


_PAPER_F8, _PAPER_F64 = (paper.values("figure2a", autoencoder=f"SD-VAE-f{f}")["rfid"] for f in (8, 64))


FIGURE2A = Spec(
    id="figure2",
    title="Figure 2a: rFID vs spatial compression, SD-VAE vs DC-AE",
    caption=f"Reconstruction rFID and PSNR for f = 8, 16, 32, 64 (protocol {protocol_id('recon')}). Paper: ImageNet 256, "
            f"SD-VAE rFID {_PAPER_F8:g} (f8) -> {_PAPER_F64:g} (f64), DC-AE flat. Small scale: reduced models trained briefly, "
            "all embedded held-out crops at 128 px; rFID there is a small-N FID (biased upward, compare only within "
            "the figure).",
    columns=(Column("rfid", "rFID", lower_is_better=True, fmt=".3g"),
             Column("psnr", "PSNR", lower_is_better=False, fmt=".2f"),
             Column("kid", "KID (ours only)", lower_is_better=True, fmt=".3g"), *CLAIM_COLUMNS),
    rows=ROWS + SEED_ROWS + CLAIMS,
    version=1,
    scales={
        "smoke": "tiny untrained models, 8 embedded held-out crops at max(32, f) px; seconds per point; never a "
                 "result",
        "small": "reduced -tiny models of Table 2's shapes (f8c4, f16c16, f32c32, f64c128; fair SD-VAE widths) "
                 f"trained by train-ae (phase 1, {SMALL_RESOLUTION} px, {catalogue.PLATEAU_TEXT}; {catalogue.SMALL_SEEDS} seeds for the "
                 "claim arms, Table 2's runs shared), all embedded held-out crops at "
                 f"{SMALL_RESOLUTION} px (latents 16x16 to 2x2)",
        "paper": "ImageNet val at 256 px (--data), official or supplied weights (--weights); the f8/f16 DC-AEs and "
                 "the stacked SD-VAEs are unreleased, so those points are unavailable unless supplied; GPU",
    },
    plot=plot,
    deviations=("Latent channels per f are assumed (f8c4, f16c16, f32c32, f64c128).",
                "small scale: 128 px instead of 256 px (latents half the paper's side), embedded photos instead of "
                "ImageNet val."),
)
