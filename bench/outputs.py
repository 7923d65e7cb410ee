"""What one eval hands to the evals that depend on it, typed.

A run's ``metrics.json`` holds its table numbers and, under ``_``-prefixed keys, what it records for provenance and
for the runs that consume it. The consumed part is read back here, once, into frozen dataclasses: an eval that
needs a dependency's latent shape or data set identity calls ``TrainedDiffusion.of(dep.metrics)`` and gets typed
fields, so a renamed key fails in this module's tests, not at run time in another eval. The writers use the same
classes (``to_metrics``), so each key is spelled in one place.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainedDiffusion:
    """What ``train-diffusion`` hands to ``generate``: the backbone's input and its latent scale."""

    latent_shape: tuple[int, int, int]  # (channels, height, width) of one latent
    num_classes: int                    # class labels the backbone was trained on (0: unconditional)
    scaling_factor: float               # latents were multiplied by it before training

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> TrainedDiffusion:
        c, h, w = json.loads(metrics["_latent_shape"])
        return cls((int(c), int(h), int(w)), int(metrics["_num_classes"]), float(metrics["_scaling_factor"]))

    def to_metrics(self) -> dict[str, Any]:
        return {"_num_classes": self.num_classes, "_latent_shape": json.dumps(list(self.latent_shape)),
                "_scaling_factor": self.scaling_factor}


@dataclass(frozen=True)
class ProfiledBackbone:
    """What an ``efficiency`` run hands to the speed-up rows: the FLOPs of the full model and of the one timed."""

    gflops_per_forward: float        # the configured backbone's
    timed_gflops_per_forward: float  # the backbone that ran (a reduced depth at small scale: ``depth``)

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> ProfiledBackbone:
        full = float(metrics["gflops_per_forward"])
        return cls(full, float(metrics.get("_built_gflops_per_forward", full)))


@dataclass(frozen=True)
class TrainedAutoencoder:
    """What ``train-ae`` hands to the runs that evaluate its checkpoint: how far it trained and whether it works."""

    steps: int
    last_phase: str                    # the name of the last phase trained
    trainable_params: int | None       # parameters the last phase trained (None: not recorded)
    frozen_params: int | None          # parameters it kept frozen
    plateau_gain_db: float | None      # the last doubling's held-out PSNR gain (runs trained to a plateau)
    plateau_reached: int | None        # 1 when the plateau rule stopped the run, 0 when the step cap did
    collapsed: bool                    # the plateau probe found outputs that do not follow the inputs

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> TrainedAutoencoder:
        last = json.loads(metrics["_phases"])[-1]["name"]
        return cls(steps=int(metrics["steps"]), last_phase=last,
                   trainable_params=metrics.get(f"{last}_trainable_params"),
                   frozen_params=metrics.get(f"{last}_frozen_params"),
                   plateau_gain_db=metrics.get("plateau_gain_db"), plateau_reached=metrics.get("plateau_reached"),
                   collapsed=metrics.get("collapsed") == 1)

    def summary(self) -> dict[str, Any]:
        """The training columns a reconstruction row shows beside its numbers (absent fields are left out)."""
        out: dict[str, Any] = {"train_steps": self.steps}
        if self.trainable_params is not None and self.frozen_params is not None:
            out["trained_share"] = self.trainable_params / (self.trainable_params + self.frozen_params)
        for k in ("plateau_gain_db", "plateau_reached"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out


@dataclass(frozen=True)
class ScoredImages:
    """What a ``recon`` or ``generate`` run hands to a claim: which images it scored and whether its model works."""

    dataset_id: str | None  # identity of the images scored (recon) or trained on (generate's diffusion data)
    regions_id: str | None  # the source regions behind the images (one id across resolutions of one region set)
    n_images: int           # images (recon) or samples (generate) scored
    collapsed: bool         # recon: the model's outputs do not follow its inputs

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> ScoredImages:
        return cls(metrics.get("_dataset_id"), metrics.get("_regions_id"),
                   int(metrics.get("_n_images", metrics.get("_n_samples", 0))), metrics.get("collapsed") == 1)
