"""The runner: content-named runs, reuse, --force, atomic writes, errors as cells, derived rows."""
import csv
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from bench import artifacts, evals
from bench.__main__ import entry
from bench.__main__ import main as bench_main
from bench.configs import ConfigError, ReconConfig, TrainAEConfig, dependencies, folder
from bench.errors import UsageError
from bench.provenance import atomic_write_text, damage, run_id
from bench.runner import RunFailed, Runner, collect, write_outputs
from bench.spec import Column, PaperRef, Row, RunRef, Spec
from tests.dummy_eval import DummyConfig as D
from tests.dummy_eval import registration


@pytest.fixture(autouse=True)
def dummy_eval(monkeypatch):
    monkeypatch.setitem(evals.EVALS, "dummy", registration(1))


def test_run_id_is_stable_and_content_derived():
    m = "dc-ae-f32c32-small"
    a = run_id("recon", m, {"model": m, "resolution": 64}, "small")
    b = run_id("recon", m, {"resolution": 64, "model": m}, "small")  # key order irrelevant
    assert a == b and a.startswith("dc-ae-f32c32-small__recon__small__")
    assert a != run_id("recon", m, {"model": m, "resolution": 128}, "small")
    assert a != run_id("recon", m, {"model": m, "resolution": 64}, "smoke")
    r = Runner("unused")
    typed = r.run_id_of(ReconConfig(m, 64), "small")[0]
    assert typed == r.run_id_of(ReconConfig(m, 64, batch_size=16), "small")[0]  # a default spelled out: same run
    assert typed != r.run_id_of(ReconConfig(m, 64, n_images=8), "small")[0]


def test_protocol_version_changes_the_run_id(monkeypatch, tmp_path):
    r = Runner(tmp_path)
    ref = RunRef(D(x=1))
    before, _ = r.run_id_for(ref, "smoke")
    monkeypatch.setitem(evals.EVALS, "dummy", registration(2))
    after, _ = r.run_id_for(ref, "smoke")
    assert before != after


def test_ensure_writes_run_folder_and_reuses(tmp_path):
    r = Runner(tmp_path)
    ref = RunRef(D(x=3), at={"smoke": {"x": 4}})
    res = r.ensure(ref, "smoke")
    assert res.metrics["score"] == 8.0 and not res.reused
    for f in ("config.json", "env.json", "metrics.json", "log.txt"):
        assert (res.dir / f).exists(), f
    env = json.loads((res.dir / "env.json").read_text())
    assert env["scale"] == "smoke" and env["device"] == "cpu" and "torch" in env and "git_sha" in env
    # which machine: the CPU's model name (not just "x86_64") and the kernel build
    assert env["cpu_model"] not in ("", "x86_64") and env["kernel_build"] and env["cpu_count"] >= 1
    again = r.ensure(ref, "smoke")
    assert again.reused and (res.dir / "calls.txt").read_text() == "1"
    forced = Runner(tmp_path, force=True).ensure(ref, "smoke")
    assert not forced.reused and (res.dir / "calls.txt").read_text() == "2"


def test_crash_leaves_no_result_and_keeps_previous(tmp_path):
    r = Runner(tmp_path)
    ok = r.ensure(RunRef(D(x=1)), "smoke")
    with pytest.raises(RunFailed, match="planted crash"):
        r.ensure(RunRef(D(x=1, crash=True)), "smoke")
    crashed = [p for p in tmp_path.iterdir() if p.is_dir() and p != ok.dir]
    assert len(crashed) == 1 and not (crashed[0] / "metrics.json").exists()
    assert "RuntimeError: planted crash" in (crashed[0] / "log.txt").read_text()
    assert (ok.dir / "metrics.json").exists()


def _die_mid_write(path):
    import models.io as prov  # the one atomic-write implementation
    real_replace = os.replace

    def boom(*a, **k):
        os._exit(1)  # the process dies between writing the temp file and renaming it
    prov.os.replace = boom
    try:
        atomic_write_text(path, "NEW " * 10000)
    finally:
        prov.os.replace = real_replace


