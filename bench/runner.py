"""The thin runner: ensure runs exist, then turn a Spec into a long CSV table and a figure (STYLE rule 3).

Computing (``Runner.ensure``) is kept apart from presenting (``build_artifact``); ``--render-only`` rebuilds the
outputs from ``runs/`` without computing anything. Nothing here knows about a particular artefact.

A run folder ``runs/<run_id>/`` holds ``config.json``, ``env.json``, ``log.txt`` and, once complete,
``metrics.json``; a run is complete iff ``metrics.json`` exists. Writes are atomic and a per-run file lock makes
two processes that want the same run compute it once.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from bench import evals, paper
from bench.configs import (
    EvalConfig,
    dependencies,
    fields_json,
    from_json,
    is_dependency,
    limited,
    map_configs,
    with_user_reference,
)
from bench.emit import markdown_table
from bench.errors import RowFailed, Unavailable, UsageError
from bench.provenance import (
    atomic_write_json,
    atomic_write_text,
    damage,
    environment,
    git_state,
    quarantine,
    read_json,
    run_id,
)
from bench.scales import SCALES
from bench.spec import RunRef, Spec
from models.distributed import is_main_process, world_size
from models.io import file_lock


class RunFailed(Exception):
    """A run did not complete: ``why`` is its cell's reason (a RowFailed message, or an unexpected error whose
    traceback is in the run's log.txt)."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


@dataclass
class RunResult:
    run_id: str
    dir: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    reused: bool = False


def _utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunContext:
    """What an eval gets besides its config (see docs/design.md)."""

    scale: Any
    device: str
    run_dir: Path
    options: dict[str, Any]
    runner: "Runner"
    _log_path: Path | None = None
    inputs: dict[str, RunResult] = field(default_factory=dict)  # run id -> result of each declared dependency

    def derived_input(self, cfg: EvalConfig) -> RunResult | None:
        """The completed run of ``cfg`` (one of this run's ``derived()``) that the runner handed, or None: it did not
        (torchrun, or it cannot run here), and the eval does that work itself."""
        return self.inputs.get(self.runner.run_id_for(RunRef(cfg), self.scale.name)[0])

    def recorded(self, cfg: EvalConfig) -> dict[str, Any]:
        """The metrics a run of ``cfg`` recorded, whether or not its other outputs (a gitignored checkpoint) are here:
        for an eval that reads numbers only. A run with no metrics is an input as ``input`` gives it."""
        rid, _ = self.runner.run_id_for(RunRef(cfg), self.scale.name)
        metrics = read_json(self.runner.runs_dir / rid / "metrics.json")
        return metrics if isinstance(metrics, dict) else self.input(cfg).metrics

    def input(self, cfg: EvalConfig) -> RunResult:
        """The completed run of ``cfg``: a dependency the runner computed before this run (a config field of this
        run), or a completed run further up the graph (read, never computed: evals do not call the runner)."""
        rid, _ = self.runner.run_id_for(RunRef(cfg), self.scale.name)
        if rid in self.inputs:
            return self.inputs[rid]
        done = self.runner.load(RunRef(cfg), self.scale.name)
        if done is None:
            raise Unavailable(f"run {rid} is not complete and is not a dependency of this run's config; compute "
                              f"it first (the artefact that names it)")
        return done

    def log(self, msg: str) -> None:
        line = f"[{_utcnow()}] {msg}"
        if self._log_path is not None and is_main_process():
            with open(self._log_path, "a") as f:
                f.write(line + "\n")
        if is_main_process():
            print(f"  {msg}", flush=True)


