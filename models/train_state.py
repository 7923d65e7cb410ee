"""The parts every training loop of this harness shares (the autoencoder phases and the diffusion recipes): the
checkpoint file names, the divergence stop, the resumable state (recipe fingerprint, RNG streams of every rank,
restore) and the seeded data order. Both loops' resume, DDP and bit-identical-restart tests rest on these."""
from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

TRAIN_STATE = "train_state.pt"  # the resumable checkpoint, in the phase's checkpoint folder
FINAL_MODEL = "model.safetensors"


class TrainingDiverged(RuntimeError):
    """A NaN/inf loss: the run stopped before the optimiser step; the last good checkpoint is untouched."""


def resume_fingerprint(recipe) -> dict:
    """The fields of a training recipe (a frozen dataclass) that a resumed run must share with its checkpoint:
    every field but ``steps`` (may grow) and ``ckpt_every`` (may change); tuples as lists, as they come back."""
    d = dataclasses.asdict(recipe)
    for k in ("steps", "ckpt_every"):
        d.pop(k)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def check_resumable(saved: dict, wanted: dict, path: Path, what: str) -> None:
    """One-line ValueError when a checkpoint was written by another recipe (the differing fields named)."""
    if saved != wanted:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise ValueError(f"{path} was written by a different {what} (fields {diff} differ); use another checkpoint "
                         f"folder or resume=False")


def restore_training_state(s, state: dict, device, world: int, rank: int) -> None:
    """Load what every training loop's ``train_state.pt`` holds into ``s`` (model, optimiser, scheduler, EMA) and,
    when the world size is the same, this rank's RNG streams (another world size: the data order still matches, the
    RNG streams cannot)."""
    s.model.load_state_dict(state["model"])
    s.opt.load_state_dict(state["opt"])
    s.sched.load_state_dict(state["sched"])
    if s.ema is not None:
        s.ema = {k: v.to(device) for k, v in state["ema"].items()}
    if state["world"] == world:
        set_rng_state(state["rng"][rank])


def gathered_rng_states(ddp: bool, world: int) -> list[dict]:
    """Every rank's RNG state (all-gathered under DDP), so that a resumed run continues every rank's streams."""
    if not ddp:
        return [rng_state()]
    rngs: list = [None] * world
    dist.all_gather_object(rngs, rng_state())
    return rngs


def mix_seed(*parts: object) -> int:
    """A 63-bit seed derived from parts (stable across processes and Python versions, unlike hash())."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def sample_plan(seed: int, step: int, batch: int, n: int) -> list[tuple[int, int]]:
    """(dataset index, crop seed) of the ``batch`` samples of optimiser step ``step``: epochs of seeded permutations."""
    plan = []
    perm_cache: dict[int, torch.Tensor] = {}
    for k in range(batch):
        p = step * batch + k  # position in the run's sample stream
        epoch = p // n
        if epoch not in perm_cache:
            perm_cache[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, "epoch", epoch)))
        plan.append((int(perm_cache[epoch][p % n]), mix_seed(seed, "crop", p)))
    return plan


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def eta(per_step_s: float, steps_left: int) -> str:
    """Time left at this pace, as ``m:ss`` (hours in minutes): the ETA of a training progress line."""
    left = round(per_step_s * max(steps_left, 0))
    return f"{left // 60}:{left % 60:02d}"
