"""Commands for your own models under the paper's protocols.

    python -m bench eval-ae MODEL --data D [--resolution R] [--limit N] [--weights W] [--scale paper|smoke]
    python -m bench train-ae MODEL --data D --phase 1|2|3 [--from RUN] [--scale paper|small|smoke] [--steps N] ...
    python -m bench protocol MODEL --data D [--resolution R] [--limit N] [--scale paper|smoke]

MODEL: a registered name (with --weights), a ``.safetensors`` file of this harness, a diffusers ``AutoencoderKL`` /
``AutoencoderDC`` folder, or ``module:function``. D: an image folder (``NAME=PATH`` names it in the tables; a
folder named like a paper data set, e.g. ``imagenet-val=PATH``, shows the paper's Table 2 rows of that setting
beside yours) or ``embedded`` (the harness's held-out photos). Each evaluated model becomes a row of
``tables/autoencoders-<data>-<res>.csv`` / ``.md`` and of the plot ``figures/autoencoders-<data>-<res>.png``.

``train-ae`` runs one phase of Decoupled High-Resolution Adaptation on an image folder (``--from`` a previous
phase's run folder), prints the recipe with the source of every value, resumes after a kill, plots its losses into
the run folder and exports the result both as this harness's file and as a diffusers folder. ``train-diffusion``
and ``sample`` (latent diffusion on any of these autoencoders) live in ``bench/own_diffusion.py``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from bench import paper
from bench.cli_tools import OneLineParser, device_of
from bench.configs import EMBEDDED_TEST, AutoencoderEvalConfig
from bench.errors import UsageError
from bench.provenance import atomic_write_text, git_state
from bench.scales import SCALES

# torch, the models and the runner are imported inside the commands: `python -m bench ls` imports this module
COMMANDS = ("eval-ae", "train-ae", "protocol", "train-diffusion", "sample")
SCALE_NOTES = {"paper": "", "small": " Small scale: a reduced model or the embedded photos; directions, not the paper's "
                                    "values.",
               "smoke": " Smoke scale: a tiny feature network, a pipeline check whose numbers are never a result."}
PAPER_DATA = {"imagenet-val": "ImageNet", "ffhq": "FFHQ", "mapillary-vistas": "MapillaryVistas"}
TABLE_COLUMNS = ("model", "kind", "f", "c", "compression", "rfid", "psnr", "ssim", "lpips", "collapsed",
                 "scaling_factor", "shift_factor", "latent_std", "n_images", "scale", "source", "run_id")


def command_line(command: str, argv: list[str]) -> str:
    """The command as typed, recorded in each run's env.json: what makes a run one of your own models'."""
    return " ".join(["python", "-m", "bench", command, *(shlex.quote(a) for a in argv)])


def ensure_run(command: str, argv: list[str], args: argparse.Namespace, cfg, scale: str, **options):
    """Compute (or reuse) the run of ``cfg`` in --runs-dir on --device, recording ``command_line`` in its env.json."""
    from bench.runner import Runner
    from bench.spec import RunRef
    runner = Runner(Path(args.runs_dir), device=args.device,
                    options={**options, "command": command_line(command, argv)})
    runner.check_writable()
    return runner.ensure(RunRef(cfg), scale)


def parse(argv: list[str], prog: str = "eval-ae") -> argparse.Namespace:
    what = {"eval-ae": "The paper's reconstruction protocol on any autoencoder.",
            "protocol": "How far each common protocol choice moves rFID and PSNR for one autoencoder."}[prog]
    p = OneLineParser(prog=f"python -m bench {prog}", description=what)
    p.add_argument("model", help="registered name, .safetensors file of this harness, diffusers folder, or "
                                 "module:function")
    p.add_argument("--data", required=True, metavar="FOLDER | NAME=FOLDER | embedded",
                   help="the images (centre-cropped to --resolution)")
    p.add_argument("--resolution", type=int, default=256, help="crop side in px, a multiple of the model's factor "
                                                               "(default 256)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N images (labelled as a subset)")
    p.add_argument("--weights", default=None, help="folder of official checkpoints (registered names)")
    p.add_argument("--scale", default="paper", choices=("paper", "small", "smoke"),
                   help="the label of the numbers: paper (default) or small (a reduced model or the embedded "
                        "photos), both with the FID Inception; smoke: a tiny feature network, a pipeline check "
                        "whose numbers are never a result")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--out", default=".", help="where tables/ and figures/ are written (default: here)")
    return p.parse_args(argv)


def data_of(value: str, resolution: int) -> tuple[str, str, str]:
    """(data, name, digest) of --data: the embedded held-out photos, or a folder's path, name and file identity."""
    from models.data import DataFolderError, ImageFolderDataset, folder_identity
    if value == "embedded":
        return str(EMBEDDED_TEST), "embedded-test", ""
    name, _, path = value.rpartition("=") if "=" in value else ("", "", value)
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--data {value}: not a folder; give an image folder, NAME=FOLDER or 'embedded'")
    try:
        ImageFolderDataset(folder, resolution)  # readable images, else one line naming the fix
    except DataFolderError as e:
        raise UsageError(str(e)) from None
    return str(folder.resolve()), name or folder.name, folder_identity(folder)


