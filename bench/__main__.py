"""``python -m bench``: run, list, check and report the paper's artefacts (lm-eval style: few flags).

Bad input gives one line on stderr naming the problem and the fix, and exit code 2; an artefact that is not
implemented says so in one line and exits 1; nothing already computed is lost (runs are reused, writes are atomic).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from bench import artifacts, cli_tools, own, parallel, process
from bench.configs import DataOption
from bench.errors import UsageError
from bench.runner import Runner, collect, write_outputs
from bench.scales import SCALES, SEEDS_ENV

EPILOG = """\
examples:
  python -m bench ls                               every artefact: command, code, outputs, status per scale
  python -m bench check                            validate every spec without running anything
  python -m bench table2 --scale small             reduced-scale Table 2 on the embedded offline photos
  python -m bench figure3 --ablation residual      Figure 3a: with vs without Residual Autoencoding
  python -m bench table3 --scale smoke             seconds: pipeline check of the efficiency profiler
  python -m bench table2 --scale paper --weights ~/ckpt --data ~/imagenet/val
  python -m bench all --scale small --jobs 2       the whole reduced-scale reproduction, 2 runs at a time
  python -m bench report                           tables/REPORT.md: ours beside the paper's, every artefact
  python -m bench models                           autoencoders: parameters, latent shapes, scaling factors
  python -m bench eval-ae ./my-vae --data imagenet-val=~/val --resolution 256   any autoencoder, the paper's protocol
  python -m bench train-ae dc-ae-f32c32-in-1.0 --data ~/imgs --phase 1   DC-AE's phase 1 on your images
  python -m bench train-diffusion dit-xl --autoencoder ./my-vae --data ~/imagenet/train   diffusion on any latents
  python -m bench sample runs/<train-diffusion run> --n 50000 --cfg 1.3   samples, gFID / KID / IS
  python -m bench protocol ./my-vae --data ~/imgs   how far each protocol choice moves rFID
  python -m bench perf                             benchmarks side by side with the references, this machine
  torchrun --nproc_per_node 8 -m bench table2 --scale paper --weights W --data D   sharded evaluation