@dataclass
class Runner:
    runs_dir: Path
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    render_only: bool = False
    failed: dict[str, RunFailed] = field(default_factory=dict)  # runs that failed in this process: never run twice

    def __post_init__(self) -> None:
        self.runs_dir = Path(self.runs_dir)

    def check_writable(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            probe = self.runs_dir / f".write-probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise UsageError(f"runs folder {self.runs_dir} is not writable ({e.strerror}); "
                             f"pass --runs-dir to a writable folder") from None

    @property
    def limit(self) -> int | None:
        """--limit N: evals with a subset mode run on the first N images (the cells say so)."""
        return self.options.get("limit")

    def resolve(self, ref: RunRef, scale: str) -> EvalConfig:
        """The config ``ref`` runs with at ``scale`` here (``--limit`` and ``--fid-reference`` applied)."""
        digest = self.options.get("fid_reference_digest")
        return map_configs(ref.resolve(scale), lambda c: with_user_reference(limited(c, self.limit), digest))

    def run_id_for(self, ref: RunRef, scale: str) -> tuple[str, dict]:
        """The content-derived id of ``ref`` at ``scale`` and the config stored with it (``config.json``)."""
        return self.run_id_of(self.resolve(ref, scale), scale)

    def run_id_of(self, cfg: EvalConfig, scale: str) -> tuple[str, dict]:
        """Id and stored form of a resolved config: its fields, the eval's protocol version and the ids of the runs
        it depends on (``configs.dependencies``, recursively; each dependency is named by its id, not its fields),
        so a changed training recipe also renames every evaluation of its checkpoint."""
        stored = {k: v for k, v in fields_json(cfg).items() if not is_dependency(getattr(cfg, k))}
        stored["_protocol_version"] = evals.version(cfg.EVAL)
        deps = [self.run_id_of(d, scale)[0] for d in dependencies(cfg)]
        if deps:
            stored["_depends_on"] = deps
        return run_id(cfg.EVAL, cfg.run_name, stored, scale), stored

    def config_of(self, run: str | Path) -> tuple[EvalConfig, str]:
        """The typed config and scale of a run folder (or a run id in ``runs_dir``), its dependencies rebuilt from
        their own folders here; checked by recomputing the run id, so a moved or edited folder is one line."""
        folder = Path(run).expanduser() if Path(run).expanduser().is_dir() else self.runs_dir / str(run)
        stored = read_json(folder / "config.json")
        if not isinstance(stored, dict) or stored.get("eval") not in evals.EVALS or "config" not in stored:
            raise UsageError(f"{run}: no run folder there (config.json); give a run folder or id that a command printed")
        fields = stored["config"]
        deps = [self.config_of(self.runs_dir / d)[0] for d in fields.get("_depends_on", ())]
        cfg = from_json(evals.get(stored["eval"]).config, fields, deps)
        if self.run_id_of(cfg, stored["scale"])[0] != folder.name:
            raise UsageError(f"{run}: its config.json does not give its run id {folder.name} (renamed or edited, or "
                             f"written by another version); run its command again")
        return cfg, stored["scale"]

    def load(self, ref: RunRef, scale: str) -> RunResult | None:
        """The completed run for ``ref`` at ``scale``, or None."""
        rid, cfg = self.run_id_for(ref, scale)
        metrics_path = self.runs_dir / rid / "metrics.json"
        metrics = read_json(metrics_path)  # a damaged file is moved aside with one warning: the run is recomputed
        if not isinstance(metrics, dict):
            if metrics is not None:
                quarantine(metrics_path, f"a JSON {type(metrics).__name__}, not an object")
            return None
        # A run may declare files it produced that other runs need (``_outputs``, e.g. a gitignored checkpoint);
        # in a fresh clone those are absent, so the run is not complete there and is recomputed when asked for.
        for rel in (*metrics.get("_outputs", ()), *evals.get(ref.eval).files):
            out = metrics_path.parent / rel
            if not out.exists():
                return None
            if (why := damage(out)) is not None:  # a truncated checkpoint: never handed to a dependent run
                quarantine(out, why)
                return None
        if (stale := self._stale_dependency(metrics)) is not None:
            print(f"note: {rid} used {stale} before it was recomputed; recomputing it", flush=True)
            return None
        return RunResult(rid, metrics_path.parent, metrics, cfg, reused=True)

    def refusal(self, cfg: EvalConfig, scale: str) -> str | None:
        """Why ``cfg``, or a run it needs that is not complete, cannot run on this device (None: it can)."""
        todo, seen = [cfg], set()
        while todo:
            c = todo.pop()
            if id(c) in seen:
                continue
            seen.add(id(c))
            why = evals.device_refusal(c.EVAL, SCALES[scale].needs_gpu, self.device, self.limit)
            if why is not None and (c is cfg or self.load(RunRef(c), scale) is None):
                return why
            todo += dependencies(c)
        return None

    def _stamp(self, run_id: str) -> str | None:
        """A fingerprint of a run's current result (its metrics.json bytes): changes whenever it is recomputed."""
        path = self.runs_dir / run_id / "metrics.json"
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None

    def _stale_dependency(self, metrics: dict) -> str | None:
        """The dependency that was recomputed after this run used it (e.g. a training run retrained in a fresh
        clone, whose evaluations must not keep numbers of the old weights), or None. A dependency that is absent
        is not a reason: the run's own result still stands."""
        for dep, stamp in (metrics.get("_dependency_stamps") or {}).items():
            now = self._stamp(dep)
            if now is not None and now != stamp:
                return dep
        return None

    def _lock(self, run_dir: Path) -> contextlib.AbstractContextManager:
        """The run folder's file lock in the main process (torchrun's other ranks take none)."""
        return file_lock(run_dir / ".lock") if is_main_process() else contextlib.nullcontext()

    def ensure(self, ref: RunRef, scale: str, force: bool | None = None) -> RunResult:
        """Reuse the completed run for ``ref`` or compute it. Raises Unavailable, UsageError or RunFailed."""
        force = self.force if force is None else force
        if not ref.runs_at(scale):
            raise Unavailable(f"not run at {scale} scale")
        if not force and (done := self.load(ref, scale)) is not None:
            return done
        if self.render_only:
            raise Unavailable("no completed run (render-only)")
        resolved = self.resolve(ref, scale)
        if (why := self.refusal(resolved, scale)) is not None:
            raise Unavailable(why)  # before any folder is made: a refused command leaves nothing in runs/
        inputs = {r.run_id: r for r in (self.ensure(RunRef(d), scale, force=False)
                                        for d in dependencies(resolved))}  # the graph, in order
        inputs.update(self._derived(resolved, scale))
        rid, cfg = self.run_id_for(ref, scale)
        if rid in self.failed:  # another row needs a run that already failed here: its reason, not a second try
            raise self.failed[rid]
        run_dir = self.runs_dir / rid
        run_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(run_dir):
            if not force and (done := self.load(ref, scale)) is not None:
                return done  # another process finished it while we waited
            ctx = self._start(ref, scale, rid, cfg, inputs)
            t0 = time.perf_counter()
            with self._failures(ctx, rid):
                metrics = evals.load(ref.eval)(resolved, ctx)
            return self._finish(ctx, ref, rid, cfg, metrics, time.perf_counter() - t0)

    def _derived(self, cfg: EvalConfig, scale: str) -> dict[str, RunResult]:
        """The completed runs of ``cfg.derived()`` (shared work), computed first where needed. One process only (a
        torchrun run does that work itself, spread over its ranks); one that cannot run here (no feature network)
        is left out, and the run then does the work itself or says why it cannot."""
        if world_size() > 1:
            return {}
        out = {}
        for d in cfg.derived():
            try:
                done = self.ensure(RunRef(d), scale, force=False)
            except Unavailable:
                continue
            out[done.run_id] = done
        return out

    def _start(self, ref: RunRef, scale: str, rid: str, cfg: dict, inputs: dict) -> RunContext:
        """The run folder's config.json and env.json (an earlier result kept aside under --force) and its context."""
        run_dir = self.runs_dir / rid
        if is_main_process():
            if (run_dir / "metrics.json").exists():  # --force: keep the old result until the new one is complete
                os.replace(run_dir / "metrics.json", run_dir / "metrics.previous.json")
            atomic_write_json(run_dir / "config.json", {"eval": ref.eval, "scale": scale, "config": cfg})
            command = {"command": self.options["command"]} if "command" in self.options else {}
            atomic_write_json(run_dir / "env.json", {**environment(self.device, "float32", scale), **command,
                                                     "started_utc": _utcnow()})
        ctx = RunContext(SCALES[scale], self.device, run_dir, dict(self.options), self, run_dir / "log.txt", inputs)
        ctx.log(f"run {rid}: eval {ref.eval} at {scale} scale")
        return ctx

    @contextlib.contextmanager
    def _failures(self, ctx: RunContext, rid: str) -> Iterator[None]:
        """An eval's exception as the runner reports it: Unavailable / UsageError as they are, a row's own failure
        or any other error as one-line ``RunFailed`` (the traceback in log.txt), remembered in ``self.failed``."""
        try:
            yield
        except (Unavailable, UsageError) as e:
            ctx.log(f"{type(e).__name__}: {e}")
            raise
        except KeyboardInterrupt:
            ctx.log("interrupted; nothing recorded (resumable evals keep their partial state)")
            raise
        except RowFailed as e:  # the row's own inputs: its cell says why, the table goes on
            ctx.log(f"RowFailed: {e}")
            self.failed[rid] = RunFailed(f"run {rid} failed: {e}", str(e))
            raise self.failed[rid] from e
        except Exception as e:  # noqa: BLE001 - recorded in full, re-raised as one line
            if is_main_process():
                with open(ctx.run_dir / "log.txt", "a") as f:
                    f.write(traceback.format_exc())
            self.failed[rid] = RunFailed(f"run {rid} failed: {type(e).__name__}: {e} (traceback in "
                                         f"{ctx.run_dir}/log.txt)", f"{type(e).__name__}, see {ctx.run_dir}/log.txt")
            raise self.failed[rid] from e

    def _finish(self, ctx: RunContext, ref: RunRef, rid: str, cfg: dict, metrics: dict, seconds: float
                ) -> RunResult:
        """The eval's metrics with the protocol, the dependencies' stamps and the time, written last."""
        metrics = {**metrics, "_protocol": evals.protocol_id(ref.eval)}  # from the registration, never typed twice
        stamps = {d: self._stamp(d) for d in cfg.get("_depends_on", [])}  # what this run was computed from
        if stamps:
            metrics["_dependency_stamps"] = stamps
        metrics.setdefault("_seconds", round(seconds, 3))
        if is_main_process():
            env = json.loads((ctx.run_dir / "env.json").read_text())
            env.update(finished_utc=_utcnow(), dtype=metrics.get("_dtype", env["dtype"]))
            atomic_write_json(ctx.run_dir / "env.json", env)
            atomic_write_json(ctx.run_dir / "metrics.json", metrics)  # last: its existence marks the run complete
        ctx.log(f"done in {seconds:.1f} s")
        return RunResult(rid, ctx.run_dir, metrics, cfg)


