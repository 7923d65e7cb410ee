"""The non-running CLI commands: ``ls``, ``check``, ``report`` and ``models``. None of them computes a number."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from tabulate import tabulate

from bench import artifacts, evals, paper
from bench.configs import ConfigError, dependencies
from bench.errors import UsageError
from bench.provenance import file_digest, read_json
from bench.report import write_report
from bench.scales import SCALES

TABLES, FIGURES = Path("tables"), Path("figures")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (a UsageError naming the help command), not usage + noise."""

    def error(self, message: str) -> None:
        raise UsageError(f"{message}; see `{self.prog} --help`")


def device_of(requested: str | None) -> str:
    """--device: cpu or cuda (None: cuda if visible); a one-line error for anything else or an invisible GPU."""
    import torch  # here: `ls` and `check` must not import torch (a few seconds)
    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested not in ("cpu", "cuda"):
        raise UsageError(f"unknown --device {requested!r}; use cpu or cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA GPU is visible here; use --device cpu")
    return requested


def fid_reference_option(value: str | None) -> dict[str, str]:
    """--fid-reference NPZ: the file and its content digest (the digest goes into the generate runs' ids)."""
    if value is None:
        return {}
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(f"--fid-reference {value}: not a readable file; pass a .npz of FID statistics (mu, sigma, "
                         f"resolution, feature_sha256), e.g. one of runs/_cache/fid-ref-gen-*.npz")
    return {"fid_reference": str(path), "fid_reference_digest": file_digest(path)}


def _status(stems: list[str], scale: str) -> str:
    """'never run' or the date the newest output of this scale was generated (from the Markdown header)."""
    dates = []
    for stem in stems:
        md = TABLES / f"{stem}-{scale}.md"
        if md.exists():
            m = re.search(r"generated (\S+)", md.read_text().splitlines()[0])
            if m:
                dates.append(m.group(1)[:10])
    return max(dates) if dates else "never run"


def entries() -> list[dict[str, str]]:
    """One entry per artefact (figure3's ablations are entries of their own)."""
    out = []
    for name in artifacts.names():
        try:
            mod = artifacts.load(name)
        except ImportError as e:
            out.append({"id": name, "title": f"(cannot import: {e})", "command": "", "code": "", "outputs": "",
                        "status": {}})
            continue
        keys = list(mod.SPECS)
        groups = [[k] for k in keys] if getattr(mod, "LIST_SEPARATELY", False) else [keys]
        for group in groups:
            specs = [mod.SPECS[k] for k in group]
            ident = name if len(groups) == 1 else f"{name} --ablation {group[0]}"
            cmd = f"python -m bench {ident}"
            stems = [f"{name}{'-' + k if k else ''}" for k in group]
            impl = [s for s in specs if not s.not_implemented]
            title = specs[0].title if len(specs) == 1 else f"{getattr(mod, 'TITLE', name)} (panels {', '.join(group)})"
            status = {sc: ("not implemented" if not impl else _status(stems, sc)) for sc in ("smoke", "small", "paper")}
            if impl and len(impl) < len(specs):
                missing = [k for k, s in zip(group, specs) if s.not_implemented]
                title += f" [panel {', '.join(missing)} not implemented]"
            outputs = ", ".join(f"tables/{stem}-<scale>.csv" for stem, spec in zip(stems, specs)
                                if not spec.not_implemented) or "–"
            out.append({"id": ident, "title": title, "command": cmd + " --scale small",
                        "code": f"bench/artifacts/{name}.py", "outputs": outputs, "status": status})
    return out


def ls(markdown: bool = False) -> str:
    rows = [[e["id"], e["title"], f"`{e['command']}`" if markdown else e["command"], e["code"], e["outputs"],
             *(e["status"].get(s, "") for s in ("smoke", "small", "paper"))] for e in entries()]
    headers = ["artefact", "title", "command", "code", "outputs", "smoke", "small", "paper"]
    return tabulate(rows, headers=headers, tablefmt="github" if markdown else "simple")


def run_problems(ref) -> list[str]:
    """Resolve a row's run at every scale it runs at, dependencies included: misspelled fields, wrong types."""
    out = []
    for scale in SCALES:
        if not ref.runs_at(scale):
            continue
        try:
            todo = [ref.resolve(scale)]
            while todo:
                cfg = todo.pop()
                todo += [*dependencies(cfg), *cfg.derived()]
        except ConfigError as e:
            out.append(f"{scale} scale: {e}")
    return out


