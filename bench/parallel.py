"""The one scheduler: compute the runs one or more specs need, in dependency order, before the tables are built
(``--jobs N``: in N worker processes; ``--jobs 1``: one after the other in this process).

The runner stays a thin loop over rows; this module only front-loads work. It gathers every row's run at a scale and,
recursively, the runs those depend on (``bench.configs.dependencies``) and, for a run still to compute, the shared
work it is handed (``EvalConfig.derived``: e.g. the FID statistics of the originals), keeps the evals whose numbers do not depend
on wall-clock time (``Eval.parallel_safe`` in ``bench.evals``: training and reconstruction, not the timed efficiency profiler),
orders them in stages (a run comes after everything it depends on; the plan printed) and computes them with a process
pool, one CPU thread per worker, each run started as soon as the runs it depends on are complete (no barrier
between stages), the ready run that holds up the longest chain of expected work first. The serial pass that
follows then finds those runs complete and reuses them; anything that failed here is simply computed (and reported)
again there. Two processes never compute one run twice: the runner's per-run file lock makes the second wait and
reuse. The plan comes with the time it is expected to take, from the earlier times of the same runs (``Estimate``:
in a fresh clone, the committed ``runs/``), and each finished run prints the time left, those times rescaled by how
fast this machine ran the runs finished so far.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from bench import evals, process
from bench.configs import dependencies
from bench.errors import Unavailable
from bench.provenance import REPO_ROOT
from bench.runner import Runner, RunFailed
from bench.spec import RunRef, Spec


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    ref: RunRef
    stage: int  # 0 = depends on nothing; k = after stage k-1's runs
    needs: tuple[str, ...] = ()  # ids of the runs computed before it: its dependencies and derived runs


def plan(specs: Iterable[Spec], scale: str, runner) -> list[PlannedRun]:
    """The parallel-safe runs the rows of ``specs`` need at ``scale`` that are not complete yet, by stage."""
    stage_of: dict[str, int] = {}
    refs: dict[str, RunRef] = {}
    needs: dict[str, tuple[str, ...]] = {}
    incomplete: set[str] = set()

    def visit(ref: RunRef) -> str:
        rid, _ = runner.run_id_for(ref, scale)
        if rid not in stage_of:
            cfg = runner.resolve(ref, scale)
            if runner.load(ref, scale) is None:
                incomplete.add(rid)
            derived = cfg.derived() if rid in incomplete else ()  # shared work of a run to compute
            needs[rid] = tuple(visit(RunRef(dep)) for dep in (*dependencies(cfg), *derived))
            stage_of[rid] = 1 + max((stage_of[d] for d in needs[rid]), default=-1)
            refs[rid] = ref
        return rid

    for spec in specs:
        if spec.not_implemented:
            continue
        for row in spec.rows:
            if row.run is not None and row.run.runs_at(scale):
                visit(row.run)
    out = [PlannedRun(rid, refs[rid], stage_of[rid], needs[rid]) for rid in refs
           if evals.get(refs[rid].eval).parallel_safe and rid in incomplete
           and runner.refusal(runner.resolve(refs[rid], scale), scale) is None]  # refused: the table says why
    return sorted(out, key=lambda p: (p.stage, p.run_id))


BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _blas_threads(threads: int) -> Iterator[None]:
    """The BLAS thread count of the workers spawned inside: numpy's OpenBLAS reads it once, when a spawned worker
    imports numpy, and otherwise starts one thread per core in every worker (2 workers x 2 BLAS threads on 2 cores:
    the claims' SVDs ran oversubscribed). torch's own pool is set by ``_init_worker``."""
    saved = {k: os.environ.get(k) for k in BLAS_THREAD_VARS}
    os.environ.update({k: str(threads) for k in BLAS_THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker(threads: int) -> None:
    import torch  # here: the parent process (and `ls`) need not import torch to plan
    torch.set_num_threads(threads)
    process.tune_allocator()  # a spawned worker starts with glibc's defaults; the parent's setting is not inherited


def _work(args: tuple) -> tuple[str, float, str]:
    """Compute one run in a worker; its progress output goes to ``<runs>/_parallel/<run_id>.out``.

    Returns (run_id, seconds, problem): problem is "" when the run completed, else one line starting with
    "unavailable" (cannot run here: the serial pass shows it as a cell) or naming the error."""
    runs_dir, device, options, ref, scale, rid = args
    out_dir = Path(runs_dir) / "_parallel"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    problem = ""
    with open(out_dir / f"{rid}.out", "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            Runner(Path(runs_dir), device=device, options=options).ensure(ref, scale)
        except Unavailable as e:
            problem = f"unavailable ({e})"
        except Exception as e:  # noqa: BLE001 - one line here; the serial pass recomputes it and records the traceback
            problem = f"{type(e).__name__}: {e}".splitlines()[0]
    return rid, time.perf_counter() - t0, problem


def _shape(eval_name: str, scale: str, stored: dict) -> str:
    """A run's config without its seeds and the ids of its dependencies: equal for the seeds of one design."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("seed", "_depends_on")}
        return [strip(x) for x in v] if isinstance(v, list) else v
    return json.dumps([eval_name, scale, strip(stored)], sort_keys=True)


def _earlier_runs(dirs: Iterable[Path]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """({run id: seconds}, {shape: [seconds]}) of the completed runs in ``dirs`` (a damaged file gives nothing)."""
    by_id: dict[str, float] = {}
    by_shape: dict[str, list[float]] = collections.defaultdict(list)
    for d in dirs:
        for m in sorted(Path(d).glob("*/metrics.json")):
            try:
                seconds = json.loads(m.read_text()).get("_seconds")
                c = json.loads((m.parent / "config.json").read_text())
                shape = _shape(c["eval"], c["scale"], c["config"])
            except (OSError, ValueError, AttributeError, KeyError, TypeError):
                continue
            if isinstance(seconds, (int, float)) and m.parent.name not in by_id:
                by_id[m.parent.name] = float(seconds)
                by_shape[shape].append(float(seconds))
    return by_id, by_shape


def expected_times(planned: list[PlannedRun], dirs: Iterable[Path], runner, scale: str) -> dict[str, float | None]:
    """Seconds each planned run took before: ``_seconds`` of the same run id in ``dirs`` (in a fresh clone, the
    committed runs/ while --runs-dir points elsewhere), else the median over completed runs there of the same config
    but for seeds (another seed of the design); None where neither exists."""
    by_id, by_shape = _earlier_runs(dirs)
    out: dict[str, float | None] = {}
    for p in planned:
        same = by_shape.get(_shape(p.ref.eval, scale, runner.run_id_for(p.ref, scale)[1]))
        out[p.run_id] = by_id.get(p.run_id, statistics.median(same) if same else None)
    return out


@dataclass
class Estimate:
    """Time left of a pass: each unfinished run's earlier time times how much slower this machine ran the finished
    runs of its eval than their earlier times (the median ratio; of all evals while none of its own has finished),
    divided among the processes. A run without an earlier time counts at the mean earlier time of its eval (else of
    all); with no earlier times at all, the naive mean per finished run."""

    expected: dict[str, float | None]
    kinds: dict[str, str]  # run id -> eval
    jobs: int
    actual: dict[str, float] = dataclasses.field(default_factory=dict)  # completed runs: seconds taken here
    gone: set[str] = dataclasses.field(default_factory=set)  # every finished run (completed, failed or skipped)

    def fill(self, rid: str) -> float | None:
        """The earlier time of ``rid``, or the mean of its eval's (else of all) known earlier times."""
        if self.expected.get(rid) is not None:
            return self.expected[rid]
        for pick in (lambda r: self.kinds[r] == self.kinds[rid], lambda r: True):
            known = [e for r, e in self.expected.items() if e is not None and pick(r)]
            if known:
                return statistics.mean(known)
        return None

    def _ratio(self, kind: str) -> float:
        ratios = {r: a / self.expected[r] for r, a in self.actual.items() if self.expected.get(r)}
        own = [x for r, x in ratios.items() if self.kinds[r] == kind]
        return statistics.median(own or list(ratios.values()) or [1.0])

    def total(self) -> float | None:
        """Seconds of the whole pass by the earlier times; None when no run has one."""
        if all(e is None for e in self.expected.values()):
            return None
        return sum(self.fill(r) for r in self.expected) / self.jobs

    def finished(self, rid: str, seconds: float, ok: bool) -> None:
        self.gone.add(rid)
        if ok:
            self.actual[rid] = seconds

    def left(self, elapsed: float) -> float:
        """Seconds still to go, ``elapsed`` seconds into the pass."""
        todo = [r for r in self.expected if r not in self.gone]
        if self.total() is None:
            return elapsed / len(self.gone) * len(todo) if self.gone else float("nan")
        return sum(self.fill(r) * self._ratio(self.kinds[r]) for r in todo) / self.jobs

    def line(self, elapsed: float) -> str:
        return f"{elapsed / 60:.1f} min elapsed, ~{self.left(elapsed) / 60:.0f} min left"


def critical_path(expected: dict[str, float], deps_of: dict[str, list[str]]) -> dict[str, float]:
    """Each run's expected seconds plus those of the longest chain of planned runs that wait on it: the runs that
    hold up the most work start first, so the pass does not end on one long run while the other process idles."""
    dependents: dict[str, list[str]] = collections.defaultdict(list)
    for rid, deps in deps_of.items():
        for d in deps:
            dependents[d].append(rid)
    memo: dict[str, float] = {}

    def chain(rid: str) -> float:
        if rid not in memo:
            memo[rid] = expected.get(rid, 0.0) + max((chain(c) for c in dependents[rid]), default=0.0)
        return memo[rid]
    return {rid: chain(rid) for rid in deps_of}


def schedule(planned: list[PlannedRun], deps_of: dict[str, list[str]], submit: Callable[[PlannedRun], cf.Future],
             report: Callable[[str, float, str], None], problems: dict[str, str], slots: int | None = None,
             priority: dict[str, float] | None = None) -> None:
    """Dependency order, not stage barriers: a run is submitted as soon as every planned run it depends on has
    finished, so a worker never idles at the end of a stage while the other finishes a long run (the plateau runs
    of stage 0 take minutes each). ``submit(p)`` returns a future of ``_work``'s (run_id, seconds, problem). With
    ``slots`` (the pool's processes), at most that many runs are submitted at once and a free slot takes the ready
    run of highest ``priority`` (``critical_path``); ties, and no priority, keep the plan's (stage, id) order. A
    run whose dependency did not complete is skipped (and so, in turn, are its dependents); ``problems`` collects
    both. ``report(run_id, seconds, problem)`` is called once per planned run ("" when it completed)."""
    waiting, running, done = list(planned), {}, set()
    order = {p.run_id: i for i, p in enumerate(planned)}
    while waiting or running:
        ready = []
        for p in list(waiting):
            if any(d in problems for d in deps_of[p.run_id]):
                waiting.remove(p)
                problems[p.run_id] = "skipped: a run it depends on did not complete"
                report(p.run_id, 0.0, problems[p.run_id])
            elif all(d in done for d in deps_of[p.run_id]):
                ready.append(p)
        ready.sort(key=lambda p: (-(priority or {}).get(p.run_id, 0.0), order[p.run_id]))
        for p in ready[:len(ready) if slots is None else max(0, slots - len(running))]:
            waiting.remove(p)
            running[submit(p)] = p.run_id
        if not running:
            continue  # what was left got skipped above; the loop ends once nothing waits
        finished_now, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for fut in finished_now:
            del running[fut]
            rid, seconds, problem = fut.result()
            if problem:
                problems[rid] = problem
            else:
                done.add(rid)
            report(rid, seconds, problem)


def _in_process(runner, scale: str) -> Callable[[PlannedRun], cf.Future]:
    """``--jobs 1``: a submit that computes the run here and now (its progress printed as it goes) and returns a
    finished future of ``_work``'s (run_id, seconds, problem); a failure stays in ``runner.failed``, so the pass
    that builds the tables reports it without a second try."""
    def submit(p: PlannedRun) -> cf.Future:
        fut: cf.Future = cf.Future()
        t0, problem = time.perf_counter(), ""
        try:
            runner.ensure(p.ref, scale)
        except Unavailable as e:
            problem = f"unavailable ({e})"
        except RunFailed as e:
            problem = e.why
        fut.set_result((p.run_id, time.perf_counter() - t0, problem))
        return fut
    return submit


def run_plan(planned: list[PlannedRun], scale: str, runner, jobs: int,
             say: Callable[[str], None] = lambda m: print(m, flush=True)) -> dict[str, str]:
    """Compute ``planned`` with ``jobs`` processes (1: in this one), each run as soon as the runs it depends on are
    complete.

    Returns {run_id: problem} for the runs that did not complete (unavailable, failed, or skipped because a run they
    depend on did not complete)."""
    problems: dict[str, str] = {}
    if not planned:
        return problems
    threads = max(1, (os.cpu_count() or 1) // jobs)
    say(f"--jobs {jobs}: {len(planned)} run(s) to compute in {1 + planned[-1].stage} stage(s), "
        + (f"{jobs} processes x {threads} thread(s); progress of each run in {runner.runs_dir}/_parallel/"
           if jobs > 1 else "one after the other in this process"))
    counts = collections.Counter((p.stage, p.ref.eval) for p in planned)
    stages = sorted({st for st, _ in counts})
    say("plan: " + "; ".join(f"stage {s}: " + ", ".join(f"{n} {e}" for (st, e), n in sorted(counts.items())
                                                        if st == s) for s in stages))
    est = Estimate(expected_times(planned, dict.fromkeys([Path(runner.runs_dir), REPO_ROOT / "runs"]), runner, scale),
                   {p.run_id: p.ref.eval for p in planned}, jobs)
    if est.total() is not None:
        n_known = sum(e is not None for e in est.expected.values())
        say(f"expected: ~{est.total() / 60:.0f} min with {jobs} processes, from the earlier times of {n_known} of "
            f"these {len(planned)} runs (theirs or another seed's); the estimate below rescales them as runs finish")
    finished = 0
    with contextlib.ExitStack() as stack:
        if jobs > 1:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds OpenMP threads
            stack.enter_context(_blas_threads(threads))
            pool = stack.enter_context(cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                                                              initializer=_init_worker, initargs=(threads,)))
            submit = lambda p: pool.submit(_work, (str(runner.runs_dir), runner.device,  # noqa: E731
                                                   dict(runner.options), p.ref, scale, p.run_id))
        else:
            submit = _in_process(runner, scale)
        # in a log, or beside the runs' own lines (--jobs 1): one line per finished run, no bar
        bar = stack.enter_context(tqdm(total=len(planned), desc="runs", unit="run", dynamic_ncols=True,
                                       disable=jobs == 1 or not sys.stderr.isatty()))

        def report(rid: str, seconds: float, problem: str) -> None:
            nonlocal finished
            finished += 1
            bar.update(1)
            est.finished(rid, seconds, ok=not problem)
            eta = est.line(time.perf_counter() - t_start)
            line = f"  [{finished}/{len(planned)}] {rid}: {problem or f'{seconds:.0f} s'} · {eta}"
            if bar.disable:
                say(line)
            else:
                bar.write(line)

        t_start = time.perf_counter()
        planned_ids = {p.run_id for p in planned}
        deps_of = {p.run_id: [d for d in p.needs if d in planned_ids] for p in planned}
        first = critical_path({r: est.fill(r) or 0.0 for r in deps_of}, deps_of)
        schedule(planned, deps_of, submit, report, problems, slots=jobs, priority=first)
    return problems