# --------------------------------------------------------------------------------------------------------------
# Presenting: Spec + results -> long table
# --------------------------------------------------------------------------------------------------------------

CSV_COLUMNS = ("artifact", "panel", "row", "metric", "label", "ours", "paper", "delta", "ratio", "lower_is_better",
               "scale", "status", "run_id", "protocol", "note")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    if math.isinf(v) or math.isnan(v):
        return str(v)
    return f"{v:.6g}"


@dataclass
class Built:
    spec: Spec
    panel: str
    scale: str
    records: list[dict[str, str]]
    results: dict[str, RunResult]
    problems: list[str]
    subset: int | None = None  # --limit N: every cell is of a subset of N images, and the file name says so


def _ensure_rows(spec: Spec, panel: str, scale: str, runner: Runner, progress):
    """Run (or reuse) every row's run: (results by label, a status per row that has none, failure lines)."""
    results: dict[str, RunResult] = {}
    row_status: dict[str, str] = {}
    problems: list[str] = []
    run_rows = [r for r in spec.rows if r.run is not None]
    for i, row in enumerate(run_rows):
        if progress:
            progress(f"[{i + 1}/{len(run_rows)}] {spec.id}{'-' + panel if panel else ''} · {row.label}")
        if not row.run.runs_at(scale):
            row_status[row.label] = f"not run at {scale} scale"
            continue
        try:
            results[row.label] = runner.ensure(row.run, scale)
        except Unavailable as e:
            row_status[row.label] = f"unavailable ({e})"
        except RunFailed as e:
            row_status[row.label] = f"failed ({e.why})"
            problems.append(str(e))
    return results, row_status, problems