def config_of(args: argparse.Namespace) -> AutoencoderEvalConfig:
    if args.resolution < 8:
        raise UsageError(f"--resolution {args.resolution}: give a crop side >= 8 px (e.g. 256)")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give a whole number of images >= 1")
    from bench.evals.autoencoder_sources import resolve
    source = resolve(args.model, args.weights)
    if source.f and args.resolution % source.f:
        raise UsageError(f"--resolution {args.resolution} is not a multiple of {Path(args.model).name}'s spatial factor "
                         f"f={source.f}; use e.g. {max(source.f, args.resolution // source.f * source.f)}")
    data, name, digest = data_of(args.data, args.resolution)
    return AutoencoderEvalConfig(source.spec, source.kind, source.digest, args.resolution, data=data, data_name=name,
                                 data_digest=digest, n_images=args.limit,
                                 features=SCALES[args.scale].features)


def eval_ae(argv: list[str]) -> int:
    args = parse(argv)
    device_of(args.device)
    cfg = config_of(args)
    res = ensure_run("eval-ae", argv, args, cfg, args.scale, weights=args.weights)
    m = res.metrics
    scores = ", ".join(f"{k} {fmt_cell(m.get(k))}" for k in ("rfid", "psnr", "ssim", "lpips"))
    print(f"{m['_model']} ({args.scale} scale, {m.get('_n_images')} images at {cfg.resolution} px): {scores}; latents: "
          f"scaling factor {m['scaling_factor']:.4g} (1/std), shift {m['shift_factor']:.4g}; run {res.run_id}")
    for path in write_comparison(Path(args.runs_dir), cfg.data_name, cfg.resolution, args.scale, Path(args.out)):
        print(f"   wrote {path}")
    return 0


def _runs(runs_dir: Path, data_name: str, resolution: int, scale: str) -> list[dict]:
    """Every complete eval-ae run in ``runs_dir`` on this data set, resolution and scale (newest per model)."""
    rows: dict[str, dict] = {}
    for d in sorted(runs_dir.glob(f"*__eval-ae__{scale}__*")):
        try:
            cfg = json.loads((d / "config.json").read_text())["config"]
            m = json.loads((d / "metrics.json").read_text())
        except (OSError, ValueError, KeyError):
            continue  # an incomplete or damaged run is not a row
        if cfg.get("data_name") != data_name or cfg.get("resolution") != resolution:
            continue
        row = {k: "unavailable" if str(m.get(k, "")).startswith("unavailable") else m.get(k, "")
               for k in TABLE_COLUMNS}
        row.update(model=m.get("_model", cfg["model"]), kind=cfg["kind"], n_images=m.get("_n_images", ""),
                   scale=scale, source="ours", run_id=d.name)
        rows[cfg["model"]] = row
    return list(rows.values())


