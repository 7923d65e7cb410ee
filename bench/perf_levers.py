"""Before/after timings of the performance levers that keep outputs identical (``python -m bench perf --only levers``
runs them into ``tables/perf-<machine>.csv``, bench/perf.py).

Each lever gives rows with ``before_s`` and ``after_s`` (medians over ``repeats``), ``ratio`` (the median of
after/before pair by pair: before and after alternate, A B A B ..., so a machine whose speed drifts moves both
alike) and ``max_abs_diff`` of the outputs (0 = identical). One torch thread and one BLAS thread, as each ``--jobs``
worker. The levers:

- ``allocator``: the FID Inception forward (batch 16, 128-px images) in a fresh process with
  ``DCAE_BENCH_MALLOC=default`` and with the setting ``python -m bench`` applies (bench/process.py); the
  processes alternate, each times its own forwards after a warm-up and reports its peak RSS (the memory cost);
- ``ssim-blur``: ``metrics.ssim_per_image`` against the same SSIM with the blur as grouped float64 ``conv2d``;
- ``kid-once``: ``metrics.kid`` on two full sets of 326 features (a small-scale reconstruction) against the mean
  over 100 reorderings of them that it computed before;
- ``batchnorm-fold``: the FID Inception forward with its BatchNorms as passes of their own and folded into the
  convs (``inception.fold_batchnorm``, what the harness runs);
- ``fused-adamw``: a reduced UViT-S and DiT-S training step with AdamW's per-tensor loop and with ``fused=True``
  (what the diffusion recipes run);
- ``recon-reference-lock``: two reconstruction evaluations of the same images at once (two threads, as two
  ``--jobs`` workers), with the reference-statistics lock and without it: CPU seconds of the pair (both cores).

Uses the FID Inception weights the harness finds (never downloaded); without them a randomly initialised network of
the same architecture, and the rows say so. Takes about 3-5 minutes on 2 cores.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
# One BLAS thread for numpy as well (OpenBLAS reads this once, when numpy loads), as bench.parallel gives each worker
os.environ.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))

from bench import process  # noqa: E402
from bench.perf import interleaved  # noqa: E402

LEVERS = ("allocator", "ssim", "kid", "reference", "fold", "fused")


def row(lever: str, setting: str, before: list[float], after: list[float], diff: float, note: str = "") -> dict:
    """One CSV row: medians, the median pairwise ratio, the output difference."""
    return {"lever": lever, "setting": setting, "before_s": f"{statistics.median(before):.4g}",
            "after_s": f"{statistics.median(after):.4g}",
            "ratio": f"{statistics.median(a / b for a, b in zip(after, before)):.3f}",
            "max_abs_diff": f"{diff:.3g}", "repeats": len(before), "note": note}


# ---------------------------------------------------------------------------------------------------- the FID network


def fid_network():
    """(network, what it is): the FID Inception with the weights the harness finds, else random weights."""
    from bench.errors import Unavailable
    from bench.evals import inception as I
    try:
        net = I.load_fid_inception()
        return net, net.name
    except Unavailable:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        import torch
        empty = Path(tempfile.mkdtemp()) / "empty.pth"
        torch.save({}, empty)
        with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
            net = I.FIDInception(I.InceptionWeights(empty, "random init"))
        return net, "random-init Inception-v3 of the FID architecture (no weights here: timings only)"


def inception_child(forwards: int, out: Path) -> None:
    """In a fresh process: the allocator setting first (as ``python -m bench``), then timed FID forwards."""
    said = process.tune_allocator()
    import numpy as np
    import torch
    from models.data import synthetic_images
    torch.set_num_threads(1)
    net, what = fid_network()
    u = synthetic_images(16, 128, seed=0)  # (16, 3, 128, 128) uint8
    net(u)  # warm-up: oneDNN primitives, first-touch of the weights
    times = []
    for _ in range(forwards):
        t0 = time.perf_counter()
        feats = net(u)  # (16, 2048)
        times.append(time.perf_counter() - t0)
    np.save(out / "features.npy", feats.numpy())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out / "result.json").write_text(json.dumps({"allocator": said, "seconds": times, "network": what,
                                                 "peak_rss_mb": peak_mb}))


def lever_allocator(repeats: int) -> list[dict]:
    """Alternating processes without and with the allocator setting; in-process seconds per forward (median)."""
    import numpy as np
    results: dict[str, list[dict]] = {"default": [], "tuned": []}
    feats = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):
            for switch in ("default", "tuned"):
                out = Path(tmp) / f"{switch}{k}"
                out.mkdir()
                env = {**os.environ, process.MALLOC_ENV: switch}
                subprocess.run([sys.executable, "-m", "bench.perf_levers", str(out)], check=True,
                               env={**env, "PYTHONPATH": str(ROOT)})
                results[switch].append(json.loads((out / "result.json").read_text()))
                feats[switch] = np.load(out / "features.npy")
    before = [statistics.median(r["seconds"]) for r in results["default"]]
    after = [statistics.median(r["seconds"]) for r in results["tuned"]]
    rss = {s: max(r["peak_rss_mb"] for r in results[s]) for s in results}
    note = (f"{results['tuned'][0]['network']}; per forward of 16 images at 128 px (resized to 299), one process each; "
            f"peak RSS {rss['default']:.0f} MB default, {rss['tuned']:.0f} MB tuned "
            f"({rss['tuned'] / rss['default'] - 1:+.0%}); after: {results['tuned'][0]['allocator']}")
    diff = float(np.abs(feats["default"] - feats["tuned"]).max())
    return [row("allocator", "FID Inception forward, batch 16", before, after, diff, note)]


# ---------------------------------------------------------------------------------------------------- SSIM and KID


def lever_ssim(repeats: int) -> list[dict]:
    """16 image pairs (a synthetic image and a noisy copy) at 128 and 256 px, as one reconstruction batch. Before:
    the official SSIM with the separable Gaussian as two grouped float64 ``conv2d`` calls, the direct form the tests
    compare the matrix-product blur with."""
    import torch
    from bench.evals import metrics as M
    from models.data import synthetic_images
    from tests.test_metrics import ssim_by_conv2d
    rows = []
    for r in (128, 256):
        a = synthetic_images(16, r, seed=1)
        noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(2)) * 8
        b = (a.float() + noise).round().clamp(0, 255).to(torch.uint8)
        times, outs = interleaved(lambda: ssim_by_conv2d(a, b, M.SSIM_OFFICIAL), lambda: M.ssim_per_image(a, b),
                                  repeats)
        diff = float((outs["reference"] - outs["ours"]).abs().max())
        rows.append(row("ssim-blur", f"16 images at {r} px, float64", times["reference"], times["ours"], diff,
                        "both with the allocator setting of python -m bench"))
    return rows


def kid_by_subsets(f1, f2, subsets: int = 100, seed: int = 0) -> float:
    """``kid`` on sets no larger than its subsets as it was computed before: the mean over 100 reorderings."""
    import numpy as np
    from bench.evals import metrics as M
    rng = np.random.default_rng(seed)
    m = len(f1)
    return float(np.mean([M.mmd2_unbiased(f1[rng.choice(m, m, replace=False)], f2[rng.choice(m, m, replace=False)])
                          for _ in range(subsets)]))


def lever_kid(repeats: int) -> list[dict]:
    """Two sets of 326 features of 2048 dimensions (the small scale's reconstruction sets), KID subsets of 1000."""
    import numpy as np
    from bench.evals import metrics as M
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(326, 2048)), rng.normal(size=(326, 2048)) * 1.1 + 0.05
    times, outs = interleaved(lambda: kid_by_subsets(f1, f2), lambda: M.kid(f1, f2, subset_size=1000), repeats)
    diff = abs(outs["reference"] - outs["ours"])
    note = f"KID {outs['ours']:.6g}; relative difference {diff / abs(outs['reference']):.2g}"
    return [row("kid-once", "326 vs 326 features (2048-d)", times["reference"], times["ours"], diff, note)]


