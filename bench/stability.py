"""How far a rerun moved the committed small-scale results: per metric the largest relative change of a
measured cell, and per claim how its verdict moved. Used by ``scripts/fresh_clone.py`` to compare a fresh clone's
regenerated ``tables/*-small.csv`` with the committed ones (read from git), and rendered into the README.

A verdict moving between ``reproduced`` and ``contradicted`` is a *flip* (the issue's criterion: there must be none);
a move to or from ``inconclusive`` is counted separately. Timed efficiency cells (latency, throughput) are machine
measurements, not results of training: they are reported in their own lines, not in the largest change of a metric.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

TIMED_METRICS = frozenset({"latency_ms", "infer_throughput_img_s", "train_throughput_img_s", "images_per_s",
                           "steps_per_s", "train_mfu", "latency_speedup", "inference_speedup", "training_speedup",
                           "train_memory_gb"})
DECIDED = ("reproduced", "contradicted")
# the results a reader compares across machines (the README's line); every metric is in tables/stability-small.md
HEADLINE = ("recon.psnr", "recon.ssim", "recon.rfid", "recon.kid", "train-ae.final_l1", "train-diffusion.loss_final",
            "generate.gfid", "generate.kid", "generate.gfid_vs_recon", "generate.kid_vs_recon")
TIMED_PARTS = ("per_s", "tflop_s", "s_per_step", "seconds", "latency", "throughput", "mfu", "speedup", "memory_gb",
               "outside_")  # outside_model_share: the share of wall time outside the model (not trained_share)


def is_timed(metric: str) -> bool:
    """A machine measurement (time, throughput, memory), not a result of training: '<eval>.<key>' or a CSV metric."""
    key = metric.rsplit(".", 1)[-1]
    return key in TIMED_METRICS or any(part in key for part in TIMED_PARTS)


@dataclass(frozen=True)
class Change:
    metric: str
    artefact: str
    row: str
    old: float
    new: float

    @property
    def relative(self) -> float:
        if self.old == 0:
            return 0.0 if self.new == 0 else math.inf
        return abs(self.new - self.old) / abs(self.old)

    @property
    def timed(self) -> bool:
        return is_timed(self.metric)


def _cells(text: str) -> dict[tuple[str, str, str, str], tuple[str, str]]:
    """(artifact, panel, row, metric) -> (ours, run_id), for the measured rows of one CSV."""
    out = {}
    for r in csv.DictReader(io.StringIO(text)):
        if r.get("status", "").startswith("measured") or r["metric"] == "verdict":
            out[(r["artifact"], r["panel"], r["row"], r["metric"])] = (r["ours"], r.get("run_id", ""))
    return out


def _number(v: str) -> float | None:
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _record_move(moves: dict, old: str, new: str, what: str) -> None:
    """Count one claim's verdict: unchanged, a flip (reproduced <-> contradicted), or a move to/from inconclusive."""
    if old == new:
        moves["unchanged"] += 1
        return
    kind = ("flips" if old in DECIDED and new in DECIDED
            else "to_inconclusive" if new == "inconclusive" else "from_inconclusive")
    moves[kind].append(f"{what} ({old} -> {new})")


def compare(old: Mapping[str, str], new: Mapping[str, str]) -> dict:
    """``old`` / ``new``: CSV name -> text. Returns the largest change per metric, the verdict moves, the cells
    present on one side only, and the cells whose run differs (another config: a design change, not a rerun; not
    compared)."""
    largest: dict[str, Change] = {}
    moves = {"flips": [], "to_inconclusive": [], "from_inconclusive": [], "unchanged": 0}
    one_sided = other_run = 0
    for name in sorted(set(old) | set(new)):
        a, b = _cells(old.get(name, "")), _cells(new.get(name, ""))
        one_sided += len(set(a) ^ set(b))
        for key in sorted(set(a) & set(b)):
            art = f"{key[0]}{' ' + key[1] if key[1] else ''}"
            (va, run_a), (vb, run_b) = a[key], b[key]
            if run_a != run_b:
                other_run += 1
                continue
            if key[3] == "verdict":
                _record_move(moves, va, vb, f"{art}: {key[2]}")
                continue
            x, y = _number(va), _number(vb)
            if x is None or y is None:
                continue
            c = Change(key[3], art, key[2], x, y)
            if key[3] not in largest or c.relative > largest[key[3]].relative:
                largest[key[3]] = c
    return {"largest": largest, "moves": moves, "one_sided": one_sided, "other_run": other_run}


