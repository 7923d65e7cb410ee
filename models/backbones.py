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
from typing import Any

import torch
from torch import nn

from models.dit import DIT_CONFIGS, DiT
from models.pixart import PIXART_CONFIGS, PixArtAlpha
from models.uvit import UVIT_CONFIGS, UViT


@dataclass(frozen=True)
class BackboneInfo:
    name: str          # registry name, e.g. "uvit-h"
    paper_name: str    # the paper's name, e.g. "UViT-H"
    family: str        # "uvit" | "dit" | "pixart": picks the module and the conditioning input
    config: Any        # the family's config dataclass, latent fields at their defaults


_FAMILIES = {"uvit": UViT, "dit": DiT, "pixart": PixArtAlpha}

BACKBONES: dict[str, BackboneInfo] = {
    info.name: info for info in (
        BackboneInfo("uvit-s", "UViT-S", "uvit", UVIT_CONFIGS["UViT-S"]),
        BackboneInfo("uvit-h", "UViT-H", "uvit", UVIT_CONFIGS["UViT-H"]),
        BackboneInfo("uvit-2b", "UViT-2B", "uvit", UVIT_CONFIGS["UViT-2B"]),
        BackboneInfo("dit-s", "DiT-S", "dit", DIT_CONFIGS["DiT-S"]),
        BackboneInfo("dit-xl", "DiT-XL", "dit", DIT_CONFIGS["DiT-XL"]),
        BackboneInfo("pixart-alpha", "PixArt-α", "pixart", PIXART_CONFIGS["PixArt-α"]),
        # Tiny variants: same code path, hidden size 32, for tests and `--scale smoke`.
        BackboneInfo("uvit-s-tiny", "UViT-S (tiny)", "uvit", UVIT_CONFIGS["UViT-tiny"]),
        BackboneInfo("uvit-h-tiny", "UViT-H (tiny)", "uvit", UVIT_CONFIGS["UViT-tiny"]),
        BackboneInfo("uvit-2b-tiny", "UViT-2B (tiny)", "uvit", UVIT_CONFIGS["UViT-tiny"]),
        BackboneInfo("dit-s-tiny", "DiT-S (tiny)", "dit", DIT_CONFIGS["DiT-tiny"]),
        BackboneInfo("dit-xl-tiny", "DiT-XL (tiny)", "dit", DIT_CONFIGS["DiT-tiny"]),
        BackboneInfo("pixart-alpha-tiny", "PixArt-α (tiny)", "pixart", PIXART_CONFIGS["PixArt-α-tiny"]),
    )
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
    return _FAMILIES[BACKBONES[name].family](cfg)


def family_of(model: nn.Module) -> str:
    return next(fam for fam, cls in _FAMILIES.items() if isinstance(model, cls))


def random_inputs(model: nn.Module, batch: int, device: str | torch.device = "cpu",
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random (x, t, condition) for one forward: class labels for UViT/DiT, T5-like caption features for PixArt.

    This is what the efficiency protocol times (efficiency.md §3: random latents, t and y; no autoencoder, no text
    encoder). Timesteps are integers in [0, 1000).
    """
    cfg = model.config
    x = torch.randn(batch, cfg.in_channels, cfg.input_size, cfg.input_size, device=device, generator=generator)
    t = torch.randint(0, 1000, (batch,), device=device, generator=generator)
    if family_of(model) == "pixart":
        cond = torch.randn(batch, cfg.text_tokens, cfg.caption_channels, device=device, generator=generator)
    else:
        cond = torch.randint(0, cfg.num_classes, (batch,), device=device, generator=generator)
    return x, t, cond


def trainable_params(model: nn.Module) -> int:
    """"Params" as the paper counts them: trainable parameters only (fixed pos-embed and null caption are buffers)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
