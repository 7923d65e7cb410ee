"""Atomic file writes and file locks, for the whole project.

A reader (another rank, a resumed run, `python -m bench --render-only`) sees the old file or the new one, never half
of one: the bytes go to a temp file in the same folder (same file system, so the rename is atomic), are fsynced, get
the permissions a plain `open(path, "w")` would give (mkstemp makes 0600 files), and `os.replace` puts them in place.
On any exception the temp file is removed and the old file, if any, is untouched. ``file_lock`` is the one
inter-process lock (a run folder, a cache entry that concurrent runs would otherwise both compute).

Torch-free at import (checked by `python -c "import sys, models.io; assert 'torch' not in sys.modules"`): the light
CLI commands (`python -m bench ls`, `check`, `--render-only`) write through this module without loading torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@functools.cache
def _umask() -> int:
    """The process umask, read once on first write (os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder + os.replace (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`text` as UTF-8, atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as indented JSON with sorted keys (non-JSON values via str) and a trailing newline, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj)` serialised in memory, then written atomically (argument order as `torch.save`)."""
    import torch  # here, not at the top: `import models.io` must stay torch-free for the light CLI commands

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created, with its folder, if absent) for the block: another
    process (or another open of the same file) waits. The OS releases it if the holder dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