def _row_values(spec: Spec, row, results: dict[str, RunResult], status: str, row_status: dict[str, str]):
    """One row's metrics, run id(s), protocol and status: measured, derived from other rows, or paper only. A
    derived row whose source row has no result says why that row has none (e.g. "not run at small scale")."""
    if row.label in results:
        res = results[row.label]
        return res.metrics, res.run_id, str(res.metrics.get("_protocol", evals.protocol_id(row.run.eval))), status
    if row.derive is None:
        paper_only = f"paper only{': ' + row.note if row.note else ''}"
        return {}, "", "", paper_only if row.run is None else status
    ours: dict[str, Any] = {}
    try:
        ours = dict(row.derive({label: r.metrics for label, r in results.items()}))
    except (KeyError, TypeError, ZeroDivisionError, ValueError) as e:
        source = e.args[0] if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) else None
        status = (f"{row_status[source]} (its source row {source!r})" if source in row_status
                  else f"not derivable ({type(e).__name__}: {e})")
    srcs = ours.pop("_from", None)
    rid = ";".join(results[s].run_id for s in srcs if s in results) if srcs else "derived"
    return ours, rid, "derived", status


def _paper_values(spec: Spec, row) -> dict[str, float]:
    if row.paper is not None:
        return paper.values(row.paper.artifact or spec.id, **row.paper.filters())
    return _derive_paper(spec, row) if row.derive is not None else {}


