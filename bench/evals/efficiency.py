"""Efficiency profiling of a diffusion backbone on a latent shape (DC-AE paper §4.1 "Efficiency Profiling").

Protocol ``dcae-efficiency`` (version in ``bench.evals``; reference/efficiency.md §3, §6, §7). The timed object is the diffusion backbone
alone on random latents (x, t, y or caption features): no autoencoder, no text encoder, no sampler; one forward = one
sampling step ("for simplicity, we assume the number of sampling steps is 1", §4.1).

- train:   AdamW step (noise, forward, MSE, backward, step), fp32 weights + autocast (fp16 on GPU, as the paper;
           fp32 on CPU), activation checkpointing on every block; throughput = batch / median step time.
- infer:   one forward under ``torch.inference_mode`` (GPU: weights cast to fp16, PyTorch eager; the paper used
           TensorRT, so compare ratios, not absolutes); throughput = batch / median call time.
- latency: one forward at batch 2, median (the paper used an RTX 3090).
- memory:  GPU only: peak ``torch.cuda.max_memory_allocated`` of the training step at batch 256, in GiB (bytes/1024³,
           as DC-Gen); "OOM" if it does not fit. ``train_memory_gb_analytic`` (efficiency.md §4.5 lower bound: 16 B per
           parameter + one fp32 residual stream per block) is always reported, under its own key: not a measurement.

Batches follow DC-Gen's tokens-per-batch table (``RULE_BATCH``) unless the config gives them; on CPU they are divided
by ``batch_divisor`` (efficiency.md §7.3). Every number carries its device, dtype, batches, iterations, threads and
library versions under ``_`` keys. ``params_m``, ``gflops_per_forward`` and ``tokens`` are closed-form
(``models.costs``) for the row's full backbone; when the config shrinks it (``overrides``, e.g. fewer blocks at
`small` scale) the built model's numbers are under ``_built_*``.
"""
from __future__ import annotations

import contextlib
import csv
import io
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.configs import EfficiencyConfig
from bench.provenance import atomic_write_text
from models import costs
from models.backbones import backbone_config, build_backbone, random_inputs

# DC-Gen's batch sizes keyed by token count N (efficiency.md §3); PixArt-α uses DiT-XL's (same width and depth).
RULE_BATCH: dict[str, dict[str, dict[int, int]]] = {
    "uvit-s": {"infer": {1024: 512, 256: 2048, 64: 8192}, "train": {4096: 256, 1024: 1024, 256: 4096, 64: 16384}},
    "uvit-h": {"infer": {1024: 128, 256: 512, 64: 2048}, "train": {1024: 256, 256: 1024, 64: 4096}},
    "uvit-2b": {"infer": {1024: 128, 256: 512, 64: 2048}, "train": {1024: 128, 256: 512, 64: 2048}},
    "dit-s": {"infer": {4096: 128, 1024: 512, 256: 2048}, "train": {4096: 256, 1024: 1024, 256: 4096}},
    "dit-xl": {"infer": {4096: 64, 1024: 256, 256: 1024, 64: 4096, 16: 16384},
               "train": {4096: 64, 1024: 256, 256: 1024, 64: 4096, 16: 8192}},
}
RULE_BATCH["pixart-alpha"] = RULE_BATCH["dit-xl"]

# Dense fp16/bf16 tensor-core peaks (TFLOP/s) for model FLOP utilisation, matched by substring of the device name.
PEAK_TFLOPS = (("H100 SXM", 989.0), ("H100 80GB HBM3", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0),
               ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0))


def rule_batch(backbone: str, tokens: int, kind: str) -> int:
    """Batch of DC-Gen's table for ``kind`` in {"train", "infer"}; other N keep the nearest entry's tokens per batch."""
    table = RULE_BATCH[backbone.removesuffix("-tiny")][kind]
    if tokens in table:
        return table[tokens]
    nearest = min(table, key=lambda n: abs(n - tokens))
    return max(1, round(table[nearest] * nearest / tokens))


def peak_tflops(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_TFLOPS if key in device_name), None)


# ----------------------------------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------------------------------

