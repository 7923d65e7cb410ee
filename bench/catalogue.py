"""The runs that several artefacts share, defined once: the reduced autoencoders every small-scale
reconstruction and diffusion row evaluates (trained to one plateau rule), and the reduced diffusion runs of the
patch-size vs compression experiment (Table 1, whose UViT-S rows are Figure 2b, and whose sampling runs Tables 3
and 4 reuse). Artefact modules import their shared runs from here, never from each other, so editing one
artefact's small scale cannot silently change another's.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.configs import (
    DIFFUSION_SCALE_DEFAULTS,
    EMBEDDED_TRAIN,
    SCALE_DEFAULTS,
    GenerateConfig,
    PhaseRequest,
    Plateau,
    TrainAEConfig,
    TrainDiffusionConfig,
    folder,
    with_changes,
)
from bench.scales import claim_seeds
from bench.spec import CLAIM_COLUMNS, Column, PaperRef, Row, RunRef, claim_row

# ---- the reduced autoencoders ---------------------------------------------------------------------------------

SMALL_RESOLUTION = 128  # small scale: f32 -> 4x4 latents, f64 -> 2x2 (at 64 px they were 2x2 and 1x1)
SMALL_N_IMAGES = None  # small scale: every embedded held-out crop at 128 px
SMALL_SEEDS = claim_seeds()  # training seeds per small-scale claim arm (3; --seeds N)


# Small-scale training to a plateau: 300 steps, doubled while a doubling gains >= 0.3 dB of held-out PSNR, at
# most 600 steps. The cap is the budget (`bench all --scale small --jobs 2` in 2 hours): these runs are the
# largest single cost of the small scale (a -tiny SD-VAE step at 128 px is the slowest training step of all), and
# with a 1200-step cap the whole scale did not fit. The same rule for both families, so that neither is compared at
# a step count where only it is still far from its plateau; the tables say where each run stopped.
SMALL_PLATEAU = Plateau(min_gain_db=0.3, max_steps=600, probe_images=64)


PLATEAU_TEXT = (f"trained to a plateau: {SCALE_DEFAULTS['small']['phase1']['steps']} steps, doubled while a doubling "
                f"gains >= {SMALL_PLATEAU.min_gain_db} dB of PSNR on {SMALL_PLATEAU.probe_images} held-out crops, at "
                f"most {SMALL_PLATEAU.max_steps} steps (the columns 'training steps' and 'PSNR gain of the last "
                f"doubling' say where each run stopped; a gain >= {SMALL_PLATEAU.min_gain_db} dB at the cap means the "
                f"budget, not the plateau, stopped it)")


def train_ref(model: str, seed: int = 0) -> TrainAEConfig:
    """The training run whose checkpoint a small-scale row evaluates: phase 1 at 128 px (batch 8, lr 2e-4), trained
    to a plateau by ``SMALL_PLATEAU``. Figure 2a, Figure 5, Figure 7, Table 1 (its autoencoders) and this table name
    the same runs, so each (model, seed) trains once."""
    return TrainAEConfig(model, phases=(PhaseRequest("phase1", resolution=SMALL_RESOLUTION),), seed=seed,
                         plateau=SMALL_PLATEAU)


def grid_note(f: int, paper_grid: str) -> str:
    """The latent grid of a small-scale row beside the paper's (every claim row states both)."""
    g = SMALL_RESOLUTION // f
    return f"small scale: latent {g}x{g} at {SMALL_RESOLUTION} px; paper: {paper_grid}"


# ---- the reduced diffusion runs (Table 1; Figure 2b, Tables 3 and 4 reuse them) -----------------------------

# Guidance scales. The paper states none for Table 1. U-ViT 1.5: the official U-ViT scale (efficientvit README: "1.5
# for all other models"). DiT 1.3: ours, the one released DiT-XL's (DC-AE-f32, README), applied to every DiT row.
CFG_SCALE = {"uvit": 1.5, "dit": 1.3}
CFG_SOURCE = {"uvit": "the official U-ViT scale", "dit": "ours, the released DC-AE-f32 DiT-XL's scale"}