def test_atomic_write_survives_a_crash(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("OLD")
    p = mp.get_context("fork").Process(target=_die_mid_write, args=(target,))
    p.start()
    p.join()
    assert p.exitcode == 1
    assert target.read_text() == "OLD"  # never half-written


def test_unavailable_and_failed_become_cells(tmp_path):
    spec = Spec(id="table2", title="t", caption="c", columns=(Column("score", "Score", False),),
                scales={"smoke": "", "small": "", "paper": ""},
                rows=(Row("good", run=RunRef(D(x=1))),
                      Row("missing", run=RunRef(D(x=1, unavailable=True))),
                      Row("broken", run=RunRef(D(x=1, crash=True))),
                      Row("skipped", run=RunRef(D(x=1), at={"smoke": None})),
                      Row("double", derive=lambda m: {"score": m["good"]["score"] * 2, "_from": ["good"]})))
    built = collect(spec, "", "smoke", Runner(tmp_path))
    by_row = {r["row"]: r for r in built.records}
    assert by_row["good"]["ours"] == "2" and by_row["good"]["status"] == "measured"
    assert by_row["missing"]["status"] == "unavailable (no such weights here)"
    assert by_row["broken"]["status"].startswith("failed (RuntimeError, see ") and built.problems
    assert by_row["skipped"]["status"] == "not run at smoke scale"
    assert by_row["double"]["ours"] == "4" and by_row["double"]["run_id"] == by_row["good"]["run_id"]


def test_a_failed_row_stays_in_its_row_and_the_exit_code_says_so(tmp_path, monkeypatch, capsys):
    """A checkpoint that does not match its model (RowFailed) is that row's 'failed (why)' cell; the table completes
    and the command exits 3."""
    spec = Spec(id="table2", title="t", caption="c", columns=(Column("score", "Score", False),),
                scales={"smoke": "", "small": "", "paper": ""},
                rows=(Row("good", run=RunRef(D(x=1))), Row("mismatched", run=RunRef(D(x=2, row_failed=True)))))
    built = collect(spec, "", "smoke", Runner(tmp_path))
    by_row = {r["row"]: r for r in built.records}
    assert by_row["good"]["status"] == "measured"
    assert by_row["mismatched"]["status"] == "failed (checkpoint does not match the model)"
    monkeypatch.setattr(artifacts, "load", lambda name: types.SimpleNamespace(SPECS={"": spec}))
    monkeypatch.chdir(tmp_path)
    assert bench_main(["table2", "--scale", "smoke", "--runs-dir", str(tmp_path / "runs")]) == 3
    assert (tmp_path / "tables" / "table2-smoke.csv").exists()  # the table was still written


def test_paper_values_sit_beside_ours(tmp_path):
    spec = Spec(id="table2", title="t", caption="c", columns=(Column("rfid", "rFID", True),),
                scales={"smoke": "", "small": "", "paper": ""},
                rows=(Row("DC-AE", run=RunRef(D(x=0.5)),
                          paper=PaperRef(setting="ImageNet 512x512 f64c128 latent 8x8x128", autoencoder="DC-AE")),))
    spec2 = Spec(**{**spec.__dict__, "columns": (Column("score", "Score"), Column("rfid", "rFID", True))})
    built = collect(spec2, "", "smoke", Runner(tmp_path))
    rec = {r["metric"]: r for r in built.records}
    assert rec["rfid"]["paper"] == "0.22" and rec["rfid"]["ours"] == ""
    assert rec["score"]["ours"] == "1" and rec["score"]["paper"] == ""
    paths = write_outputs(built, tmp_path / "tables", tmp_path / "figures", "python -m bench table2")
    csv = paths[0].read_text().splitlines()
    assert csv[0].split(",")[:6] == ["artifact", "panel", "row", "metric", "label", "ours"]
    assert "run_id" in csv[0] and "scale" in csv[0]


def test_unwritable_runs_dir_is_a_usage_error(tmp_path):
    from bench.errors import UsageError
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works even as root, unlike chmod
    with pytest.raises(UsageError, match="not writable"):
        Runner(blocker / "runs").check_writable()


def test_derived_row_gets_paper_values_from_the_same_derive(tmp_path):
    """A speed-up row's paper cell is the paper's own ratio, computed from paper_numbers.csv (6706/351)."""
    def ratio(m):
        return {"inference_speedup": m["f64"]["infer_throughput_img_s"] / m["f8"]["infer_throughput_img_s"],
                "flops": m["f8"]["only_ours"] / m["f64"]["only_ours"], "_from": ["f8", "f64"]}
    sel = dict(artifact="table3", backbone="UViT-H", note="")
    spec = Spec(id="table3", title="t", caption="c", scales={"smoke": "", "small": "", "paper": ""},
                columns=(Column("inference_speedup", "x", False), Column("flops", "f")),
                rows=(Row("f8", run=RunRef(D(x=1)), paper=PaperRef(autoencoder="SD-VAE-f8", **sel)),
                      Row("f64", run=RunRef(D(x=2)), paper=PaperRef(autoencoder="DC-AE-f64", **sel)),
                      Row("speed-up", derive=ratio)))
    built = collect(spec, "", "smoke", Runner(tmp_path))
    rec = {r["metric"]: r for r in built.records if r["row"] == "speed-up"}
    assert float(rec["inference_speedup"]["paper"]) == pytest.approx(6706 / 351, rel=1e-5)
    assert rec["flops"]["paper"] == ""  # the paper has no such number: NaN drops out, never invented


def test_run_with_missing_declared_output_is_recomputed(tmp_path):
    """A training run whose gitignored checkpoint is gone (fresh clone) is not complete."""
    r = Runner(tmp_path)
    ref = RunRef(D(x=5))
    res = r.ensure(ref, "smoke")
    m = json.loads((res.dir / "metrics.json").read_text())
    m["_outputs"] = ["ckpt/model.safetensors"]
    (res.dir / "metrics.json").write_text(json.dumps(m))
    assert r.load(ref, "smoke") is None
    (res.dir / "ckpt").mkdir()
    save_file({"w": torch.zeros(2)}, str(res.dir / "ckpt" / "model.safetensors"))
    assert r.load(ref, "smoke") is not None


def test_atomic_writes_get_normal_permissions(tmp_path):
    p = tmp_path / "x.csv"
    atomic_write_text(p, "a")
    assert p.stat().st_mode & 0o644 == 0o644


def test_dependency_version_changes_the_dependent_run_id(monkeypatch, tmp_path):
    """A recon run names its checkpoint's training run by config; retraining under a new protocol must rename it."""
    r = Runner(tmp_path)
    train = TrainAEConfig("dc-ae-f8c4-tiny")
    ref = RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, checkpoint=train))
    before, cfg = r.run_id_for(ref, "smoke")
    assert cfg["_depends_on"] == [r.run_id_for(RunRef(train), "smoke")[0]] and "checkpoint" not in cfg
    monkeypatch.setitem(evals.EVALS, "train-ae", dataclasses.replace(evals.EVALS["train-ae"],
                                                                      version=evals.version("train-ae") + 1))
    after, _ = r.run_id_for(ref, "smoke")
    assert before != after
    no_dep = RunRef(ReconConfig("dc-ae-f8c4-tiny", 32))
    assert "_depends_on" not in r.run_id_for(no_dep, "smoke")[1]


