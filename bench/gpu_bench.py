"""The GPU check (``scripts/gpu.sh``): the measurements that need a CUDA device, one step per command.

    python -m bench.gpu_bench STEP --out DIR [--budget-s S] [--dry-run]

Each step writes ``DIR/<step>.csv`` (and ``DIR/provenance.csv``) whose last columns are ``PROVENANCE``: device, GPU
model, driver, CUDA and torch versions, git sha, date.

- ``pytest``: ``pytest -m gpu`` on the test files that hold GPU tests; one row per test.
- ``efficiency``: the efficiency and speed-up rows of Tables 3, 4 and 5 through the harness itself (``Runner`` and
  ``collect``, run folders under ``DIR/runs``) at paper scale, bf16, DC-Gen's batch rule, with fewer timed
  iterations than the paper protocol (``GPU.efficiency``) so that the three tables fit a few minutes; files
  ``efficiency-table{3,4,5}.csv`` and ``.md``.
- ``memory``: the §3.2 memory claim, the ``memory`` artefact at paper scale unchanged (``memory.csv``, ``.md``).
- ``autoencoders``: our DC-AE and SD-VAE against diffusers' ``AutoencoderDC`` / ``AutoencoderKL`` holding the same
  random weights (seed 0), encode + decode images/s in bf16, eager and ``torch.compile``, 512 and 1024 px.
- ``train-step``: DC-AE phase-1 training steps (``models.train_autoencoder``) at 256 px and batch 24, with the peak
  CUDA memory.
- ``sampling``: each released diffusion model's backbone shape at random weights, sampled by the harness's sampler
  (``generation.sample_batch``: DPM-Solver++ 30 NFE for U-ViT, IDDPM 250 steps for DiT, with CFG) under bf16
  autocast, then decoded by its DC-AE as the ``generate`` eval does (fp32).

``--budget-s`` is a step's soft time box: an item (a table row, a model, a measurement) starts only while the time
left exceeds the longest item so far; the items not reached get a row saying so. The CSV is rewritten after every
item, so a step that ``gpu.sh`` kills at its hard box keeps the rows it finished. ``--dry-run`` runs every step on
the CPU (``DRY``): smoke-scale table rows, tiny models, batch 1-2, one iteration, ``torch.compile`` with the
``eager`` backend (it traces the graph without generating code), device ``cpu (dry run)``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import io
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import models
from bench import artifacts, process
from bench.catalogue import REDUCED_BACKBONES
from bench.artifacts import table3, table4
from bench.parts.efficiency_rows import COST_COLUMNS, SPEED_COLUMNS, SPEEDUP_COLUMNS
from bench.configs import PerMeasure
from bench.emit import markdown_table
from bench.errors import Unavailable, UsageError
from bench.evals import generation as G
from bench.provenance import REPO_ROOT, atomic_write_text, git_state
from bench.runner import Runner, RunFailed, collect
from bench.spec import Row, RunRef, Spec
from models import checkpoints as C
from models import train_autoencoder as T
from models.backbones import BACKBONE_FAMILIES, BACKBONES, RELEASED_DIFFUSION, ReleasedDiffusion, build_backbone

STEPS = ("pytest", "efficiency", "memory", "autoencoders", "train-step", "sampling")
PROVENANCE = ("device", "gpu_model", "driver", "cuda", "torch", "git_sha", "git_dirty", "date")
# Tables 3-5, each with its deadline as a share of the efficiency step's budget (time a table leaves goes on).
EFFICIENCY_TABLES = {"table3": 0.5, "table4": 0.8, "table5": 1.0}
# Rows measured first: the abstract's headline pair, Table 3's DiT-XL pair, Table 4's equal-token DC-AE pair.
FIRST_ROWS = tuple(e.label for e in (table3.UVIT_H[0], table3.UVIT_H[2], table3.DIT_XL[0], table3.DIT_XL[1],
                                     table4.AT_1024[0], table4.AT_1024[2]))


@dataclass(frozen=True)
class Setting:
    """Everything a step does differently on the GPU and in the CPU dry run."""

    label: str                              # the CSVs' device column
    device: str                             # "cuda" | "cpu"
    scale: str                              # scale of the harness rows (efficiency, memory)
    threads: int | None                     # torch CPU threads (None: torch's default)
    efficiency: dict[str, Any]              # EfficiencyConfig fields changed on top of that scale's
    ae_models: dict[str, str]               # family -> registry name (autoencoders step)
    ae_batches: dict[int, int]              # image side -> images per encode + decode call
    warmup: int                             # untimed calls before the timed ones (autoencoders step)
    iters: int                              # timed calls (autoencoders step)
    compile_backend: str                    # torch.compile backend
    compile_families: tuple[str, ...]       # families measured compiled too
    phase1_models: tuple[str, ...]          # train-step models
    phase1: dict[str, int]                  # PhaseConfig fields: resolution, batch, steps
    sampling_batch: int                     # samples per sampler call
    sampling_steps: int | None              # None: the family's sampler steps (models.backbones.BACKBONE_FAMILIES)
    tiny_sampling: bool                     # sampling step: the -tiny backbone and DC-AE of each released model
    sampling_latent_side: int | None        # None: the released latent side (512 px images)


GPU = Setting(
    label="cuda", device="cuda", scale="paper", threads=None,
    efficiency={"dtype": "bf16", "warmup": PerMeasure(train=1, infer=3, latency=5, memory=1),
                "iters": PerMeasure(train=1, infer=5, latency=20, memory=1)},
    ae_models={"dc-ae": "dc-ae-f32c32-in-1.0", "sd-vae": "sd-vae-f8"}, ae_batches={512: 8, 1024: 2},
    warmup=2, iters=5, compile_backend="inductor", compile_families=("dc-ae", "sd-vae"),
    # Batch 24 per GPU at 256 px: the unofficial reproduction's phase 1 (4 GPUs x 24); the paper states none.
    phase1_models=("dc-ae-f32c32-in-1.0", "dc-ae-f64c128-in-1.0"), phase1={"resolution": 256, "batch": 24, "steps": 3},
    sampling_batch=32, sampling_steps=None, tiny_sampling=False, sampling_latent_side=None)
DRY = Setting(
    # One thread: on a busy machine, two threads of tiny ops mostly wait for each other.
    label="cpu (dry run)", device="cpu", scale="smoke", threads=1,
    efficiency={"measure": ("train", "infer", "latency", "memory"), "latent_size": 8},
    ae_models={"dc-ae": "dc-ae-f32c32-tiny", "sd-vae": "sd-vae-f8c4-tiny"}, ae_batches={64: 1},
    warmup=0, iters=1, compile_backend="eager", compile_families=("dc-ae",),
    phase1_models=("dc-ae-f32c32-tiny",), phase1={"resolution": 64, "batch": 2, "steps": 2},
    sampling_batch=1, sampling_steps=2, tiny_sampling=True, sampling_latent_side=2)


# ----------------------------------------------------------------------------------------------------------------
# Provenance, CSVs and the soft time box
# ----------------------------------------------------------------------------------------------------------------

def nvidia_driver() -> str:
    """The NVIDIA driver version from NVML (nvidia-ml-py), or why it is unknown."""
    try:
        import pynvml  # here: NVML exists only on machines with an NVIDIA driver
    except ImportError:
        return "unknown (nvidia-ml-py not installed)"
    try:
        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
    except pynvml.NVMLError as e:
        return f"unknown (NVML: {e})"
    return version.decode() if isinstance(version, bytes) else version


def provenance(s: Setting) -> dict[str, str]:
    git = git_state()
    row = {"device": s.label, "gpu_model": "none", "driver": "none", "cuda": str(torch.version.cuda),
           "torch": torch.__version__, "git_sha": git["git_sha"], "git_dirty": str(git["git_dirty"]).lower(),
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if s.device == "cuda":
        row.update(gpu_model=torch.cuda.get_device_name(0), driver=nvidia_driver())
    return row


def write_csv(out: Path, name: str, rows: list[dict[str, Any]], prov: dict[str, str]) -> Path:
    """``out/<name>.csv``: the rows' own columns (first-seen order), then the provenance columns."""
    columns = list(dict.fromkeys(k for r in rows for k in r if k not in prov)) + list(PROVENANCE)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows({**r, **prov} for r in rows)
    path = out / f"{name}.csv"
    atomic_write_text(path, buf.getvalue())
    return path


