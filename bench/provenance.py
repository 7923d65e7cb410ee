"""Provenance: content-derived run ids, environment capture and atomic writes (STYLE rules 4 and 15)."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: the process umask, applied to atomically written files


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()[:48] or "run"


def config_hash(eval_name: str, config: dict, scale: str) -> str:
    blob = json.dumps({"eval": eval_name, "config": config, "scale": scale}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def run_id(eval_name: str, config: dict, scale: str) -> str:
    """Stable, content-derived id: same eval + config + scale (config carries the spec version) -> same id."""
    name = config.get("name") or config.get("model") or config.get("backbone") or eval_name
    return f"{slug(str(name))}__{slug(eval_name)}__{scale}__{config_hash(eval_name, config, scale)}"


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    sha = git("rev-parse", "HEAD")
    # Dirty = the code or configs differ from the commit; regenerated outputs (tables/, figures/, runs/) do not count,
    # or every artefact after the first of `all` would call itself dirty.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)tables",
                     ":(exclude)figures", ":(exclude)runs")) if sha else None
    return {"git_sha": sha or "unknown (not a git checkout)", "git_dirty": dirty}


def environment(device: str, dtype: str, scale: str) -> dict[str, Any]:
    """What produced a number: code version, library versions, hardware, precision, scale."""
    import torch
    env: dict[str, Any] = {
        **git_state(),
        "scale": scale,
        "device": device,
        "dtype": dtype,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
    }
    if device == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
