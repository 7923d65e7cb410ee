"""``python -m bench perf``: side-by-side benchmarks into a CSV whose rows name their run folder (smoke size here;
the committed tables/perf-<machine>.csv comes from the full command)."""
from __future__ import annotations

import csv
import json

import pytest

from bench import perf
from bench.errors import UsageError


def test_interleaved_alternates_reference_and_ours_after_one_untimed_call_each():
    calls, ticks = [], iter(range(100))
    times, outs = perf.interleaved(lambda: calls.append("r") or "R", lambda: calls.append("o") or "O", 2,
                                   clock=lambda: next(ticks))
    assert calls == ["r", "o", "r", "o", "r", "o"] and outs == {"reference": "R", "ours": "O"}
    assert times == {"reference": [1, 1], "ours": [1, 1]}


def test_the_smoke_run_writes_rows_with_goals_and_its_run_folder(tmp_path):
    args = ["--smoke", "--only", "peak,sampler,train-step", "--repeats", "1", "--runs-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path)]
    assert perf.main(args) == 0
    rows = list(csv.DictReader(next((tmp_path / "tables").glob("perf-*-smoke.csv")).open()))
    assert [r["benchmark"] for r in rows] == ["peak"] + ["sampler"] * 2 + ["train-step"] * 4
    run = tmp_path / "runs" / "_perf" / rows[0]["run_id"]
    stored = json.loads((run / "metrics.json").read_text())
    assert len(stored["rows"]) == 7 and json.loads((run / "config.json").read_text())["smoke"] is True
    assert "git_sha" in json.loads((run / "env.json").read_text())
    peak = float(rows[0]["gflops"])
    for r in rows[3:]:  # achieved rate / measured peak
        assert float(r["peak_share"]) == pytest.approx(float(r["gflops"]) / peak, rel=1e-3)
    for r in rows[1:3]:
        assert 0 <= float(r["outside_share"]) < 1 and r["goal"] == "outside_share <= 0.1" and r["met"] in ("yes", "no")


def test_a_later_run_replaces_only_the_benchmarks_it_measured(tmp_path):
    common = ["--smoke", "--repeats", "1", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path)]
    perf.main(["--only", "peak,sampler", *common])
    first = {r["benchmark"]: r["run_id"] for r in csv.DictReader(next((tmp_path / "tables").glob("*.csv")).open())}
    perf.main(["--only", "sampler", *common])
    second = {r["benchmark"]: r["run_id"] for r in csv.DictReader(next((tmp_path / "tables").glob("*.csv")).open())}
    assert second["peak"] == first["peak"] and second["sampler"] != first["sampler"]


@pytest.mark.parametrize("args,needle", [(["--only", "nosuch"], "choose from"), (["--sizes", "300"], "multiples"),
                                         (["--repeats", "0"], "whole number")])
def test_bad_arguments_are_one_line(args, needle):
    with pytest.raises(UsageError, match=needle) as err:
        perf.parse(args)
    assert "\n" not in str(err.value)


def test_rows_of_another_layout_are_replaced_not_kept(tmp_path):
    (tmp_path / "tables").mkdir()
    old = tmp_path / "tables" / "perf-x-smoke.csv"
    old.write_text("lever,setting,before_s,after_s,ratio\nallocator,FID,1,0.8,0.8\n")
    rows = [{"benchmark": "peak", "setting": "s", "gflops": 1.0, "run_id": "r"}]
    perf.write_csv(rows, old)
    kept = list(csv.DictReader(old.open()))
    assert [r["benchmark"] for r in kept] == ["peak"] and kept[0]["run_id"] == "r"


def test_a_share_above_the_measured_peak_is_not_called_met():
    """A rate above the peak row means the yardstick is low: the goal is then 'unknown', never 'yes'."""
    from bench.perf import judged
    assert judged({"benchmark": "fid", "gflops": 90.0}, 100.0)["met"] == "yes"
    assert judged({"benchmark": "fid", "gflops": 80.0}, 100.0)["met"] == "no"
    assert judged({"benchmark": "fid", "gflops": 110.0}, 100.0)["met"].startswith("unknown")


@pytest.mark.parametrize("n, c, side", [(64, 0, 0), (0, 8, 16)])
def test_the_peak_kernels_count_their_flops_as_the_flop_counter_does(n, c, side):
    """The yardstick's GFLOP/s use the same FLOP count as the rows judged against it."""
    fn, flops = perf.dense_kernel(n, c, side)
    assert flops == perf.flops_of(fn) > 0
