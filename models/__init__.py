"""Autoencoders (DC-AE, SD-VAE) and their registry; see docs/design.md "Models contract".

`build(name, **overrides)`, `list_models()`, `load_pretrained(name, path)`, `save(model, path)`, `load(path)`.
Nothing here imports diffusers (it is only a test oracle).
"""

from models.checkpoints import load, load_pretrained, save
from models.zoo import ModelInfo, build, list_models, models_table

__all__ = ["ModelInfo", "build", "list_models", "load", "load_pretrained", "models_table", "save"]