def test_misspelled_or_mistyped_config_is_one_line_error():
    ref = RunRef(ReconConfig("dc-ae-f8c4-tiny", 32), at={"small": {"n_image": 8}})
    with pytest.raises(ConfigError, match=r"ReconConfig has no field 'n_image' \(did you mean 'n_images'\?\)"):
        ref.resolve("small")
    assert ref.resolve("smoke").n_images is None  # other scales are unaffected
    with pytest.raises(ConfigError, match="ReconConfig.resolution = '32' is not"):
        ReconConfig("dc-ae-f8c4-tiny", "32")
    with pytest.raises(ConfigError, match="name must be one of"):
        folder("imagenet-vall")


def test_bench_check_reports_a_misspelled_key(monkeypatch, capsys):
    from bench import artifacts, cli_tools
    spec = Spec(id="table2", title="t", caption="", columns=(Column("psnr", "PSNR"),),
                scales={s: "" for s in ("smoke", "small", "paper")},
                rows=(Row("r", run=RunRef(ReconConfig("dc-ae-f8c4-tiny", 32), at={"smoke": {"batchsize": 4}})),))
    real = artifacts.load
    monkeypatch.setattr(artifacts, "load", lambda name: types.SimpleNamespace(SPECS={"": spec}) if name == "table2"
                        else real(name))
    problems = cli_tools.check()
    assert any("smoke scale: ReconConfig has no field 'batchsize' (did you mean 'batch_size'?)" in p
               for p in problems)


def test_the_runner_stamps_the_registered_protocol(tmp_path):
    res = Runner(tmp_path).ensure(RunRef(D(x=1)), "smoke")
    assert res.metrics["_protocol"] == "dummy-v1"
    assert json.loads((res.dir / "config.json").read_text())["config"]["_protocol_version"] == 1


