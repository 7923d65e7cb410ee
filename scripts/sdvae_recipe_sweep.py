"""Phase-1 recipe sweep (lr x warm-up) for the reduced stacked SD-VAE baselines that collapse at small scale.

At small scale ``sd-vae-f64c128-tiny`` and ``sd-vae-f32c64-tiny`` give the same blob whatever the input. This script
trains each (family, lr, warm-up) of a small grid with the small scale's phase-1 recipe otherwise unchanged (128 px,
batch 8, seed 0, AdamW, constant lr after a linear warm-up, L1 + LPIPS when its weights are cached, the embedded
training photos, init seed ``mix_seed(seed, "init")`` and phase seed ``seed * 1000`` as ``bench/evals/training.py``)
for ``--steps`` steps (no plateau doubling), and records per run: the mean training L1 of the last 50 steps, the probe
PSNR on 64 embedded held-out crops (``bench.evals.training.probe_psnr``), the output spread across those crops
(``bench.evals.image_groups.spread_of``), the explained variance of the inputs by the outputs, whether that is a
collapse (``is_collapsed``: spread ratio < 0.25 or explained < 0), and the seconds. The row (2e-4, 20) is today's
recipe at its first plateau stage (300 steps).

Runs go in the order given (most informative first); with ``--budget-s`` a run whose predicted time (the family's
measured s/step, else a rough default) does not fit the remaining budget is not started and is written as
``status=skipped (budget)``. The CSV and the Markdown are rewritten after every run. One CPU thread.

The sweep writes its run folder ``runs/_sweeps/<run_id>/`` (config.json, env.json, metrics.json with every row,
log.txt); each row of the table names it in ``run_id``. The models train in memory: no checkpoint is kept.

The committed tables/sdvae-recipe-sweep-small.{csv,md} were produced by (2 shared CPU cores, one process):

    .venv/bin/python scripts/sdvae_recipe_sweep.py --budget-s 1560

Other grids:

    .venv/bin/python scripts/sdvae_recipe_sweep.py --runs sd-vae-f32c32-tiny:1e-4:100 sd-vae-f32c32-tiny:2e-4:20 \\
        --out tables/sdvae-recipe-sweep-f32c32.csv
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Priority order: today's recipe on the cheaper family (does the detector flag it?), then low lr + long warm-up on
# both families, then the rest of the grid.
DEFAULT_RUNS = (
    "sd-vae-f32c64-tiny:2e-4:20",
    "sd-vae-f64c128-tiny:5e-5:100",
    "sd-vae-f32c64-tiny:5e-5:100",
    "sd-vae-f64c128-tiny:1e-4:100",
    "sd-vae-f32c64-tiny:1e-4:100",
    "sd-vae-f32c64-tiny:5e-4:100",
    "sd-vae-f64c128-tiny:2e-4:20",
    "sd-vae-f32c64-tiny:2e-4:100",
    "sd-vae-f64c128-tiny:2e-4:100",
    "sd-vae-f32c64-tiny:1e-4:20",
    "sd-vae-f64c128-tiny:5e-4:100",
)
# Rough s/step (128 px, batch 8, one thread, AMD EPYC / Xeon shared core), used until a family's first run is measured.
DEFAULT_S_PER_STEP = {"sd-vae-f64c128-tiny": 1.1, "sd-vae-f32c64-tiny": 0.65, "sd-vae-f32c32-tiny": 0.5}
COLUMNS = ["family", "lr", "warmup_steps", "steps", "resolution", "batch", "seed", "perceptual", "train_l1_last50",
           "probe_psnr_db", "probe_images", "output_spread", "explained", "collapsed", "seconds", "status", "run_id",
           "git_sha", "git_dirty", "torch", "cpu_model", "threads", "date"]


def parse_run(text: str) -> tuple[str, float, int]:
    family, lr, warmup = text.split(":")
    return family, float(lr), int(warmup)


def render_md(rows: list[dict], args, prov: dict) -> str:
    from tabulate import tabulate
    head = ["family", "lr", "warm-up", "steps", "train L1 (last 50)", "probe PSNR (dB)", "output spread",
            "explained", "collapsed", "s", "status"]
    keys = ["family", "lr", "warmup_steps", "steps", "train_l1_last50", "probe_psnr_db", "output_spread", "explained",
            "collapsed", "seconds", "status"]
    body = [[r.get(k, "") for k in keys] for r in rows]  # a skipped cell has no measurements
    return (f"# SD-VAE (reduced, stacked) phase-1 recipe sweep, small scale\n\n"
            f"Phase 1 at {args.resolution} px, batch {args.batch}, seed {args.seed}, {args.steps} steps (no plateau "
            f"doubling), AdamW (phase-1 betas/weight decay), linear warm-up then constant lr, loss L1"
            f"{' + LPIPS' if rows and rows[0]['perceptual'] != 'none' else ' only (LPIPS weights not cached)'}. "
            f"Probe: {args.probe_images} embedded held-out crops at {args.resolution} px; collapsed = output spread "
            f"< 0.25 or explained < 0 (`bench.evals.image_groups.is_collapsed`). One seed and {args.steps} steps "
            f"per cell: a screen, not a result.\n\n"
            + tabulate(body, headers=head, tablefmt="github", disable_numparse=True) +
            f"\n\nProduced by `scripts/sdvae_recipe_sweep.py` (command in its docstring), run folder "
            f"`{args.runs_dir}/_sweeps/{prov['run_id']}`; git {prov['git_sha'][:12]}"
            f"{' (dirty tree)' if prov['git_dirty'] else ''}, torch {prov['torch']}, CPU {prov['cpu_model']}, "
            f"{prov['threads']} thread, {prov['date']}.\n")


def write(rows: list[dict], out: Path, args, prov: dict, run_dir: Path) -> None:
    """The CSV and the Markdown table, and the rows in the run folder's metrics.json."""
    from models.io import atomic_write_json, atomic_write_text
    atomic_write_json(run_dir / "metrics.json", {"rows": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    atomic_write_text(out.with_suffix(".md"), render_md(rows, args, prov))


def train_and_probe(family: str, lr: float, warmup: int, args, src, perceptual) -> dict:
    """One sweep cell: phase 1 from the train-ae run's initial weights, then the plateau rule's probe (PSNR, output
    spread, explained variance, collapse) on the first ``args.probe_images`` held-out crops."""
    import torch

    import models
    from bench.evals import training
    from bench.evals.image_groups import is_collapsed
    from models.train_autoencoder import PHASES, train_autoencoder
    from models.train_state import mix_seed
    torch.manual_seed(mix_seed(args.seed, "init"))  # as bench/evals/training.py builds a train-ae model
    model = models.build(family)
    phase = dataclasses.replace(PHASES["phase1"], resolution=args.resolution, steps=args.steps, batch=args.batch,
                                lr=lr, warmup_steps=warmup, seed=args.seed * 1000, ckpt_every=args.steps)
    res = train_autoencoder(model, phase, src, ckpt_dir=None, perceptual=perceptual, progress=False,
                            log=lambda _m: None)
    tail = [h["l1"] for h in res.history[-50:]]
    psnr = training.probe_psnr(model, args.resolution, args.probe_images, "cpu")
    ratio, explained = training.probe_spread(model, args.resolution, args.probe_images, "cpu")
    return {"train_l1_last50": f"{sum(tail) / len(tail):.4f}", "probe_psnr_db": f"{psnr:.2f}",
            "probe_images": args.probe_images, "output_spread": f"{ratio:.3f}", "explained": f"{explained:.3f}",
            "collapsed": "yes" if is_collapsed(ratio, explained) else "no"}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), metavar="FAMILY:LR:WARMUP")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-images", type=int, default=64)
    ap.add_argument("--budget-s", type=float, default=None, help="do not start a run predicted to end past this")
    ap.add_argument("--out", type=Path, default=Path("tables/sdvae-recipe-sweep-small.csv"))
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"), help="the run folder goes in RUNS_DIR/_sweeps/")
    return ap.parse_args()


