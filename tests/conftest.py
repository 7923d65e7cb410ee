"""Shared test fixtures."""
import os
import socket

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, 2 OpenMP threads are up to 10x slower under contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_entry(rank: int, world: int, port: int, body, args: tuple) -> None:
    """One spawned rank: a gloo process group on localhost, one thread, ``body(rank, *args)``, then teardown."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        body(rank, *args)
    finally:
        dist.destroy_process_group()


@pytest.fixture
def spawn_ddp():
    """``spawn_ddp(body, *args, world=2)``: run ``body(rank, *args)`` (a module-level function) on ``world`` CPU
    ranks under DDP; the DDP tests of both training loops compare its result with one process."""
    def run(body, *args, world: int = 2) -> None:
        torch.multiprocessing.spawn(_ddp_entry, args=(world, _free_port(), body, args), nprocs=world)
    return run
