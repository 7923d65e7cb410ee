"""Autoencoders (DC-AE, SD-VAE), diffusion backbones, and their registries; see docs/design.md "Models contract".

`build(name, **overrides)`, `list_models()`, `models_table()`, `load_pretrained(name, path)`, `save(model, path)`,
`load(path)` for autoencoders (`models/zoo.py`, `models/checkpoints.py`); `build_backbone(...)` for the diffusion
backbones (`models/backbones.py`, imported on first use). Nothing here imports diffusers (it is only a test oracle).
"""

from models.checkpoints import load, load_pretrained, save
from models.zoo import ModelInfo, build, list_models, models_table


def build_backbone(name: str, latent_channels: int, latent_size: int, patch_size: int, **overrides):
    """Diffusion backbone `name` (uvit-s, dit-xl, ...) for a latent of `latent_channels x latent_size^2`."""
    from models.backbones import build_backbone as _build_backbone  # lazy: autoencoder users skip the backbones

    return _build_backbone(name, latent_channels, latent_size, patch_size, **overrides)


__all__ = ["ModelInfo", "build", "build_backbone", "list_models", "load", "load_pretrained", "models_table", "save"]
