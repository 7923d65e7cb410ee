"""``python -m bench perf``: side-by-side CPU benchmarks, each a ratio measured in one run against a reference on this
machine, and the levers that keep outputs identical, into ``tables/perf-<machine>.csv``.

    python -m bench perf [--only peak,fid,autoencoders,sampler,train-step,levers] [--repeats N] [--sizes 256,512]
                         [--smoke]

One torch thread, as each ``--jobs`` worker. Every timing pair alternates (reference, ours, reference, ours, ...
after one untimed call of each), so a machine whose speed drifts moves both alike; the ratio is the median of the
pairwise ratios ours / reference (below 1: ours is faster). The benchmarks:

- ``peak``: this core's best fp32 rate (GFLOP/s) over large matrix products and 3x3 convolutions: the
  yardstick of the others;
- ``fid``: our FID feature extractor (``bench/evals/inception.py``: DC-AE's preprocessing, channels_last) against
  torch-fidelity's ``FeatureExtractorInceptionV3`` forward at identical weights, 16 images of 128 px; achieved GFLOP/s
  (FLOPs counted by ``torch.utils.flop_counter``) and their share of ``peak``;
- ``autoencoders``: our DC-AE-f32c32 and SD-VAE-f8 against diffusers' ``AutoencoderDC`` / ``AutoencoderKL`` at
  identical (random) weights, encode + decode of one image per size, fp32;
- ``sampler``: DPM-Solver++ (U-ViT) and IDDPM (DiT) at their official step counts with the small-scale backbones:
  the share of sampling time spent outside the network;
- ``train-step``: one optimiser step (forward, backward, AdamW) per reduced family on an L1 (autoencoders) or
  ε-MSE (backbones) loss, without the recipes' other losses: achieved GFLOP/s and share of ``peak``;
- ``levers``: the identical-output levers of ``bench/perf_levers.py`` (allocator, SSIM blur, KID once, reference
  lock), before and after.

The run writes ``runs/_perf/<run_id>/`` (config.json, env.json, metrics.json with every row, log.txt) and the CSV
rows name it. ``--smoke`` runs the same code on tiny models in seconds (tests; rows say so, and go to
``tables/perf-<machine>-smoke.csv``).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cli_tools import OneLineParser
from bench.errors import UsageError
from bench.provenance import atomic_write_json, atomic_write_text, cpu_model, open_measurement, slug

BENCHMARKS = ("peak", "fid", "autoencoders", "sampler", "train-step", "levers")
GOALS = {"fid": ("peak_share", ">=", 0.85), "autoencoders": ("ratio", "<=", 1.0), "sampler": ("outside_share", "<=", 0.10)}
COLUMNS = ("benchmark", "setting", "reference_s", "ours_s", "ratio", "gflops", "peak_share", "outside_share",
           "max_abs_diff", "goal", "met", "repeats", "note", "load_1min_max", "run_id", "machine", "cpu_model",
           "threads", "torch", "git_sha", "date")
TINY = {"fid": 32, "ae": {"dc-ae": "dc-ae-f8c4-tiny", "sd-vae": "sd-vae-f8c4-tiny"}, "sizes": (32,)}


def interleaved(reference: Callable[[], Any], ours: Callable[[], Any], repeats: int,
                clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time ``reference()`` and ``ours()`` alternately on ``clock`` after one untimed call of each: ({name: seconds},
    {name: the last output})."""
    outs = {"reference": reference(), "ours": ours()}
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    for _ in range(repeats):
        for name, f in (("reference", reference), ("ours", ours)):
            t0 = clock()
            outs[name] = f()
            times[name].append(clock() - t0)
    return times, outs


def pair_row(benchmark: str, setting: str, times: dict[str, list[float]], diff: float, note: str = "") -> dict:
    """Medians of both sides, the median pairwise ratio ours / reference, the largest output difference."""
    ref, ours = times["reference"], times["ours"]
    return {"benchmark": benchmark, "setting": setting, "reference_s": statistics.median(ref),
            "ours_s": statistics.median(ours), "ratio": statistics.median(o / r for o, r in zip(ours, ref)),
            "max_abs_diff": diff, "repeats": len(ref), "note": note}


