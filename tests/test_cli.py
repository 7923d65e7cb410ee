"""The CLI: ls, check, one-line errors with non-zero exit codes, help examples."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_ls_lists_every_artefact():
    out = bench("ls")
    assert out.returncode == 0, out.stderr
    for ident in ("table1", "table2", "table3", "table4", "table5", "figure2", "figure3 --ablation residual",
                  "figure3 --ablation resolution", "figure5", "figure7", "memory"):
        assert f"\n{ident} " in "\n" + out.stdout or out.stdout.startswith(ident), ident
    assert "cannot import" not in out.stdout


def test_check_passes():
    out = bench("check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check: OK" in out.stdout


@pytest.mark.parametrize("args,needle", [
    (("nosuch",), "unknown artefact 'nosuch'"),
    (("table2", "--scale", "huge"), "unknown --scale 'huge'"),
    (("figure3", "--ablation", "nosuch"), "figure3 has no ablation/panel 'nosuch'"),
    (("table2", "--device", "tpu"), "unknown --device 'tpu'"),
    (("table2", "--bogus"), "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_nonzero(args, needle):
    out = bench(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr


def test_a_command_that_cannot_run_here_is_refused_before_any_run_folder(tmp_path):
    """Paper-scale reconstruction on a CPU without --limit: the reason in the last line, nothing left in runs/."""
    out = bench("table2", "--scale", "paper", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "cannot run at paper scale here" in last and "needs a GPU" in last and "--limit N" in last
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_not_implemented_or_not_run_says_so_in_one_line(monkeypatch, capsys):
    from bench import artifacts
    from bench.__main__ import main
    from bench.spec import Spec
    stub = Spec(id="table1", title="t", caption="", columns=(), rows=(), not_implemented="table1 is not implemented")
    monkeypatch.setattr(artifacts, "load", lambda n: types.SimpleNamespace(SPECS={"": stub}))
    assert main(["table1", "--scale", "smoke"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not implemented" in err
    from bench.configs import ReconConfig
    from bench.spec import Row, RunRef
    unrun = Spec(id="table1", title="t", caption="", columns=(), scales={"small": "not at this scale"},
                 rows=(Row("r", run=RunRef(ReconConfig("dc-ae-f8c4-tiny", 32), at={"small": None})),))
    monkeypatch.setattr(artifacts, "load", lambda n: types.SimpleNamespace(SPECS={"": unrun}))
    assert main(["table1", "--scale", "small"]) == 1  # no row runs at this scale: one line, exit 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not run at small scale" in err


def test_unwritable_runs_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = bench("table2", "--scale", "smoke", "--runs-dir", str(blocker / "runs"))
    assert out.returncode == 2 and "not writable" in out.stderr and "Traceback" not in out.stderr


def test_help_has_examples():
    out = bench("--help")
    assert out.returncode == 0 and "python -m bench figure3 --ablation residual" in out.stdout


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_jobs_is_one_line(value):
    out = bench("table2", "--scale", "smoke", "--jobs", value)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--jobs" in out.stderr and "Traceback" not in out.stderr


def test_jobs_computes_runs_in_workers_then_reuses_them(tmp_path):
    """--jobs 2: the parallel pass computes every training/recon run (1 thread each); the serial pass reuses them."""
    runs = tmp_path / "runs"
    out = bench("figure5", "--scale", "smoke", "--jobs", "2", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--jobs 2:" in out.stdout
    done = [d for d in runs.iterdir() if (d / "metrics.json").exists()]
    assert {d.name.split("__")[1] for d in done} == {"train-ae", "fid-ref", "recon", "claim"}
    for d in done:
        env = json.loads((d / "env.json").read_text())
        assert env["threads"] == 1, d.name  # computed by a worker, not recomputed by the serial pass
    again = bench("figure5", "--scale", "smoke", "--jobs", "2", "--runs-dir", str(runs))
    assert again.returncode == 0 and "--jobs 2:" not in again.stdout  # nothing left to compute


def test_needs_names_weights_data_training_and_an_estimate():
    """`python -m bench needs` per row: released weights by name, unreleased ones to train, data sets, training runs
    and a GPU-hour estimate that grows with what the row computes."""
    from bench import needs
    from bench.configs import ReconConfig, TrainAEConfig, folder

    def walk(cfg):
        out = needs.Needs()
        needs._walk(cfg, out)
        return out
    released = walk(ReconConfig("dc-ae-f32c32-in-1.0", 256, dataset=folder("imagenet-val"), weights=True))
    assert released.weights == {"dc-ae-f32c32-in-1.0"} and released.data == {"imagenet-val"} and not released.training
    stacked = walk(ReconConfig("sd-vae-f32c32", 256, dataset=folder("ffhq"), weights=True))
    assert stacked.unreleased == {"sd-vae-f32c32"} and stacked.data == {"ffhq"}
    trained = walk(ReconConfig("dc-ae-f8c4", 256, dataset=folder("imagenet-val"), checkpoint=TrainAEConfig("dc-ae-f8c4")))
    assert trained.training[0].startswith("train-ae dc-ae-f8c4 phase1: 100,000 steps")
    assert trained.gpu_hours > 10 * released.gpu_hours > 0  # training dominates an evaluation


def test_prune_moves_unnamed_run_folders_aside(tmp_path):
    """`prune` lists run folders no artefact names; `--delete` moves them to runs/_pruned (never deletes), and it
    refuses the options that rename runs."""
    runs = tmp_path / "runs"
    (runs / "old-model__recon__small__0123456789").mkdir(parents=True)
    (runs / "my-vae__eval-ae__paper__0123456789").mkdir()  # a run of your own model: never stale
    (runs / "_cache").mkdir()
    listed = subprocess.run([sys.executable, "-m", "bench", "prune", "--runs-dir", str(runs)], capture_output=True,
                            text=True, cwd=ROOT)
    assert listed.returncode == 0 and "unreferenced: old-model__recon__small__0123456789" in listed.stdout
    assert (runs / "old-model__recon__small__0123456789").is_dir()
    subprocess.run([sys.executable, "-m", "bench", "prune", "--delete", "--runs-dir", str(runs)], check=True,
                   capture_output=True, cwd=ROOT)
    assert (runs / "_pruned" / "old-model__recon__small__0123456789").is_dir() and (runs / "_cache").is_dir()
    assert (runs / "my-vae__eval-ae__paper__0123456789").is_dir()
    bad = subprocess.run([sys.executable, "-m", "bench", "prune", "--limit", "8", "--runs-dir", str(runs)],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "prune takes no --limit" in bad.stderr


def test_workers_get_one_blas_thread_each_and_the_parent_keeps_its_own(monkeypatch):
    """--jobs N: numpy's OpenBLAS in each spawned worker reads OPENBLAS_NUM_THREADS at import; without it every worker
    starts a thread per core (2 workers x 2 threads on 2 cores). The parent's settings come back afterwards."""
    from bench import parallel
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with parallel._blas_threads(1):
        assert all(os.environ[k] == "1" for k in parallel.BLAS_THREAD_VARS)
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OPENBLAS_NUM_THREADS" not in os.environ