def test_parallel_plan_orders_dependencies_and_skips_timed_evals(tmp_path):
    from bench import artifacts, parallel
    r = Runner(tmp_path)
    planned = parallel.plan(artifacts.load("figure3").SPECS.values(), "smoke", r)
    stage = {p.run_id: p.stage for p in planned}
    assert {p.ref.eval for p in planned} == {"train-ae", "fid-ref", "recon", "claim"}
    for p in planned:  # every dependency and derived run sits in an earlier stage, and is what the run waits for
        cfg = p.ref.resolve("smoke")
        assert set(p.needs) == {r.run_id_of(d, "smoke")[0] for d in (*dependencies(cfg), *cfg.derived())}
        assert all(stage[d] < p.stage for d in p.needs)
    assert max(stage.values()) == 3  # phase 1 -> phase 2 (from) -> recon of phase 2 -> the claim on those recons
    planned3 = parallel.plan(artifacts.load("table3").SPECS.values(), "smoke", r)  # efficiency: timed, serial
    assert planned3 and {p.ref.eval for p in planned3} == {"train-diffusion", "fid-ref-gen", "generate"}  # gFID rows


def test_parallel_pass_reports_failures_and_skips_their_dependents(tmp_path):
    from bench import parallel
    r = Runner(tmp_path)
    train = TrainAEConfig("no-such-model")
    spec = Spec(id="t", title="t", caption="", columns=(Column("psnr", "PSNR"),), scales={s: "" for s in
                ("smoke", "small", "paper")},
                rows=(Row("r", run=RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, n_images=2, checkpoint=train))),))
    planned = parallel.plan([spec], "smoke", r)
    assert sorted((p.stage, p.ref.eval) for p in planned) == [(0, "fid-ref"), (0, "train-ae"), (1, "recon")]
    lines = []
    problems = parallel.run_plan(planned, "smoke", r, jobs=2, say=lines.append)
    train_id = r.run_id_of(train, "smoke")[0]
    assert "no-such-model" in problems[train_id]  # the worker's error, as one line
    kind = {p.ref.eval: p.run_id for p in planned}
    assert problems[kind["recon"]].startswith("skipped") and kind["fid-ref"] not in problems
    assert any(train_id in line for line in lines) and not (tmp_path / train_id / "metrics.json").exists()


@pytest.mark.parametrize("content", ['{"score": 2.0, "_sec', "", "[1, 2]", "\x00\x00\x00"])
def test_damaged_metrics_json_is_moved_aside_and_recomputed(tmp_path, capsys, content):
    r = Runner(tmp_path)
    ref = RunRef(D(x=1))
    first = r.ensure(ref, "smoke")
    (first.dir / "metrics.json").write_text(content)  # a killed copy / a full disk
    again = r.ensure(ref, "smoke")  # no JSONDecodeError: the run is recomputed
    assert not again.reused and again.metrics["score"] == 2.0 and (first.dir / "calls.txt").read_text() == "2"
    aside = list(first.dir.glob("metrics.json.damaged-*"))
    assert len(aside) == 1 and aside[0].read_text() == content  # nothing lost
    warnings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "metrics.json is damaged" in warnings[0]


def test_truncated_output_checkpoint_makes_the_run_incomplete(tmp_path, capsys):
    r = Runner(tmp_path)
    ref = RunRef(D(x=1, outputs=True))
    first = r.ensure(ref, "smoke")
    ckpt = first.dir / "ckpt" / "model.safetensors"
    assert r.load(ref, "smoke") is not None
    save_file({"w": torch.zeros(1000)}, str(ckpt))
    ckpt.write_bytes(ckpt.read_bytes()[:-100])  # truncated in the data part: the header still parses
    assert r.load(ref, "smoke") is None
    assert "model.safetensors is damaged (truncated" in capsys.readouterr().out
    assert not ckpt.exists() and list(ckpt.parent.glob("model.safetensors.damaged-*"))


def test_damage_detects_each_format(tmp_path):
    good_pt, good_json = tmp_path / "s.pt", tmp_path / "m.json"
    torch.save({"a": torch.zeros(100)}, good_pt)
    good_json.write_text('{"a": 1}')
    assert damage(good_pt) is None and damage(good_json) is None
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(good_pt.read_bytes()[:200])
    assert damage(bad_pt) and damage(tmp_path / "missing.json")