def flops_of(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (matrix products and convolutions, forward and backward), by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------------------ benchmarks

PEAK_KERNELS = (("matmul 1024", 1024, 0, 0), ("matmul 2048", 2048, 0, 0), ("matmul 4096", 4096, 0, 0),
                ("3x3 conv 256 ch 64 px", 0, 256, 64), ("3x3 conv 512 ch 32 px", 0, 512, 32))  # (name, n, c, side)


def dense_kernel(n: int, c: int, side: int) -> tuple[Callable[[], Any], int]:
    """An fp32 square matrix product (MKL) or a channels_last 3x3 convolution of batch 4 (oneDNN), and its FLOPs."""
    import torch
    import torch.nn.functional as F
    if n:
        a, b = torch.randn(n, n), torch.randn(n, n)
        return (lambda: a @ b), 2 * n ** 3
    x = torch.randn(4, c, side, side).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 3, 3).contiguous(memory_format=torch.channels_last)
    return (lambda: F.conv2d(x, w, padding=1)), 2 * 4 * c * c * 9 * side * side


def bench_peak(repeats: int, smoke: bool) -> list[dict]:
    """The best fp32 rate of the dense kernels the networks run on (large matrix products and 3x3 convolutions: the
    library whose kernels suit this core best sets the yardstick)."""
    best, where, seconds = 0.0, "", 0.0
    for name, n, c, side in (("matmul 256", 256, 0, 0),) if smoke else PEAK_KERNELS:
        fn, flops = dense_kernel(n, c, side)
        fn()
        t = min(_seconds(fn) for _ in range(max(repeats, 3)))
        if flops / t / 1e9 > best:
            best, where, seconds = flops / t / 1e9, name, t
    return [{"benchmark": "peak", "setting": f"fp32, best of {len(PEAK_KERNELS)} dense kernels (at {where})"
             if not smoke else "fp32 matmul 256", "ours_s": seconds, "gflops": best, "repeats": max(repeats, 3),
             "note": "the yardstick of peak_share"}]


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_fid(repeats: int, smoke: bool) -> list[dict]:
    """Ours: DC-AE's preprocessing + our layer walk; reference: torch-fidelity's own forward (its TF1 resize)."""
    import torch
    from bench.evals.inception import FIDInception, locate_weights
    from bench.errors import Unavailable
    from models.data import synthetic_images
    try:
        weights = locate_weights()
    except Unavailable as e:
        return [{"benchmark": "fid", "setting": "16 images at 128 px", "note": f"unavailable: {e}"}]
    ours = FIDInception(weights)
    theirs = ours.net.__class__("perf-reference", ["2048"], feature_extractor_weights_path=str(weights.path)).eval()
    u = synthetic_images(2 if smoke else 16, 128, seed=0)
    with torch.no_grad():
        times, outs = interleaved(lambda: theirs(u)[0], lambda: ours(u), repeats)
        flops = flops_of(lambda: ours(u))
    row = pair_row("fid", f"{len(u)} images at 128 px -> 299, pool3 features",
                   times, float((outs["ours"] - outs["reference"]).abs().max()),
                   "features differ by design: DC-AE's u/127.5-1 and PyTorch bilinear resize vs torch-fidelity's "
                   f"(u-128)/128 and TF1 resize; the same weights ({weights.source})")
    row["gflops"] = flops / row["ours_s"] / 1e9
    return [row]


def bench_autoencoders(repeats: int, smoke: bool, sizes: tuple[int, ...]) -> list[dict]:
    import torch
    from bench.gpu_bench import ae_pair, encode_decode
    names = TINY["ae"] if smoke else {"dc-ae": "dc-ae-f32c32-in-1.0", "sd-vae": "sd-vae-f8"}
    rows = []
    for family, name in names.items():
        ours, theirs = ae_pair(family, name, "cpu", torch.float32)
        if theirs is None:
            rows.append({"benchmark": "autoencoders", "setting": name, "note": "unavailable: diffusers is not "
                         "installed (pip install -e \".[diffusers]\")"})
            continue
        for side in TINY["sizes"] if smoke else sizes:
            x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
            a, b = encode_decode(ours, "ours", family), encode_decode(theirs, "diffusers", family)
            with torch.inference_mode():
                times, outs = interleaved(lambda: b(x), lambda: a(x), repeats)
            rows.append(pair_row("autoencoders", f"{name} encode+decode, 1 image at {side} px, fp32", times,
                                 float((outs["ours"] - outs["reference"]).abs().max()),
                                 f"reference: diffusers {type(theirs).__name__}, identical random weights"))
    return rows