def check() -> list[str]:
    """Validate every spec without running anything: structure, eval names, configs, paper selections."""
    problems = []
    for name in artifacts.names():
        try:
            mod = artifacts.load(name)
        except Exception as e:  # noqa: BLE001 - check reports every import problem as one line
            problems.append(f"{name}: cannot import ({type(e).__name__}: {e})")
            continue
        specs = getattr(mod, "SPECS", None)
        if not isinstance(specs, dict) or not specs:
            problems.append(f"{name}: no SPECS dict")
            continue
        for key, spec in specs.items():
            tag = f"{name}{'-' + key if key else ''}"
            if spec.id != name:
                problems.append(f"{tag}: spec id {spec.id!r} != module name")
            problems += [f"{tag}: {p}" for p in spec.validate()]
            for row in spec.rows:
                if row.run is not None and row.run.eval not in evals.EVALS:
                    problems.append(f"{tag} row {row.label!r}: unknown eval {row.run.eval!r}")
                if row.run is not None:
                    problems += [f"{tag} row {row.label!r}: {p}" for p in run_problems(row.run)]
                if row.paper is not None:
                    art = row.paper.artifact or spec.id
                    try:
                        vals = paper.values(art, **row.paper.filters())
                    except ValueError as e:
                        problems.append(f"{tag} row {row.label!r}: {e}")
                        continue
                    if not vals:
                        problems.append(f"{tag} row {row.label!r}: paper selection {art} "
                                        f"{row.paper.filters()} matches no paper number")
                    shown = {c.metric for c in spec.columns}
                    if vals and not (set(vals) & shown):
                        problems.append(f"{tag} row {row.label!r}: none of the paper metrics {sorted(vals)} "
                                        f"is a column")
    return problems


def report(runs_dir: Path | None = None) -> int:
    """tables/REPORT.md from the tables; ``runs_dir``: where the runs they name live (their machines)."""
    path, summary = write_report(TABLES, FIGURES, runs_dir)
    print(tabulate(summary, headers="keys", tablefmt="simple") if summary else "no tables yet")
    print(f"wrote {path}")
    return 0


def models_table() -> str:
    """Every autoencoder, then every diffusion backbone configuration of the paper, beside the official counts."""
    from models.backbones import (
        backbone_table,  # here: models imports torch, which ls and check must not
    )
    from models.zoo import models_table as autoencoder_table
    return (tabulate(autoencoder_table(), headers="keys", tablefmt="simple", intfmt=",") + "\n\n"
            + tabulate(backbone_table(), headers="keys", tablefmt="simple", floatfmt=".2f"))


def needs_table() -> str:
    """``python -m bench needs``: per paper-scale row, the weights, data, training and an estimate of GPU hours."""
    from bench import needs  # here: it counts FLOPs with torch
    return needs.HEADER + "\n\n" + tabulate(needs.rows(), headers="keys", tablefmt="github")


def referenced_runs(runner) -> set[str]:
    """Every run id some artefact's row needs at some scale, its dependencies (claims' arms, training) and derived
    runs (``EvalConfig.derived``) included."""
    seen: set[str] = set()
    for name in artifacts.names():
        for spec in artifacts.load(name).SPECS.values():
            for row in spec.rows:
                for scale in SCALES:
                    if row.run is None or not row.run.runs_at(scale):
                        continue
                    stack = [runner.resolve(row.run, scale)]
                    while stack:
                        cfg = stack.pop()
                        seen.add(runner.run_id_of(cfg, scale)[0])
                        stack += [*dependencies(cfg), *cfg.derived()]
    return seen


def is_own_model_run(folder) -> bool:
    """A run of the commands for your own models (bench/own.py, bench/own_diffusion.py): no artefact names it, and
    it is never stale. Its env.json names the command (``own.command_line``); runs made before env.json did are
    known by their kind."""
    from bench.own import COMMANDS
    env = read_json(folder / "env.json")
    words = str(env.get("command", "")).split() if isinstance(env, dict) else []
    if words[:3] == ["python", "-m", "bench"] and len(words) > 3:
        return words[3] in COMMANDS
    if folder.name.split("__")[1] in ("eval-ae", "protocol"):
        return True
    config = read_json(folder / "config.json")
    return isinstance(config, dict) and bool(config.get("config", {}).get("data"))  # train-ae --data FOLDER


def prune(runner, delete: bool) -> int:
    """``prune``: run folders under runs/ that no artefact names any more (superseded designs, old versions): listed,
    and with ``--delete`` moved to ``runs/_pruned/`` (gitignored; nothing is lost, gitignored checkpoints included:
    remove that folder by hand once sure)."""
    keep = referenced_runs(runner)
    stale = sorted(p for p in runner.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("_")
                   and "__" in p.name and p.name not in keep and not is_own_model_run(p))
    bin_ = runner.runs_dir / "_pruned"
    for p in stale:
        print(f"{'moved to ' + str(bin_) if delete else 'unreferenced'}: {p.name}")
        if delete:
            bin_.mkdir(exist_ok=True)
            p.rename(bin_ / p.name if not (bin_ / p.name).exists() else bin_ / f"{p.name}.{len(list(bin_.iterdir()))}")
    print(f"prune: {len(stale)} run folder(s) no artefact names" + ("" if delete or not stale
                                                                  else "; pass --delete to move them to runs/_pruned"))
    return 0