def collect(spec: Spec, panel: str, scale: str, runner: Runner, progress=None) -> Built:
    """Ensure every row's run, then assemble one record per (row, metric). Errors become cells, never crashes."""
    results, row_status, problems = _ensure_rows(spec, panel, scale, runner, progress)
    records = []
    for row in spec.rows:
        ours_metrics, rid, protocol, status = _row_values(spec, row, results, row_status.get(row.label, ""),
                                                          row_status)
        paper_vals = _paper_values(spec, row)
        for col in spec.columns:
            ours_raw = ours_metrics.get(col.metric)
            p = paper_vals.get(col.metric)
            if ours_raw is None and p is None and not (status and row.run is not None):
                continue  # nothing to show; but a run row that could not run still shows why
            o = _num(ours_raw)
            word = str(ours_raw) if col.text and isinstance(ours_raw, str) else None  # e.g. a claim's verdict
            cell_status = status or ("measured" if o is not None or word else
                                     (str(ours_raw) if ours_raw is not None else "not measured"))
            if (o is not None or word) and not status and (how := ours_metrics.get(f"_how_{col.metric}")):
                cell_status = f"measured ({how})"  # how the eval computed this number, e.g. the FID form
            records.append({
                "artifact": spec.id, "panel": panel, "row": row.label, "metric": col.metric, "label": col.label,
                "ours": _fmt(o) if o is not None else (word or ""), "paper": _fmt(p),
                "delta": _fmt(o - p) if o is not None and p is not None else "",
                "ratio": _fmt(o / p) if o is not None and p not in (None, 0) else "",
                "lower_is_better": "" if col.lower_is_better is None else str(col.lower_is_better).lower(),
                "scale": scale, "status": cell_status, "run_id": rid, "protocol": protocol, "note": row.note,
            })
    if runner.limit is not None:  # never mistaken for the paper's protocol
        for rec in records:
            if rec["status"].startswith("measured"):
                rec["status"] = f"{rec['status']}, subset of {runner.limit} images"
    return Built(spec, panel, scale, records, results, problems, subset=runner.limit)


class _PaperMetrics(dict):
    """A row's paper numbers; a metric the paper does not report reads as NaN (so derived values drop out)."""

    def __missing__(self, key: str) -> float:
        return float("nan")

    def get(self, key, default=None):  # noqa: D102 - same NaN rule for .get
        return self[key] if key in self else (default if default is not None else float("nan"))


def _derive_paper(spec: Spec, row) -> dict[str, float]:
    """Apply a derived row's ``derive`` to the paper's numbers of the rows it reads (finite results only)."""
    by_label = {r.label: _PaperMetrics(paper.values(r.paper.artifact or spec.id, **r.paper.filters()))
                for r in spec.rows if r.paper is not None and r.run is not None}
    try:
        derived = row.derive(by_label)
    except (KeyError, TypeError, ZeroDivisionError, ValueError):
        return {}
    return {k: float(v) for k, v in derived.items()
            if not k.startswith("_") and _num(v) is not None and math.isfinite(float(v))}


def output_stem(spec_id: str, panel: str, scale: str, subset: int | None = None) -> str:
    return f"{spec_id}{'-' + panel if panel else ''}-{scale}{f'-subset{subset}' if subset else ''}"


def write_outputs(built: Built, tables_dir: Path, figures_dir: Path, command: str) -> list[Path]:
    """Write the CSV, a Markdown view and the figure. Returns the paths written."""
    stem = output_stem(built.spec.id, built.panel, built.scale, built.subset)
    df = pd.DataFrame(built.records, columns=list(CSV_COLUMNS))
    written = []
    csv_path = tables_dir / f"{stem}.csv"
    atomic_write_text(csv_path, df.to_csv(index=False))
    written.append(csv_path)
    md_path = tables_dir / f"{stem}.md"
    g = git_state()
    header = (f"<!-- generated {_utcnow()} by `{command}` at git {g['git_sha'][:12]}"
              f"{' (dirty)' if g['git_dirty'] else ''} -->\n")
    atomic_write_text(md_path, header + markdown_table(built.spec, built.scale, df))
    written.append(md_path)
    if built.spec.plot is not None and len(df):
        png = figures_dir / f"{stem}.png"
        figures_dir.mkdir(parents=True, exist_ok=True)
        tmp = png.with_name(f".{png.name}.tmp.png")
        built.spec.plot(df, built.results, tmp)
        if tmp.exists():
            os.replace(tmp, png)
            written.append(png)
            atomic_write_text(figures_dir / f"{stem}.csv", df.to_csv(index=False))  # the plotted data
    return written
