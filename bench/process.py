"""Process-wide settings made once at process start: the CLI (``python -m bench``) and every ``--jobs`` worker.

``tune_allocator()`` keeps freed memory in glibc's heap. With glibc's defaults every block above the mmap threshold
(32 MB at most; one 16 x 64 x 147 x 147 float32 activation of the FID Inception at batch 16 is 88 MB) gets fresh
pages from the kernel on each allocation, and the kernel zero-fills each page on first touch: 15-31 % of the FID
network's time on one thread went there, and batch 64 ran slower per image than batch 16. With mmap off for large
blocks and no trimming of the heap top, a forward pass reuses the pages of the previous one. Outputs are
bit-identical (the allocator decides where tensors live, never what they hold); the price is memory: a process keeps
its high-water mark (peak RSS 5-15 % higher, 1-3 GB per worker at small scale) until it exits.

``DCAE_BENCH_MALLOC=default`` leaves glibc's defaults; on other C libraries (musl, macOS) the call does nothing.
Torch-free, so ``python -m bench ls`` stays fast.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

from bench.errors import UsageError

MALLOC_ENV = "DCAE_BENCH_MALLOC"  # "tuned" (default) or "default"
M_TRIM_THRESHOLD = -1  # glibc malloc.h: bytes free at the heap top before it is given back to the kernel
M_MMAP_MAX = -4  # glibc malloc.h: most blocks served by mmap at once; 0 = every block from the heap
TRIM_NEVER = 2**31 - 1  # the largest int mallopt takes


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


def tune_allocator() -> str:
    """Apply the allocator setting of ``DCAE_BENCH_MALLOC`` to this process and say what was done (one line)."""
    choice = os.environ.get(MALLOC_ENV, "tuned")
    if choice not in ("tuned", "default"):
        raise UsageError(f"{MALLOC_ENV}={choice!r}: use 'tuned' (keep freed memory in the heap) or 'default' "
                         f"(glibc's own settings)")
    if choice == "default":
        return f"default ({MALLOC_ENV}=default)"
    libc = _glibc()
    if libc is None:
        return f"default (not glibc: {sys.platform} {platform.libc_ver()[0] or 'unknown libc'})"
    # mallopt returns 1 on success, 0 on a value glibc refuses
    if libc.mallopt(M_MMAP_MAX, 0) != 1 or libc.mallopt(M_TRIM_THRESHOLD, TRIM_NEVER) != 1:
        raise RuntimeError("glibc mallopt refused M_MMAP_MAX=0 or M_TRIM_THRESHOLD=2^31-1")
    return "tuned (glibc: no mmap for large blocks, no heap trim)"
