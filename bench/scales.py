"""The three scales every artefact runs at (STYLE rule 10). A number is never shown without its scale."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    name: str
    description: str
    needs_gpu: bool = False


SMOKE = Scale("smoke", "CI check: tiny configs, a handful of images, 1-2 steps, CPU, seconds. Never a result.")
SMALL = Scale("small", "Reduced-scale reproduction on a 2-core CPU: reduced models trained on the embedded offline "
                       "photo set, reduced resolutions, minutes. Reproduces trends, not the paper's absolute numbers.")
PAPER = Scale("paper", "Full protocol: official checkpoints, the paper's datasets and resolutions, GPUs "
                       "(torchrun for many).", needs_gpu=True)

SCALES = {s.name: s for s in (SMOKE, SMALL, PAPER)}