class Budget:
    """A soft time box: the next item starts only while the time left exceeds the longest item so far."""

    def __init__(self, seconds: float, end: float | None = None):
        self.seconds = seconds
        self.end = time.monotonic() + seconds if end is None else end
        self.longest = 0.0

    def until(self, share: float, start: float) -> Budget:
        """A box ending at ``share`` of this one's length after ``start`` (a ``time.monotonic`` reading), which
        starts from this box's longest item."""
        part = Budget(self.seconds, end=min(self.end, start + share * self.seconds))
        part.longest = self.longest
        return part

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def allows(self) -> bool:
        return time.monotonic() + self.longest < self.end

    @contextlib.contextmanager
    def item(self) -> Iterator[None]:
        t0 = time.monotonic()
        yield
        self.longest = max(self.longest, time.monotonic() - t0)

    def not_reached(self) -> str:
        return f"not reached: the step's {self.seconds:.0f} s time box ran out"


def _peak_gib(device: str) -> float | str:
    return round(torch.cuda.max_memory_allocated() / 1024 ** 3, 3) if device == "cuda" else "cpu: not measured"


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ----------------------------------------------------------------------------------------------------------------
# Step pytest
# ----------------------------------------------------------------------------------------------------------------

def gpu_test_files() -> list[str]:
    """The test files that mark tests ``gpu`` (so that the run does not collect the whole suite)."""
    return sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "tests").glob("test_*.py")
                  if "pytest.mark.gpu" in p.read_text())