@dataclass(frozen=True)
class Entry:
    """One Table 1 row: backbone, the paper's autoencoder label, our registry names per scale, patch per scale."""

    backbone: str          # models.backbones name
    paper_backbone: str    # = paper_numbers.csv "backbone"
    paper_ae: str          # = paper_numbers.csv "autoencoder"
    autoencoder: str       # registry name at paper scale
    weights: bool          # the autoencoder has released weights (else it must be trained or supplied)
    smoke_ae: str          # reduced stand-in at smoke scale
    patch: int             # the paper's patch size
    small_ae: str | None   # reduced stand-in at small scale (trained here, phase 1 at 128 px); None: not run
    small_patch: int       # patch at small scale: 16 tokens at 128 px
    small_seeds: int = 1   # diffusion training seeds at small scale (3 for the claim rows' arms); seed s trains on
                           # autoencoder seed s
    conditional: bool = True         # class-conditional (False: Table 4's unconditional FFHQ / MapillaryVistas)
    paper_data: str = "imagenet-train"  # the paper-scale training set and FID reference (a FOLDER_SETS name)
    resolution: int = 512            # the paper-scale image side

    @property
    def label(self) -> str:
        return f"{self.paper_backbone} {self.paper_ae} p{self.patch}"

    @property
    def family(self) -> str:
        return "uvit" if self.backbone.startswith("uvit") else "dit"


ENTRIES = (
    Entry(backbone="dit-xl", paper_backbone="DiT-XL", paper_ae="SD-VAE-f8", autoencoder="sd-vae-f8", weights=True,
          smoke_ae="sd-vae-f8c4-tiny", patch=4, small_ae="sd-vae-f8c4-tiny", small_patch=4, small_seeds=SMALL_SEEDS),
    Entry(backbone="dit-xl", paper_backbone="DiT-XL", paper_ae="SD-VAE-f16", autoencoder="sd-vae-f16c16", weights=False,
          smoke_ae="sd-vae-f16c16-tiny", patch=2, small_ae="sd-vae-f16c16-tiny", small_patch=2),
    Entry(backbone="dit-xl", paper_backbone="DiT-XL", paper_ae="SD-VAE-f32", autoencoder="sd-vae-f32c64", weights=False,
          smoke_ae="sd-vae-f32c64-tiny", patch=1, small_ae="sd-vae-f32c64-tiny", small_patch=1, small_seeds=SMALL_SEEDS),
    Entry(backbone="uvit-s", paper_backbone="UViT-S", paper_ae="SD-VAE-f8", autoencoder="sd-vae-f8", weights=True,
          smoke_ae="sd-vae-f8c4-tiny", patch=8, small_ae="sd-vae-f8c4-tiny", small_patch=4, small_seeds=SMALL_SEEDS),
    Entry(backbone="uvit-s", paper_backbone="UViT-S", paper_ae="SD-VAE-f16", autoencoder="sd-vae-f16c16", weights=False,
          smoke_ae="sd-vae-f16c16-tiny", patch=4, small_ae="sd-vae-f16c16-tiny", small_patch=2),
    Entry(backbone="uvit-s", paper_backbone="UViT-S", paper_ae="SD-VAE-f32", autoencoder="sd-vae-f32c64", weights=False,
          smoke_ae="sd-vae-f32c64-tiny", patch=2, small_ae="sd-vae-f32c64-tiny", small_patch=1),
    Entry(backbone="uvit-s", paper_backbone="UViT-S", paper_ae="DC-AE-f64", autoencoder="dc-ae-f64c128-in-1.0", weights=True,
          smoke_ae="dc-ae-f64c128-tiny", patch=1, small_ae="dc-ae-f32c32-tiny", small_patch=1, small_seeds=SMALL_SEEDS),
)
# each full-size backbone's reduced stand-ins (models.backbones): the small scale's (None: none) and the smoke scale's
REDUCED_BACKBONES = {"uvit-s": ("uvit-s-small", "uvit-s-tiny"), "uvit-h": (None, "uvit-h-tiny"),
                     "uvit-2b": (None, "uvit-2b-tiny"), "dit-s": ("dit-s-small", "dit-s-tiny"),
                     "dit-xl": ("dit-xl-small", "dit-xl-tiny"), "pixart-alpha": (None, "pixart-alpha-tiny")}