"""

COMMANDS = ("ls", "check", "report", "all", "models", "needs", "prune")


def parse(argv: list[str]) -> argparse.Namespace:
    p = cli_tools.OneLineParser(prog="python -m bench", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="an artefact id (see `ls`), or one of: " + ", ".join(COMMANDS))
    p.add_argument("--scale", default="small", help="smoke | small | paper (default: small)")
    p.add_argument("--ablation", default=None, help="panel or ablation: figure2 a|b|c, figure3 residual|resolution")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--force", action="store_true", help="recompute this artefact's runs even if complete")
    p.add_argument("--render-only", action="store_true", help="rebuild CSVs/plots from runs/ without computing")
    p.add_argument("--runs-dir", default="runs", help="where run folders live (default: runs)")
    p.add_argument("--data", action="append", default=None, metavar="FOLDER | NAME=PATH",
                   help="paper-scale images: a folder holding imagenet-val/, ffhq/, mapillary-vistas/, imagenet-train/, "
                        "mjhq-30k/ (and mjhq-30k-t5/, its T5 caption features), and/or NAME=PATH for one set "
                        "(repeatable)")
    p.add_argument("--weights", default=None, help="folder of official checkpoints for paper scale")
    p.add_argument("--limit", default=None, metavar="N",
                   help="the full protocol on the first N images of each set (e.g. --scale paper --device cpu "
                        "--limit 8); every cell says 'subset of N' and the files are named -subsetN")
    p.add_argument("--fid-reference", default=None, metavar="NPZ",
                   help="score generated samples against this .npz of FID statistics (mu, sigma, resolution, "
                        "feature_sha256; e.g. runs/_cache/fid-ref-gen-*.npz) instead of building them from --data")
    p.add_argument("--jobs", default="1", help="compute up to N training/reconstruction runs at once, in N processes "
                                                "(timed efficiency runs always run alone; default 1)")
    p.add_argument("--seeds", default=None, metavar="N",
                   help="small scale: training seeds per claim arm (default 3; more: narrower intervals, more time)")
    p.add_argument("--delete", action="store_true", help="prune: move the run folders no artefact names to runs/_pruned/")
    p.add_argument("--markdown", action="store_true", help=argparse.SUPPRESS)  # `ls --markdown` for the README
    return p.parse_args(argv)


def _specs(name: str, ablation: str | None) -> dict:
    if name not in artifacts.names():
        close = [n for n in artifacts.names() if n[:3] == name[:3]] or artifacts.names()
        raise UsageError(f"unknown artefact {name!r}; choose one of {', '.join(close)} (see `python -m bench ls`)")
    specs = artifacts.load(name).SPECS
    if ablation is None:
        return specs
    if ablation not in specs or ablation == "":
        keys = [k for k in specs if k]
        raise UsageError(f"{name} has no ablation/panel {ablation!r}"
                         + (f"; choose one of {', '.join(keys)}" if keys else "; it takes no --ablation"))
    return {ablation: specs[ablation]}


def _positive(flag: str, value: str, what: str, example: str) -> int:
    """--jobs, --limit, --seeds: a whole number >= 1, else one line naming the flag and an example."""
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"--{flag} {value!r}: give a whole number{what} >= 1 (e.g. --{flag} {example})")
    return int(value)


def to_compute(names: list[str], args: argparse.Namespace, runner) -> list[parallel.PlannedRun]:
    """The runs these artefacts need that are not complete, in dependency order (bench/parallel.py): computed before
    the tables are built from completed runs. None with --render-only, or with --force (which recomputes the rows'
    own runs while the tables are built)."""
    if runner.render_only or args.force:
        return []
    specs = [spec for name in names for spec in _specs(name, args.ablation if len(names) == 1 else None).values()]
    return parallel.plan(specs, args.scale, runner)


def _main_reason(records: list[dict]) -> str:
    """The reason most rows give for not running (an 'unavailable: ...' one before 'not run at this scale')."""
    counts = Counter(r["status"] for r in records if r["status"].startswith(("unavailable", "not run")))
    if not counts:
        return "no row runs at this scale"
    return max(counts, key=lambda k: (k.startswith("unavailable"), counts[k], k))


def run_artifact(name: str, args: argparse.Namespace, runner) -> int:
    """Build every selected spec of one artefact. Returns 0, 1 (not implemented) or 3 (some run failed)."""
    code = 0
    for panel, spec in _specs(name, args.ablation).items():
        tag = f"{name}{' ' + panel if panel else ''}"
        if spec.not_implemented:
            print(f"{tag}: {spec.not_implemented}", file=sys.stderr)
            code = max(code, 1)
            continue
        if not any(r.run is not None and r.run.runs_at(args.scale) for r in spec.rows):
            print(f"{tag}: not run at {args.scale} scale ({spec.scales.get(args.scale, 'no description')})",
                  file=sys.stderr)
            code = max(code, 1)
            continue
        print(f"== {tag} at {args.scale} scale: {spec.title}", flush=True)
        built = collect(spec, panel, args.scale, runner, progress=lambda m: print(m, flush=True))
        if runner.render_only and not built.results and any(r.run and r.run.runs_at(args.scale) for r in spec.rows):
            raise UsageError(f"{tag}: --render-only found no completed {args.scale}-scale run in {runner.runs_dir}; "
                             f"run it once without --render-only (or pass --runs-dir to the folder that holds them)")
        if not built.results and not built.problems and any(r.run for r in spec.rows):
            # Nothing could run here (e.g. paper scale without GPU/weights/data): one line, non-zero, and the
            # outputs of earlier runs are left untouched.
            raise UsageError(f"{tag} cannot run at {args.scale} scale here: {_main_reason(built.records)}")
        command = " ".join(["python -m bench", name] + (["--ablation", panel] if panel else [])
                           + ["--scale", args.scale])
        for path in write_outputs(built, Path("tables"), Path("figures"), command):
            print(f"   wrote {path}")
        for problem in built.problems:
            print(f"   FAILED: {problem}", file=sys.stderr)
            code = 3
    return code


def _info(args) -> int:
    """The commands that compute nothing: ls, check, report, models, needs."""
    if args.target == "check":
        problems = cli_tools.check()
        for p in problems:
            print(f"problem: {p}", file=sys.stderr)
        print(f"check: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.target == "report":
        return cli_tools.report(Path(args.runs_dir))
    print({"ls": lambda: cli_tools.ls(markdown=args.markdown), "models": cli_tools.models_table,
           "needs": cli_tools.needs_table}[args.target]())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in own.COMMANDS:  # your own models: their own arguments (bench/own.py)
        return own.main(argv)
    if argv and argv[0] == "perf":  # side-by-side benchmarks (bench/perf.py)
        from bench import perf
        return perf.main(argv[1:])
    args = parse(argv)
    if args.scale not in SCALES:
        raise UsageError(f"unknown --scale {args.scale!r}; use smoke, small or paper")
    jobs = _positive("jobs", args.jobs, "", f"{os.cpu_count() or 1}, one per core")
    if args.seeds is not None:  # before any spec module is built (they read it once); --jobs workers inherit it
        _positive("seeds", args.seeds, " of seeds", "5")
        os.environ[SEEDS_ENV] = args.seeds
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--jobs N > 1 cannot be combined with torchrun; under torchrun the ranks share each run")
    if args.target in ("ls", "check", "report", "models", "needs"):
        return _info(args)
    data = DataOption.parse(args.data)
    for flag, value in [("weights", args.weights), ("data", data.root), *(("data", p) for _, p in data.sets)]:
        if value is not None and not Path(value).expanduser().is_dir():
            raise UsageError(f"--{flag} {value}: not a readable folder; pass the folder that holds the "
                             + ("images (e.g. ImageNet val)" if flag == "data" else "official checkpoints"))
    device = cli_tools.device_of(args.device)
    limit = None if args.limit is None else _positive("limit", args.limit, " of images", "8")
    runner = Runner(Path(args.runs_dir), device=device, force=args.force,
                    render_only=args.render_only, options={"data": data, "limit": limit,
                             "weights": args.weights and str(Path(args.weights).expanduser()),
                             **cli_tools.fid_reference_option(args.fid_reference)})
    if args.target == "prune":
        if args.limit or args.fid_reference or args.seeds:  # they rename runs: the folders made without would go
            raise UsageError("prune takes no --limit, --fid-reference or --seeds (they change which runs an "
                             "artefact names); run it without them")
        return cli_tools.prune(runner, args.delete)
    if not args.render_only:
        runner.check_writable()
    if args.target == "all" and args.ablation:
        raise UsageError("`all` takes no --ablation; run one artefact to pick a panel")
    names = artifacts.names() if args.target == "all" else [args.target]
    _specs(names[0], args.ablation)  # an unknown artefact / ablation: one line before any work
    problems = parallel.run_plan(to_compute(names, args, runner), args.scale, runner, jobs)
    if problems and jobs > 1:
        print(f"--jobs: {len(problems)} run(s) did not complete in the parallel pass; the serial pass tries them "
              f"again and reports each in its table", file=sys.stderr)
    return build_all(args, runner) if args.target == "all" else run_artifact(args.target, args, runner)


def build_all(args: argparse.Namespace, runner) -> int:
    """Every artefact's tables and figures, then REPORT.md; an artefact that cannot run here is said and skipped."""
    codes = {}
    for name in artifacts.names():
        try:
            codes[name] = run_artifact(name, args, runner)
        except UsageError as e:  # e.g. one artefact cannot run at this scale here: say so, go on
            print(f"error: {e}", file=sys.stderr)
            codes[name] = 2
    cli_tools.report(runner.runs_dir)  # tables/REPORT.md: every artefact beside the paper (small and paper scales)
    failed = [n for n, c in codes.items() if c in (2, 3)]
    skipped = [n for n, c in codes.items() if c == 1]
    print(f"all --scale {args.scale}: {len(codes) - len(failed) - len(skipped)} built"
          + (f", not implemented (or partly): {', '.join(skipped)}" if skipped else "")
          + (f", FAILED: {', '.join(failed)}" if failed else ""))
    return 3 if failed else 0


def entry() -> None:
    try:
        process.tune_allocator()  # before any large tensor: glibc settings apply to later allocations
        sys.exit(main())
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: completed runs are kept and will be reused", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    entry()