def junit_rows(path: Path) -> list[dict[str, Any]]:
    """One row per test case of a JUnit XML report: test, outcome, seconds, message."""
    outcomes = {"failure": "failed", "error": "error", "skipped": "skipped"}
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        found = next(((tag, el) for tag in outcomes if (el := case.find(tag)) is not None), None)
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}",
                     "outcome": outcomes[found[0]] if found else "passed", "seconds": case.get("time"),
                     "message": (found[1].get("message") or "")[:300] if found else ""})
    return rows


def step_pytest(s: Setting, out: Path, budget: Budget, prov: dict[str, str]) -> int:
    report = out / "pytest-gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
           *gpu_test_files()]
    try:
        rc = subprocess.run(cmd, cwd=REPO_ROOT, timeout=budget.left()).returncode
    except subprocess.TimeoutExpired:
        write_csv(out, "pytest", [{"test": " ".join(cmd[1:4]), "outcome": budget.not_reached()}], prov)
        return 124
    write_csv(out, "pytest", junit_rows(report), prov)
    return rc


# ----------------------------------------------------------------------------------------------------------------
# Steps efficiency and memory: the harness's own rows
# ----------------------------------------------------------------------------------------------------------------

def efficiency_spec(table: str, s: Setting) -> Spec:
    """``table``'s efficiency rows (with ``s.efficiency`` on top of the scale's config) and speed-up rows."""
    spec = artifacts.load(table).SPECS[""]
    rows: list[Row] = []
    for row in spec.rows:
        if row.run is not None and row.run.eval == "efficiency":
            at = {**row.run.at, s.scale: {**(row.run.at.get(s.scale) or {}), **s.efficiency}}
            rows.append(dataclasses.replace(row, run=RunRef(row.run.config, at)))
        elif row.derive is not None and "speed-up" in row.label:
            rows.append(row)
    changed = ", ".join(f"{k} {v}" for k, v in s.efficiency.items())
    return dataclasses.replace(spec, rows=tuple(rows), columns=COST_COLUMNS + SPEED_COLUMNS + SPEEDUP_COLUMNS,
                               title=f"{spec.title} (GPU check)",
                               caption=f"{spec.caption} GPU check: the {s.scale}-scale rows with {changed}.")


