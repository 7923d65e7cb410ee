"""Figure 2: (a) rFID vs spatial compression, SD-VAE vs DC-AE; (b) UViT-S gFID per autoencoder; (c) UViT variants,
throughput vs gFID.

Panels are built from their own modules: ``bench.parts.figure2a`` (reconstruction protocol) and ``bench.parts.figure2c`` (efficiency
profiler with the paper's FIDs). Panel b is Table 1's UViT-S rows (the caption's UViT-S models, the same runs: the
paper prints Figure 2b's numbers only in the image), plotted as gFID per autoencoder.

Command: ``python -m bench figure2 [--ablation a|b|c] --scale small``.
"""
from bench import catalogue
from bench.parts.figure2a import FIGURE2A
from bench.parts.figure2c import FIGURE2C
from bench.emit import new_figure, plot_frame, save_figure
from bench.spec import Spec

TITLE = "Figure 2: compression vs rFID; UViT-S gFID per AE; UViT throughput vs gFID"

_UVIT = tuple(e for e in catalogue.ENTRIES if e.backbone == "uvit-s")
_LABELS = {e.label for e in _UVIT}


def plot_b(df, results, out_png) -> None:
    """gFID per autoencoder (x: where compression happens), ours and the paper's, without and with CFG."""
    d, scale = plot_frame(df)
    fig, axes = new_figure(1, 2, figsize=(9, 3.6))
    for ax, metric, title in ((axes[0], "fid_no_cfg", "w/o CFG"), (axes[1], "fid_cfg", "w/ CFG")):
        sel = d[(d["metric"] == metric) & d["row"].isin(_LABELS)]
        xs = list(range(len(sel)))
        ax.plot(xs, sel["v"], "o-", label=f"ours ({scale})")
        twin = ax.twinx()
        twin.plot(xs, sel["p"], "x:", color="tab:purple", label="paper (right axis)")
        ax.set_xticks(xs, [r.replace("UViT-S ", "") for r in sel["row"]], fontsize=7)
        ax.set_title(f"UViT-S gFID {title}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        twin.legend(fontsize=7, loc="upper right")
    save_figure(fig, out_png, f"Fig. 2b: UViT-S gFID per autoencoder ({scale} scale)")


FIGURE2B = Spec(
    id="figure2", title="Figure 2b: UViT-S gFID per autoencoder",
    caption="Table 1's UViT-S rows (the same runs): gFID without / with CFG per autoencoder at 64 tokens (the "
            "paper's; 16 at small scale, where each row's note names the reduced models that ran). The paper's "
            "Figure 2b prints its numbers only in the image; the paper values shown are Table 1's.",
    columns=catalogue.TABLE1_COLUMNS,
    rows=tuple(r for r in catalogue.ROWS if r.label in _LABELS)
    + tuple(r for r in catalogue.RUNS if r.label.split(" · ")[0] in _LABELS)
    + catalogue.CLAIMS_OF["UViT-S"],
    scales=catalogue.TABLE1_SCALES, plot=plot_b, deviations=catalogue.TABLE1_DEVIATIONS,
)

SPECS = {"a": FIGURE2A, "b": FIGURE2B, "c": FIGURE2C}
