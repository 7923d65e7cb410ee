"""Model registry: autoencoder name -> config, read top to bottom; `build`, `list_models`, `models_table`.

Names follow the released checkpoints (timm-style `arch-tag`, e.g. `dc-ae-f64c128-in-1.0`) plus the reduced
`{dc-ae,sd-vae}-f{f}c{c}-{small,tiny}` variants of the small / smoke scales (docs/design.md, "Models contract").
Each family module exports a variants dict (name -> typed config), the model class, and optionally
`OFFICIAL_PARAMS` (name -> parameter count of the released checkpoint). Family modules are imported lazily, so
that a family file that is missing (or broken) only affects its own names; diffusers is never imported here.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
from dataclasses import dataclass

import torch
from torch import nn

# family -> (module, model class, variants dict). Read top to bottom: one line per autoencoder family.
FAMILIES: dict[str, tuple[str, str, str]] = {
    "dc-ae": ("models.dc_ae", "DCAE", "DC_AE_VARIANTS"),  # DC-AE (paper §3) and its reduced variants
    "sd-vae": ("models.sd_vae", "SDVAE", "SD_VAE_VARIANTS"),  # SD-VAE f8 and the stacked baselines (§3.1)
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


def _family_module(family: str):
    module_name, _, _ = FAMILIES[family]
    return importlib.import_module(module_name)


@functools.cache
def _registry() -> dict[str, tuple[str, object]]:
    """name -> (family, config), over all families whose module imports."""
    names: dict[str, tuple[str, object]] = {}
    for family, (_, _, variants_attr) in FAMILIES.items():
        try:
            module = _family_module(family)
        except ModuleNotFoundError as e:  # a family file not written yet: its names are simply absent
            if e.name != FAMILIES[family][0]:
                raise  # a real import error inside the family module must not be hidden
            continue
        for name, config in getattr(module, variants_attr).items():
            names[name] = (family, config)
    return names


def _lookup(name: str) -> tuple[str, object]:
    registry = _registry()
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else f"known: {', '.join(sorted(registry))}"
        raise ValueError(f"unknown model {name!r}; {hint}")
    return registry[name]


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


def model_class(family: str) -> type[nn.Module]:
    return getattr(_family_module(family), FAMILIES[family][1])


def build(name: str, **overrides) -> nn.Module:
    """Build autoencoder `name` (random init) with config overrides; `model.name` records the registry name.

    Build under `with torch.device("meta"):` to count parameters of the large variants without allocating them.
    """
    family = family_of(name)
    model = model_class(family)(get_config(name, **overrides))
    model.name = name
    return model


def official_params(name: str) -> int | None:
    return getattr(_family_module(family_of(name)), "OFFICIAL_PARAMS", {}).get(name)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def info(name: str) -> ModelInfo:
    """The registry record of `name`; the model is built on the meta device (no memory, no init: ~0.1 s for the
    1.1 B-parameter f128c512), and f, c, s are read from the module (the attributes every autoencoder has)."""
    with torch.device("meta"):
        model = build(name)
    return ModelInfo(
        name=name,
        family=family_of(name),
        params=count_params(model),
        spatial_compression=int(model.spatial_compression),
        latent_channels=int(model.latent_channels),
        scaling_factor=float(model.scaling_factor),
        official_params=official_params(name),
    )


def list_models() -> list[ModelInfo]:
    """One record per registered autoencoder, in registry order (DC-AE released, DC-AE reduced, then SD-VAE)."""
    return [info(name) for name in _registry()]


def models_table(sizes: tuple[int, ...] = (256, 512, 1024)) -> list[dict]:
    """Rows for `python -m bench models`: name, family, params, latent shape `c x h x w` per input size, scaling factor,
    official parameter count (empty where no release exists). A size not divisible by f gets '-'."""
    rows = []
    for rec in list_models():
        f, c = rec.spatial_compression, rec.latent_channels
        row = {"name": rec.name, "family": rec.family, "params": rec.params}
        for size in sizes:
            row[f"latent@{size}"] = f"{c}x{size // f}x{size // f}" if size % f == 0 else "-"
        row["scaling_factor"] = rec.scaling_factor
        row["official_params"] = rec.official_params if rec.official_params is not None else ""
        rows.append(row)
    return rows
