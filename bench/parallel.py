"""``--jobs N``: compute the independent runs of one or more specs in N worker processes before the serial pass.

The runner stays a thin serial loop; this module only front-loads work. It gathers every row's run at a scale and,
recursively, the runs those depend on (``bench.evals.dependencies``), keeps the evals whose numbers do not depend on
wall-clock time (``bench.evals.PARALLEL_SAFE``: training and reconstruction, not the timed efficiency profiler),
orders them in stages (a run comes after everything it depends on) and computes each stage with a process pool, one
CPU thread per worker. The serial pass that follows then finds those runs complete and reuses them; anything that
failed here is simply computed (and reported) again there. Two processes never compute one run twice: the runner's
per-run file lock makes the second wait and reuse.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from bench import evals
from bench.spec import RunRef, Spec


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    ref: RunRef
    stage: int  # 0 = depends on nothing; k = after stage k-1's runs


def plan(specs: Iterable[Spec], scale: str, runner) -> list[PlannedRun]:
    """The parallel-safe runs the rows of ``specs`` need at ``scale`` that are not complete yet, by stage."""
    stage_of: dict[str, int] = {}
    refs: dict[str, RunRef] = {}

    def visit(ref: RunRef) -> int:
        rid, cfg = runner.run_id_for(ref, scale)
        if rid not in stage_of:
            deps = [visit(RunRef(e, c)) for e, c in evals.dependencies(ref.eval, cfg)]
            stage_of[rid] = 1 + max(deps, default=-1)
            refs[rid] = ref
        return stage_of[rid]

    for spec in specs:
        if spec.not_implemented:
            continue
        for row in spec.rows:
            if row.run is not None and row.run.runs_at(scale):
                visit(row.run)
    out = [PlannedRun(rid, refs[rid], stage_of[rid]) for rid in refs
           if refs[rid].eval in evals.PARALLEL_SAFE and runner.load(refs[rid], scale) is None]
    return sorted(out, key=lambda p: (p.stage, p.run_id))


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _work(args: tuple) -> tuple[str, float, str]:
    """Compute one run in a worker; its progress output goes to ``<runs>/_parallel/<run_id>.out``."""
    from bench.errors import Unavailable, UsageError
    from bench.runner import Runner, RunFailed
    runs_dir, device, options, ref, scale, rid = args
    out_dir = Path(runs_dir) / "_parallel"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out_dir / f"{rid}.out", "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            Runner(Path(runs_dir), device=device, options=options).ensure(ref, scale)
            err = ""
        except (Unavailable, UsageError, RunFailed) as e:
            err = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - reported as one line; the serial pass recomputes and records it
            err = f"{type(e).__name__}: {e}"
    return rid, time.perf_counter() - t0, err


def run_plan(planned: list[PlannedRun], scale: str, runner, jobs: int,
             say: Callable[[str], None] = lambda m: print(m, flush=True)) -> dict[str, str]:
    """Compute ``planned`` stage by stage with ``jobs`` processes; returns {run_id: error} for runs that failed."""
    from tqdm import tqdm
    failed: dict[str, str] = {}
    if not planned:
        return failed
    threads = max(1, (os.cpu_count() or 1) // jobs)
    say(f"--jobs {jobs}: {len(planned)} run(s) to compute in {1 + planned[-1].stage} stage(s), "
        f"{jobs} processes x {threads} thread(s); progress of each run in {runner.runs_dir}/_parallel/")
    finished = 0
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds OpenMP threads
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                initargs=(threads,)) as pool, \
            tqdm(total=len(planned), desc="runs", unit="run", dynamic_ncols=True,
                 disable=not sys.stderr.isatty()) as bar:  # in a log: one line per finished run, no bar
        for stage in range(1 + planned[-1].stage):
            todo = [p for p in planned if p.stage == stage]
            if any(_depends_on_failed(p, failed, scale, runner) for p in todo):
                todo = [p for p in todo if not _depends_on_failed(p, failed, scale, runner)]
            args: list[Any] = [(str(runner.runs_dir), runner.device, dict(runner.options), p.ref, scale, p.run_id)
                               for p in todo]
            for fut in cf.as_completed([pool.submit(_work, a) for a in args]):
                rid, seconds, err = fut.result()
                bar.update(1)
                finished += 1
                if err:
                    failed[rid] = err
                line = f"  [{finished}/{len(planned)}] {rid}: " + (err.splitlines()[0] if err else f"{seconds:.0f} s")
                bar.write(line) if not bar.disable else say(line)
    return failed


def _depends_on_failed(p: PlannedRun, failed: dict[str, str], scale: str, runner) -> bool:
    cfg = p.ref.resolve(scale)
    return any(runner.run_id_for(RunRef(e, c), scale)[0] in failed for e, c in evals.dependencies(p.ref.eval, cfg))
