"""The training skeleton every loop of this harness shares (the autoencoder phases and the diffusion recipes): the
step loop with its checkpoints, progress bar and ETA lines (``run_steps``), the batch split over ranks and
micro-batches, the warm-up schedule, bf16 autocast on GPU, the checkpoint file names, the divergence stop, the
resumable state (recipe fingerprint, RNG streams of every rank, restore) and the seeded data order. Each trainer
supplies its optimiser step; both loops' resume, DDP and bit-identical-restart tests rest on these."""
from __future__ import annotations

import dataclasses
import hashlib
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

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


def split_batch(batch: int, world: int, grad_accum: int, what: str) -> int:
    """Samples per rank and micro-batch: ``batch / (world * grad_accum)``, which must be whole."""
    micro = batch // (world * grad_accum)
    if micro * world * grad_accum != batch:
        raise ValueError(f"{what}batch {batch} is not divisible by world size {world} x grad_accum {grad_accum}; "
                         f"change the batch or the process count")
    return micro


def warmup_schedule(opt: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then constant: factor (s + 1) / warmup_steps at step s (0-based) during the warm-up."""
    def warm(s: int) -> float:
        return min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return torch.optim.lr_scheduler.LambdaLR(opt, warm)


def autocast(device: torch.device):
    """bf16 autocast on GPU; plain fp32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def last_good_checkpoint(path: Path | None) -> str:
    """What a divergence message names as the checkpoint to go back to."""
    if path is None or not path.exists():
        return "none written yet"
    return f"{path} (step {torch.load(path, map_location='cpu', weights_only=False)['step']})"


def run_steps(start: int, stop: int, total: int, ckpt_every: int, step: Callable[[int], Any],
              save: Callable[[int], None], report: Callable[[int, list, float], str], log: Callable[[str], None],
              *, name: str = "", bar: bool = False) -> tuple[list, list[float]]:
    """Optimiser steps ``start .. stop - 1`` of ``total``: ``step(i)`` returns what the history keeps; every
    ``ckpt_every`` steps and at ``stop``, ``save(done)`` writes the checkpoint and ``log`` gets the progress line
    ``report(done, the history since the last one, seconds per step)`` with the ETA. ``bar``: a tqdm bar on a
    terminal (logs get the lines only). Returns (history, seconds of each step)."""
    history: list = []
    times: list[float] = []
    steps = tqdm(range(start, stop), initial=start, total=total, desc=name, leave=False,
                 disable=not bar or not sys.stderr.isatty())
    for i in steps:
        t0 = time.perf_counter()
        history.append(step(i))
        times.append(time.perf_counter() - t0)
        if (i + 1) % ckpt_every == 0 or i + 1 == stop:
            save(i + 1)
            recent = times[-ckpt_every:]
            per_step = sum(recent) / len(recent)
            log(f"{report(i + 1, history[-ckpt_every:], per_step)}, ETA {eta(per_step, stop - i - 1)}")
    steps.close()
    return history, times
