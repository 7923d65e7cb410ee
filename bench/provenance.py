"""Provenance: content-derived run ids, environment capture, damaged-file checks (STYLE rules 4 and 15)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Atomic writes have one home, models/io.py (torch-free); re-exported here for the harness's callers.
from models.io import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()[:48] or "run"


def file_digest(path: str | Path) -> str:
    """sha256[:16] of a file's bytes (e.g. the id of a user's --fid-reference .npz, in run ids and numbers)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_id(eval_name: str, name: str, config: dict, scale: str) -> str:
    """Stable, content-derived id: same eval + config + scale (config carries the protocol version) -> same id;
    ``name`` (the model or backbone) is a readable prefix."""
    blob = json.dumps({"eval": eval_name, "config": config, "scale": scale}, sort_keys=True)
    return f"{slug(name)}__{slug(eval_name)}__{scale}__{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


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


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor()): which machine produced a number."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: str, dtype: str, scale: str) -> dict[str, Any]:
    """What produced a number: code version, library versions, hardware, precision, scale."""
    import torch  # here: provenance is imported by the light commands, which must not import torch
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
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "kernel_build": platform.version(),  # the kernel's build string (uname -v): same release, another build
        "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
    }
    if device == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


@dataclass
class MeasurementRun:
    """The run folder of a measurement that is not an eval run (``bench perf``, a script's sweep):
    ``<parent>/<name>__<UTC stamp>`` holding config.json, env.json, the log as it grows, and what the caller adds."""

    run_id: str
    dir: Path
    started: str                      # the UTC stamp of the id, to the microsecond (two runs in a second stay apart)
    env: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        """Print ``line`` and append it to the folder's log.txt."""
        print(line, flush=True)
        self.lines.append(line)
        atomic_write_text(self.dir / "log.txt", "\n".join(self.lines) + "\n")


def open_measurement(parent: Path, name: str, config: dict[str, Any], scale: str) -> MeasurementRun:
    """A new ``MeasurementRun`` under ``parent`` with ``config`` and the environment (CPU, fp32, ``scale``) written."""
    now = dt.datetime.now(dt.timezone.utc)
    started = now.strftime("%Y%m%dT%H%M%SZ") + f"-{now.microsecond:06d}"
    run = MeasurementRun(f"{name}__{started}", Path(parent) / f"{name}__{started}", started,
                         environment("cpu", "float32", scale))
    run.dir.mkdir(parents=True, exist_ok=False)
    atomic_write_json(run.dir / "config.json", config)
    atomic_write_json(run.dir / "env.json", run.env)
    return run


# --------------------------------------------------------------------------------------------------------------
# Damaged files: a run folder that a full disk or a killed copy left half written
# --------------------------------------------------------------------------------------------------------------

def damage(path: Path) -> str | None:
    """Why the file at ``path`` cannot be trusted (truncated JSON, a safetensors file shorter than its header says,
    a torch zip without its central directory, an empty file), or None when it reads as whole. Cheap: JSON is parsed, safetensors only have their header read.
    No torch import, so that ``--render-only`` and ``ls`` stay light."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if n <= 0 or n > size - 8:
                    return "header length beyond the end of the file"
                header = json.loads(f.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            if 8 + n + end > size:
                return f"truncated ({size} bytes, the header needs {8 + n + end})"
        elif path.suffix in (".pt", ".pth"):  # torch.save's zip: a truncated file has no central directory
            with zipfile.ZipFile(path) as z:
                z.infolist()
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as e:
        return f"{type(e).__name__}: {str(e)[:80]}"
    return None


def quarantine(path: Path, why: str) -> Path:
    """Move a damaged file aside (``<name>.damaged-<n>``, never overwriting an earlier one) and print one warning
    line naming it; the caller then treats the file as absent, so the work that made it is redone."""
    n = 1
    while (aside := path.with_name(f"{path.name}.damaged-{n}")).exists():
        n += 1
    os.replace(path, aside)
    print(f"warning: {path} is damaged ({why}); moved to {aside.name}, recomputing", flush=True)
    return aside


def read_json(path: Path) -> Any | None:
    """The JSON object in ``path``; None when the file is absent, or damaged (then it is moved aside, see
    ``quarantine``)."""
    if not path.exists():
        return None
    if (why := damage(path)) is not None:
        quarantine(path, why)
        return None
    return json.loads(path.read_text())

