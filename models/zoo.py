"""Model registry: autoencoder name -> config, read top to bottom; `build`, `list_models`, `models_table`.

Names follow the released checkpoints (timm-style `arch-tag`, e.g. `dc-ae-f64c128-in-1.0`) plus the reduced
`{dc-ae,sd-vae}-f{f}c{c}-{small,tiny}` variants of the small / smoke scales (docs/design.md, "Models contract"),
each written out once in its family's variants table (`models/dc_ae.py`, `models/sd_vae.py`). Each family module
exports that table (name -> typed config), the model class, and `OFFICIAL_PARAMS` (name -> parameter count of the
released checkpoint). Nothing here imports diffusers.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from models.dc_ae import DC_AE_VARIANTS, DCAE, DCAEConfig
from models.dc_ae import OFFICIAL_PARAMS as DC_AE_OFFICIAL_PARAMS
from models.sd_vae import OFFICIAL_PARAMS as SD_VAE_OFFICIAL_PARAMS
from models.sd_vae import SD_VAE_VARIANTS, SDVAE, SDVAEConfig


@dataclass(frozen=True)
class Family:
    """One autoencoder family: its module, its config dataclass, its variants and the released parameter counts."""

    model_class: type[nn.Module]
    config_class: type  # the typed config dataclass every variant of the family is an instance of
    variants: Mapping[str, object]  # registry name -> config
    official_params: Mapping[str, int]  # registry name -> parameters of the released checkpoint


# family -> Family. Read top to bottom: one line per autoencoder family.
FAMILIES: dict[str, Family] = {
    "dc-ae": Family(DCAE, DCAEConfig, DC_AE_VARIANTS, DC_AE_OFFICIAL_PARAMS),  # DC-AE (paper §3), reduced variants
    "sd-vae": Family(SDVAE, SDVAEConfig, SD_VAE_VARIANTS, SD_VAE_OFFICIAL_PARAMS),  # SD-VAE f8, stacked (§3.1)
}


@dataclass(frozen=True)
class ModelInfo:
    """One registry record, as listed by `list_models()` and `python -m bench models`."""

    name: str
    family: str
    params: int  # parameters of our module (buffers such as BN running stats excluded)
    spatial_compression: int  # f
    latent_channels: int  # c
    scaling_factor: float
    official_params: int | None  # parameter count of the released checkpoint, where one exists


# name -> (family, config), in registry order: DC-AE released, DC-AE reduced, then SD-VAE.
REGISTRY: dict[str, tuple[str, object]] = {
    name: (family, config) for family, fam in FAMILIES.items() for name, config in fam.variants.items()
}


def _lookup(name: str) -> tuple[str, object]:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else f"known: {', '.join(sorted(REGISTRY))}"
        raise ValueError(f"unknown model {name!r}; {hint}")
    return REGISTRY[name]


def get_config(name: str, **overrides):
    """The typed config of `name` with `overrides` applied (`dataclasses.replace`), e.g. residual_autoencoding=False."""
    _, config = _lookup(name)
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{name}: unknown config field(s) {unknown}; fields are {sorted(fields)}")
    return dataclasses.replace(config, **overrides)


def family_of(name: str) -> str:
    return _lookup(name)[0]


def family_of_model(model: nn.Module) -> str:
    """The family whose model class `model` is an instance of (ValueError for any other module)."""
    for family, fam in FAMILIES.items():
        if isinstance(model, fam.model_class):
            return family
    raise ValueError(f"{type(model).__name__} is not a registry autoencoder ({', '.join(FAMILIES)})")


def build(name: str, **overrides) -> nn.Module:
    """Build autoencoder `name` (random init) with config overrides; `model.name` records the registry name.

    Build under `with torch.device("meta"):` to count parameters of the large variants without allocating them.
    """
    family = family_of(name)
    model = FAMILIES[family].model_class(get_config(name, **overrides))
    model.name = name
    return model


def official_params(name: str) -> int | None:
    return FAMILIES[family_of(name)].official_params.get(name)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def info(name: str) -> ModelInfo:
    """The registry record of `name`; the model is built on the meta device (no memory, no init: ~0.1 s for the
    1.1 B-parameter f128c512), and f, c, s are read from the module (the attributes every autoencoder has)."""
    with torch.device("meta"):
        model = build(name)
    return ModelInfo(name=name, family=family_of(name), params=count_params(model),
                     spatial_compression=int(model.spatial_compression), latent_channels=int(model.latent_channels),
                     scaling_factor=float(model.scaling_factor), official_params=official_params(name))


def list_models() -> list[ModelInfo]:
    """One record per registered autoencoder, in registry order (DC-AE released, DC-AE reduced, then SD-VAE)."""
    return [info(name) for name in REGISTRY]


def models_table(sizes: tuple[int, ...] = (256, 512, 1024)) -> list[dict]:
    """Rows for `python -m bench models`: name, family, params, latent shape `c x h x w` per input size, scaling factor,
    official parameter count (empty where no release exists). A size not divisible by f gets '-'."""
    rows = []
    for rec in list_models():
        f, c = rec.spatial_compression, rec.latent_channels
        rows.append({"name": rec.name, "family": rec.family, "params": rec.params,
                     **{f"latent@{size}": f"{c}x{size // f}x{size // f}" if size % f == 0 else "-" for size in sizes},
                     "scaling_factor": rec.scaling_factor,
                     "official_params": rec.official_params if rec.official_params is not None else ""})
    return rows
