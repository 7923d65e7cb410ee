"""Efficiency profiler (bench/evals/efficiency.py) and the efficiency artefacts (table3, table4, table5, figure2c).

The CPU smoke run calls the eval directly with a fake context (a tiny backbone, 1 timed iteration) and checks the
metric keys, the provenance keys and the CSV it writes. GPU tests run the paper protocol at a reduced batch.
"""
import csv
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import paper
from bench.configs import EfficiencyConfig, PerMeasure, with_changes
from bench.errors import Unavailable, UsageError
from bench.evals import efficiency
from bench.scales import SCALES

TINY = EfficiencyConfig("uvit-h-tiny", 8, 8, 1, autoencoder="DC-AE-f64", batch=PerMeasure(2, 2, 2, 256),
                        warmup=PerMeasure(1, 1, 1, 5), iters=PerMeasure(2, 2, 2, 10), threads=1)


def fake_ctx(tmp_path: Path, scale: str = "smoke", device: str = "cpu"):
    lines = []
    return SimpleNamespace(scale=SCALES[scale], device=device, run_dir=tmp_path, options={},
                           log=lines.append, lines=lines)


@pytest.mark.parametrize("backbone", ["uvit-h-tiny", "dit-xl-tiny", "pixart-alpha-tiny"])
def test_cpu_smoke_run_writes_csv_and_positive_numbers(tmp_path, backbone):
    ctx = fake_ctx(tmp_path)
    m = efficiency.run(dataclasses.replace(TINY, backbone=backbone), ctx)
    for key in ("train_throughput_img_s", "infer_throughput_img_s", "latency_ms", "train_tflop_s",
                "params_m", "gflops_per_forward", "train_memory_gb_analytic"):
        assert isinstance(m[key], float) and m[key] > 0, key
    assert m["tokens"] == 64
    # memory is not measured on CPU: a string saying so, and the analytic bound under its own key
    assert m["train_memory_gb"].startswith("unavailable (") and "analytic" in m["train_memory_gb"]
    for key in ("_device", "_device_name", "_dtype", "_torch", "_cuda", "_threads", "_batch_train", "_batch_infer",
                "_batch_latency", "_iters_train", "_engine"):
        assert key in m, key
    assert m["_device"] == "cpu" and m["_threads"] == 1 and m["_batch_latency"] == 2
    assert "train_mfu" not in m  # no peak table for CPUs
    json.dumps(m)  # metrics are plain JSON
    rows = list(csv.DictReader(open(tmp_path / "efficiency.csv")))
    assert [r["measurement"] for r in rows] == ["train", "infer", "latency"]
    assert all(float(r["median_s"]) > 0 for r in rows)
    assert torch.get_num_threads() != 0  # threads restored (no crash)


def test_overrides_report_full_and_built_costs(tmp_path):
    m = efficiency.run(dataclasses.replace(TINY, depth=4, measure=("infer",)), fake_ctx(tmp_path))
    assert m["_built_gflops_per_forward"] > m["gflops_per_forward"]  # tiny depth 2 -> 4: built is bigger
    assert "train_throughput_img_s" not in m and m["infer_throughput_img_s"] > 0


def test_paper_scale_on_cpu_is_refused_before_any_run_folder(tmp_path):
    from bench.runner import Runner
    from bench.spec import RunRef
    with pytest.raises(Unavailable, match="paper-scale efficiency needs a CUDA GPU"):
        Runner(tmp_path / "runs", device="cpu").ensure(RunRef(TINY), "paper")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_config_is_a_usage_error():
    with pytest.raises(TypeError, match="latent_channels"):
        EfficiencyConfig("uvit-s")  # required fields
    with pytest.raises(UsageError, match="no field 'batchsize'"):
        with_changes(TINY, {"batchsize": 3})
    with pytest.raises(UsageError, match="measure"):
        dataclasses.replace(TINY, measure=("speed",))


def test_rule_batches_follow_dc_gen_table():
    assert efficiency.rule_batch("uvit-h", 1024, "train") == 256
    assert efficiency.rule_batch("uvit-h", 64, "infer") == 2048
    assert efficiency.rule_batch("dit-s", 4096, "infer") == 128
    assert efficiency.rule_batch("pixart-alpha", 256, "train") == 1024       # DiT-XL's
    assert efficiency.rule_batch("uvit-s-tiny", 1024, "infer") == 512         # tiny uses its family's rule
    assert efficiency.rule_batch("uvit-h", 16, "infer") == 2048 * 64 // 16    # off-table: same tokens per batch