def test_schedule_starts_a_run_when_its_dependencies_finish_not_at_a_stage_barrier():
    """bench.parallel.schedule: with 2 workers, a long stage-0 run ('slow') does not hold back 'b1', whose only
    dependency 'a' finished early; a failed run's dependents (and theirs) are skipped, never started."""
    import concurrent.futures as cf
    import threading
    import time

    from bench import parallel
    plan = [parallel.PlannedRun(rid, None, st) for rid, st in
            (("a", 0), ("bad", 0), ("slow", 0), ("b1", 1), ("c1", 1), ("d1", 2))]
    deps = {"a": [], "bad": [], "slow": [], "b1": ["a"], "c1": ["bad"], "d1": ["c1"]}
    started, lock = [], threading.Lock()
    slow_done = threading.Event()

    def work(rid):
        with lock:
            started.append((rid, slow_done.is_set()))
        if rid == "slow":
            time.sleep(0.5)
            slow_done.set()
        return rid, 0.0, "RuntimeError: boom" if rid == "bad" else ""
    problems, reported = {}, []
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        parallel.schedule(plan, deps, lambda p: pool.submit(work, p.run_id),
                          lambda rid, seconds, problem: reported.append(rid), problems)
    assert ("b1", False) in started  # started while 'slow' was still running
    assert {r for r, _ in started} == {"a", "bad", "slow", "b1"}
    assert problems["c1"].startswith("skipped") and problems["d1"].startswith("skipped")
    assert sorted(reported) == sorted(deps)