SMOKE_PATCH = {8: 4, 4: 2, 2: 1, 1: 1}  # at 64 px the f8 latent is 8x8: patches shrink so every row has >= 1 token
SMALL_DIFFUSION = {"resolution": 128, "n_samples": 256, "dit_steps": 50}  # small-scale sampling protocol (Table 1's docstring)
SMALL_TOKENS = 16  # every small-scale row: (128 / f / p)^2
# spatial compression of each reduced autoencoder (the registry's; tests/test_claim_labels.py checks it)
SMALL_F = {"sd-vae-f8c4-tiny": 8, "sd-vae-f16c16-tiny": 16, "sd-vae-f32c64-tiny": 32, "dc-ae-f32c32-tiny": 32}


def small_autoencoder(e: Entry, seed: int = 0) -> TrainAEConfig:
    """The row's reduced autoencoder at small scale: Table 2's run of that model and seed (phase 1 at 128 px,
    trained to Table 2's plateau rule), so no row's autoencoder is compared short of its plateau while another's is
    not. Diffusion seed s trains on autoencoder seed s: a claim's seeds sample both trainings."""
    return train_ref(e.small_ae, seed)


def small_design(e: Entry) -> str:
    """The row's small-scale autoencoder as run: registry name, patch and latent grid (e.g. 'sd-vae-f8c4-tiny p4
    (16x16 latent)')."""
    g = SMALL_DIFFUSION["resolution"] // SMALL_F[e.small_ae]
    return f"{e.small_ae} p{e.small_patch} ({g}x{g} latent)"


def train_run(e: Entry, ae_seed: int = 0) -> RunRef:
    return RunRef(TrainDiffusionConfig(e.backbone, e.autoencoder, e.resolution, patch_size=e.patch,
                                       weights=e.weights, dataset=folder(e.paper_data), conditional=e.conditional),
                  at={"small": None if e.small_ae is None else {"backbone": REDUCED_BACKBONES[e.backbone][0], "autoencoder": e.small_ae,
                                "resolution": SMALL_DIFFUSION["resolution"], "patch_size": e.small_patch,
                                "autoencoder_checkpoint": small_autoencoder(e, ae_seed), "weights": False,
                                "dataset": EMBEDDED_TRAIN, "latent_scale": "unit-rms"},
                      "smoke": {"backbone": REDUCED_BACKBONES[e.backbone][1], "autoencoder": e.smoke_ae, "resolution": 64,
                                "patch_size": SMOKE_PATCH[e.patch], "weights": False, "dataset": EMBEDDED_TRAIN,
                                "n_images": 16}})


def sampling_label(e: Entry, guided: bool, seed: int = 0) -> str:
    tag = f"CFG {CFG_SCALE[e.family]}" if guided else "no CFG"
    return f"{e.label} · sample {tag}" + (f" · seed {seed}" if seed else "")


def sample_run(e: Entry, guided: bool, seed: int = 0, released: str | None = None) -> RunRef:
    """The sampling run of ``e`` (guided: the family's CFG scale). Paper scale: the row's own paper-scale training
    run, or the ``released`` checkpoint of that name (--weights); small and smoke: the reduced runs (module
    docstring). Seeds > 0 run at small scale only (the claim rows' arms), seed s on autoencoder seed s. Tables 3
    and 4 build their gFID rows with it."""
    train = train_run(e, seed)
    scale = CFG_SCALE[e.family] if guided else 1.0
    ref = folder(e.paper_data)
    cfg = (GenerateConfig(released=released, cfg_scale=scale, reference=ref) if released
           else GenerateConfig(model=train.resolve("paper"), cfg_scale=scale, reference=ref))
    not_released = {"released": None} if released else {}
    small = {"model": with_changes(train.resolve("small"), {"seed": seed} if seed else None), **not_released,
             "n_samples": SMALL_DIFFUSION["n_samples"], "reference": EMBEDDED_TRAIN, "also_vs_reconstructions": True,
             **({"steps": SMALL_DIFFUSION["dit_steps"]} if e.family == "dit" else {})} if e.small_ae else None
    smoke = {"model": train.resolve("smoke"), **not_released, "n_samples": 4, "reference": EMBEDDED_TRAIN,
             "n_reference": 8, "batch_size": 4} if seed == 0 else None
    return RunRef(cfg, at={"small": small, "smoke": smoke, **({"paper": None} if seed else {})})