def paper_rows(data_name: str, resolution: int) -> list[dict]:
    """The paper's Table 2 rows of this data set and resolution (labelled as the paper's), or none."""
    label = PAPER_DATA.get(data_name)
    if label is None:
        return []
    out = {}
    for r in paper.select("table2"):
        setting = r["setting"]
        if not setting.startswith(f"{label} {resolution}x{resolution} "):
            continue
        fc = setting.split()[2]  # e.g. f64c128
        f, c = (int(v) for v in fc[1:].split("c"))
        key = (setting, r["autoencoder"])
        out.setdefault(key, {"model": f"{r['autoencoder']}-{fc} (paper, {setting})", "kind": "paper", "f": f, "c": c,
                             "compression": f * f * 3 / c, "scale": "paper's Table 2", "source": "paper"})
        out[key][r["metric"]] = r["value"]
    return list(out.values())


def write_comparison(runs_dir: Path, data_name: str, resolution: int, scale: str, out: Path) -> list[Path]:
    """``tables/autoencoders-<data>-<res>[-smoke].csv`` / ``.md`` and the rFID-vs-compression plot."""
    rows = _runs(runs_dir, data_name, resolution, scale) + (paper_rows(data_name, resolution)
                                                            if SCALES[scale].full_protocol else [])
    stem = f"autoencoders-{data_name}-{resolution}{SCALES[scale].suffix}"
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    caption = ("The reconstruction protocol of Table 2 (ADM centre crop, uint8 rounding, rFID against the same "
               "images); rows marked paper are the paper's Table 2 numbers of this setting, shown beside ours, not "
               "measured here; collapsed = 1: the outputs do not follow the inputs (bench/evals/image_groups.py)."
               + SCALE_NOTES[scale])
    written = write_csv_md(out / "tables", stem, "eval-ae", TABLE_COLUMNS, rows,
                           [f"### Autoencoders on {data_name} at {resolution} px — `{scale}` scale", "", caption, "",
                            *markdown_rows(TABLE_COLUMNS[:-2], rows)])
    _plot(rows, figures / f"{stem}.png", f"rFID vs compression: {data_name}, {resolution} px ({scale})")
    return [*written, figures / f"{stem}.png"]


