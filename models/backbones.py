"""Registry of the diffusion backbones DC-AE is evaluated with (arXiv 2410.10733 §4.1, Tables 1, 3, 4, 5).

One short entry per variant (timm style), read top to bottom. A backbone is built for a latent shape and a patch
size, because its patch embedding, head and token count depend on the autoencoder it sits on::

    build_backbone("uvit-h", latent_channels=128, latent_size=8, patch_size=1)   # UViT-H on DC-AE-f64c128, 512 px
    build_backbone("dit-xl", 4, 64, 2, activation_checkpointing=True)            # DiT-XL on SD-VAE-f8, 512 px

``-tiny`` names (hidden size 32, 2-3 blocks) keep the family's code path for tests and smoke runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from models.dit import DIT_CONFIGS, DiT
from models.pixart import PIXART_CONFIGS, PixArtAlpha
from models.uvit import UVIT_CONFIGS, UViT


FamilyName = Literal["uvit", "dit", "pixart"]


@dataclass(frozen=True)
class Family:
    """What a backbone family decides, in one place: its module, its condition, and its formulation's official
    sampler (the training recipe of each is ``models.train_diffusion.RECIPES[name]``)."""

    name: FamilyName
    module: type[nn.Module]
    text_to_image: bool    # conditioned on caption features (PixArt-α), else on class labels
    sampler: str           # "dpm-solver++" (U-ViT: continuous-time ε model) or "iddpm" (learned variance)
    sampler_steps: int     # the official step count: NFE 30 (U-ViT), 250 respaced steps (DiT)


# PixArt-α's sampler for Table 5 is not in the reference: its IDDPM training formulation's own
BACKBONE_FAMILIES: dict[str, Family] = {f.name: f for f in (Family("uvit", UViT, False, "dpm-solver++", 30),
                                                   Family("dit", DiT, False, "iddpm", 250),
                                                   Family("pixart", PixArtAlpha, True, "iddpm", 250))}


@dataclass(frozen=True)
class BackboneInfo:
    name: str          # registry name, e.g. "uvit-h"
    paper_name: str    # the paper's name, e.g. "UViT-H"
    family: FamilyName  # key of BACKBONE_FAMILIES: the module, the conditioning input, the sampler
    config: Any        # the family's config dataclass, latent fields at their defaults

BACKBONES: dict[str, BackboneInfo] = {
    info.name: info for info in (
        BackboneInfo("uvit-s", "UViT-S", "uvit", UVIT_CONFIGS["UViT-S"]),
        BackboneInfo("uvit-h", "UViT-H", "uvit", UVIT_CONFIGS["UViT-H"]),
        BackboneInfo("uvit-2b", "UViT-2B", "uvit", UVIT_CONFIGS["UViT-2B"]),
        BackboneInfo("dit-s", "DiT-S", "dit", DIT_CONFIGS["DiT-S"]),
        BackboneInfo("dit-xl", "DiT-XL", "dit", DIT_CONFIGS["DiT-XL"]),
        BackboneInfo("pixart-alpha", "PixArt-α", "pixart", PIXART_CONFIGS["PixArt-α"]),
        # Small variants (hidden 128, depth 6, 4 heads): the `small` scale's reduced backbones (generation.md §6).
        BackboneInfo("uvit-s-small", "UViT-S (small)", "uvit", UVIT_CONFIGS["UViT-small"]),
        BackboneInfo("dit-xl-small", "DiT-XL (small)", "dit", DIT_CONFIGS["DiT-small"]),
        BackboneInfo("dit-s-small", "DiT-S (small)", "dit", DIT_CONFIGS["DiT-small"]),
        # Tiny variants: same code path, hidden size 32, for tests and `--scale smoke`.
        BackboneInfo("uvit-s-tiny", "UViT-S (tiny)", "uvit", UVIT_CONFIGS["UViT-tiny"]),
        BackboneInfo("uvit-h-tiny", "UViT-H (tiny)", "uvit", UVIT_CONFIGS["UViT-tiny"]),
        BackboneInfo("uvit-2b-tiny", "UViT-2B (tiny)", "uvit", UVIT_CONFIGS["UViT-tiny"]),
        BackboneInfo("dit-s-tiny", "DiT-S (tiny)", "dit", DIT_CONFIGS["DiT-tiny"]),
        BackboneInfo("dit-xl-tiny", "DiT-XL (tiny)", "dit", DIT_CONFIGS["DiT-tiny"]),
        BackboneInfo("pixart-alpha-tiny", "PixArt-α (tiny)", "pixart", PIXART_CONFIGS["PixArt-α-tiny"]),
    )
}


# (backbone, latent channels, latent side, patch) -> trainable parameters in M of the official models, as the EV README
# prints them (reference/backbones.md §6, its "Extra" line included): what `python -m bench models` and the tests compare to.
REFERENCE_PARAMS_M: dict[tuple[str, int, int, int], float] = {
    ("dit-xl", 4, 64, 4): 675.00, ("dit-xl", 16, 32, 2): 675.00, ("dit-xl", 64, 16, 1): 675.00,
    ("uvit-s", 4, 64, 8): 44.92, ("uvit-s", 16, 32, 4): 44.92, ("uvit-s", 64, 16, 2): 44.92,
    ("uvit-s", 128, 8, 1): 44.79, ("uvit-s", 16, 64, 2): 45.21, ("uvit-s", 4, 64, 2): 45.17,
    ("uvit-s", 16, 32, 2): 44.82, ("uvit-s", 64, 16, 1): 44.82, ("uvit-s", 32, 16, 1): 44.79,
    ("dit-xl", 4, 64, 2): 674.83, ("dit-xl", 32, 16, 1): 674.89,
    ("uvit-h", 4, 64, 2): 501.72, ("uvit-h", 32, 16, 1): 500.87, ("uvit-h", 128, 8, 1): 500.87,
    ("dit-s", 4, 128, 2): 32.87, ("dit-s", 4, 128, 4): 32.92, ("dit-s", 32, 32, 1): 32.88, ("dit-s", 128, 16, 1): 32.99,
    ("dit-s", 4, 256, 4): 32.92, ("dit-s", 128, 32, 1): 32.99,
    ("pixart-alpha", 4, 64, 2): 610.86, ("pixart-alpha", 32, 16, 1): 610.91,
    # Extra rows (not paper tables)
    ("uvit-2b", 4, 64, 2): 1581.90, ("uvit-2b", 32, 16, 1): 1580.40, ("uvit-2b", 128, 8, 1): 1580.40,
    ("dit-xl", 128, 8, 1): 675.22,
}


def list_backbones() -> list[str]:
    return list(BACKBONES)


def backbone_config(name: str, latent_channels: int, latent_size: int, patch_size: int, **overrides: Any) -> Any:
    """The config dataclass of ``name`` for a latent (C, H=W) and patch size, with field ``overrides`` applied."""
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    cfg = BACKBONES[name].config
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cfg)}
    if unknown:
        raise TypeError(f"{name}: unknown config fields {sorted(unknown)}")
    return dataclasses.replace(cfg, in_channels=latent_channels, input_size=latent_size, patch_size=patch_size,
                               **overrides)


def build_backbone(name: str, latent_channels: int, latent_size: int, patch_size: int, **overrides: Any) -> nn.Module:
    """Build backbone ``name`` on the current default device (use ``torch.device("meta")`` to count big models)."""
    cfg = backbone_config(name, latent_channels, latent_size, patch_size, **overrides)
    return BACKBONE_FAMILIES[BACKBONES[name].family].module(cfg)


def family_of(model: nn.Module) -> Family:
    return next(fam for fam in BACKBONE_FAMILIES.values() if isinstance(model, fam.module))


def random_inputs(model: nn.Module, batch: int, device: str | torch.device = "cpu",
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (x, t, condition) for one forward: class labels for UViT/DiT, T5-like caption features for PixArt.

    This is what the efficiency protocol times (efficiency.md §3: random latents, t and y; no autoencoder, no text
    encoder). Timesteps are integers in [0, 1000).
    """
    cfg = model.config
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, device=device, generator=generator)
    t = torch.randint(0, 1000, (batch,), device=device, generator=generator)
    if family_of(model).text_to_image:
        cond = torch.randn(batch, cfg.text_tokens, cfg.caption_channels, device=device, generator=generator)
    else:
        cond = torch.randint(0, cfg.num_classes, (batch,), device=device, generator=generator)
    return x, t, cond


