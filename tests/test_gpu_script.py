"""scripts/gpu.sh, the GPU check: its CPU dry run writes every CSV with the provenance columns and real numbers, so
the script is known to work before a GPU is lent; bad arguments give one line and exit 2; the soft time box."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.gpu_bench import PROVENANCE, STEPS, Budget

ROOT = Path(__file__).resolve().parent.parent
CSVS = ("pytest", "efficiency-table3", "efficiency-table4", "efficiency-table5", "memory", "autoencoders",
        "train-step", "sampling", "steps", "provenance")


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def gpu_sh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", "scripts/gpu.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu") / "out"
    proc = gpu_sh("--dry-run", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def test_every_csv_has_rows_and_the_provenance_columns(dry_run):
    for name in CSVS:
        path = dry_run / f"{name}.csv"
        with open(path, newline="") as f:
            header = next(csv.reader(f))
        rows = read(path)
        assert header[-len(PROVENANCE):] == list(PROVENANCE), name
        assert rows and all(r["device"] == "cpu (dry run)" and r["torch"] and r["date"] for r in rows), name
    steps = read(dry_run / "steps.csv")
    assert [r["step"] for r in steps] == list(STEPS)
    assert all(r["status"] == "ok" and r["exit_code"] == "0" for r in steps)


def test_efficiency_tables_measure_every_row_and_derive_the_speed_ups(dry_run):
    rows = read(dry_run / "efficiency-table3.csv")
    train = [r for r in rows if r["metric"] == "train_throughput_img_s"]
    assert len(train) == 13 and all(r["status"] == "measured" and float(r["ours"]) > 0 for r in train)
    headline = next(r for r in rows if "(abstract)" in r["row"] and r["metric"] == "training_speedup")
    assert float(headline["ours"]) > 0 and headline["paper"] == "17.9"
    assert all(r["scale"] == "smoke" for r in rows)


def test_autoencoders_match_diffusers_and_compile(dry_run):
    rows = read(dry_run / "autoencoders.csv")
    eager = [r for r in rows if r["mode"] == "eager"]
    assert {(r["family"], r["impl"]) for r in eager} == {(f, i) for f in ("dc-ae", "sd-vae")
                                                         for i in ("ours", "diffusers")}
    assert all(r["status"] == "measured" and float(r["images_per_s"]) > 0 for r in eager)
    ours = [r for r in rows if r["impl"] == "ours" and r["status"] == "measured"]
    assert all(float(r["rel_l2_ours_vs_diffusers"]) < 1e-2 for r in ours)  # same weights, bf16 rounding only
    compiled = [r for r in rows if r["mode"] == "compile" and r["family"] == "dc-ae"]
    assert len(compiled) == 2 and all(r["status"] == "measured" and r["compile_backend"] == "eager"
                                      for r in compiled)


def test_training_sampling_memory_and_pytest_rows(dry_run):
    train = read(dry_run / "train-step.csv")
    assert train[0]["status"] == "measured" and float(train[0]["s_per_step"]) > 0 and float(train[0]["l1_final"]) > 0
    sampling = read(dry_run / "sampling.csv")
    assert len(sampling) == 6 and all(r["status"] == "measured" and float(r["images_per_s"]) > 0 for r in sampling)
    memory = {r["metric"]: r for r in read(dry_run / "memory.csv")}
    assert 0 < float(memory["memory_ratio"]["ours"]) < 1
    tests = read(dry_run / "pytest.csv")
    assert any(r["test"].startswith("tests.test_gpu::") for r in tests)
    assert all(r["outcome"] == "skipped" for r in tests)  # no CUDA here


@pytest.mark.parametrize("args, word", [(("--bogus",), "unknown argument"), (("--only", "nosuch"), "unknown step"),
                                        (("--out",), "needs a value")])
def test_bad_arguments_give_one_line_and_exit_2(args, word):
    proc = gpu_sh(*args, timeout=30)
    assert proc.returncode == 2 and word in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_budget_stops_starting_items_longer_than_the_time_left():
    budget = Budget(0.2)
    assert budget.allows()
    with budget.item():
        time.sleep(0.12)
    assert not budget.allows() and budget.not_reached().startswith("not reached")
    big = Budget(100.0)
    big.longest = 8.0  # a part starts from its parent's longest item
    assert big.until(0.5, time.monotonic()).allows() and big.until(0.5, time.monotonic()).left() <= 50.0
    assert not big.until(0.05, time.monotonic()).allows()  # 5 s left, an 8 s item