def write_csv_md(tables: Path, stem: str, command: str, columns: tuple[str, ...], rows: list[dict],
                 md: list[str]) -> list[Path]:
    """``tables/<stem>.csv`` (the ``columns`` of ``rows``) and ``tables/<stem>.md``: a line naming ``command`` and the
    git commit, then the lines ``md``."""
    tables.mkdir(parents=True, exist_ok=True)
    with (tables / f"{stem}.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    header = f"<!-- generated by `python -m bench {command}` at git {git_state()['git_sha'][:12]} -->"
    atomic_write_text(tables / f"{stem}.md", "\n".join([header, *md]) + "\n")
    return [tables / f"{stem}.csv", tables / f"{stem}.md"]


def markdown_rows(columns: tuple[str, ...], rows: list[dict]) -> list[str]:
    """The lines of a Markdown table of ``columns`` (cells by ``fmt_cell``)."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(fmt_cell(r.get(k, "")) for k in columns) + " |" for r in rows)]


def fmt_cell(v) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.4g}"
    return "unavailable" if str(v).startswith("unavailable") else str(v)


def _plot(rows: list[dict], path: Path, title: str) -> None:
    from bench.emit import new_figure, save_figure
    fig, ax = new_figure(1, 1, figsize=(6, 4))
    for source, marker in (("ours", "o"), ("paper", "x")):
        pts = [(float(r["compression"]), float(r["rfid"]), r["model"]) for r in rows
               if r.get("source") == source and _is_number(r.get("rfid")) and _is_number(r.get("compression"))]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=source)
            for x, y, name in pts:
                ax.annotate(name.split(" (")[0], (x, y), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (pixels x 3 / latent values)")
    ax.set_ylabel("rFID")
    ax.legend(fontsize=7)
    save_figure(fig, path, title)


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def parse_train(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(prog="python -m bench train-ae", description="One phase of DC-AE's three-phase training on your images.")
    p.add_argument("model", help="a registered architecture (`python -m bench models`), e.g. dc-ae-f32c32-in-1.0")
    p.add_argument("--data", required=True, metavar="FOLDER | embedded", help="the training images")
    p.add_argument("--phase", required=True, choices=("1", "2", "3"),
                   help="1: low-resolution full training; 2: high-resolution latent adaptation; 3: local refinement")
    p.add_argument("--from", dest="parent", default=None, metavar="RUN",
                   help="start from this train-ae run (its folder, or its id in --runs-dir): phases 2 and 3")
    p.add_argument("--scale", default="paper", choices=("paper", "small", "smoke"),
                   help="whose defaults fill what you do not set: the paper's recipe (GPU), this harness's "
                        "small-scale CPU recipe, or a 2-step smoke check")
    for flag, kind, what in (("steps", int, "optimiser steps"), ("batch", int, "images per step"),
                             ("lr", float, "AdamW learning rate"), ("resolution", int, "crop side in px")):
        p.add_argument(f"--{flag}", type=kind, default=None, help=what)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--runs-dir", default="runs")
    return p.parse_args(argv)


def parent_run(value: str, runs_dir: Path, eval_name: str = "train-ae"):
    """(typed config, scale) of a completed run folder of ``eval_name`` (``--from``, ``--autoencoder``, ``sample
    RUN``): a folder, or a run id in ``runs_dir``."""
    from bench.runner import Runner
    folder = Path(value).expanduser() if Path(value).expanduser().is_dir() else runs_dir / value
    if not (folder / "config.json").is_file():
        raise UsageError(f"{value}: no {eval_name} run folder there (config.json); give a run folder printed by an "
                         f"earlier {eval_name}")
    cfg, scale = Runner(runs_dir).config_of(folder)
    if cfg.EVAL != eval_name or not (folder / "metrics.json").is_file():
        raise UsageError(f"{value}: not a completed {eval_name} run; finish it first (run its command again)")
    return cfg, scale


def print_recipe(cfg, scale: str, asked: dict) -> None:
    """Every value of the phase and where it comes from: your flag, this harness's scale default, or the paper."""
    from bench.configs import SCALE_DEFAULTS
    from bench.evals.training import phase_configs
    from models import zoo
    from models.train_autoencoder import RECIPE_SOURCES
    phase = phase_configs(cfg, scale, zoo.info(cfg.model).spatial_compression)[0]
    defaults = SCALE_DEFAULTS[scale][phase.name]
    print(f"{phase.name} of {cfg.model} ({scale} recipe):")
    for k, v in dataclasses.asdict(phase).items():
        if k in ("name", "seed"):
            continue
        source = ("your --" + k if asked.get(k) is not None else f"this harness's {scale}-scale default (ours)"
                  if k in defaults else RECIPE_SOURCES.get(k, "ours"))
        print(f"  {k:18} {v!s:22} {source}")


def train_ae(argv: list[str]) -> int:
    from bench.configs import PhaseRequest, TrainAEConfig
    import models
    from models import checkpoints, zoo
    args = parse_train(argv)
    device_of(args.device)
    if args.model not in {m.name for m in zoo.list_models()}:
        raise UsageError(f"{args.model} is not a registered architecture; see `python -m bench models`")
    data, _, digest = data_of(args.data, 8) if args.data != "embedded" else ("", "", "")
    asked = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "resolution": args.resolution}
    cfg = TrainAEConfig(args.model, phases=(PhaseRequest(f"phase{args.phase}", **asked),), seed=args.seed,
                        init_from=parent_run(args.parent, Path(args.runs_dir))[0] if args.parent else None,
                        data=data, data_digest=digest)
    if args.phase != "1" and cfg.init_from is None:
        raise UsageError(f"phase {args.phase} adapts a trained model: pass --from RUN (the run folder of phase 1)")
    print_recipe(cfg, args.scale, asked)
    res = ensure_run("train-ae", argv, args, cfg, args.scale)
    final = res.dir / "ckpt" / "model.safetensors"
    print(f"trained: {final} (this harness's file); losses: {res.dir / 'losses.png'}")
    try:
        folder = checkpoints.export_diffusers(models.load(final), res.dir / "diffusers")
        print(f"diffusers folder: {folder} (AutoencoderDC.from_pretrained / AutoencoderKL.from_pretrained)")
    except ValueError as e:
        print(f"no diffusers export: {e}")
    print(f"next: python -m bench eval-ae {final} --data {args.data}"
          + ("" if args.phase == "3" else f"; python -m bench train-ae {args.model} --data {args.data} --phase "
                                          f"{int(args.phase) + 1} --from {res.dir}"))
    return 0


