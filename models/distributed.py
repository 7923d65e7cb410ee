"""Ranks, world size and process-group set-up, shared by training, evaluation and generation.

Under `torchrun --nproc_per_node=K` every process gets RANK, WORLD_SIZE and LOCAL_RANK in its environment; a plain
`python` process has none of them and is rank 0 of a world of 1. Once a process group is initialised (by
`init_distributed`, or by a caller such as the DDP test that passes rank and world size to `init_process_group`
itself) torch.distributed is the authority; before that, the environment variables are.

Torch-free at import, like `models.io`: `is_main_process()` decides which rank writes run files in the harness,
including its light CLI commands. A process that never imported torch cannot have a process group, so the group is
looked up in `sys.modules` instead of importing torch.distributed.
"""

from __future__ import annotations

import os
import sys


def _group():
    """`torch.distributed` when a process group is initialised in this process, else None."""
    dist = sys.modules.get("torch.distributed")  # not imported: no process group can exist
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def rank() -> int:
    """Global rank of this process (0 in a plain process)."""
    dist = _group()
    return dist.get_rank() if dist is not None else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes (1 in a plain process)."""
    dist = _group()
    return dist.get_world_size() if dist is not None else int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """Rank on this machine (torchrun's LOCAL_RANK): the index of the GPU this process drives."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0: the one process that writes run files, checkpoints and logs."""
    return rank() == 0


def init_distributed(device: str) -> tuple[int, int, str]:
    """Set up the process group under torchrun; returns (rank, world size, device string).

    World size 1: nothing happens, `device` comes back unchanged. World size > 1: the process group is initialised
    if it is not yet (nccl for a CUDA device, gloo on CPU), and a CUDA device becomes `cuda:LOCAL_RANK` (also made
    the current CUDA device), so that each process drives its own GPU.
    """
    world = world_size()
    if world > 1:
        import torch  # here, not at the top: importing this module must not load torch (module docstring)
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{local_rank()}"
            torch.cuda.set_device(device)
    return rank(), world, device


def barrier() -> None:
    """Wait for every rank (a no-op in a world of 1)."""
    dist = _group()
    if world_size() > 1:
        if dist is None:
            raise RuntimeError(f"barrier: WORLD_SIZE={world_size()} but no process group; call "
                               f"models.distributed.init_distributed(device) first")
        dist.barrier()
