"""Latent diffusion on your own autoencoder and images, with the official recipes and samplers.

    python -m bench train-diffusion BACKBONE --autoencoder MODEL --data D [--unconditional] [--resolution R]
                                    [--scale paper|small|smoke] [--steps N] [--batch B] [--lr LR] [--seed S]
    python -m bench sample RUN --n N [--cfg S] [--reference FOLDER | --fid-reference NPZ] [--sampler ...]

BACKBONE: a class-conditional U-ViT or DiT of ``python -m bench models`` (``uvit-s``, ``dit-xl``; ``*-small`` and
``*-tiny`` are the reduced ones). MODEL: a registered autoencoder (with ``--weights``), a ``train-ae`` run folder, a
``.safetensors`` file of this harness, a diffusers ``AutoencoderKL`` / ``AutoencoderDC`` folder or ``module:function``.
D: an image folder (class labels from its top-level sub-folders when every image is in one; else unconditional) or
``embedded`` (the harness's training photos, labelled by source photo).

``train-diffusion`` prints the recipe with the source of every value, encodes the images once (latents cached by
content), trains with resume after a kill (run the same command again) and prints the run folder. ``sample``
draws N images from that run with the formulation's official sampler and step count
(``models.backbones.BACKBONE_FAMILIES``: DPM-Solver++ for U-ViT, IDDPM for DiT), keeps PNGs and scores gFID / KID / IS against the training images (or ``--reference``, or a ``.npz`` of
statistics); every sample run is a row of ``tables/samples-<data>-<res>[-<scale>].csv`` / ``.md``. Both run under
``torchrun`` like the artefacts (``--device cuda``; write ``--samples N`` there, as torchrun reads ``--n`` itself).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from bench.cli_tools import OneLineParser, device_of, fid_reference_option
from bench.configs import (
    EMBEDDED_TRAIN,
    GenerateConfig,
    OwnAutoencoder,
    TrainDiffusionConfig,
    user_folder,
    with_user_reference,
)
from bench.errors import UsageError
from bench.scales import SCALES

COMMANDS = ("train-diffusion", "sample")
OURS = ("seed", "ckpt_every", "grad_accum")  # recipe fields that are run settings, not the official recipe's
DEFAULT_RESOLUTION = {"paper": 256, "small": 128, "smoke": 32}  # px, when --resolution is not given
SAMPLE_COLUMNS = ("backbone", "autoencoder", "train_steps", "sampler", "sampler_steps", "cfg", "n_samples", "gfid",
                  "kid", "inception_score", "scale", "run_id")


def parse_train(argv: list[str]) -> argparse.Namespace:
    p = OneLineParser(prog="python -m bench train-diffusion",
                      description="A U-ViT or DiT with the official recipe on any autoencoder's latents.")
    p.add_argument("backbone", help="uvit-* or dit-* of `python -m bench models` (e.g. dit-s, uvit-s-small)")
    p.add_argument("--autoencoder", required=True, metavar="MODEL",
                   help="registered name (with --weights), train-ae run folder, .safetensors file of this harness, "
                        "diffusers folder, or module:function")
    p.add_argument("--data", required=True, metavar="FOLDER | embedded",
                   help="training images; class labels from top-level sub-folders")
    p.add_argument("--unconditional", action="store_true", help="no class labels even where sub-folders give some")
    p.add_argument("--resolution", type=int, default=None, help="crop side in px (default: 256 paper, 128 small, "
                                                                "32 smoke)")
    p.add_argument("--latent-scale", choices=("unit-rms", "autoencoder"), default=None,
                   help="latents x 1/RMS of these latents (default for your own models) or x the autoencoder's "
                        "declared scaling factor (default for registered ones)")
    p.add_argument("--scale", default="paper", choices=("paper", "small", "smoke"),
                   help="whose defaults fill what you do not set: the official recipe (GPU), this harness's "
                        "small-scale CPU recipe, or a 2-step smoke check")
    for flag, kind, what in (("steps", int, "optimiser steps"), ("batch", int, "latents per step"),
                             ("lr", float, "AdamW learning rate"), ("seed", int, "data order, t and noise"),
                             ("patch-size", int, "the backbone's patch size (default 1)")):
        p.add_argument(f"--{flag}", type=kind, default=None, help=what)
    p.add_argument("--weights", default=None, help="folder of official checkpoints (registered autoencoders)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--runs-dir", default="runs")
    return p.parse_args(argv)


def autoencoder_fields(value: str, args: argparse.Namespace) -> dict:
    """TrainDiffusionConfig fields for --autoencoder: a registered name, a train-ae run, or a user's model."""
    from bench.evals import autoencoder_sources as sources
    from bench.own import parent_run
    from models import zoo
    if value in {m.name for m in zoo.list_models()}:
        if not args.weights and not SCALES[args.scale].random_init:  # untrained: a pipeline check only
            raise UsageError(f"{value} needs its weights: pass --weights FOLDER, or train one first (python -m bench "
                             f"train-ae) and pass its run folder")
        return {"autoencoder": value, "weights": bool(args.weights)}
    folder = Path(value).expanduser()
    if (folder / "config.json").is_file() and json.loads((folder / "config.json").read_text()).get("eval"):
        run, _ = parent_run(value, Path(args.runs_dir))
        return {"autoencoder": run.model, "autoencoder_checkpoint": run}
    source = sources.resolve(value)
    name = folder.name if source.kind != "factory" else value.replace(":", "-").replace(".", "-")
    return {"autoencoder": name, "own_autoencoder": OwnAutoencoder(source.spec, source.kind, source.digest)}


