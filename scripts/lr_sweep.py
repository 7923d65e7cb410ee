"""Phase-1 learning-rate sweep behind the small scale's lr (bench/evals/training.py ``SCALE_DEFAULTS``).

Trains each model for ``--steps`` phase-1 steps (64 px, batch 8, L1, the embedded training photos) at each lr and
prints the mean training L1 of the last 50 steps. Nothing is written: this is the check a reader runs to see why the
small scale uses the lr it does. ~1 min per (model, lr) on one CPU core.

    .venv/bin/python scripts/lr_sweep.py                                   # f32c32-tiny, both families
    .venv/bin/python scripts/lr_sweep.py --models sd-vae-f64c128-tiny --lrs 1e-4 1e-3
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["dc-ae-f32c32-tiny", "sd-vae-f32c32-tiny"])
    ap.add_argument("--lrs", nargs="+", type=float, default=[3e-5, 1e-4, 2e-4, 3e-4, 1e-3, 3e-3])
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()

    import torch
    from tabulate import tabulate

    import models
    from models import data
    from models.train_autoencoder import PHASES, DatasetCropSource, train_autoencoder

    src = DatasetCropSource(data.EmbeddedPhotos("train", 64), 64)
    rows = []
    for name in args.models:
        for lr in args.lrs:
            torch.manual_seed(0)
            model = models.build(name)
            phase = dataclasses.replace(PHASES["phase1"], resolution=64, steps=args.steps, batch=8, lr=lr,
                                        warmup_steps=20)
            t0 = time.perf_counter()
            res = train_autoencoder(model, phase, src, ckpt_dir=None, perceptual=None, progress=False,
                                    log=lambda _m: None)
            tail = [h["l1"] for h in res.history[-50:]]
            rows.append([name, f"{lr:g}", f"{sum(tail) / len(tail):.4f}", f"{time.perf_counter() - t0:.0f}"])
            print(tabulate([rows[-1]], tablefmt="plain"), flush=True)
    print(tabulate(rows, headers=["model", "lr", f"L1 (mean of last 50 of {args.steps} steps)", "s"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
