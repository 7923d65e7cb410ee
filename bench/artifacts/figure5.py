"""Figure 5: reconstructions without GAN loss, with full-model GAN training, and with phase-3 local refinement.

Paper §3.2 (Fig. 5 caption): "Autoencoder already learns to reconstruct content and semantics without GAN loss, while
GAN loss improves local details and removes local artifacts. We replace the GAN loss full training with lightweight
local refinement training which achieves the same goal and has lower training cost." The figure's rFIDs (3.82 no
GAN, 0.82 full GAN, 0.69 local refinement) are quoted from the appendix by secondary sources only and are not in
``paper_numbers.csv``: they are shown in the caption, not as paper cells.

Rows, per training seed (3 at the small scale, ``--seeds``), all on top of the same phase-1 run of that seed (at the
small scale the one Table 2 / Fig. 2a / Fig. 7 evaluate: 128 px, trained to its plateau), each for phase 3's steps:
- no GAN: phase 3's schedule with all parameters trainable and the GAN loss off (equal steps in every arm);
- full-model GAN: phase 3's losses and optimiser with *all* parameters trainable (the conventional single-phase
  GAN training the paper replaces);
- local refinement: phase 3 as in the paper, only the decoder head (``decoder.project_out``) trainable.

Commands:
    python -m bench figure5 --scale small    # 9 train-ae runs of 120 steps on the shared phase-1 runs + 9 recon
    python -m bench figure5 --scale smoke    # tiny model, 2 steps
Expected (small): the paper's ordering is not expected to be reproduced reliably: 120 GAN steps at 128 px without
LPIPS on the embedded training crops; the claim rows report whatever is measured.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from bench import catalogue, paper
from bench.configs import (
    EMBEDDED_TEST,
    SCALE_DEFAULTS,
    PhaseRequest,
    ReconConfig,
    TrainAEConfig,
    folder,
)
from bench.emit import new_figure, plot_frame, save_figure
from bench.scales import claim_seeds
from bench.spec import CLAIM_COLUMNS, Column, Row, RunRef, Spec, claim_row, what_ran

BASE_SMALL = "dc-ae-f32c32-tiny"    # shared with Table 2 / Fig. 7 (their phase-1 run)
BASE_SMOKE = "dc-ae-f32c32-tiny"
BASE_PAPER = "dc-ae-f32c32"         # unreleased pre-GAN checkpoints: not runnable without training on --data
SMALL_RES = catalogue.SMALL_RESOLUTION      # 128 px: the f32 latent is 4x4 (at 64 px it was 2x2)
SMALL_N_IMAGES = catalogue.SMALL_N_IMAGES  # every embedded held-out crop
_P3 = SCALE_DEFAULTS["small"]["phase3"]  # the recipe the scale text describes
PAPER_SECONDARY = paper.secondary("figure5", "rfid")  # row -> rFID (bench/data/secondary_numbers.csv)
# what each variant changes in phase 3 (local refinement: nothing); "no GAN" keeps the phase-3 schedule with the GAN
# loss off, so every arm trains the same steps
PHASE3_CHANGES = {"no GAN": {"trainable": "all_parameters", "gan": False},
                  "full-model GAN": {"trainable": "all_parameters"}}


def _train(model: str, variant: str, seed: int = 0, base: TrainAEConfig | None = None,
           resolution: int | None = None) -> TrainAEConfig:
    """The variant's train-ae run on top of the phase-1 run ``base`` (default: the scale's phase 1 of ``model``)."""
    p1 = base if base is not None else TrainAEConfig(model, seed=seed)
    p3 = PhaseRequest("phase3", resolution=resolution, **PHASE3_CHANGES.get(variant, {}))
    return TrainAEConfig(model, phases=(p3,), init_from=p1, seed=seed)


def _label(variant: str, seed: int) -> str:
    return variant + (f" · seed {seed}" if seed else "")


def _recon(variant: str, seed: int) -> RunRef:
    """Small scale: on top of Table 2's phase-1 run of the same seed (128 px, trained to its plateau), phase 3 at
    the same 128 px, evaluated on every held-out crop at 128 px (a 4x4 latent)."""
    small_train = _train(BASE_SMALL, variant, seed, base=catalogue.train_ref(BASE_SMALL, seed), resolution=SMALL_RES)
    small = {"model": BASE_SMALL, "resolution": SMALL_RES, "dataset": EMBEDDED_TEST, "n_images": SMALL_N_IMAGES,
             "weights": False, "checkpoint": small_train}
    smoke = {"model": BASE_SMOKE, "resolution": 32, "dataset": EMBEDDED_TEST, "n_images": 4, "weights": False,
             "checkpoint": _train(BASE_SMOKE, variant, seed), "batch_size": 4}
    return RunRef(ReconConfig(BASE_PAPER, 256, dataset=folder("imagenet-val"),
                              checkpoint=_train(BASE_PAPER, variant, seed), batch_size=16),
                  at={"small": small, "smoke": smoke, **({"paper": None} if seed else {})})


VARIANTS = tuple(PAPER_SECONDARY)
SEEDS = tuple(range(claim_seeds()))  # training seeds per arm (3: the least the rule decides on)
ROWS = tuple(Row(_label(v, s), run=_recon(v, s), note=f"paper rFID {PAPER_SECONDARY[v]} (secondary source)")
             for v in VARIANTS for s in SEEDS)


_BY_LABEL = {r.label: r for r in ROWS}


def _arm(variant: str) -> tuple[Row, ...]:
    return tuple(_BY_LABEL[_label(variant, s)] for s in SEEDS)


SAME_PARENT = "paired by seed: the three variants of seed s continue seed s's phase-1 checkpoint"


def _said(text: str) -> str:
    """A statement with what ran at small scale and the paper's figure it stands for."""
    rows = tuple(r for v in ("no GAN", "full-model GAN", "local refinement (phase 3)") for r in _arm(v))
    return f"{text} ({what_ran(rows)}); for the paper's Figure 5 (ImageNet 256)"