def sweep(args: argparse.Namespace, run, prov: dict) -> list[dict]:
    """Every cell of ``args.runs`` in order (a cell predicted past the budget is written as skipped); the table and
    the run folder's rows are rewritten after each."""
    from models import data, losses
    from models.train_autoencoder import DatasetCropSource
    perceptual = losses.build_perceptual_loss()
    src = DatasetCropSource(data.EmbeddedPhotos("train", args.resolution), args.resolution)
    t_start, s_per_step, rows = time.perf_counter(), dict(DEFAULT_S_PER_STEP), []
    for spec in args.runs:
        family, lr, warmup = parse_run(spec)
        row = {"family": family, "lr": f"{lr:g}", "warmup_steps": warmup, "steps": args.steps,
               "resolution": args.resolution, "batch": args.batch, "seed": args.seed,
               "perceptual": "none" if perceptual is None else "lpips", **prov}
        predicted = s_per_step.get(family, 1.0) * args.steps + 15
        if args.budget_s is not None and time.perf_counter() - t_start + predicted > args.budget_s:
            rows.append({**row, "status": "skipped (budget)"})
            run.log(f"{spec}: skipped (predicted {predicted:.0f} s, budget left "
                    f"{args.budget_s - (time.perf_counter() - t_start):.0f} s)")
        else:
            t0 = time.perf_counter()
            row.update(train_and_probe(family, lr, warmup, args, src, perceptual))
            s_per_step[family] = (time.perf_counter() - t0) / args.steps
            rows.append({**row, "seconds": f"{time.perf_counter() - t0:.0f}", "status": "done"})
            run.log(f"{spec}: L1 {row['train_l1_last50']}  PSNR {row['probe_psnr_db']}  spread "
                    f"{row['output_spread']}  explained {row['explained']}  collapsed {row['collapsed']}  "
                    f"{rows[-1]['seconds']} s")
        write(rows, args.out, args, prov, run.dir)
    return rows


def main() -> None:
    args = parse()
    import torch
    torch.set_num_threads(1)
    from bench import provenance
    run = provenance.open_measurement(
        args.runs_dir / "_sweeps", f"sdvae-recipe__{provenance.slug(provenance.cpu_model())}",
        {"command": "sdvae_recipe_sweep", **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
         "threads": 1}, "small")
    started = dt.datetime.strptime(run.started.split("-")[0], "%Y%m%dT%H%M%SZ")
    prov = {"run_id": run.run_id, "git_sha": run.env["git_sha"], "git_dirty": run.env["git_dirty"],
            "torch": torch.__version__, "cpu_model": run.env["cpu_model"], "threads": torch.get_num_threads(),
            "date": f"{started:%Y-%m-%dT%H:%M:%SZ}"}
    print(render_md(sweep(args, run, prov), args, prov))


if __name__ == "__main__":
    main()
