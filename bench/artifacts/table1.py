"""Table 1: patch size vs autoencoder spatial compression at equal token count (ImageNet 512, DiT-XL and UViT-S).

Caption (paper): moving compression from the patch embedding into the autoencoder, at an equal number of tokens,
improves gFID. Each row trains a latent diffusion model (eval ``train-diffusion``) on one autoencoder's latents and
samples it twice (eval ``generate``): without guidance and with CFG (``CFG_SCALE``: the paper states no Table 1
scale; U-ViT 1.5 is the official U-ViT scale, DiT-XL 1.3 is our choice, the released DC-AE-f32 DiT-XL's scale applied
to every DiT row). The row's two gFIDs sit beside the paper's; claim rows ask the paper's direction within each
backbone (the deepest autoencoder compression with patch 1 vs the f8 autoencoder with the largest patch), each
statement naming the reduced models, patches, latent grids and data that ran, then the paper's row it stands for.

Scales:
- ``paper``: ImageNet-train at 512 px (--data D with D/imagenet-train), the official recipes, 50,000 samples
  scored against ImageNet-train's Inception statistics, GPUs. The SD-VAE-f16 / f32 of the paper are unreleased
  (the stacked baselines sd-vae-f16c16 / sd-vae-f32c64 stand in; their channels are assumed).
- ``small``: 128 px embedded training crops (class = source photo), 16 tokens per block (the paper's 256 / 64 do not
  fit a 2-core CPU): DiT-XL rows keep the paper's patches (f8 p4, f16 p2, f32 p1), UViT-S rows halve them (f8 p4,
  f16 p2, f32 p1) and DC-AE-f64 p1 becomes DC-AE-f32c32 p1 (f64 at 128 px is a 2x2 latent). Each row's reduced
  autoencoder is Table 2's run of that model (phase 1 at 128 px, trained to Table 2's plateau rule; fair SD-VAE
  widths, models/sd_vae.py), diffusion seed s on autoencoder seed s; on its latents it trains a reduced backbone of
  hidden size 128 and depth 6
  (``uvit-s-small`` / ``dit-xl-small``, bench.configs.DIFFUSION_SCALE_DEFAULTS: 1000 steps at batch 32, latents
  scaled to unit RMS), then samples 256 images without and with CFG (DiT: 50 respaced IDDPM steps, not 250: 5x the
  time for a reduced model). Batch 32 and 256 samples (not 64 and 512) are the budget's. Scores: gFID and
  KID against the embedded training crops, and against the same autoencoder's reconstructions of them (the
  diffusion model's own error, without the decoder's floor). The claim rows' arms (f8 with the largest patch vs
  the deepest autoencoder with p1, per block) train 3 diffusion seeds each (``--seeds N``), seed s on autoencoder
  seed s.
- ``smoke``: tiny backbones on tiny untrained autoencoders, 64 px, 2 training steps, 4 samples: a pipeline check.

Commands:
    python -m bench table1 --scale smoke      # ~1-2 min
    python -m bench table1 --scale small --jobs 2   # the plan prints its expected time
    python -m bench table1 --scale paper --device cuda --weights W --data D   # weeks of GPU time (bench needs)
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.artifacts import table2 as T2
from bench.configs import (
    DIFFUSION_SCALE_DEFAULTS,
    EMBEDDED_TRAIN,
    GenerateConfig,
    TrainAEConfig,
    TrainDiffusionConfig,
    folder,
    with_changes,
)
from bench.scales import claim_seeds
from bench.spec import CLAIM_COLUMNS, Column, PaperRef, Row, RunRef, Spec, claim_row

ID = "table1"
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


CLAIM_SEEDS = claim_seeds()  # diffusion training seeds per claim arm (3; --seeds N)
ENTRIES = (
    Entry("dit-xl", "DiT-XL", "SD-VAE-f8", "sd-vae-f8", True, "sd-vae-f8c4-tiny", 4, "sd-vae-f8c4-tiny", 4, CLAIM_SEEDS),
    Entry("dit-xl", "DiT-XL", "SD-VAE-f16", "sd-vae-f16c16", False, "sd-vae-f16c16-tiny", 2, "sd-vae-f16c16-tiny", 2),
    Entry("dit-xl", "DiT-XL", "SD-VAE-f32", "sd-vae-f32c64", False, "sd-vae-f32c64-tiny", 1, "sd-vae-f32c64-tiny", 1,
          CLAIM_SEEDS),
    Entry("uvit-s", "UViT-S", "SD-VAE-f8", "sd-vae-f8", True, "sd-vae-f8c4-tiny", 8, "sd-vae-f8c4-tiny", 4, CLAIM_SEEDS),
    Entry("uvit-s", "UViT-S", "SD-VAE-f16", "sd-vae-f16c16", False, "sd-vae-f16c16-tiny", 4, "sd-vae-f16c16-tiny", 2),
    Entry("uvit-s", "UViT-S", "SD-VAE-f32", "sd-vae-f32c64", False, "sd-vae-f32c64-tiny", 2, "sd-vae-f32c64-tiny", 1),
    Entry("uvit-s", "UViT-S", "DC-AE-f64", "dc-ae-f64c128-in-1.0", True, "dc-ae-f64c128-tiny", 1, "dc-ae-f32c32-tiny",
          1, CLAIM_SEEDS),
)
SMOKE_PATCH = {8: 4, 4: 2, 2: 1, 1: 1}  # at 64 px the f8 latent is 8x8: patches shrink so every row has >= 1 token
SMALL = {"resolution": 128, "n_samples": 256, "dit_steps": 50}  # small-scale protocol (module docstring)
SMALL_TOKENS = 16  # every small-scale row: (128 / f / p)^2
# spatial compression of each reduced autoencoder (the registry's; tests/test_claim_labels.py checks it)
SMALL_F = {"sd-vae-f8c4-tiny": 8, "sd-vae-f16c16-tiny": 16, "sd-vae-f32c64-tiny": 32, "dc-ae-f32c32-tiny": 32}
_DIFF = DIFFUSION_SCALE_DEFAULTS["small"]  # the small scale's diffusion recipe (steps, batch), for the captions


def small_autoencoder(e: Entry, seed: int = 0) -> TrainAEConfig:
    """The row's reduced autoencoder at small scale: Table 2's run of that model and seed (phase 1 at 128 px,
    trained to Table 2's plateau rule), so no row's autoencoder is compared short of its plateau while another's is
    not. Diffusion seed s trains on autoencoder seed s: a claim's seeds sample both trainings."""
    return T2.train_ref(e.small_ae, seed)


def small_design(e: Entry) -> str:
    """The row's small-scale autoencoder as run: registry name, patch and latent grid (e.g. 'sd-vae-f8c4-tiny p4
    (16x16 latent)')."""
    g = SMALL["resolution"] // SMALL_F[e.small_ae]
    return f"{e.small_ae} p{e.small_patch} ({g}x{g} latent)"


def _train(e: Entry, ae_seed: int = 0) -> RunRef:
    return RunRef(TrainDiffusionConfig(e.backbone, e.autoencoder, e.resolution, patch_size=e.patch,
                                       weights=e.weights, dataset=folder(e.paper_data), conditional=e.conditional),
                  at={"small": None if e.small_ae is None else {"backbone": f"{e.backbone}-small", "autoencoder": e.small_ae,
                                "resolution": SMALL["resolution"], "patch_size": e.small_patch,
                                "autoencoder_checkpoint": small_autoencoder(e, ae_seed), "weights": False,
                                "dataset": EMBEDDED_TRAIN, "latent_scale": "unit-rms"},
                      "smoke": {"backbone": f"{e.backbone}-tiny", "autoencoder": e.smoke_ae, "resolution": 64,
                                "patch_size": SMOKE_PATCH[e.patch], "weights": False, "dataset": EMBEDDED_TRAIN,
                                "n_images": 16}})


def _sample_label(e: Entry, guided: bool, seed: int = 0) -> str:
    tag = f"CFG {CFG_SCALE[e.family]}" if guided else "no CFG"
    return f"{e.label} · sample {tag}" + (f" · seed {seed}" if seed else "")


def sample_run(e: Entry, guided: bool, seed: int = 0, released: str | None = None) -> RunRef:
    """The sampling run of ``e`` (guided: the family's CFG scale). Paper scale: the row's own paper-scale training
    run, or the ``released`` checkpoint of that name (--weights); small and smoke: the reduced runs (module
    docstring). Seeds > 0 run at small scale only (the claim rows' arms), seed s on autoencoder seed s. Table 3
    builds its gFID rows with it."""
    train = _train(e, seed)
    scale = CFG_SCALE[e.family] if guided else 1.0
    ref = folder(e.paper_data)
    cfg = (GenerateConfig(released=released, cfg_scale=scale, reference=ref) if released
           else GenerateConfig(model=train.resolve("paper"), cfg_scale=scale, reference=ref))
    not_released = {"released": None} if released else {}
    small = {"model": with_changes(train.resolve("small"), {"seed": seed} if seed else None), **not_released,
             "n_samples": SMALL["n_samples"], "reference": EMBEDDED_TRAIN, "also_vs_reconstructions": True,
             **({"steps": SMALL["dit_steps"]} if e.family == "dit" else {})} if e.small_ae else None
    smoke = {"model": train.resolve("smoke"), **not_released, "n_samples": 4, "reference": EMBEDDED_TRAIN,
             "n_reference": 8, "batch_size": 4} if seed == 0 else None
    return RunRef(cfg, at={"small": small, "smoke": smoke, **({"paper": None} if seed else {})})


def _generate(e: Entry, guided: bool, seed: int = 0) -> Row:
    return Row(_sample_label(e, guided, seed), run=sample_run(e, guided, seed))


def row_note(e: Entry) -> str:
    """What the row runs at small scale, and where its guidance scale comes from."""
    small = (f"small: {e.backbone}-small on {small_design(e)}, {SMALL_TOKENS} tokens, {SMALL['resolution']}-px "
             f"embedded training photos" if e.small_ae else "small: not run")
    return f"{small}; w/ CFG {CFG_SCALE[e.family]}: {CFG_SOURCE[e.family]} (the paper states none)"


def _row(e: Entry) -> Row:
    """The paper's row: our two gFIDs (derived from the two sampling runs) beside the paper's."""
    plain, guided = _sample_label(e, False), _sample_label(e, True)
    return Row(e.label, paper=PaperRef(artifact=ID, backbone=e.paper_backbone, autoencoder=e.paper_ae,
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
    return (f"{a.backbone}-small{kind}: {small_design(a)} beats {small_design(b)} at {SMALL_TOKENS} tokens, "
            f"{SMALL['resolution']}-px embedded training photos, {AGAINST[metric]}; for the paper's {paper}")


def _claims() -> dict[str, tuple[Row, ...]]:
    """Per block, the paper's direction: the deepest autoencoder with patch 1 has the lower gFID than SD-VAE-f8 with
    the largest patch, at equal tokens. Decided at small scale on KID (the unbiased set distance; small-N gFID is not)
    against the training crops, on unguided samples; KID against each autoencoder's reconstructions of them (the
    diffusion model's error without the decoder's floor) is our diagnostic."""
    out = {}
    for backbone, best, base in (("DiT-XL", "SD-VAE-f32", "SD-VAE-f8"), ("UViT-S", "DC-AE-f64", "SD-VAE-f8")):
        a, b = (next(e for e in ENTRIES if e.paper_backbone == backbone and e.paper_ae == ae) for ae in (best, base))
        arm = lambda e: tuple(_BY_LABEL[_sample_label(e, False, s)] for s in range(e.small_seeds))  # noqa: E731
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

SPECS = {"": Spec(
    id=ID,
    title="Table 1: patch size vs autoencoder compression (ImageNet 512x512, gFID)",
    caption="gFID without / with CFG of DiT-XL and UViT-S at equal token count, varying where spatial compression "
            "happens (patch embedding vs autoencoder). CFG scales (the paper states none for Table 1): " + "; ".join(
                f"{k} {CFG_SCALE[k]}, {CFG_SOURCE[k]}" for k in CFG_SCALE) + ".",
    columns=(Column("fid_no_cfg", "gFID w/o CFG", True, ".3g"), Column("fid_cfg", "gFID w/ CFG", True, ".3g"),
             Column("gfid", "gFID of this sampling run", True, ".3g"), Column("kid", "KID", True, ".3g"),
             Column("gfid_vs_recon", "gFID vs AE reconstructions", True, ".3g"),
             Column("kid_vs_recon", "KID vs AE reconstructions", True, ".3g"),
             Column("images_per_s", "samples/s", False, ".3g")) + CLAIM_COLUMNS,
    rows=ROWS + RUNS + CLAIMS,
    scales={"smoke": "tiny backbones on tiny untrained autoencoders at 64 px, 2 training steps, 4 samples scored "
                     "against 8 embedded crops; a pipeline check, never a result",
            "small": "128 px embedded crops, 16 tokens per block (UViT patches halved; DC-AE-f64 p1 -> DC-AE-f32 "
                     "p1), Table 2's plateau-trained reduced autoencoders (diffusion seed s on autoencoder seed s) "
                     "and hidden-128 depth-6 backbones "
                     f"({_DIFF['steps']} steps at batch {_DIFF['batch']}), {SMALL['n_samples']} samples (DiT: 50 "
                     "IDDPM steps) scored by gFID / KID vs the embedded training crops and vs the "
                     f"autoencoder's reconstructions; {CLAIM_SEEDS} diffusion seeds per claim arm; small-N gFID is biased "
                     "(N < 2048): read KID",
            "paper": "ImageNet-train 512 px (--data), official recipes, 50k samples vs ImageNet-train statistics, "
                     "GPUs; SD-VAE-f16/f32 are unreleased (stacked stand-ins, channels assumed)"},
    deviations=("CFG scales of Table 1 are not stated. U-ViT rows: 1.5, the official U-ViT scale. DiT-XL rows: 1.3 "
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
                f"are scored on {SMALL['n_samples']} samples: the CPU budget of the whole small scale.",
                f"Small scale: claims are decided on KID (unbiased at any N), not gFID, over {CLAIM_SEEDS} "
                "training seeds per arm, diffusion seed s trained on autoencoder seed s; the latents are scaled to "
                "unit RMS (the reduced autoencoders have no fitted scaling factor) and are the reduced SD-VAEs' "
                "posterior means (their variance head is never trained; a released SD-VAE's latents are one "
                "posterior sample, as the official script)."),
)}