def write_table(out: Path, name: str, spec: Spec, scale: str, records: list[dict], prov: dict[str, str]) -> None:
    write_csv(out, name, records, prov)
    df = pd.DataFrame(records)
    atomic_write_text(out / f"{name}.md", markdown_table(spec, scale, df))


def render(spec: Spec, s: Setting, out: Path, why: dict[str, str], prov: dict[str, str], name: str) -> None:
    """The table of the completed runs (nothing is computed); rows in ``why`` say why they have no numbers."""
    built = collect(spec, "", s.scale, Runner(out / "runs", device=s.device, render_only=True))
    for rec in built.records:
        if "render-only" in rec["status"]:
            rec["status"] = why.get(rec["row"], "not measured: a source row was not measured")
    write_table(out, name, spec, s.scale, built.records, prov)


def run_efficiency_table(table: str, s: Setting, out: Path, budget: Budget, prov: dict[str, str]) -> int:
    """Measure the table's rows (``FIRST_ROWS`` first) while the box allows; 3 if a row failed, else 0."""
    spec = efficiency_spec(table, s)
    runner = Runner(out / "runs", device=s.device)
    first = {label: i for i, label in enumerate(FIRST_ROWS)}
    runs = sorted((r for r in spec.rows if r.run is not None), key=lambda r: first.get(r.label, len(first)))
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for row in runs:
        if not budget.allows():
            skipped[row.label] = budget.not_reached()
            continue
        with budget.item():
            try:
                runner.ensure(row.run, s.scale)
            except (Unavailable, RunFailed) as e:
                failed[row.label] = str(e)
        render(spec, s, out, {**skipped, **failed}, prov, f"efficiency-{table}")
    render(spec, s, out, {**skipped, **failed}, prov, f"efficiency-{table}")
    return 3 if failed else 0


def step_efficiency(s: Setting, out: Path, budget: Budget, prov: dict[str, str]) -> int:
    """Tables 3, 4, 5 in turn, each until its share of the box. Each table's box starts from the longest row so far,
    so that a table's first row does not start when it would only be killed by the hard box."""
    start, code = time.monotonic(), 0
    for table, share in EFFICIENCY_TABLES.items():
        part = budget.until(share, start)
        code = max(code, run_efficiency_table(table, s, out, part, prov))
        budget.longest = max(budget.longest, part.longest)
    return code


def step_memory(s: Setting, out: Path, budget: Budget, prov: dict[str, str]) -> int:
    spec = artifacts.load("memory").SPECS[""]
    built = collect(spec, "", s.scale, Runner(out / "runs", device=s.device))
    write_table(out, "memory", spec, s.scale, built.records, prov)
    return 3 if built.problems else 0


# ----------------------------------------------------------------------------------------------------------------
# Step autoencoders: ours vs diffusers at identical weights
# ----------------------------------------------------------------------------------------------------------------

def diffusers_or_none():
    """The diffusers module, or None where it is not installed (the lent GPU machines lack it unless carried)."""
    try:
        import diffusers  # here: a test oracle only, never a dependency of the harness
    except ImportError:
        return None
    return diffusers