CLAIMS = (  # arm a = the side the paper says is better
    claim_row(_said("local refinement (phase 3) has lower rFID than no GAN"), "rfid", True,
              _arm("local refinement (phase 3)"), _arm("no GAN"), design="paired", pairing=SAME_PARENT),
    claim_row(_said("full-model GAN has lower rFID than no GAN"), "rfid", True,
              _arm("full-model GAN"), _arm("no GAN"), design="paired", pairing=SAME_PARENT),
    claim_row(_said("local refinement (phase 3) has lower rFID than full-model GAN"), "rfid", True,
              _arm("local refinement (phase 3)"), _arm("full-model GAN"), design="paired", pairing=SAME_PARENT),
)


def plot(df, results, out_png) -> None:
    """Image grid: originals, then one column per variant, from the recon runs' sample PNGs; metrics in titles."""
    d, scale = plot_frame(df)
    have = [v for v in VARIANTS if v in results and (Path(results[v].dir) / "samples").is_dir()]
    if not have:
        return
    origs = sorted((Path(results[have[0]].dir) / "samples").glob("*-orig.png"))[:4]
    cols = ["original"] + have
    fig, axes = new_figure(len(origs), len(cols), figsize=(2.2 * len(cols), 2.2 * len(origs) + 0.6),
                             squeeze=False)
    for r, orig in enumerate(origs):
        for c, name in enumerate(cols):
            ax = axes[r][c]
            path = orig if name == "original" else Path(results[name].dir) / "samples" / orig.name.replace(
                "-orig", "-recon")
            if path.exists():
                ax.imshow(Image.open(path))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                title = name
                if name != "original":
                    m = {k: d[(d["row"] == name) & (d["metric"] == k)]["v"] for k in ("rfid", "psnr")}
                    vals = ", ".join(f"{k} {float(s.iloc[0]):.3g}" for k, s in m.items() if len(s) and s.notna().all())
                    title += f"\n{vals}\n(paper rFID {PAPER_SECONDARY[name]}, secondary)"
                ax.set_title(title, fontsize=7)
    save_figure(fig, out_png, f"Fig. 5: no GAN vs full-model GAN vs local refinement ({scale} scale)", title_size=9)


SPECS = {"": Spec(
    id="figure5",
    title="Figure 5: GAN loss as local refinement (phase 3) vs full-model GAN training vs no GAN",
    caption="Reconstructions and metrics of the same phase-1 autoencoder without GAN, after GAN training of all "
            "parameters, and after phase-3 local refinement (decoder head only, hinge PatchGAN). Paper rFID "
            "(secondary sources quoting the appendix, bench/data/secondary_numbers.csv): "
            + ", ".join(f"{v} {k}" for k, v in PAPER_SECONDARY.items())
            + ". Claim rows: the verdict of the one rule (bench/stats.py) with its 90 % interval.",
    columns=(Column("rfid", "rFID", lower_is_better=True, fmt=".3g"),
             Column("psnr", "PSNR", lower_is_better=False, fmt=".2f"),
             Column("ssim", "SSIM", lower_is_better=False, fmt=".3f"),
             Column("lpips", "LPIPS", lower_is_better=True, fmt=".3f"),
             *CLAIM_COLUMNS),
    rows=ROWS + CLAIMS,
    version=1,
    scales={"smoke": "dc-ae-f32c32-tiny, 2 steps per phase at 32 px, 4 crops: seconds, never a result",
            "small": f"dc-ae-f32c32-tiny phase-1 runs shared with Table 2 (128 px, trained to the plateau rule), "
                     f"seeds {SEEDS}; on each, 'no GAN', 'full-model GAN' and phase 3 each train {_P3['steps']} steps at "
                     f"{SMALL_RES} px (a 4x4 latent), batch {_P3['batch']}, lr {_P3['lr']:g}, phase 3's AdamW betas "
                     f"(models.train_autoencoder.PHASES), GAN weight {_P3['gan_weight']:g}, L1 only (no LPIPS weights "
                     f"offline); every embedded held-out crop at {SMALL_RES} px",
            "paper": "needs the pre-GAN DC-AE checkpoint and ImageNet (--data, GPUs): unavailable otherwise"},
    plot=plot,
    deviations=("No LPIPS in the reconstruction loss at the small scale (weights not shipped).",
                "Fixed GAN weight (no adaptive weighting); discriminator design and weights are ours.",
                "The paper's numbers for this figure are secondary (appendix as quoted), shown in the caption."),
)}