def test_render_only_without_runs_is_one_line(tmp_path, capsys):
    argv = sys.argv
    sys.argv = ["bench", "table2", "--scale", "smoke", "--render-only", "--runs-dir", str(tmp_path / "none")]
    try:
        with pytest.raises(SystemExit) as e:
            entry()
    finally:
        sys.argv = argv
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--render-only found no completed smoke-scale run" in err[0]


def test_limit_runs_a_labelled_subset(tmp_path):
    """--limit N caps the images of evals with a subset mode (a different run), and every cell and file says so."""
    full, sub = Runner(tmp_path), Runner(tmp_path, options={"limit": 2})
    ref = RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, dataset=folder("imagenet-val")))
    assert sub.resolve(ref, "paper").n_images == 2 and full.resolve(ref, "paper").n_images is None
    assert sub.run_id_for(ref, "paper")[0] != full.run_id_for(ref, "paper")[0]
    capped = RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, n_images=1))
    assert sub.resolve(capped, "paper").n_images == 1  # never more images than the spec asks for
    train = RunRef(TrainAEConfig("dc-ae-f8c4-tiny"))
    assert sub.run_id_for(train, "small") == full.run_id_for(train, "small")  # no subset mode: unchanged
    spec = Spec(id="table2", title="t", caption="c", columns=(Column("score", "Score", False),),
                scales={"smoke": "", "small": "", "paper": ""}, rows=(Row("good", run=RunRef(D(x=1))),))
    built = collect(spec, "", "smoke", sub)
    assert built.records[0]["status"] == "measured, subset of 2 images"
    paths = write_outputs(built, tmp_path / "tables", tmp_path / "figures", "cmd")
    assert paths[0].name == "table2-smoke-subset2.csv"


def test_bad_limit_is_one_line(tmp_path, capsys):
    argv = sys.argv
    sys.argv = ["bench", "table2", "--scale", "smoke", "--limit", "zero", "--runs-dir", str(tmp_path)]
    try:
        with pytest.raises(SystemExit) as e:
            entry()
    finally:
        sys.argv = argv
    assert e.value.code == 2 and "--limit 'zero': give a whole number" in capsys.readouterr().err


def test_a_run_whose_dependency_was_recomputed_is_recomputed(tmp_path, capsys):
    """Retraining a checkpoint (e.g. in a fresh clone) must not leave evaluations of the old weights in place."""
    r = Runner(tmp_path)
    parent = D(x=1, outputs=True)
    child = RunRef(D(x=2, parent=parent))
    first = r.ensure(child, "smoke")
    assert r.load(child, "smoke") is not None and first.metrics["_dependency_stamps"]
    Runner(tmp_path, force=True).ensure(RunRef(parent), "smoke")  # the parent is recomputed: a new result
    assert r.load(child, "smoke") is None and "used dummy" in capsys.readouterr().out
    again = r.ensure(child, "smoke")
    assert not again.reused and r.load(child, "smoke") is not None


def test_every_committed_run_s_config_is_rebuilt_typed_from_its_folder():
    """``Runner.config_of`` reads config.json back into the typed config (dependencies from their own folders) and
    the rebuilt config gives the folder's run id again: every committed run but the claims (whose arms are lists of
    runs stored as one list of ids)."""
    from pathlib import Path
    runs = Path(__file__).resolve().parent.parent / "runs"
    runner, kinds = Runner(runs), set()
    for d in sorted(runs.glob("*__*__small__*")):
        if "__claim__" in d.name or not (d / "config.json").is_file():
            continue
        cfg, scale = runner.config_of(d)  # raises unless the id recomputes
        assert scale == "small" and f"__{cfg.EVAL}__" in d.name
        kinds.add(cfg.EVAL)
    assert {"train-ae", "recon", "train-diffusion", "generate", "efficiency"} <= kinds


def test_a_config_json_that_does_not_give_its_run_id_is_one_line(tmp_path):
    from pathlib import Path
    runs = Path(__file__).resolve().parent.parent / "runs"
    src = next(d for d in sorted(runs.glob("*__train-ae__small__*")) if (d / "config.json").is_file())
    stored = json.loads((src / "config.json").read_text())
    stored["config"]["seed"] += 1
    (tmp_path / src.name).mkdir()
    (tmp_path / src.name / "config.json").write_text(json.dumps(stored))
    with pytest.raises(UsageError, match="does not give its run id") as err:
        Runner(runs).config_of(tmp_path / src.name)
    assert "\n" not in str(err.value)