def trainable_params(model: nn.Module) -> int:
    """"Params" as the paper counts them: trainable parameters only (fixed pos-embed and null caption are buffers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def backbone_table() -> list[dict]:
    """Rows for `python -m bench models`: each reference configuration, our trainable parameters beside the official
    count (built on the meta device: no memory)."""
    rows = []
    for (name, c, s, p), official in REFERENCE_PARAMS_M.items():
        with torch.device("meta"):
            model = build_backbone(name, c, s, p)
        rows.append({"backbone": BACKBONES[name].paper_name, "latent": f"{c}x{s}x{s}", "patch": p,
                     "tokens": (s // p) ** 2, "params_m": round(trainable_params(model) / 1e6, 2),
                     "official_params_m": official})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Released DC-AE latent-diffusion checkpoints (HF `mit-han-lab/<name>`), loaded by models.checkpoints
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleasedDiffusion:
    """One officially released class-conditional ImageNet model: which backbone on which autoencoder, and how the
    efficientvit README evaluates it. Names and autoencoders from efficientvit `diffusion_model_zoo.py` @ de7d773
    (reference/generation.md §4)."""

    name: str              # released name, e.g. "dc-ae-f32c32-in-1.0-uvit-s-in-512px" (= the HF repository name)
    backbone: str          # BACKBONES key, e.g. "uvit-s"
    autoencoder: str       # models.zoo name of the DC-AE whose (scaled) latents it was trained on
    latent_channels: int   # c of that autoencoder
    latent_size: int       # latent side at `resolution`: 512 / f
    cfg_scale: float       # classifier-free guidance scale of the README's "with cfg" FID (1.3 only for DiT-XL bs256)
    paper: str             # where the paper (or, for later releases, only the README) reports it; the numbers
                           # themselves live in paper_numbers.csv / the reference, never here
    patch_size: int = 1    # DC-AE latents are never patchified further (§4.3)
    num_classes: int = 1000  # ImageNet; the embedding table has one more row, the CFG null label 1000
    resolution: int = 512  # image side the model generates


_F32 = {"autoencoder": "dc-ae-f32c32-in-1.0", "latent_channels": 32, "latent_size": 16}   # 512 px / 32
_F64 = {"autoencoder": "dc-ae-f64c128-in-1.0", "latent_channels": 128, "latent_size": 8}  # 512 px / 64

RELEASED_DIFFUSION: dict[str, ReleasedDiffusion] = {
    r.name: r for r in (
        ReleasedDiffusion("dc-ae-f32c32-in-1.0-uvit-s-in-512px", "uvit-s", **_F32, cfg_scale=1.5,
                          paper="Table 3, UViT-S DC-AE-f32 p1"),
        ReleasedDiffusion("dc-ae-f32c32-in-1.0-dit-xl-in-512px", "dit-xl", **_F32, cfg_scale=1.3,
                          paper="Table 3, DiT-XL DC-AE-f32 p1"),
        ReleasedDiffusion("dc-ae-f32c32-in-1.0-dit-xl-in-512px-trainbs1024", "dit-xl", **_F32, cfg_scale=1.5,
                          paper="not in the paper (README: batch 1024, lr 2e-4)"),
        ReleasedDiffusion("dc-ae-f32c32-in-1.0-uvit-h-in-512px", "uvit-h", **_F32, cfg_scale=1.5,
                          paper="Table 3, UViT-H DC-AE-f32 p1"),
        ReleasedDiffusion("dc-ae-f64c128-in-1.0-uvit-h-in-512px", "uvit-h", **_F64, cfg_scale=1.5,
                          paper="Table 3, UViT-H DC-AE-f64 p1"),
        ReleasedDiffusion("dc-ae-f64c128-in-1.0-uvit-h-in-512px-train2000k", "uvit-h", **_F64, cfg_scale=1.5,
                          paper="Table 3, UViT-H DC-AE-f64 p1 † (2,000k steps)"),
        # UViT-2B: later releases, README only (not a paper table row).
        ReleasedDiffusion("dc-ae-f32c32-in-1.0-uvit-2b-in-512px", "uvit-2b", **_F32, cfg_scale=1.5,
                          paper="not in the paper (efficientvit README only)"),
        ReleasedDiffusion("dc-ae-f64c128-in-1.0-uvit-2b-in-512px", "uvit-2b", **_F64, cfg_scale=1.5,
                          paper="not in the paper (efficientvit README only)"),
        ReleasedDiffusion("dc-ae-f64c128-in-1.0-uvit-2b-in-512px-train2000k", "uvit-2b", **_F64, cfg_scale=1.5,
                          paper="not in the paper (efficientvit README only, 2,000k steps)"),
    )
}

# Released but not loadable here: flow-matching U-ViTs (velocity prediction, ODE sampler), which this project does
# not implement. Named so that asking for one gives that reason instead of a list of close names.
UNSUPPORTED_RELEASED_DIFFUSION: dict[str, str] = {
    "dc-ae-f32c32-in-1.0-usit-h-in-512px": "USiT-H is a flow-matching (SiT) model; this project has no SiT sampler",
    "dc-ae-f32c32-in-1.0-usit-2b-in-512px": "USiT-2B is a flow-matching (SiT) model; this project has no SiT sampler",
}