def dataset_fields(value: str, unconditional: bool) -> dict:
    """TrainDiffusionConfig fields for --data: the embedded photos, or a user folder (conditional when every image
    sits in a class sub-folder and there are at least two)."""
    from bench.own import data_of
    from models.data import image_files
    if value == "embedded":
        return {"dataset": EMBEDDED_TRAIN, "conditional": not unconditional}
    path, _, digest = data_of(value, 8)
    parts = [p.relative_to(path).parts for p in image_files(Path(path))]
    classes = {p[0] for p in parts if len(p) > 1}
    labelled = all(len(p) > 1 for p in parts) and len(classes) > 1
    return {"dataset": user_folder(path, digest), "conditional": labelled and not unconditional}


def train_config(args: argparse.Namespace) -> TrainDiffusionConfig:
    from models import backbones
    info = backbones.BACKBONES.get(args.backbone)
    if info is None or backbones.BACKBONE_FAMILIES[info.family].text_to_image:
        raise UsageError(f"{args.backbone}: give a class-conditional uvit-* or dit-* backbone (python -m bench models); "
                         f"text-to-image (pixart-*) needs caption features: see table5")
    fields = {**autoencoder_fields(args.autoencoder, args), **dataset_fields(args.data, args.unconditional)}
    own = "own_autoencoder" in fields or "autoencoder_checkpoint" in fields
    return TrainDiffusionConfig(
        args.backbone, resolution=args.resolution or DEFAULT_RESOLUTION[args.scale],
        patch_size=args.patch_size or 1, latent_scale=args.latent_scale or ("unit-rms" if own else "autoencoder"),
        steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, **fields)


def print_recipe(cfg: TrainDiffusionConfig, scale: str) -> None:
    """Every recipe value and where it comes from: your flag, this harness's scale default, or the official recipe."""
    from bench.configs import DIFFUSION_SCALE_DEFAULTS
    from bench.evals.diffusion_training import formulation_of, recipe_of
    family = formulation_of(cfg.backbone)
    recipe = recipe_of(cfg, family, scale)
    print(f"{cfg.backbone} on {cfg.autoencoder} latents of {cfg.dataset.name or cfg.dataset} at {cfg.resolution} px, "
          f"{'class-conditional' if cfg.conditional else 'unconditional'}, latents x "
          f"{'1/RMS' if cfg.latent_scale == 'unit-rms' else 'the autoencoder scaling factor'} ({scale} recipe):")
    for k, v in dataclasses.asdict(recipe).items():
        source = ("your --" + k if getattr(cfg, k, None) is not None else
                  f"this harness's {scale}-scale default (ours)" if k in DIFFUSION_SCALE_DEFAULTS[scale] else
                  "this harness's choice (ours)" if k in OURS else
                  f"the official {family} recipe (models/train_diffusion.py)")
        print(f"  {k:18} {v!s:22} {source}")


def train_diffusion(argv: list[str]) -> int:
    from bench.evals.diffusion_training import latent_fc
    from bench.own import ensure_run
    args = parse_train(argv)
    device_of(args.device)
    cfg = train_config(args)
    latent_fc(cfg)  # resolution, patch size and the autoencoder, before any run folder
    print_recipe(cfg, args.scale)
    res = ensure_run("train-diffusion", argv, args, cfg, args.scale, weights=args.weights)
    m = res.metrics
    print(f"trained: {res.dir} ({m['steps']} steps, final loss {m['loss_final']:.4g}; {m['_n_images']} images)")
    print(f"next: python -m bench sample {res.dir} --n 1000" + (" --cfg 1.5" if cfg.conditional else ""))
    return 0


def parse_sample(argv: list[str]) -> argparse.Namespace:
    from models.backbones import BACKBONE_FAMILIES
    p = OneLineParser(prog="python -m bench sample", description="Sample a train-diffusion run and score gFID / KID.")
    p.add_argument("run", help="a train-diffusion run folder (or its id in --runs-dir)")
    p.add_argument("--n", "--samples", dest="n", type=int, required=True,
                   help="samples drawn and scored (the paper: 50,000); under torchrun write --samples (torchrun "
                        "reads --n as one of its own options)")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--sampler", choices=("dpm-solver++", "iddpm"), default=None,
                   help="default: the formulation's own (U-ViT: DPM-Solver++, DiT: IDDPM)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the official count, " + ", ".join(
        f"{f.sampler} {f.sampler_steps}" for f in BACKBONE_FAMILIES.values() if not f.text_to_image) + ")")
    p.add_argument("--reference", default=None, metavar="FOLDER | embedded",
                   help="FID reference images (default: the run's training images)")
    p.add_argument("--fid-reference", default=None, metavar="NPZ", help="FID statistics (mu, sigma) instead")
    p.add_argument("--seed", type=int, default=0, help="labels and noise")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--out", default=".", help="where tables/ is written (default: here)")
    return p.parse_args(argv)