def test_jobs_1_computes_the_plan_in_dependency_order_and_a_failed_run_once(tmp_path, monkeypatch, capsys):
    """One scheduler for any --jobs: with --jobs 1 the plan runs in this process (parents first, one progress line
    per run with the time left); a run that fails is tried once, and every row that needs it reports its reason."""
    broken = D(x=3, crash=True)
    spec = Spec(id="table2", title="t", caption="c", columns=(Column("score", "Score", False),),
                scales={"smoke": "", "small": "", "paper": ""},
                rows=(Row("child", run=RunRef(D(x=1, parent=D(x=2)))), Row("broken", run=RunRef(broken)),
                      Row("needs broken", run=RunRef(D(x=4, parent=broken)))))
    monkeypatch.setattr(artifacts, "load", lambda name: types.SimpleNamespace(SPECS={"": spec}))
    monkeypatch.chdir(tmp_path)
    assert bench_main(["table2", "--scale", "smoke", "--runs-dir", str(tmp_path / "runs")]) == 3
    out = capsys.readouterr().out
    assert "--jobs 1: 4 run(s) to compute in 2 stage(s), one after the other in this process" in out
    assert out.count("/4] dummy__") == 4  # one line per planned run: parent, child, broken, and the skipped one
    broken_id = Runner(tmp_path / "runs").run_id_for(RunRef(broken), "smoke")[0]
    log = (tmp_path / "runs" / broken_id / "log.txt").read_text()
    assert log.count("planted crash") >= 1 and log.count("eval dummy at smoke scale") == 1  # computed once
    rows = {r["row"]: r["status"] for r in csv.DictReader((tmp_path / "tables" / "table2-smoke.csv").open())}
    assert rows["child"] == "measured" and rows["broken"].startswith("failed (RuntimeError")
    assert rows["needs broken"].startswith("failed (RuntimeError")


def test_the_originals_statistics_are_one_run_handed_to_the_evaluations(tmp_path, monkeypatch):
    """fid-ref: planned and computed once before the evaluations of the same images (two models here) and handed
    to them: each rFID equals, bit for bit, that of an evaluation building the statistics itself; the evaluations'
    ids do not name it (its config is a function of theirs), and a complete evaluation plans none."""
    from bench import parallel
    from bench.configs import SYNTHETIC, FidReferenceConfig
    kw = dict(dataset=SYNTHETIC, n_images=10, features="tiny", batch_size=3, shard_images=4)
    rows = tuple(Row(m, run=RunRef(ReconConfig(m, 32, **kw))) for m in ("dc-ae-f8c4-tiny", "sd-vae-f8c4-tiny"))
    spec = Spec(id="t", title="t", caption="", columns=(Column("rfid", "rFID"),),
                scales={s: "" for s in ("smoke", "small", "paper")}, rows=rows)
    r = Runner(tmp_path / "shared")
    planned = parallel.plan([spec], "smoke", r)
    ref_id = r.run_id_of(FidReferenceConfig(SYNTHETIC, 32, 10, 0, "tiny", 3, 4), "smoke")[0]
    assert [p.run_id for p in planned if p.ref.eval == "fid-ref"] == [ref_id]
    assert all(p.needs == (ref_id,) for p in planned if p.ref.eval == "recon")
    assert parallel.run_plan(planned, "smoke", r, jobs=1, say=lambda m: None) == {}
    shared = [r.ensure(row.run, "smoke") for row in rows]
    assert (tmp_path / "shared" / ref_id / "reference.npz").exists()
    assert not any("reference statistics" in (x.dir / "log.txt").read_text() for x in shared)
    assert all("_depends_on" not in x.config for x in shared)
    assert parallel.plan([spec], "smoke", r) == []
    monkeypatch.setattr(Runner, "_derived", lambda self, cfg, scale: {})  # each evaluation builds them itself
    alone = [Runner(tmp_path / "alone").ensure(row.run, "smoke") for row in rows]
    assert [x.run_id for x in alone] == [x.run_id for x in shared]
    assert [x.metrics["rfid"] for x in alone] == [x.metrics["rfid"] for x in shared]
    assert [x.metrics["kid"] for x in alone] == [x.metrics["kid"] for x in shared]
    assert not list((tmp_path / "alone").glob("*__fid-ref__*"))