def test_cheap_calls_are_repeated_until_min_seconds():
    import time
    times = efficiency._time(lambda: time.sleep(0.01), warmup=0, iters=2, sync=lambda: None, min_seconds=0.08)
    assert 6 <= len(times) <= 20 and sum(times) >= 0.08
    assert len(efficiency._time(lambda: None, warmup=1, iters=3, sync=lambda: None)) == 3


def test_peak_table():
    assert efficiency.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert efficiency.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert efficiency.peak_tflops("Intel Xeon") is None


# ---------------------------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------------------------

def _specs():
    from bench.parts.figure2c import FIGURE2C
    out = {name: importlib.import_module(f"bench.artifacts.{name}").SPECS[""]
           for name in ("table3", "table4", "table5")}
    out["figure2c"] = FIGURE2C
    return out


@pytest.mark.parametrize("name", ["table3", "table4", "table5", "figure2c"])
def test_specs_validate_and_select_unique_paper_rows(name):
    spec = _specs()[name]
    assert spec.validate() == []
    for row in spec.rows:
        if row.paper is not None:
            vals = paper.values(row.paper.artifact or spec.id, **row.paper.filters())  # raises if ambiguous
            assert vals, row.label
        if row.run is not None and row.run.eval == "claim":  # Table 4's claim on its FID rows
            assert row.label.startswith("claim: ")
        elif row.run is not None and row.run.eval != "efficiency":  # the gFID rows' sampling runs (bench/parts/gfid_rows.py)
            assert row.run.eval == "generate" and "· sample" in row.label, row.label
            assert not row.run.runs_at("smoke") or row.run.resolve("smoke").model.backbone.endswith("-tiny")
        elif row.run is not None:
            assert row.run.resolve("smoke").backbone.endswith("-tiny")
            assert row.run.resolve("paper").depth is None


def test_table3_headline_row_is_the_abstract_claim():
    spec = _specs()["table3"]
    head = next(r for r in spec.rows if "abstract" in r.label)
    assert paper.values("abstract", **head.paper.filters()) == {"inference_speedup": 19.1, "training_speedup": 17.9}
    fake = {"UViT-H SD-VAE-f8 p2": {"train_throughput_img_s": 2.0, "infer_throughput_img_s": 10.0,
                                    "latency_ms": 90.0, "gflops_per_forward": 1164.7},
            "UViT-H DC-AE-f64 p1": {"train_throughput_img_s": 36.0, "infer_throughput_img_s": 190.0,
                                    "latency_ms": 10.0, "gflops_per_forward": 66.5}}
    got = head.derive(fake)
    assert got["training_speedup"] == pytest.approx(18.0) and got["inference_speedup"] == pytest.approx(19.0)
    assert got["latency_speedup"] == pytest.approx(9.0) and got["flop_ratio"] == pytest.approx(1164.7 / 66.5)
    assert got["_from"] == ["UViT-H SD-VAE-f8 p2", "UViT-H DC-AE-f64 p1"]


def test_dagger_rows_share_the_run_of_their_twin():
    spec = _specs()["table3"]
    runs = {r.label: r.run for r in spec.rows if r.run}
    assert runs["UViT-H DC-AE-f64 p1 †"] == runs["UViT-H DC-AE-f64 p1"]
    f2c = {r.label: r.run for r in _specs()["figure2c"].rows if r.run}
    assert f2c["UViT-H DC-AE-f64 p1"] == runs["UViT-H DC-AE-f64 p1"]  # figure2c reuses table3's runs


def test_artifact_modules_do_not_import_torch():
    code = ("import sys; import bench.artifacts.table3, bench.artifacts.table4, bench.artifacts.table5, "
            "bench.parts.figure2c; print('torch' in sys.modules)")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------------------------------------------------------
# GPU (paper protocol at reduced batches)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_profile_reports_memory_and_mfu(tmp_path):
    cfg = EfficiencyConfig("uvit-s", 128, 8, 1, autoencoder="DC-AE-f64", batch=PerMeasure(64, 64, 2, 32),
                           warmup=PerMeasure(3, 3, 3, 1), iters=PerMeasure(5, 5, 5, 2))
    m = efficiency.run(cfg, fake_ctx(tmp_path, scale="paper", device="cuda"))
    assert m["_device"] == "cuda" and m["train_memory_gb"] > 0 and m["_train_memory_bytes"] > 0
    assert 0 < m.get("train_mfu", 0.5) < 1
    assert m["infer_throughput_img_s"] > m["train_throughput_img_s"] > 0