def test_the_time_left_comes_from_earlier_times_rescaled_by_this_machines_speed(tmp_path):
    """bench.parallel: a planned run's earlier time is its own committed ``_seconds``, else the median of the other
    seeds of the same config; the estimate scales what is left by how much slower this machine ran the finished
    runs of the same eval (of any eval while none of its own has finished)."""
    import json

    from bench import parallel
    from bench.configs import ReconConfig, TrainAEConfig
    from bench.runner import Runner
    from bench.spec import RunRef

    runner = Runner(tmp_path)
    recon = [RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, n_images=2, seed=k)) for k in range(3)]
    other = RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, n_images=3))  # another design: no earlier time
    train = RunRef(TrainAEConfig("dc-ae-f8c4-tiny"))

    def done(ref, seconds, metrics=None):
        rid, stored = runner.run_id_for(ref, "smoke")
        (tmp_path / rid).mkdir()
        (tmp_path / rid / "config.json").write_text(json.dumps({"eval": ref.eval, "scale": "smoke", "config": stored}))
        (tmp_path / rid / "metrics.json").write_text(metrics or json.dumps({"_seconds": seconds}))
        return rid
    ids = [done(recon[0], 10.0), done(recon[1], 30.0), runner.run_id_for(recon[2], "smoke")[0]]
    done(other, 0.0, metrics='{"_sec')  # damaged: no estimate from it
    plan = [parallel.PlannedRun(runner.run_id_for(r, "smoke")[0], r, 0) for r in recon + [other, train]]
    exp = parallel.expected_times(plan, [tmp_path], runner, "smoke")
    other_id, train_id = plan[3].run_id, plan[4].run_id
    assert exp == {ids[0]: 10.0, ids[1]: 30.0, ids[2]: 20.0, other_id: None, train_id: None}
    kinds = {p.run_id: p.ref.eval for p in plan}
    est = parallel.Estimate(exp, kinds, jobs=2)
    assert est.total() == pytest.approx((10 + 30 + 20 + 20 + 20) / 2)  # unknown runs at the mean of the known ones
    est.finished(ids[0], 20.0, ok=True)  # twice as slow as before
    est.finished(other_id, 0.0, ok=False)  # failed: nothing left to do, no speed from it
    assert est.left(elapsed=20.0) == pytest.approx((30 + 20 + 20) * 2 / 2)
    est.finished(train_id, 60.0, ok=True)  # train-ae has no earlier time: it sets no ratio
    assert est.left(elapsed=80.0) == pytest.approx((30 + 20) * 2 / 2)
    naive = parallel.Estimate({"a": None, "b": None, "c": None}, {"a": "x", "b": "x", "c": "x"}, jobs=2)
    naive.finished("a", 6.0, ok=True)
    assert naive.left(elapsed=6.0) == pytest.approx(12.0) and "min left" in naive.line(6.0)


def test_a_free_slot_takes_the_ready_run_that_holds_up_the_most_work():
    """bench.parallel.schedule with one slot: the ready runs start by critical path (own expected time plus the
    longest chain waiting on them), ties in plan order; 'short' unlocks a long run, so it goes before 'mid'."""
    import concurrent.futures as cf

    from bench import parallel
    plan = [parallel.PlannedRun(rid, None, st) for rid, st in
            (("mid", 0), ("short", 0), ("tie_a", 0), ("tie_b", 0), ("long_after_short", 1))]
    deps = {"mid": [], "short": [], "tie_a": [], "tie_b": [], "long_after_short": ["short"]}
    expected = {"mid": 5.0, "short": 1.0, "tie_a": 2.0, "tie_b": 2.0, "long_after_short": 10.0}
    first = parallel.critical_path(expected, deps)
    assert first == {"mid": 5.0, "short": 11.0, "tie_a": 2.0, "tie_b": 2.0, "long_after_short": 10.0}
    started = []
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        parallel.schedule(plan, deps, lambda p: (started.append(p.run_id), pool.submit(lambda: (p.run_id, 0.0, "")))[1],
                          lambda rid, seconds, problem: None, {}, slots=1, priority=first)
    assert started == ["short", "long_after_short", "mid", "tie_a", "tie_b"]