def _generate(e: Entry, guided: bool, seed: int = 0) -> Row:
    return Row(sampling_label(e, guided, seed), run=sample_run(e, guided, seed))


def row_note(e: Entry) -> str:
    """What the row runs at small scale, and where its guidance scale comes from."""
    small = (f"small: {e.backbone}-small on {small_design(e)}, {SMALL_TOKENS} tokens, {SMALL_DIFFUSION['resolution']}-px "
             f"embedded training photos" if e.small_ae else "small: not run")
    return f"{small}; w/ CFG {CFG_SCALE[e.family]}: {CFG_SOURCE[e.family]} (the paper states none)"


def _row(e: Entry) -> Row:
    """The paper's row: our two gFIDs (derived from the two sampling runs) beside the paper's."""
    plain, guided = sampling_label(e, False), sampling_label(e, True)
    return Row(e.label, paper=PaperRef(artifact="table1", backbone=e.paper_backbone, autoencoder=e.paper_ae,
                                       patch=str(e.patch)),
               derive=lambda m: {"fid_no_cfg": m[plain]["gfid"], "fid_cfg": m[guided]["gfid"],
                                 "_from": [plain, guided]}, note=row_note(e))


# The extra diffusion seeds feed the claims, which are decided on unguided samples: only seed 0 also samples with CFG
# (the row's "w/ CFG" cell); guided samples of seeds 1-2 were computed and shown but decided nothing (8 generate runs).
RUNS = tuple(_generate(e, g, s) for e in ENTRIES for s in range(e.small_seeds) for g in (False, True)
             if not (g and s))
ROWS = tuple(_row(e) for e in ENTRIES)
_BY_LABEL = {r.label: r for r in RUNS}


AGAINST = {"kid": "KID vs the training crops", "kid_vs_recon": "KID vs each autoencoder's reconstructions of them"}


def claim_statement(a: Entry, b: Entry, metric: str, paper: str) -> str:
    """What a small-scale claim compares, in registry names, then the paper's row it stands for (after "for the
    paper's", the only part that may name the paper's models and data; tests/test_claim_labels.py checks both)."""
    kind = "" if a.conditional else ", unconditional"
    return (f"{REDUCED_BACKBONES[a.backbone][0]}{kind}: {small_design(a)} beats {small_design(b)} at {SMALL_TOKENS} tokens, "
            f"{SMALL_DIFFUSION['resolution']}-px embedded training photos, {AGAINST[metric]}; for the paper's {paper}")


def _claims() -> dict[str, tuple[Row, ...]]:
    """Per block, the paper's direction: the deepest autoencoder with patch 1 has the lower gFID than SD-VAE-f8 with
    the largest patch, at equal tokens. Decided at small scale on KID (the unbiased set distance; small-N gFID is not)
    against the training crops, on unguided samples; KID against each autoencoder's reconstructions of them (the
    diffusion model's error without the decoder's floor) is our diagnostic."""
    out = {}
    for backbone, best, base in (("DiT-XL", "SD-VAE-f32", "SD-VAE-f8"), ("UViT-S", "DC-AE-f64", "SD-VAE-f8")):
        a, b = (next(e for e in ENTRIES if e.paper_backbone == backbone and e.paper_ae == ae) for ae in (best, base))
        arm = lambda e: tuple(_BY_LABEL[sampling_label(e, False, s)] for s in range(e.small_seeds))  # noqa: E731
        paper = f"ImageNet 512 {a.label} vs {b.paper_ae} p{b.patch}"
        out[backbone] = tuple(
            claim_row(claim_statement(a, b, metric, paper), metric, True, arm(a), arm(b),
                      kind="paper" if metric == "kid" else "diagnostic",
                      note=f"small: diffusion seed s on autoencoder seed s; paper: gFID at "
                           f"{PAPER_TOKENS[backbone]} tokens, 512 px")
            for metric in ("kid", "kid_vs_recon"))
    return out