PROTOCOL_COLUMNS = ("choice", "change", "rfid", "d_rfid", "d_rfid_lo", "d_rfid_hi", "psnr", "d_psnr", "d_psnr_lo",
                    "d_psnr_hi")


def protocol(argv: list[str]) -> int:
    """``python -m bench protocol``: the rows of bench/evals/protocol_choices.py as a table beside the run."""
    from bench.configs import ProtocolConfig
    args = parse(argv, "protocol")
    device_of(args.device)
    base = config_of(args)
    cfg = ProtocolConfig(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    res = ensure_run("protocol", argv, args, cfg, args.scale, weights=args.weights)
    rows = json.loads(res.metrics["_rows"])
    stem = f"protocol-{cfg.run_name.replace('/', '-')}-{cfg.data_name}-{cfg.resolution}{SCALES[args.scale].suffix}"
    tables = Path(args.out) / "tables"
    md = [f"### Protocol choices: {res.metrics['_model']} on {cfg.data_name} at {cfg.resolution} px — `{args.scale}` "
          f"scale", "", f"{res.metrics['_n_images']} images in {res.metrics['_groups']} source groups; features: "
          f"{res.metrics['_features']}. Each row changes one choice of the paper's protocol; the change is "
          "variant minus the paper's protocol on the same images, with a 90 % delete-one-group jackknife interval."
          + SCALE_NOTES[args.scale], "",
          "| choice | change | rFID | Δ rFID [90% CI] | PSNR | Δ PSNR [90% CI] |", "|---|---|---|---|---|---|"]
    md += [f"| {r['choice']} | {r['change']} | {fmt_cell(r['rfid'])} | {_delta(r, 'd_rfid')} | {fmt_cell(r['psnr'])} | "
           f"{_delta(r, 'd_psnr')} |" for r in rows]
    write_csv_md(tables, stem, "protocol", (*PROTOCOL_COLUMNS, "scale", "n_images", "run_id"),
                 [{**r, "scale": args.scale, "n_images": res.metrics["_n_images"], "run_id": res.run_id} for r in rows],
                 md)
    for line in md[4:]:
        print(line)
    print(f"   wrote {tables / stem}.csv and .md (run {res.run_id})")
    return 0


def _delta(r: dict, key: str) -> str:
    v, lo, hi = r[key], r[f"{key}_lo"], r[f"{key}_hi"]
    if v is None or v != v or (v == 0 and lo != lo):
        return "-"
    return f"{v:+.3g}" + (f" [{lo:+.3g}, {hi:+.3g}]" if lo == lo else "")


def main(argv: list[str]) -> int:
    """Run one command; a run that cannot happen here or fails ends in one line (exit 2 or 3), never a traceback."""
    from bench.errors import Unavailable
    from bench.runner import RunFailed
    from bench import own_diffusion
    command = {"eval-ae": eval_ae, "train-ae": train_ae, "protocol": protocol,
               "train-diffusion": own_diffusion.train_diffusion, "sample": own_diffusion.sample}[argv[0]]
    try:
        return command(argv[1:])
    except Unavailable as e:
        hint = "; on a CPU, --scale small uses this harness's CPU recipe" if argv[0].startswith("train-") else ""
        raise UsageError(f"{e}{hint}") from None
    except RunFailed as e:
        print(f"error: {e.why}", file=sys.stderr)
        return 3