def ae_pair(family: str, name: str, device: str, dtype: torch.dtype = torch.bfloat16
            ) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(ours, diffusers') with the same random weights (diffusers' init, seed 0, converted to ours), in ``dtype``;
    without diffusers, (ours at our own random init, None)."""
    torch.manual_seed(0)
    diffusers = diffusers_or_none()
    if diffusers is None:
        with torch.device(device):
            return models.build(name).eval().to(dtype), None
    cfg = models.zoo.get_config(name)
    if family == "dc-ae":
        with torch.device(device):
            theirs = diffusers.AutoencoderDC(**C.diffusers_dc_kwargs(cfg))
        state = C.convert_diffusers_dc_to_ours(theirs.state_dict(), cfg)
    else:
        with torch.device(device):
            theirs = diffusers.AutoencoderKL(**C.diffusers_kl_kwargs(cfg))
        state = C.convert_diffusers_kl_to_ours(theirs.state_dict())
    with torch.device("meta"):
        ours = models.build(name)
    C.load_state_dict_strict(ours, state)
    return ours.eval().to(dtype), theirs.eval().to(dtype)


def encode_decode(model: torch.nn.Module, impl: str, family: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images -> reconstructions through the latent (SD-VAE: the posterior mean, in both implementations)."""
    if impl == "ours":
        return lambda x: model.decode(model.encode(x))
    if family == "dc-ae":
        return lambda x: model.decode(model.encode(x).latent).sample
    return lambda x: model.decode(model.encode(x).latent_dist.mode()).sample


def time_calls(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, warmup: int, iters: int,
               device: str) -> tuple[dict[str, Any], torch.Tensor]:
    """The first call (compilation, autotuning) timed alone, ``warmup`` untimed calls, then ``iters`` timed ones."""
    _reset_peak(device)
    with torch.inference_mode():
        t0 = time.perf_counter()
        y = fn(x)
        G.sync(device)
        first = time.perf_counter() - t0
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(iters):
            G.sync(device)
            t0 = time.perf_counter()
            y = fn(x)
            G.sync(device)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"first_call_s": round(first, 4), "median_s": round(median, 5), "iters": iters,
            "images_per_s": round(len(x) / median, 3), "peak_gib": _peak_gib(device)}, y


def measure_ae(family: str, pair: tuple, mode: str, side: int, batch: int, s: Setting,
               budget: Budget) -> Iterator[dict[str, Any]]:
    """Rows "ours" and "diffusers" of one (family, mode, image side), each as soon as it is measured; once both
    are, ours gets the speed ratio and the relative L2 distance between the two outputs."""
    g = torch.Generator(s.device).manual_seed(0)
    x = (torch.rand(batch, 3, side, side, generator=g, device=s.device) * 2 - 1).to(torch.bfloat16)
    measured: dict[str, tuple[dict[str, Any], torch.Tensor]] = {}
    for impl, model in zip(("ours", "diffusers"), pair):
        row = {"family": family, "model": s.ae_models[family], "impl": impl, "mode": mode,
               "compile_backend": s.compile_backend if mode == "compile" else "", "side_px": side, "batch": batch,
               "dtype": "bfloat16", "warmup": s.warmup}
        if model is None:
            yield {**row, "status": "unavailable: diffusers is not installed"}
            continue
        if mode == "compile" and family not in s.compile_families:
            yield {**row, "status": f"not run: this run compiles {', '.join(s.compile_families)} only"}
            continue
        if not budget.allows():
            yield {**row, "status": budget.not_reached()}
            continue
        fn = encode_decode(model, impl, family)
        if mode == "compile":
            fn = torch.compile(fn, backend=s.compile_backend, dynamic=False)
        try:
            with budget.item():
                stats, y = time_calls(fn, x, s.warmup, s.iters, s.device)
        except (torch._dynamo.exc.TorchDynamoException, torch.OutOfMemoryError) as e:  # this row only: say so
            yield {**row, "status": f"failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})"}
            continue
        row.update(stats, status="measured")
        measured[impl] = (row, y)
        yield row
    if len(measured) == 2:
        (ours, a), (theirs, b) = measured["ours"], measured["diffusers"]
        ours["ours_over_diffusers_speed"] = round(ours["images_per_s"] / theirs["images_per_s"], 4)
        ours["rel_l2_ours_vs_diffusers"] = float((a.float() - b.float()).norm() / b.float().norm())