def bench_sampler(repeats: int, smoke: bool) -> list[dict]:
    """Time outside the network: (total - backbone) / total over one batch, the sampler's official step count."""
    import torch
    from bench.evals.generation import Sampling, sample_batch
    from models import backbones
    rows = []
    for name in ("uvit-s-small", "dit-s-small"):
        family = backbones.BACKBONE_FAMILIES[backbones.BACKBONES[name].family]
        sampler, steps = family.sampler, 5 if smoke else family.sampler_steps
        torch.manual_seed(0)
        net = backbones.build_backbone(name, 32, 4, 1, num_classes=8).eval()
        s = Sampling(sampler, steps, "time-uniform", 1.5, 8, 0, 32)
        noise, y = torch.randn(32, 32, 4, 4), torch.arange(32) % 8
        shares, totals = [], []
        for _ in range(max(repeats, 1)):
            clock: dict[str, float] = {}
            t0 = time.perf_counter()
            sample_batch(net, s, y, noise, 0, clock=clock)
            total = time.perf_counter() - t0
            shares.append(1 - clock["backbone"] / total)
            totals.append(total)
        rows.append({"benchmark": "sampler", "setting": f"{sampler} {steps} steps, {name}, 32 latents 32x4x4, cfg 1.5",
                     "ours_s": statistics.median(totals), "outside_share": statistics.median(shares),
                     "repeats": len(shares), "note": "the small-scale backbone: the smallest network, the largest "
                                                     "share outside it"})
    return rows


def bench_train_step(repeats: int, smoke: bool) -> list[dict]:
    import torch
    import models
    from models import backbones
    cases = [("dc-ae-f32c32-tiny", 128, 8), ("sd-vae-f32c64-tiny", 128, 8), ("uvit-s-small", 4, 32),
             ("dit-s-small", 4, 32)]
    rows = []
    for name, side, batch in cases:
        torch.manual_seed(0)
        if name.startswith(("dc-ae", "sd-vae")):
            batch, side = (2, 32) if smoke else (batch, side)
            model = models.build(name)
            x = torch.rand(batch, 3, side, side) * 2 - 1
            loss_of = lambda m=model, x=x: (m(x) - x).abs().mean()  # noqa: E731
        else:
            model = backbones.build_backbone(name, 32, side, 1, num_classes=8)
            z, t, y = torch.randn(batch, 32, side, side), torch.rand(batch) * 999, torch.arange(batch) % 8
            loss_of = lambda m=model, z=z, t=t, y=y: (m(z, t, y)[:, :32] - z).pow(2).mean()  # noqa: E731
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(opt=opt, loss_of=loss_of) -> None:
            opt.zero_grad(set_to_none=True)
            loss_of().backward()
            opt.step()
        step()
        flops = flops_of(step)
        secs = statistics.median(_seconds(step) for _ in range(max(repeats, 1) * 2))
        rows.append({"benchmark": "train-step", "setting": f"{name}, batch {batch}, {side}x{side} "
                     f"{'px' if name.startswith(('dc-ae', 'sd-vae')) else 'latents'}", "ours_s": secs,
                     "gflops": flops / secs / 1e9, "repeats": max(repeats, 1) * 2,
                     "note": "forward, backward, AdamW on an L1 / eps-MSE loss (no LPIPS, GAN or vb terms)"})
    return rows


def bench_levers(repeats: int, smoke: bool) -> list[dict]:
    from bench import perf_levers
    levers = ("ssim", "kid") if smoke else perf_levers.LEVERS
    return [{"benchmark": f"lever:{r['lever']}", "setting": r["setting"], "reference_s": r["before_s"],
             "ours_s": r["after_s"], "ratio": r["ratio"], "max_abs_diff": r["max_abs_diff"], "repeats": r["repeats"],
             "note": f"before -> after; {r['note']}".rstrip("; ")}
            for lever in levers for r in perf_levers.MEASURE[lever](repeats)]


MEASURE = {"peak": bench_peak, "fid": bench_fid, "sampler": bench_sampler, "train-step": bench_train_step,
           "levers": bench_levers}


# ------------------------------------------------------------------------------------------------------ the run

def judged(row: dict, peak: float | None) -> dict:
    """The row with its share of the measured peak and, where the benchmark has a goal, the goal and whether it
    was met."""
    if peak and row.get("gflops") and row["benchmark"] != "peak":
        row["peak_share"] = row["gflops"] / peak
    if row["benchmark"] in GOALS and not str(row.get("note", "")).startswith("unavailable"):
        key, op, bound = GOALS[row["benchmark"]]
        value = row.get(key)
        row["goal"] = f"{key} {op} {bound:g}"
        row["met"] = "" if value is None else ("yes" if (value >= bound if op == ">=" else value <= bound) else "no")
        if key == "peak_share" and value is not None and value > 1:  # faster than the yardstick: the peak is too low
            row["met"] = "unknown (above the measured peak: the peak row is too low a yardstick)"
    return row