PAPER_TOKENS = {"DiT-XL": 256, "UViT-S": 64}  # Table 1's token count per block at 512 px
CLAIMS_OF = _claims()  # paper backbone -> its claim rows (Figure 2b shows the UViT-S ones)
CLAIMS = tuple(r for rows in CLAIMS_OF.values() for r in rows)


_DIFF = DIFFUSION_SCALE_DEFAULTS["small"]  # the small scale's diffusion recipe (steps, batch), for the texts
# Table 1's columns, scale texts and deviations: Figure 2b shows its UViT-S rows with the same ones.
TABLE1_COLUMNS = (Column("fid_no_cfg", "gFID w/o CFG", True, ".3g"), Column("fid_cfg", "gFID w/ CFG", True, ".3g"),
             Column("gfid", "gFID of this sampling run", True, ".3g"), Column("kid", "KID", True, ".3g"),
             Column("gfid_vs_recon", "gFID vs AE reconstructions", True, ".3g"),
             Column("kid_vs_recon", "KID vs AE reconstructions", True, ".3g"),
             Column("images_per_s", "samples/s", False, ".3g")) + CLAIM_COLUMNS
TABLE1_SCALES = {"smoke": "tiny backbones on tiny untrained autoencoders at 64 px, 2 training steps, 4 samples scored "
                     "against 8 embedded crops; a pipeline check, never a result",
            "small": "128 px embedded crops, 16 tokens per block (UViT patches halved; DC-AE-f64 p1 -> DC-AE-f32 "
                     "p1), Table 2's plateau-trained reduced autoencoders (diffusion seed s on autoencoder seed s) "
                     "and hidden-128 depth-6 backbones "
                     f"({_DIFF['steps']} steps at batch {_DIFF['batch']}), {SMALL_DIFFUSION['n_samples']} samples (DiT: 50 "
                     "IDDPM steps) scored by gFID / KID vs the embedded training crops and vs the "
                     f"autoencoder's reconstructions; {SMALL_SEEDS} diffusion seeds per claim arm; small-N gFID is biased "
                     "(N < 2048): read KID",
            "paper": "ImageNet-train 512 px (--data), official recipes, 50k samples vs ImageNet-train statistics, "
                     "GPUs; SD-VAE-f16/f32 are unreleased (stacked stand-ins, channels assumed)"}
TABLE1_DEVIATIONS = ("CFG scales of Table 1 are not stated. U-ViT rows: 1.5, the official U-ViT scale. DiT-XL rows: 1.3 "
                "is our choice (the released DC-AE-f32 DiT-XL's scale, applied to every DiT row, all latent "
                "channels guided).",
                "SD-VAE-f16 / SD-VAE-f32 are the stacked stand-ins sd-vae-f16c16 / sd-vae-f32c64 (unreleased; "
                "channels assumed, as in Table 3).",
                "Small scale: 16 tokens per block at 128 px instead of 256 (DiT-XL) / 64 (UViT-S) at 512 px; the "
                "UViT-S rows' patches are halved and DC-AE-f64 p1 is DC-AE-f32c32 p1 (an f64 latent of a 128 px "
                "image is 2x2).",
                "Small scale: DiT samples with 50 respaced IDDPM steps (the official 250 cost 5x on a CPU); U-ViT "
                "with the official DPM-Solver++ 30 NFE.",
                f"Small scale: the diffusion backbones train {_DIFF['steps']} steps at batch {_DIFF['batch']} and "
                f"are scored on {SMALL_DIFFUSION['n_samples']} samples: the CPU budget of the whole small scale.",
                f"Small scale: claims are decided on KID (unbiased at any N), not gFID, over {SMALL_SEEDS} "
                "training seeds per arm, diffusion seed s trained on autoencoder seed s; the latents are scaled to "
                "unit RMS (the reduced autoencoders have no fitted scaling factor) and are the reduced SD-VAEs' "
                "posterior means (their variance head is never trained; a released SD-VAE's latents are one "
                "posterior sample, as the official script).")