def _time(fn: Callable[[], None], warmup: int, iters: int, sync: Callable[[], None],
          min_seconds: float = 0.0) -> list[float]:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``iters`` calls timed one by one (synchronised).

    Cheap calls are repeated (up to 10× ``iters``) until ``min_seconds`` of timings exist, so that their median is
    not at the mercy of a single scheduler hiccup on a shared CPU.
    """
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    iters = max(1, iters)
    while len(times) < iters or (sum(times) < min_seconds and len(times) < 10 * iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _train_step_fn(model, batch: int, device: str, amp_dtype, generator) -> Callable[[], None]:
    """One AdamW training step of the ε-prediction loss on random latents (DDPM linear-β forward process)."""
    x0, t, cond = random_inputs(model, batch, device, generator)
    noise = torch.randn(x0.shape, device=device, generator=generator)
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, device=device), 0)[t].view(-1, 1, 1, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise       # (N, C, H, W)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    channels = x0.shape[1]
    autocast = (torch.autocast("cuda", dtype=amp_dtype) if device == "cuda" else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            pred = model(x_t, t, cond)[:, :channels]                    # ε part (DiT/PixArt also predict σ)
            loss = torch.nn.functional.mse_loss(pred.float(), noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _infer_fn(model, batch: int, device: str, generator) -> Callable[[], None]:
    x, t, cond = random_inputs(model, batch, device, generator)
    if cond.is_floating_point():
        cond = cond.to(next(model.parameters()).dtype)
    x = x.to(next(model.parameters()).dtype)

    def forward() -> None:
        with torch.inference_mode():
            model(x, t, cond)

    return forward


def _gpu_info() -> dict[str, Any]:
    """Device name, memory and driver via NVML (nvidia-ml-py); torch's name if NVML is missing."""
    info: dict[str, Any] = {"_device_name": torch.cuda.get_device_name(0)}
    try:
        import pynvml  # here: NVML is provenance only, and missing on CPU machines (the except below)
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        name = pynvml.nvmlDeviceGetName(handle)
        info["_device_name"] = name.decode() if isinstance(name, bytes) else name
        info["_gpu_memory_total_gib"] = round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 1024 ** 3, 2)
        driver = pynvml.nvmlSystemGetDriverVersion()
        info["_driver"] = driver.decode() if isinstance(driver, bytes) else driver
    except Exception as e:  # noqa: BLE001 - NVML is provenance only
        info["_nvml"] = f"unavailable ({type(e).__name__})"
    return info


