"""Write tests/data/dc_ae_released_keys.json: the key / shape / dtype manifest of each released DC-AE checkpoint.

Derived from an independent definition of the official architecture: diffusers' ``AutoencoderDC`` built from the
released configs (``models.checkpoints.diffusers_dc_kwargs``, checked against the hub ``config.json`` fields in
reference/autoencoders.md) on the meta device, its keys converted to the efficientvit layout that the hub
``model.safetensors`` files use. The CPU paper-path test builds official-layout checkpoints from it, and a test
checks that our modules have exactly these keys and shapes. Run once per diffusers upgrade::

    .venv/bin/python scripts/make_dcae_manifest.py
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderDC

from models import checkpoints, zoo

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "dc_ae_released_keys.json"
RELEASED = [name for name in zoo.REGISTRY if name.startswith("dc-ae-") and name.endswith("-1.0")]


def manifest(name: str) -> dict[str, list]:
    config = zoo.get_config(name)
    with torch.device("meta"):
        reference = AutoencoderDC(**checkpoints.diffusers_dc_kwargs(config))
    state = checkpoints.convert_diffusers_dc_to_ours(reference.state_dict(), config)
    return {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sorted(state.items())}


def main() -> None:
    out = {"source": "diffusers.AutoencoderDC (meta device) -> efficientvit layout; scripts/make_dcae_manifest.py",
           "models": {name: manifest(name) for name in RELEASED}}
    OUT.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUT}: {', '.join(f'{n} ({len(k)} keys)' for n, k in out['models'].items())}")


if __name__ == "__main__":
    main()