def parse(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(prog="python -m bench perf", description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    p.add_argument("--repeats", type=int, default=3, help="timed pairs per benchmark (default 3)")
    p.add_argument("--sizes", default="256,512", help="autoencoder image sides in px (default 256,512)")
    p.add_argument("--smoke", action="store_true", help="tiny models, seconds: a pipeline check, never a result")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--out", default=".", help="where tables/ is written (default: here)")
    args = p.parse_args(argv)
    only = tuple(args.only.split(","))
    if set(only) - set(BENCHMARKS):
        raise UsageError(f"--only {args.only}: choose from {', '.join(BENCHMARKS)}")
    try:
        args.sizes = tuple(int(v) for v in args.sizes.split(","))
    except ValueError:
        raise UsageError(f"--sizes {args.sizes}: give px sides separated by commas, e.g. 256,512") from None
    if args.repeats < 1 or any(v < 32 or v % 32 for v in args.sizes):
        raise UsageError("--repeats takes a whole number >= 1 and --sizes multiples of 32 px")
    args.only = only
    return args


def main(argv: list[str]) -> int:
    """Run the chosen benchmarks in one process on one thread; write the run folder and the CSV."""
    import torch
    args = parse(argv)
    torch.set_num_threads(1)
    machine = slug(cpu_model())
    run = open_measurement(Path(args.runs_dir) / "_perf", f"perf__{machine}{'__smoke' if args.smoke else ''}",
                           {"command": "perf", "only": list(args.only), "repeats": args.repeats,
                            "sizes": list(args.sizes), "smoke": args.smoke, "threads": 1},
                           "smoke" if args.smoke else "small")
    log, env = run.log, run.env
    rows: list[dict] = []
    for name in (b for b in BENCHMARKS if b in args.only):
        t0, load = time.perf_counter(), os.getloadavg()[0]
        measure = MEASURE.get(name) or (lambda r, s: bench_autoencoders(r, s, args.sizes))
        for row in measure(args.repeats, args.smoke):
            row["load_1min_max"] = max(load, os.getloadavg()[0])
            rows.append(row)
            log(f"{row['benchmark']} ({row['setting']}): " + ", ".join(
                f"{k} {_cell(row[k])}" for k in ("reference_s", "ours_s", "ratio", "gflops", "outside_share",
                                                 "max_abs_diff") if row.get(k) not in (None, "")) +
                (f" [{row['note']}]" if str(row.get("note", "")).startswith("unavailable") else ""))
        log(f"  {name}: {time.perf_counter() - t0:.0f} s")
    peak = next((r["gflops"] for r in rows if r["benchmark"] == "peak"), None) or _committed_peak(args, machine)
    rows = [judged(r, peak) for r in rows]
    stamp = {"run_id": run.run_id, "machine": machine, "cpu_model": env["cpu_model"], "threads": 1,
             "torch": env["torch"], "git_sha": env["git_sha"][:12], "date": run.started}
    rows = [{**r, **stamp} for r in rows]
    atomic_write_json(run.dir / "metrics.json", {"rows": rows, "peak_gflops": peak})
    path = write_csv(rows, Path(args.out) / "tables" / f"perf-{machine}{'-smoke' if args.smoke else ''}.csv")
    log(f"wrote {path} (run {run.dir})")
    return 0


def _committed_peak(args: argparse.Namespace, machine: str) -> float | None:
    """The peak of the last full run on this machine, for a run that did not measure it (--only without peak)."""
    path = Path(args.out) / "tables" / f"perf-{machine}.csv"
    if args.smoke or not path.is_file():
        return None
    peaks = [float(r["gflops"]) for r in csv.DictReader(path.open()) if r["benchmark"] == "peak" and r["gflops"]]
    return peaks[-1] if peaks else None


def write_csv(rows: list[dict], path: Path) -> Path:
    """Replace the rows of the benchmarks this run measured; keep the others (with their own run ids)."""
    kept = []
    if path.is_file():
        measured = {r["benchmark"] for r in rows}
        kept = [r for r in csv.DictReader(path.open()) if r.get("benchmark") and r["benchmark"] not in measured
                and r.get("run_id")]  # rows of another layout (no benchmark or run id) are replaced
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(kept + [{k: _cell(v) for k, v in r.items()} for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    return path


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