def step_autoencoders(s: Setting, out: Path, budget: Budget, prov: dict[str, str]) -> int:
    pairs = {family: ae_pair(family, name, s.device) for family, name in s.ae_models.items()}
    rows: list[dict[str, Any]] = []
    for mode in ("eager", "compile"):
        for side, batch in s.ae_batches.items():
            for family, pair in pairs.items():
                for row in measure_ae(family, pair, mode, side, batch, s, budget):
                    rows.append(row)
                    write_csv(out, "autoencoders", rows, prov)
    write_csv(out, "autoencoders", rows, prov)  # the last pair's ratio columns are added after its rows
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Step train-step: DC-AE phase 1 at batch 24
# ----------------------------------------------------------------------------------------------------------------

def phase1_steps(name: str, s: Setting) -> dict[str, Any]:
    """Phase-1 training (all parameters, L1 + LPIPS when its weights are cached) for a few steps of random images;
    the time per step excludes the first step."""
    torch.manual_seed(0)
    with torch.device(s.device):
        model = models.build(name)
    phase = dataclasses.replace(T.PHASES["phase1"], **s.phase1, ckpt_every=s.phase1["steps"])
    side = s.phase1["resolution"]
    images = torch.rand(8, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    row = {"model": name, "phase": "phase1", "resolution": side, "batch": phase.batch, "steps": phase.steps,
           "dtype": "bf16 autocast, fp32 weights" if s.device == "cuda" else "float32"}
    _reset_peak(s.device)
    try:
        res = T.train_autoencoder(model, phase, T.TensorCropSource(images), ckpt_dir=None, device=s.device,
                                  progress=False, log=lambda m: None)
    except torch.OutOfMemoryError:
        return {**row, "status": "OOM"}
    return {**row, "s_per_step": round(res.s_per_step, 4), "images_per_s": round(phase.batch / res.s_per_step, 3),
            "peak_gib": _peak_gib(s.device), "perceptual": res.perceptual,
            "l1_final": round(res.final["l1"], 5), "status": "measured"}


def step_train(s: Setting, out: Path, budget: Budget, prov: dict[str, str]) -> int:
    rows: list[dict[str, Any]] = []
    for name in s.phase1_models:
        if not budget.allows():
            rows.append({"model": name, "status": budget.not_reached()})
        else:
            with budget.item():
                rows.append(phase1_steps(name, s))
        write_csv(out, "train-step", rows, prov)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Step sampling: the released diffusion models' shapes at random weights
# ----------------------------------------------------------------------------------------------------------------

def released_shapes() -> list[ReleasedDiffusion]:
    """One released model per (backbone, autoencoder), the paper's Table 3 models first."""
    seen: dict[tuple[str, str], ReleasedDiffusion] = {}
    for info in RELEASED_DIFFUSION.values():
        seen.setdefault((info.backbone, info.autoencoder), info)
    return sorted(seen.values(), key=lambda i: not i.paper.startswith("Table"))


TINY_AUTOENCODERS = {"dc-ae-f32c32-in-1.0": "dc-ae-f32c32-tiny", "dc-ae-f64c128-in-1.0": "dc-ae-f64c128-tiny"}


def sampled_models(info: ReleasedDiffusion, s: Setting) -> tuple[str, str]:
    """(backbone, autoencoder) registry names: the released model's, or their -tiny variants in the dry run."""
    if not s.tiny_sampling:
        return info.backbone, info.autoencoder
    return REDUCED_BACKBONES[info.backbone][1], TINY_AUTOENCODERS[info.autoencoder]


def sample_and_decode(info: ReleasedDiffusion, s: Setting) -> dict[str, Any]:
    """One sampler call for a batch (after a 2-step warm-up call), then the decode of its latents to uint8."""
    family = BACKBONE_FAMILIES[BACKBONES[info.backbone].family]
    sampler, steps = family.sampler, s.sampling_steps or family.sampler_steps
    backbone_name, ae_name = sampled_models(info, s)
    c, side = info.latent_channels, s.sampling_latent_side or info.latent_size
    torch.manual_seed(0)
    with torch.device(s.device):
        backbone = build_backbone(backbone_name, c, side, info.patch_size).eval()
        autoencoder = models.build(ae_name).eval()
    null, n = backbone.config.num_classes, s.sampling_batch
    run = G.Sampling(sampler, steps, "time-uniform", info.cfg_scale, null, 0, n)
    labels = G.draw_labels(n, null, 0, True).to(s.device)
    noise = G.initial_noise(range(n), (c, side, side), 0).to(s.device)
    with torch.autocast(s.device, dtype=torch.bfloat16):
        G.sample_batch(backbone, dataclasses.replace(run, steps=2), labels, noise, 0)  # warm-up
        G.sync(s.device)
        clock: dict[str, float] = {}
        t0 = time.perf_counter()
        z = G.sample_batch(backbone, run, labels, noise, 0, clock)
        G.sync(s.device)
    t1 = time.perf_counter()
    G.decode_uint8(autoencoder, z, autoencoder.scaling_factor)
    G.sync(s.device)
    t2 = time.perf_counter()
    return {"released": info.name, "backbone": backbone_name, "autoencoder": ae_name,
            "latent": f"{c}x{side}x{side}", "sampler": sampler, "steps": steps, "cfg_scale": info.cfg_scale,
            "batch": n, "dtype": "bf16 autocast (decode fp32)", "sample_s": round(t1 - t0, 4),
            "backbone_s": round(clock["backbone"], 4), "decode_s": round(t2 - t1, 4),
            "images_per_s": round(n / (t2 - t0), 4), "sampler_images_per_s": round(n / (t1 - t0), 4),
            "status": "measured"}


def step_sampling(s: Setting, out: Path, budget: Budget, prov: dict[str, str]) -> int:
    rows: list[dict[str, Any]] = []
    for info in released_shapes():
        if not budget.allows():
            rows.append({"released": info.name, "status": budget.not_reached()})
        else:
            try:
                with budget.item():
                    rows.append(sample_and_decode(info, s))
            except torch.OutOfMemoryError:
                rows.append({"released": info.name, "batch": s.sampling_batch, "status": "OOM"})
        write_csv(out, "sampling", rows, prov)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------

STEP_FUNCTIONS = {"pytest": step_pytest, "efficiency": step_efficiency, "memory": step_memory,
                  "autoencoders": step_autoencoders, "train-step": step_train, "sampling": step_sampling}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(f"{message}; usage: python -m bench.gpu_bench {{{','.join(STEPS)}}} --out DIR "
                         f"[--budget-s S] [--dry-run]")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m bench.gpu_bench", description=__doc__.splitlines()[0])
    p.add_argument("step", choices=STEPS)
    p.add_argument("--out", required=True, help="folder of the CSVs (scripts/gpu.sh: tables/gpu)")
    p.add_argument("--budget-s", type=float, default=600.0, help="the step's soft time box in seconds")
    p.add_argument("--dry-run", action="store_true", help="on the CPU with tiny models (checks the script)")
    args = p.parse_args(argv)
    s = DRY if args.dry_run else GPU
    if s.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("no CUDA device is visible here; run with --dry-run to check the script on a CPU")
    if args.budget_s <= 0:
        raise UsageError(f"--budget-s {args.budget_s:g}: give a positive number of seconds")
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(s)
    write_csv(out, "provenance", [{}], prov)
    return STEP_FUNCTIONS[args.step](s, out, Budget(args.budget_s), prov)


def entry() -> None:
    try:
        process.tune_allocator()  # as `python -m bench`: the timed rows run with the harness's allocator setting
        sys.exit(main())
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    entry()
