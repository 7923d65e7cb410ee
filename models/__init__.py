"""Autoencoders (DC-AE, SD-VAE), diffusion backbones, and their registries; the public names below are those of
docs/design.md "Models contract". Nothing here imports diffusers (it is only a test oracle).

The package imports lazily (PEP 562 module `__getattr__`): `import models.io` or `import models.distributed` does
not load torch, which the light CLI commands (`python -m bench ls`, `check`) rely on. The first use of a public
name imports the module that defines it; `models.<submodule>` (e.g. `models.zoo`) works the same way.
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    "build": "models.zoo",
    "list_models": "models.zoo",
    "models_table": "models.zoo",
    "ModelInfo": "models.zoo",
    "load": "models.checkpoints",
    "load_pretrained": "models.checkpoints",
    "save": "models.checkpoints",
    "build_backbone": "models.backbones",
}

__all__ = ["ModelInfo", "build", "build_backbone", "list_models", "load", "load_pretrained", "models_table", "save"]


def __getattr__(name: str):
    if name.startswith("__"):  # dunder probes (copy, pickle, pytest) are never submodules
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    try:  # `import models; models.zoo.get_config(...)`: a submodule not imported yet
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise  # a real import error inside the submodule must not be hidden
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
