"""The training skeleton every loop of this harness shares (the autoencoder phases and the diffusion recipes): where
a call runs (``Placement``: ranks, device, the batch split over ranks and micro-batches, DDP wrapping, bf16 autocast on
GPU), the step loop with its checkpoints, progress bar and ETA lines (``run_steps``), one optimiser step's
accumulation over micro-batches with the NaN stop all ranks agree on (``accumulate``), the resumable state
(``save_state`` / ``saved_state`` / ``restore_training_state``: recipe fingerprint, RNG streams of every rank), the
warm-up schedule and the seeded data order. Each trainer supplies its micro-batch forward/backward, its optimiser
step and its final weights; both loops' resume, DDP and bit-identical-restart tests rest on these."""
from __future__ import annotations

import dataclasses
import hashlib
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save as safetensors_bytes
from torch import nn
from tqdm import tqdm

from models import distributed
from models.io import atomic_torch_save, atomic_write_bytes

TRAIN_STATE = "train_state.pt"  # the resumable checkpoint, in the phase's checkpoint folder
FINAL_MODEL = "model.safetensors"


class TrainingDiverged(RuntimeError):
    """A NaN/inf loss: the run stopped before the optimiser step; the last good checkpoint is untouched."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one training call runs; each trainer's fixed facts of a call extend it."""

    device: torch.device
    rank: int                                   # this process (0 without torchrun)
    world: int                                  # processes (1 without torchrun)
    micro: int                                  # samples per rank and micro-batch: batch / (world * grad_accum)
    ckpt_dir: Path | None                       # train_state.pt and model.safetensors go here; None = no files
    log: Callable[[str], None]                  # rank 0's progress lines (the other ranks are silent)

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def state_path(self) -> Path | None:
        return self.ckpt_dir / TRAIN_STATE if self.ckpt_dir is not None else None

    def autocast(self):
        """bf16 autocast on GPU; plain fp32 on CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()

    def wrap(self, module: nn.Module | None) -> nn.Module | None:
        """What the forward runs through: DistributedDataParallel under torchrun (after the restore: DDP broadcasts
        rank 0's weights), else the module itself."""
        return nn.parallel.DistributedDataParallel(module) if self.ddp and module is not None else module


P = TypeVar("P", bound=Placement)


def placed(cls: type[P], device, batch: int, grad_accum: int, ckpt_dir, log: Callable[[str], None], what: str = "",
           **fields: Any) -> P:
    """``cls`` for this process: its rank and world (the process group is set up under torchrun; a CUDA device
    becomes this rank's ``cuda:LOCAL_RANK``), the batch split, and the trainer's own ``fields``."""
    rank, world, device = distributed.init_distributed(str(device))
    return cls(device=torch.device(device), rank=rank, world=world, micro=split_batch(batch, world, grad_accum, what),
               ckpt_dir=Path(ckpt_dir) if ckpt_dir is not None else None,
               log=log if rank == 0 else (lambda msg: None), **fields)


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


def save_state(run: Placement, s: Any, step: int, **extra: Any) -> None:
    """Write ``train_state.pt`` (rank 0, atomically): ``s``'s model, optimiser, schedule and EMA, every rank's RNG
    state, and the trainer's ``extra`` entries (what a resumed run must match, e.g. the recipe's fingerprint, and
    what else it restores, e.g. a discriminator)."""
    if run.state_path is None:
        return
    rngs = gathered_rng_states(run.ddp, run.world)
    if run.rank == 0:
        common = {"step": step, "world": run.world, "model": s.model.state_dict(), "opt": s.opt.state_dict(),
                  "sched": s.sched.state_dict(), "ema": s.ema, "rng": rngs}
        assert not common.keys() & extra.keys(), f"train_state.pt entries named twice: {common.keys() & extra.keys()}"
        atomic_torch_save({**extra, **common}, run.state_path)


def saved_state(run: Placement, key: str, fingerprint: dict, what: str) -> dict | None:
    """The ``train_state.pt`` to resume from (None when there is none); a one-line ValueError when another ``what``
    wrote it (its ``key`` differs from ``fingerprint``)."""
    path = run.state_path
    if path is None or not path.exists():
        return None
    # map_location="cpu": torch.set_rng_state needs the saved CPU ByteTensors where they were; load_state_dict
    # moves model and optimiser tensors to the parameters' device itself.
    state = torch.load(path, map_location="cpu", weights_only=False)
    check_resumable(state[key], fingerprint, path, what)
    return state


def restore_training_state(run: Placement, s: Any, state: dict, name: str) -> int:
    """Load what ``save_state`` wrote into ``s`` (model, optimiser, scheduler, EMA) and, when the world size is the
    same, this rank's RNG streams (another world size: the data order still matches, the RNG streams cannot);
    returns the step to continue from."""
    s.model.load_state_dict(state["model"])
    s.opt.load_state_dict(state["opt"])
    s.sched.load_state_dict(state["sched"])
    if s.ema is not None:
        s.ema = {k: v.to(run.device) for k, v in state["ema"].items()}
    if state["world"] == run.world:
        set_rng_state(state["rng"][run.rank])
    run.log(f"{name}: resumed from {run.state_path} at step {state['step']}")
    return state["step"]


def accumulate(run: Placement, grad_accum: int, micro_step: Callable[[int, bool], tuple[dict[str, float], bool]],
               diverged: Callable[[dict[str, float]], Exception]) -> dict[str, float]:
    """The forward/backward passes of one optimiser step: ``grad_accum`` micro-batches of this rank's share.
    ``micro_step(lo, sync)`` runs the micro-batch at position ``lo`` of the step's sample plan (``sync``: DDP
    all-reduces its gradients, the last one) and returns its share of each loss and whether they were finite. All
    ranks agree on the NaN stop: ``diverged(losses)`` is raised before any optimiser step. Returns the step's losses
    (the mean over ranks)."""
    sums: dict[str, float] = {}
    finite = True
    for m in range(grad_accum):
        part, ok = micro_step((m * run.world + run.rank) * run.micro, m == grad_accum - 1 or not run.ddp)
        for k, v in part.items():
            sums[k] = sums.get(k, 0.0) + v
        finite = finite and ok
    if run.ddp:
        t = torch.tensor([*sums.values(), 0.0 if finite else 1.0], device=run.device, dtype=torch.float64)
        dist.all_reduce(t)
        sums, finite = {k: t[i].item() / run.world for i, k in enumerate(sums)}, t[-1].item() == 0.0
    if not finite:
        raise diverged(sums)
    return sums


def seconds_per_step(times: list[float]) -> float:
    """Mean wall time per step, the first (warm-up) step left out when there are others; 0 when none ran."""
    timed = times[1:] if len(times) > 1 else times
    return sum(timed) / len(timed) if timed else 0.0


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


def save_bare_state_dict(tensors: dict[str, torch.Tensor], path: Path, **meta: str) -> None:
    """Final weights as a plain safetensors state dict (metadata ``format: bare-state-dict`` and ``meta``),
    atomically."""
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, safetensors_bytes(cpu, metadata={"format": "bare-state-dict", **meta}))


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
