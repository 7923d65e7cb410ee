"""The paper-scale path on CPU: official-layout checkpoints built from the committed key/shape manifest
of the released files, an image folder with ``imagenet-val/`` only, Table 2 at ``--scale paper --device cpu
--limit 2`` at a reduced resolution. The ImageNet rows whose checkpoints are given are measured (labelled as a
subset), the stacked SD-VAE rows (unreleased weights) and the FFHQ / MapillaryVistas rows (no such folder) say
``unavailable (...)``, and nothing crashes. The default run gives DC-AE-f32c32 only (a 1.3 GB file); the slow
variant gives every released ImageNet DC-AE (f64c128: 2.7 GB, f128c512: 4.4 GB)."""
from __future__ import annotations

import csv
import dataclasses
import json
import types
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from bench import artifacts
from bench.__main__ import main as bench_main
from bench.artifacts import table2
from bench.spec import RunRef
from models import zoo

MANIFEST = json.loads((Path(__file__).parent / "data" / "dc_ae_released_keys.json").read_text())["models"]
RESOLUTION = 128  # reduced from 256-2048 px: a multiple of every f (32, 64, 128), fast on a CPU


def official_checkpoint(name: str, folder: Path) -> None:
    """``folder/model.safetensors`` with the released file's keys, shapes and dtypes (random values: BN variances 1)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, (shape, dtype) in MANIFEST[name].items():
        if dtype.startswith("int"):
            state[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
        elif key.endswith("running_var"):
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"))


def test_our_modules_have_the_released_keys_and_shapes():
    for name, keys in MANIFEST.items():
        with torch.device("meta"):
            state = zoo.build(name).state_dict()
        assert {k: list(v.shape) for k, v in state.items()} == {k: s for k, (s, _) in keys.items()}, name


def _reduced_spec():
    """Table 2 with every row's paper-scale resolution replaced by RESOLUTION (the same protocol otherwise)."""
    spec = table2.SPECS[""]
    rows = tuple(r if r.run is None else  # derived rows (parameter ratios) stay as they are
                 dataclasses.replace(r, run=RunRef(dataclasses.replace(r.run.config, resolution=RESOLUTION),
                                                   at=r.run.at)) for r in table2.rows())
    return dataclasses.replace(spec, rows=rows + table2.claims(rows))  # the claims on the reduced runs


@pytest.mark.parametrize("given", [("dc-ae-f32c32-in-1.0",), pytest.param(
    ("dc-ae-f32c32-in-1.0", "dc-ae-f64c128-in-1.0", "dc-ae-f128c512-in-1.0"), marks=pytest.mark.slow)])
def test_table2_paper_path_on_cpu(tmp_path, monkeypatch, given):
    weights, data = tmp_path / "W", tmp_path / "D" / "imagenet-val"
    for name in given:
        official_checkpoint(name, weights / name)
    data.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (160 + 10 * i, 140), (30 * i, 120, 200 - 40 * i)).save(data / f"n0{i}.JPEG")
    spec = _reduced_spec()
    monkeypatch.setattr(artifacts, "load", lambda n: types.SimpleNamespace(SPECS={"": spec}))
    monkeypatch.chdir(tmp_path)
    code = bench_main(["table2", "--scale", "paper", "--device", "cpu", "--limit", "2", "--data", str(tmp_path / "D"),
                       "--weights", str(weights), "--runs-dir", str(tmp_path / "runs")])
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "tables" / "table2-paper-subset2.csv")))
    by = {(r["row"], r["metric"]): r for r in rows}
    for s in table2.SETTINGS:
        dc, sd = by[(f"{s.short} / DC-AE", "psnr")], by[(f"{s.short} / SD-VAE", "psnr")]
        if s.dataset != "imagenet-val":  # the data set is resolved first: never ImageNet images under its name
            for cell in (dc, sd):
                assert cell["status"].startswith(f"unavailable (no {s.dataset} folder under"), cell["status"]
            continue
        assert sd["status"].startswith("unavailable (no weights for sd-vae-"), sd["status"]  # unreleased
        if s.dc_ae in given:
            assert dc["status"] == "measured, subset of 2 images" and float(dc["ours"]) > 0, dc
            assert by[(f"{s.short} / DC-AE", "rfid")]["status"].startswith("measured (exact low-rank form (N = 2")
        else:
            assert dc["status"].startswith(f"unavailable (no weights for {s.dc_ae}"), dc["status"]
    run = next((tmp_path / "runs").glob("dc-ae-f32c32-in-1.0__recon__paper__*"))
    m = json.loads((run / "metrics.json").read_text())
    assert m["_n_images"] == 2 and m["_dataset_path"] == str(data) and m["_weights"] == "pretrained:dc-ae-f32c32-in-1.0"
