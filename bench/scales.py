"""The three scales every artefact runs at (STYLE rule 10). A number is never shown without its scale."""
from __future__ import annotations

import os
from dataclasses import dataclass

from bench.errors import UsageError


@dataclass(frozen=True)
class Scale:
    """What a scale changes in how evals behave (its recipes are keyed by ``name`` in bench/configs.py)."""

    name: str
    description: str
    needs_gpu: bool = False      # evals that declare a GPU need (bench/evals) are refused on a CPU
    full_protocol: bool = False  # official weights and named data folders (--weights, --data) are required
    random_init: bool = False    # untrained, seeded models and synthetic inputs may stand in (a pipeline check)

    @property
    def features(self) -> str:
        """The FID feature network of the commands for your own models: a tiny stand-in in a pipeline check."""
        return "tiny" if self.random_init else "inception"

    @property
    def suffix(self) -> str:
        """The end of a table name of your own models: none at the full protocol, else ``-<scale>``."""
        return "" if self.full_protocol else f"-{self.name}"


SMOKE = Scale("smoke", "CI check: tiny configs, a handful of images, 1-2 steps, CPU, seconds. Never a result.",
              random_init=True)
SMALL = Scale("small", "Reduced-scale reproduction on a 2-core CPU: reduced models trained on the embedded offline "
                       "photo set, reduced resolutions, minutes. Reproduces trends, not the paper's absolute numbers.")
PAPER = Scale("paper", "Full protocol: official checkpoints, the paper's datasets and resolutions, GPUs "
                       "(torchrun for many).", needs_gpu=True, full_protocol=True)

SCALES = {s.name: s for s in (SMOKE, SMALL, PAPER)}


SEEDS_ENV = "DCAE_BENCH_SEEDS"  # set by `--seeds N` before any spec module is imported; --jobs workers inherit it
DEFAULT_CLAIM_SEEDS = 3  # the least the verdict rule decides on (bench/stats.py)


def claim_seeds() -> int:
    """Training seeds per small-scale claim arm: 3, or N from ``--seeds N`` (more seeds: narrower intervals, more
    time; fewer than 3: every verdict is inconclusive by rule). Read once, when the spec modules are built."""
    value = os.environ.get(SEEDS_ENV, str(DEFAULT_CLAIM_SEEDS))
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{SEEDS_ENV}={value!r}: give a whole number of seeds >= 1 (e.g. --seeds 5)")
    return int(value)