def sample_config(args: argparse.Namespace) -> tuple[GenerateConfig, str, dict]:
    """(generate config, the training run's scale, runner options) of ``sample``."""
    from bench.own import data_of, parent_run
    if args.n < 2:
        raise UsageError(f"--n {args.n}: FID needs at least 2 samples")
    if args.reference and args.fid_reference:
        raise UsageError("give one of --reference and --fid-reference")
    train, scale = parent_run(args.run, Path(args.runs_dir), "train-diffusion")
    if args.cfg > 1 and not train.conditional:
        raise UsageError(f"--cfg {args.cfg} needs a class-conditional model; this run is unconditional: use --cfg 1")
    reference = train.dataset
    if args.reference == "embedded":
        reference = EMBEDDED_TRAIN
    elif args.reference:
        path, _, digest = data_of(args.reference, 8)
        reference = user_folder(path, digest)
    options = fid_reference_option(args.fid_reference)
    cfg = GenerateConfig(model=train, n_samples=args.n, cfg_scale=args.cfg, sampler=args.sampler, steps=args.steps,
                         reference=reference, features=SCALES[scale].features, seed=args.seed,
                         batch_size=min(64, args.n), n_png=min(16, args.n))
    return with_user_reference(cfg, options.get("fid_reference_digest")), scale, options


def sample(argv: list[str]) -> int:
    from bench.own import ensure_run, fmt_cell
    args = parse_sample(argv)
    device_of(args.device)
    cfg, scale, options = sample_config(args)
    res = ensure_run("sample", argv, args, cfg, scale, **options)
    m = res.metrics
    print(f"{cfg.model.backbone} on {cfg.model.autoencoder} ({scale} scale): gFID {m['gfid']:.4g}, KID "
          f"{m['kid']:.4g}, IS {fmt_cell(m.get('inception_score'))} from {cfg.n_samples} samples ({m['_sampler']} "
          f"{m['_steps']} steps, cfg {cfg.cfg_scale}); PNGs in {res.dir / 'samples'}")
    for path in write_samples_table(Path(args.runs_dir), cfg, scale, Path(args.out)):
        print(f"   wrote {path}")
    return 0


def data_name(ds) -> str:
    """A data set's name in table file names: a user folder's own name, else the set (``embedded-train``)."""
    return Path(ds.name).name if ds.kind == "path" else f"{ds.kind}-{ds.name}" if ds.name else ds.kind


def _sample_rows(runner, scale: str, data: str, resolution: int) -> list[dict]:
    """Every complete ``sample`` run in the runs folder of a model trained on ``data`` at ``resolution`` and
    ``scale``."""
    from bench.cli_tools import is_own_model_run
    rows = []
    for d in sorted(runner.runs_dir.glob(f"*__generate__{scale}__*")):
        if not (d / "metrics.json").is_file() or not is_own_model_run(d):
            continue  # unfinished, or an artefact's run (its own table shows it)
        try:
            cfg, _ = runner.config_of(d)
        except UsageError:
            continue  # a run of another version is not a row
        train = cfg.model
        if train is None or data_name(train.dataset) != data or train.resolution != resolution:
            continue
        m = json.loads((d / "metrics.json").read_text())
        trained = json.loads((runner.runs_dir / runner.run_id_of(train, scale)[0] / "metrics.json").read_text())
        rows.append({"backbone": train.backbone, "autoencoder": train.autoencoder, "train_steps": trained["steps"],
                     "sampler": m["_sampler"], "sampler_steps": m["_steps"], "cfg": cfg.cfg_scale,
                     "n_samples": cfg.n_samples, "gfid": m["gfid"], "kid": m["kid"],
                     "inception_score": m.get("inception_score", ""), "scale": scale, "run_id": d.name})
    return rows


def write_samples_table(runs_dir: Path, cfg: GenerateConfig, scale: str, out: Path) -> list[Path]:
    """``tables/samples-<data>-<res>[-<scale>].csv`` / ``.md``: every sample run of models trained on one data set."""
    from bench.own import SCALE_NOTES, markdown_rows, write_csv_md
    from bench.runner import Runner
    data, res = data_name(cfg.model.dataset), cfg.model.resolution
    rows = _sample_rows(Runner(runs_dir), scale, data, res)
    caption = ("gFID / KID against each run's reference (its training images unless the run names another), the FID "
               "Inception at 299 px; a sample of N images, so gFID carries the small-N bias of FID."
               + SCALE_NOTES[scale])
    return write_csv_md(out / "tables", f"samples-{data}-{res}{SCALES[scale].suffix}", "sample", SAMPLE_COLUMNS, rows,
                        [f"### Diffusion models trained on {data} at {res} px — `{scale}` scale", "", caption, "",
                         *markdown_rows(SAMPLE_COLUMNS[:-2], rows)])