# ---------------------------------------------------------------------------------------------------- reference lock


def _avg_pool_autoencoder():
    """A weightless stand-in autoencoder (avg-pool by 4, nearest upsampling): the lever is in the FID network."""
    import torch.nn.functional as F
    from torch import nn

    class AvgPoolAE(nn.Module):
        def forward(self, x):
            return F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")  # (B, 3, r, r)
    return AvgPoolAE()


def two_concurrent_evaluations(net, locked: bool) -> list[float]:
    """Two reconstruction evaluations of the same 8 images at once in a fresh cache (two threads, as two
    ``--jobs`` workers), with the reference-statistics lock or with it replaced by nothing; their rFIDs."""
    from bench.evals import reconstruction as R
    from models.data import SyntheticDataset
    ds, model, rfid = SyntheticDataset(8, 64), _avg_pool_autoencoder(), {}
    with tempfile.TemporaryDirectory() as tmp:
        def run(name: str) -> None:
            rfid[name] = R.evaluate(model, ds, Path(tmp) / name, feature_net=net, cache_dir=Path(tmp) / "_cache",
                                    n_samples=0, log=lambda m: None).metrics["rfid"]

        unlocked = mock.patch.object(R, "file_lock", lambda path: contextlib.nullcontext())
        with contextlib.nullcontext() if locked else unlocked:
            threads = [threading.Thread(target=run, args=(k,)) for k in "ab"]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    return [rfid["a"], rfid["b"]]


