"""The pieces of sharded evaluation that reconstruction and generation share: contiguous shards and their owner
ranks, the digest of the weights a shard was computed with, atomic ``.npz`` / PNG files (a damaged file reads as
missing, so it is recomputed), and Inception feature statistics stored under a prefix."""
from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.evals import metrics as M
from bench.provenance import atomic_write_bytes


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
