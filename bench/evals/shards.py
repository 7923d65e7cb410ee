"""The sharded evaluator that reconstruction and generation share (``ShardSet``: plan -> compute this rank's shards
-> gather on rank 0 -> replace the shard files by an index), and its pieces: contiguous shards and their owner
ranks, the digest of the weights a shard was computed with, atomic ``.npz`` / PNG files (a damaged file reads as
missing, so it is recomputed), and Inception feature statistics stored under a prefix. Each eval supplies the work
of one shard and its own reduction."""
from __future__ import annotations

import hashlib
import io
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.errors import RowFailed
from bench.evals import metrics as M
from bench.provenance import atomic_write_bytes, atomic_write_json
from models import distributed


def shard_ranges(n: int, n_shards: int) -> list[range]:
    """``n_shards`` contiguous, disjoint ranges covering [0, n) (sizes differ by at most 1; no padding)."""
    n_shards = max(1, min(n_shards, n)) if n else 1
    bounds = [round(k * n / n_shards) for k in range(n_shards + 1)]
    return [range(bounds[k], bounds[k + 1]) for k in range(n_shards)]


def shard_owner(k: int, n_shards: int, world: int) -> int:
    """The rank that computes shard ``k``: ranks own contiguous blocks of shards (rank r of W: shards r·n/W ...)."""
    return k * world // n_shards


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of the model's parameters and buffers (names, shapes, bytes): what a shard was computed with."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()[:16]


def default_shard_count(n: int, world: int, shard_images: int | None) -> int:
    """Shards of ``shard_images`` images (default: about 4 per rank, >= 256 images each), at least one per rank."""
    if shard_images is None:
        shard_images = max(256, math.ceil(n / (4 * world)))
    return max(world, math.ceil(n / shard_images))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # a damaged file is recomputed, never trusted
        return None


def stats_arrays(prefix: str, s: M.FeatureStats) -> dict[str, np.ndarray]:
    return {f"{prefix}_{k}": v for k, v in s.to_arrays().items()}


def stats_from(prefix: str, d: dict[str, np.ndarray]) -> M.FeatureStats | None:
    keys = {k[len(prefix) + 1:]: v for k, v in d.items() if k.startswith(prefix + "_")}
    return M.FeatureStats.from_arrays(keys) if "sum" in keys else None


def save_png(path: Path, u: torch.Tensor) -> None:
    buf = io.BytesIO()
    Image.fromarray(u.permute(1, 2, 0).cpu().numpy()).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class ShardSet:
    """One evaluation cut into resumable files ``<shard_dir>/<k>-of-<n>.npz``: contiguous index ranges, and the key
    of everything that decides a shard's numbers (a finished shard with this key is reused, any other recomputed)."""

    ranges: list[range]   # contiguous, disjoint index ranges covering the set
    shard_dir: Path       # <run_dir>/shards
    key: str

    @property
    def files(self) -> list[Path]:
        return [self.shard_dir / f"{k}-of-{len(self.ranges)}.npz" for k in range(len(self.ranges))]

    def compute(self, work: Callable[[range, int], dict[str, np.ndarray]], *, batch_size: int, oom_halving: bool,
                max_shards: int | None, log: Callable[[str], None], noun: str) -> None:
        """This rank's unfinished shards (ranks own contiguous blocks), each ``work(indices, batch_size)`` (a dict
        holding ``key``) written atomically as soon as it is done. ``max_shards`` stops after that many new shards
        (a simulated kill). With ``oom_halving``, CUDA out of memory halves the batch (down to 1) and redoes the
        shard, which records the batch it used; without it (a sample depends on its batch) the error stands."""
        rank, world, n_shards = distributed.rank(), distributed.world_size(), len(self.ranges)
        computed = 0
        for k, (idx, path) in enumerate(zip(self.ranges, self.files)):
            if shard_owner(k, n_shards, world) != rank:
                continue
            old = load_npz(path) if path.exists() else None
            if old is not None and str(old.get("key")) == self.key:
                continue  # finished earlier: resume skips it
            if max_shards is not None and computed >= max_shards:
                break
            while True:
                try:
                    shard = work(idx, batch_size)
                    break
                except torch.OutOfMemoryError:
                    if not oom_halving:
                        raise
                    if batch_size == 1:
                        raise RowFailed("out of memory at batch 1 (the smallest batch)") from None
                    batch_size = max(1, batch_size // 2)
                    torch.cuda.empty_cache()
                    log(f"shard {k + 1}/{n_shards}: out of memory, retrying at batch {batch_size}")
            save_npz(path, {**shard, "batch_size": np.array(batch_size)} if oom_halving else shard)
            computed += 1
            log(f"shard {k + 1}/{n_shards}: {noun} {idx.start}-{idx.stop - 1} done (rank {rank}/{world})")

    def gather(self) -> tuple[list[dict[str, np.ndarray]] | None, dict[str, Any]]:
        """After every rank's ``compute`` (a barrier): on rank 0 every shard in order, or None and the incomplete
        run's metrics ({"_complete": False, ...}); on other ranks (None, {})."""
        distributed.barrier()
        if distributed.rank() != 0:
            return None, {}
        shards = [load_npz(p) if p.exists() else None for p in self.files]
        done = sum(s is not None and str(s.get("key")) == self.key for s in shards)
        if done < len(shards):
            return None, {"_complete": False, "_shards_done": done, "_shards": len(shards)}
        return shards, {}

    def replace_by_index(self, shards: list[dict[str, np.ndarray]],
                         fields: Callable[[dict[str, np.ndarray]], dict[str, Any]]) -> None:
        """Once reduced, the shard files are only needed to resume: ``index.json`` keeps each shard's file, rank and
        index range (and ``fields(shard)``: skipped images, timings) instead."""
        world = distributed.world_size()
        atomic_write_json(self.shard_dir / "index.json", {"key": self.key, "shards": [
            {"file": p.name, "rank": shard_owner(k, len(self.ranges), world), "first": self.ranges[k].start,
             "last": self.ranges[k].stop - 1, **fields(s)} for k, (p, s) in enumerate(zip(self.files, shards))]})
        for p in self.files:
            p.unlink(missing_ok=True)