def lever_reference(repeats: int) -> list[dict]:
    """CPU seconds of two concurrent evaluations (both threads), without and with the lock."""
    net, what = fid_network()
    times, outs = interleaved(lambda: two_concurrent_evaluations(net, locked=False),
                              lambda: two_concurrent_evaluations(net, locked=True), repeats, clock=time.process_time)
    diff = max(abs(x - y) for x in outs["reference"] + outs["ours"] for y in outs["reference"])
    note = (f"{what}; CPU seconds of the pair (two threads on the cores), 8 originals + 8 reconstructions each at "
            f"64 px: the originals' features built twice without the lock, once with it")
    return [row("recon-reference-lock", "2 concurrent evaluations, same images", times["reference"], times["ours"],
                diff, note)]


# ---------------------------------------------------------------------------------------------------- fold, fused


def lever_fold(repeats: int) -> list[dict]:
    """The FID Inception forward (batch 16, 128-px images) with each BatchNorm as its own pass and folded into its
    conv (``inception.fold_batchnorm``); the difference relative to the largest feature."""
    from bench.evals import inception as I
    from bench.errors import Unavailable
    from models.data import synthetic_images
    try:
        w = I.locate_weights()
    except Unavailable as e:
        return [row("batchnorm-fold", "FID Inception forward, batch 16", [1.0], [1.0], 0.0, f"unavailable: {e}")]
    plain, folded = I.FIDInception(w, fold=False), I.FIDInception(w)
    u = synthetic_images(16, 128, seed=0)  # (16, 3, 128, 128) uint8
    times, outs = interleaved(lambda: plain(u), lambda: folded(u), repeats)
    rel = float((outs["ours"] - outs["reference"]).abs().max() / outs["reference"].abs().max())
    return [row("batchnorm-fold", "FID Inception forward, batch 16", times["reference"], times["ours"], rel,
                f"{folded.name}; max_abs_diff is relative to the largest feature (tolerance {I.FOLD_TOLERANCE:g}); "
                f"both channels_last, with the allocator setting of python -m bench")]


def lever_fused(repeats: int) -> list[dict]:
    """One training step (forward, backward, AdamW) of the reduced UViT-S and DiT-S, AdamW as per-tensor loops
    (``foreach``) and fused; the parameters after the timed steps, relative to the largest one."""
    import torch
    from models import backbones
    rows = []
    for name in ("uvit-s-small", "dit-s-small"):
        pair = {}
        for fused in (False, True):
            torch.manual_seed(0)
            model = backbones.build_backbone(name, 32, 4, 1, num_classes=8)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=None if fused else True)
            pair[fused] = (model, opt)
        g = torch.Generator().manual_seed(1)
        z, t, y = torch.randn(32, 32, 4, 4, generator=g), torch.rand(32, generator=g) * 999, torch.arange(32) % 8

        def step(model, opt) -> torch.Tensor:
            torch.manual_seed(2)  # the backbones' label dropout draws from the global RNG: the same draws for both
            opt.zero_grad(set_to_none=True)
            (model(z, t, y)[:, :32] - z).pow(2).mean().backward()
            opt.step()
            return torch.cat([p.detach().flatten() for p in model.parameters()])
        times, outs = interleaved(lambda: step(*pair[False]), lambda: step(*pair[True]), repeats)
        rel = float((outs["ours"] - outs["reference"]).abs().max() / outs["reference"].abs().max())
        rows.append(row("fused-adamw", f"{name} step, batch 32, 4x4 latents", times["reference"], times["ours"],
                        rel, f"max_abs_diff: parameters after {repeats + 1} steps each, relative to the largest"))
    return rows


# ---------------------------------------------------------------------------------------------------- the table


MEASURE = {"allocator": lever_allocator, "ssim": lever_ssim, "kid": lever_kid, "reference": lever_reference,
           "fold": lever_fold, "fused": lever_fused}


if __name__ == "__main__":  # one allocator process of lever_allocator: python -m bench.perf_levers OUT
    inception_child(3, Path(sys.argv[1]))