# ----------------------------------------------------------------------------------------------------------------
# The eval
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class _Session:
    """One profiling run: the config, where it runs, and what it has recorded so far."""

    cfg: EfficiencyConfig
    ctx: Any
    cuda: bool
    metrics: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)   # the per-measurement CSV

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"

    @property
    def amp_dtype(self) -> torch.dtype:
        return {"fp16": torch.float16, "bf16": torch.bfloat16}[self.cfg.dtype] if self.cuda else torch.float32

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.cfg.latent_channels, self.cfg.latent_size, self.cfg.patch_size

    @property
    def overrides(self) -> dict[str, Any]:
        return {} if self.cfg.depth is None else {"depth": self.cfg.depth}

    def built_config(self) -> Any:
        return backbone_config(self.cfg.backbone, *self.shape, **self.overrides)  # what is timed

    def batch_for(self, kind: str) -> int:
        """Given batch, else the rule's; on CPU divided by ``batch_divisor`` (memory reuses the train rule)."""
        if self.cfg.batch[kind] is not None:
            return int(self.cfg.batch[kind])
        rule_kind = "train" if kind in ("train", "memory") else "infer"
        div = 1 if self.cuda else max(1, int(self.cfg.batch_divisor[rule_kind] or 1))
        return max(1, rule_batch(self.cfg.backbone, self.metrics["tokens"], rule_kind) // div)

    def build(self, train: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        model = build_backbone(self.cfg.backbone, *self.shape, **self.overrides,
                               activation_checkpointing=self.cfg.activation_checkpointing).to(self.device)
        if not train:
            return model.eval().to(self.amp_dtype) if self.cuda else model.eval()
        return model.train()

    def time(self, fn: Callable[[], None], kind: str) -> list[float]:
        sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        return _time(fn, self.cfg.warmup[kind], self.cfg.iters[kind], sync, self.cfg.min_seconds)

    def record(self, kind: str, batch: int, times: list[float], value: Any, unit: str) -> None:
        self.rows.append({"measurement": kind, "batch": batch, "warmup": self.cfg.warmup[kind], "iters": len(times),
                          "median_s": statistics.median(times) if times else "",
                          "min_s": min(times) if times else "", "max_s": max(times) if times else "",
                          "value": value, "unit": unit})
        self.metrics[f"_batch_{kind}"] = batch
        self.metrics[f"_iters_{kind}"] = f"{self.cfg.warmup[kind]} warm-up + {len(times)} timed"
        self.ctx.log(f"{self.cfg.backbone} {self.metrics['_latent']} {kind}: batch {batch}, {value} {unit}")


def _static_metrics(cfg: EfficiencyConfig, cuda: bool) -> dict[str, Any]:
    """Closed-form costs of the paper's model for this row, and the provenance of every timing."""
    shape = (cfg.latent_channels, cfg.latent_size, cfg.patch_size)
    full = backbone_config(cfg.backbone, *shape)                       # the paper's model for this row
    out: dict[str, Any] = {
        "params_m": round(costs.params(full) / 1e6, 4),
        "gflops_per_forward": round(costs.gflops(full), 4),
        "tokens": costs.tokens(full),
        "train_memory_gb_analytic": round(costs.train_memory_bytes_analytic(full, 256) / 1024 ** 3, 3),
        "_backbone": cfg.backbone, "_autoencoder": cfg.autoencoder,
        "_latent": f"{shape[1]}x{shape[1]}x{shape[0]} p{shape[2]}",
        "_device": "cuda" if cuda else "cpu",
        "_dtype": {"fp16": "float16", "bf16": "bfloat16"}[cfg.dtype] if cuda else "float32 (cpu fp32)",
        "_torch": torch.__version__, "_cuda": str(torch.version.cuda), "_threads": torch.get_num_threads(),
        "_engine": "pytorch-eager", "_activation_checkpointing": cfg.activation_checkpointing,
        "_memory_note": "train_memory_gb_analytic = efficiency.md §4.5 lower bound at batch 256 (16 B/param + fp32 "
                        "residual stream per block), full model; not a measurement",
    }
    if cfg.depth is not None:
        built = backbone_config(cfg.backbone, *shape, depth=cfg.depth)
        out.update(_overrides=str({"depth": cfg.depth}), _built_params_m=round(costs.params(built) / 1e6, 4),
                   _built_gflops_per_forward=round(costs.gflops(built), 4))
    out.update(_gpu_info() if cuda else {"_device_name": platform.processor() or platform.machine()})
    return out


def _measure_train(ses: _Session, generator: torch.Generator) -> None:
    b, built, m = ses.batch_for("train"), ses.built_config(), ses.metrics
    model = ses.build(train=True)
    times = ses.time(_train_step_fn(model, b, ses.device, ses.amp_dtype, generator), "train")
    m["train_throughput_img_s"] = b / statistics.median(times)
    hw = costs.train_flops_per_image(built, recompute=ses.cfg.activation_checkpointing)
    m["train_tflop_s"] = m["train_throughput_img_s"] * hw / 1e12
    if ses.cuda and (peak := peak_tflops(m["_device_name"])):
        m["train_mfu"] = m["train_throughput_img_s"] * costs.train_flops_per_image(built, recompute=False) / (peak * 1e12)
        m["_peak_tflops"] = peak
    ses.record("train", b, times, round(m["train_throughput_img_s"], 4), "img/s")


def _measure_infer(ses: _Session, generator: torch.Generator) -> None:
    model, m = ses.build(train=False), ses.metrics
    for kind in ("infer", "latency"):
        if kind not in ses.cfg.measure:
            continue
        b = ses.batch_for(kind)
        times = ses.time(_infer_fn(model, b, ses.device, generator), kind)
        if kind == "infer":
            m["infer_throughput_img_s"] = b / statistics.median(times)
            m["infer_tflop_s"] = m["infer_throughput_img_s"] * costs.gflops(ses.built_config()) / 1e3
            ses.record(kind, b, times, round(m["infer_throughput_img_s"], 4), "img/s")
        else:
            m["latency_ms"] = 1e3 * statistics.median(times)
            ses.record(kind, b, times, round(m["latency_ms"], 4), "ms")


def _measure_memory(ses: _Session, generator: torch.Generator) -> None:
    if not ses.cuda:
        ses.metrics["train_memory_gb"] = ("unavailable (peak training memory needs a CUDA GPU; see "
                                          "train_memory_gb_analytic for the analytic lower bound)")
        return
    b = ses.batch_for("memory")
    try:
        torch.cuda.empty_cache()
        step = _train_step_fn(ses.build(train=True), b, ses.device, ses.amp_dtype, generator)
        for _ in range(ses.cfg.warmup["memory"]):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = _time(step, 0, ses.cfg.iters["memory"], torch.cuda.synchronize)
        peak = torch.cuda.max_memory_allocated()
        ses.metrics.update(train_memory_gb=peak / 1024 ** 3, _train_memory_bytes=int(peak))
        ses.record("memory", b, times, round(peak / 1024 ** 3, 3), "GiB")
    except torch.OutOfMemoryError:
        ses.metrics["train_memory_gb"] = "OOM"
        ses.record("memory", b, [], "OOM", "GiB")
    finally:
        step = None
        torch.cuda.empty_cache()


def run(cfg: EfficiencyConfig, ctx) -> dict[str, Any]:
    """Eval ``efficiency`` (fields: ``bench.configs.EfficiencyConfig``): closed-form costs, then each measurement."""
    cuda = ctx.device == "cuda" and torch.cuda.is_available()
    old_threads = torch.get_num_threads()
    if not cuda and cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        ses = _Session(cfg, ctx, cuda, _static_metrics(cfg, cuda))
        generator = torch.Generator(ses.device).manual_seed(0)
        if "train" in cfg.measure:
            _measure_train(ses, generator)
        if {"infer", "latency"} & set(cfg.measure):  # one inference model for both
            _measure_infer(ses, generator)
        if "memory" in cfg.measure:
            _measure_memory(ses, generator)
    finally:
        torch.set_num_threads(old_threads)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["measurement", "batch", "warmup", "iters", "median_s", "min_s", "max_s",
                                             "value", "unit"])
    writer.writeheader()
    writer.writerows(ses.rows)
    atomic_write_text(ctx.run_dir / "efficiency.csv", buf.getvalue())
    return ses.metrics