def markdown(result: dict, header: str) -> str:
    """The comparison as Markdown: a header line (what was compared), the verdict moves, the largest change per
    metric (results first, timed efficiency cells after)."""
    m = result["moves"]
    lines = [header, ""] + ([machines_line(result["machines"]), ""] if "machines" in result else []) + [
             f"Claim verdicts: {m['unchanged']} unchanged, **{len(m['flips'])} flipped between reproduced and "
             f"contradicted**, {len(m['to_inconclusive'])} moved to inconclusive, {len(m['from_inconclusive'])} "
             f"moved from inconclusive" + ("." if "compared_runs" in result else
                                           f"; {result['one_sided']} measured cells present on one side only, "
                                           f"{result['other_run']} computed by a run of another config (a design "
                                           f"change since those cells were committed: not compared).")]
    for kind in ("flips", "to_inconclusive", "from_inconclusive"):
        lines += [f"- {kind.replace('_', ' ')}: {x}" for x in m[kind]]
    lines += ["", "| metric | largest relative change | committed | rerun | where |", "|---|---|---|---|---|"]
    ordered = sorted(result["largest"].values(), key=lambda c: (c.timed, c.metric))
    for c in ordered:
        timed = " (timed on the machine, not a result)" if c.timed else ""
        lines.append(f"| {c.metric}{timed} | {100 * c.relative:.3g} % | {c.old:.6g} | {c.new:.6g} | "
                     f"{c.artefact}: {c.row} |")
    return "\n".join(lines) + "\n"


def _run_metrics(path) -> dict | None:
    import json
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def compare_runs(committed, rerun) -> dict:
    """Run by run: every run folder of ``rerun`` (a Path) that has finished (metrics.json) and has a namesake in
    ``committed`` (the same run id: the same config, so any difference is the machine or the kernels, not the
    design). Same result shape as ``compare``: the largest change per '<eval>.<metric>' and the claim verdict moves.
    Usable while the rerun is still going."""
    largest: dict[str, Change] = {}
    moves = {"flips": [], "to_inconclusive": [], "from_inconclusive": [], "unchanged": 0}
    compared, machines = 0, {"committed": {}, "rerun": {}}
    for run in sorted(p for p in rerun.iterdir() if (p / "metrics.json").exists()):
        new, old = _run_metrics(run / "metrics.json"), _run_metrics(committed / run.name / "metrics.json")
        if new is None or old is None:
            continue
        compared += 1
        for side, folder in (("committed", committed / run.name), ("rerun", run)):
            cpu = (_run_metrics(folder / "env.json") or {}).get("cpu_model", "not recorded")
            machines[side][cpu] = machines[side].get(cpu, 0) + 1
        evaluation = run.name.split("__")[1] if "__" in run.name else "?"
        if "verdict" in new and "verdict" in old:
            _record_move(moves, old["verdict"], new["verdict"], new.get("_statement", run.name))
        for k, v in new.items():
            if k.startswith("_") or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            x = old.get(k)
            if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or not math.isfinite(v):
                continue
            c = Change(f"{evaluation}.{k}", evaluation, run.name, float(x), float(v))
            if c.metric not in largest or c.relative > largest[c.metric].relative:
                largest[c.metric] = c
    return {"largest": largest, "moves": moves, "one_sided": 0, "other_run": 0, "compared_runs": compared,
            "machines": machines}


def machines_line(machines: Mapping[str, Mapping[str, int]]) -> str:
    """'Machines (CPU model in each compared run's env.json): committed runs: X (n runs), ...; rerun: Y (m runs).'"""
    def side(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{cpu} ({n} runs)" for cpu, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"
    return (f"Machines (CPU model in each compared run's env.json): committed runs: {side(machines['committed'])}; "
            f"rerun: {side(machines['rerun'])}.")


def summary(result: dict, *, clone_sha: str, cpu: str, note: str, committed_small: int) -> dict:
    """The comparison in a few numbers (``tables/stability-small.json``, which the README's lines are generated
    from): what was rerun where, the verdict moves, and the largest relative change of each result metric."""
    m = result["moves"]
    largest = sorted((c for c in result["largest"].values() if not c.timed), key=lambda c: -c.relative)
    return {"clone_sha": clone_sha, "cpu": cpu, "note": note, "compared_runs": result.get("compared_runs"),
            "committed_small": committed_small, "machines": result.get("machines"),
            "verdicts": {"unchanged": m["unchanged"], "flips": m["flips"], "to_inconclusive": m["to_inconclusive"],
                         "from_inconclusive": m["from_inconclusive"]},
            "largest": [{"metric": c.metric, "relative": c.relative if math.isfinite(c.relative) else None,
                         "committed": c.old, "rerun": c.new,
                         "run": c.row} for c in largest]}
