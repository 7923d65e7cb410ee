"""Efficiency profiling of a diffusion backbone on a latent shape (DC-AE paper §4.1 "Efficiency Profiling").

Protocol ``dcae-efficiency-v1`` (reference/efficiency.md §3, §6, §7). The timed object is the diffusion backbone
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
from typing import Any, Callable

PROTOCOL = "dcae-efficiency-v1"

DEFAULTS: dict[str, Any] = {
    "autoencoder": "",                       # label only (the autoencoder is not run)
    "overrides": {},                         # backbone config overrides, e.g. {"depth": 4} at small scale
    "measure": ["train", "infer", "latency", "memory"],
    "batch": {"train": None, "infer": None, "latency": 2, "memory": 256},  # None: RULE_BATCH by token count
    "batch_divisor": 1,                      # CPU only: divide rule batches by this (>= 1 image); int or per kind
    "warmup": {"train": 20, "infer": 20, "latency": 20, "memory": 5},
    "iters": {"train": 100, "infer": 100, "latency": 100, "memory": 10},
    "min_seconds": 0.0,                      # keep timing (up to 10x iters) until this much time is sampled
    "dtype": "fp16",                         # GPU autocast / inference dtype (fp16 as the paper; bf16 possible)
    "threads": None,                         # CPU: torch.set_num_threads(k); None keeps torch's default
    "activation_checkpointing": True,        # per block, as DC-Gen's training harness
}

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
    import torch
    from models.backbones import random_inputs

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
    import torch
    from models.backbones import random_inputs

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
    import torch
    info: dict[str, Any] = {"_device_name": torch.cuda.get_device_name(0)}
    try:
        import pynvml
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

def resolve_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``cfg`` (nested dicts merged key by key); raises UsageError on missing/unknown keys."""
    from bench.errors import UsageError
    required = ("backbone", "latent_channels", "latent_size", "patch_size")
    missing = [k for k in required if k not in cfg]
    unknown = set(cfg) - set(DEFAULTS) - set(required) - {"_protocol_version"}
    if missing or unknown:
        raise UsageError(f"efficiency config: missing {missing}, unknown {sorted(unknown)}; "
                         f"required {list(required)}, optional {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    for key in ("batch", "warmup", "iters"):
        out[key] = {**DEFAULTS[key], **(cfg.get(key) or {})}
    bad = set(out["measure"]) - {"train", "infer", "latency", "memory"}
    if bad:
        raise UsageError(f"efficiency config: unknown measurements {sorted(bad)}; use train, infer, latency, memory")
    return out


def run(cfg: dict[str, Any], ctx) -> dict[str, Any]:
    import torch

    from bench.errors import Unavailable
    from bench.provenance import atomic_write_text
    from models import costs
    from models.backbones import backbone_config, build_backbone

    cfg = resolve_config(cfg)
    cuda = ctx.device == "cuda" and torch.cuda.is_available()
    if ctx.scale.name == "paper" and not cuda:
        raise Unavailable("paper-scale efficiency needs a CUDA GPU; run `python -m bench <table> --scale paper "
                          "--device cuda` on an H100, or use --scale small for CPU ratios")
    device = "cuda" if cuda else "cpu"
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[cfg["dtype"]] if cuda else torch.float32
    old_threads = torch.get_num_threads()
    if not cuda and cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))

    name, shape = cfg["backbone"], (cfg["latent_channels"], cfg["latent_size"], cfg["patch_size"])
    full = backbone_config(name, *shape)                                        # the paper's model for this row
    built_cfg = backbone_config(name, *shape, **cfg["overrides"])               # what is timed
    n_tokens = costs.tokens(full)
    metrics: dict[str, Any] = {
        "params_m": round(costs.params(full) / 1e6, 4),
        "gflops_per_forward": round(costs.gflops(full), 4),
        "tokens": n_tokens,
        "train_memory_gb_analytic": round(costs.train_memory_bytes_analytic(full, 256) / 1024 ** 3, 3),
        "_protocol": PROTOCOL, "_backbone": name, "_autoencoder": cfg["autoencoder"],
        "_latent": f"{shape[1]}x{shape[1]}x{shape[0]} p{shape[2]}",
        "_device": device, "_dtype": str(amp_dtype).removeprefix("torch.") + ("" if cuda else " (cpu fp32)"),
        "_torch": torch.__version__, "_cuda": str(torch.version.cuda), "_threads": torch.get_num_threads(),
        "_engine": "pytorch-eager", "_activation_checkpointing": bool(cfg["activation_checkpointing"]),
        "_memory_note": "train_memory_gb_analytic = efficiency.md §4.5 lower bound at batch 256 (16 B/param + fp32 "
                        "residual stream per block), full model; not a measurement",
    }
    if cfg["overrides"]:
        metrics.update(_overrides=str(cfg["overrides"]), _built_params_m=round(costs.params(built_cfg) / 1e6, 4),
                       _built_gflops_per_forward=round(costs.gflops(built_cfg), 4))
    metrics.update(_gpu_info() if cuda else {"_device_name": platform.processor() or platform.machine()})

    def batch_for(kind: str) -> int:
        """Given batch, else the rule's; on CPU divided by ``batch_divisor`` (memory reuses the train rule)."""
        given = cfg["batch"][kind]
        if given is not None:
            return int(given)
        rule_kind = "train" if kind in ("train", "memory") else "infer"
        div = cfg["batch_divisor"]
        div = div.get(rule_kind, 1) if isinstance(div, dict) else div
        return max(1, rule_batch(name, n_tokens, rule_kind) // (1 if cuda else max(1, int(div))))

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    generator = torch.Generator(device).manual_seed(0)
    rows: list[dict[str, Any]] = []   # the per-measurement CSV

    def build(train: bool):
        torch.manual_seed(0)
        model = build_backbone(name, *shape, **{**cfg["overrides"],
                                                "activation_checkpointing": bool(cfg["activation_checkpointing"])})
        model = model.to(device)
        if not train:
            model = model.eval().to(amp_dtype) if cuda else model.eval()
        return model.train() if train else model

    def record(kind: str, batch: int, times: list[float], value: Any, unit: str) -> None:
        rows.append({"measurement": kind, "batch": batch, "warmup": cfg["warmup"][kind], "iters": len(times),
                     "median_s": statistics.median(times) if times else "", "min_s": min(times) if times else "",
                     "max_s": max(times) if times else "", "value": value, "unit": unit})
        metrics[f"_batch_{kind}"] = batch
        metrics[f"_iters_{kind}"] = f"{cfg['warmup'][kind]} warm-up + {len(times)} timed"
        ctx.log(f"{name} {metrics['_latent']} {kind}: batch {batch}, {value} {unit}")

    try:
        if "train" in cfg["measure"]:
            b = batch_for("train")
            model = build(train=True)
            times = _time(_train_step_fn(model, b, device, amp_dtype, generator),
                          cfg["warmup"]["train"], cfg["iters"]["train"], sync, cfg["min_seconds"])
            metrics["train_throughput_img_s"] = b / statistics.median(times)
            hw = costs.train_flops_per_image(built_cfg, recompute=bool(cfg["activation_checkpointing"]))
            metrics["train_tflop_s"] = metrics["train_throughput_img_s"] * hw / 1e12
            if cuda and (peak := peak_tflops(metrics["_device_name"])):
                model_flops = costs.train_flops_per_image(built_cfg, recompute=False)
                metrics["train_mfu"] = metrics["train_throughput_img_s"] * model_flops / (peak * 1e12)
                metrics["_peak_tflops"] = peak
            record("train", b, times, round(metrics["train_throughput_img_s"], 4), "img/s")
            del model
        if "infer" in cfg["measure"] or "latency" in cfg["measure"]:
            model = build(train=False)
            for kind in ("infer", "latency"):
                if kind not in cfg["measure"]:
                    continue
                b = batch_for(kind)
                times = _time(_infer_fn(model, b, device, generator), cfg["warmup"][kind], cfg["iters"][kind], sync,
                              cfg["min_seconds"])
                if kind == "infer":
                    metrics["infer_throughput_img_s"] = b / statistics.median(times)
                    metrics["infer_tflop_s"] = metrics["infer_throughput_img_s"] * costs.gflops(built_cfg) / 1e3
                    record(kind, b, times, round(metrics["infer_throughput_img_s"], 4), "img/s")
                else:
                    metrics["latency_ms"] = 1e3 * statistics.median(times)
                    record(kind, b, times, round(metrics["latency_ms"], 4), "ms")
            del model
        if "memory" in cfg["measure"]:
            if not cuda:
                metrics["train_memory_gb"] = "unavailable (peak training memory needs a CUDA GPU; see " \
                                             "train_memory_gb_analytic for the analytic lower bound)"
            else:
                b = batch_for("memory")
                try:
                    torch.cuda.empty_cache()
                    model = build(train=True)
                    step = _train_step_fn(model, b, device, amp_dtype, generator)
                    for _ in range(cfg["warmup"]["memory"]):
                        step()
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    times = _time(step, 0, cfg["iters"]["memory"], sync)
                    peak = torch.cuda.max_memory_allocated()
                    metrics["train_memory_gb"] = peak / 1024 ** 3
                    metrics["_train_memory_bytes"] = int(peak)
                    record("memory", b, times, round(peak / 1024 ** 3, 3), "GiB")
                except torch.OutOfMemoryError:
                    metrics["train_memory_gb"] = "OOM"
                    record("memory", b, [], "OOM", "GiB")
                finally:
                    model = step = None
                    torch.cuda.empty_cache()
    finally:
        torch.set_num_threads(old_threads)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["measurement", "batch", "warmup", "iters", "median_s", "min_s", "max_s",
                                             "value", "unit"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(ctx.run_dir / "efficiency.csv", buf.getvalue())
    return metrics
