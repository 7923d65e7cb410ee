"""The reconstruction protocol on a stand-in autoencoder: metrics, sharding, resume, torchrun, config errors."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
import models.zoo
from bench.configs import DataOption, ReconConfig, TrainAEConfig, folder
from bench.errors import RowFailed, Unavailable, UsageError
from bench.evals import reconstruction as R
from bench.evals.inception import TinyFeatures
from bench.evals.shards import shard_owner, shard_ranges
from bench.scales import SCALES
from models.data import SyntheticDataset

REPO = Path(__file__).resolve().parent.parent


class StandInAE(nn.Module):
    """avg-pool encode, nearest decode: an 'autoencoder' with the models contract and no weights."""

    def __init__(self, f: int = 4):
        super().__init__()
        self.spatial_compression, self.latent_channels, self.scaling_factor = f, 3, 1.0

    def encode(self, x):
        return F.avg_pool2d(x, self.spatial_compression)  # (B, 3, H/f, W/f)

    def decode(self, z):
        return F.interpolate(z, scale_factor=self.spatial_compression, mode="nearest")  # (B, 3, H, W)

    def forward(self, x):
        return self.decode(self.encode(x))


class Identity(StandInAE):
    def forward(self, x):
        return x


def _eval(tmp, ds, model=None, **kw):
    kw.setdefault("feature_net", TinyFeatures())
    kw.setdefault("log", lambda m: None)
    return R.evaluate(model or StandInAE(), ds, tmp, cache_dir=tmp / "_cache", **kw).metrics


def test_metrics_of_a_lossy_and_a_lossless_autoencoder(tmp_path):
    ds = SyntheticDataset(12, 32)
    m = _eval(tmp_path / "a", ds)
    assert m["_complete"] and m["_n_images"] == 12 and m["_protocol"] == "dcae-recon-v4"
    assert 10 < m["psnr"] < 40 and 0 < m["ssim"] < 1 and m["rfid"] > 0 and m["kid"] > -1
    assert m["lpips"].startswith("unavailable") and 0 <= m["outside_model_share"] <= 1 and m["images_per_s"] > 0
    assert m["_fid_note"].startswith("small-N FID")
    assert json.loads(m["_protocol_settings"])["ssim"]["window"] == 11
    assert sorted(p.name for p in (tmp_path / "a" / "samples").glob("*.png"))[:2] == ["0000-orig.png",
                                                                                       "0000-recon.png"]
    perfect = _eval(tmp_path / "b", ds, Identity())
    assert perfect["psnr"] == float("inf") and perfect["ssim"] == pytest.approx(1.0)
    assert abs(perfect["rfid"]) < 1e-6 and perfect["_psnr_inf_images"] == 12
    assert perfect["collapsed"] == 0 and perfect["output_spread"] == pytest.approx(1.0)


class Constant(StandInAE):
    def forward(self, x):
        return torch.zeros_like(x) + 0.3  # one grey image whatever the input


def test_a_run_records_collapse_and_its_image_jackknife(tmp_path):
    ds = SyntheticDataset(12, 32)
    m = _eval(tmp_path / "c", ds, Constant())
    assert m["collapsed"] == 1 and m["output_spread"] < 0.01
    jk = json.loads((tmp_path / "c" / "jackknife.json").read_text())["index blocks"]
    assert len(jk["groups"]) == 12 and len(jk["psnr"]) == len(jk["rfid"]) == len(jk["kid"]) == 12
    working = _eval(tmp_path / "d", ds)
    assert working["collapsed"] == 0


def test_reference_statistics_are_cached_and_reused(tmp_path):
    ds = SyntheticDataset(10, 32)
    first = _eval(tmp_path / "run1", ds)
    cached = list((tmp_path / "run1" / "_cache").glob("fid-ref-*.npz"))
    assert len(cached) == 1 and first["_reference_id"] == cached[0].stem
    shutil.copytree(tmp_path / "run1" / "_cache", tmp_path / "run2" / "_cache")
    second = _eval(tmp_path / "run2", ds)  # originals' features come from the cache now
    assert second["rfid"] == pytest.approx(first["rfid"], rel=1e-12)
    # another image set gets another key
    third = _eval(tmp_path / "run2", SyntheticDataset(10, 32, seed=5))
    assert third["_reference_id"] != first["_reference_id"]


class _SlowCountingFeatures(TinyFeatures):
    """TinyFeatures that counts the images it sees (across threads) and takes a while per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def forward(self, u):
        self.images += len(u)
        time.sleep(0.2)
        return super().forward(u)


def test_concurrent_runs_build_one_reference_once(tmp_path):
    """Two runs on the same images at once (--jobs 2): the second waits on the cache entry's lock, then reads it."""
    import threading
    ds, net, out = SyntheticDataset(8, 32), _SlowCountingFeatures(), {}

    def run(name: str) -> None:
        out[name] = R.evaluate(StandInAE(), ds, tmp_path / name, feature_net=net, cache_dir=tmp_path / "_cache",
                               log=lambda m: None).metrics

    threads = [threading.Thread(target=run, args=(k,)) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert net.images == 3 * len(ds)  # both runs' reconstructions and the originals once (4x without the lock)
    assert out["a"]["rfid"] == out["b"]["rfid"] and out["a"]["_reference_id"] == out["b"]["_reference_id"]


class _OneUnreadable(SyntheticDataset):
    def get_uint8(self, i: int):
        return None if i == 5 else super().get_uint8(i)


def test_reference_built_before_the_shards_equals_the_shards_own(tmp_path):
    """Built up front (one process, cached) or beside the reconstructions (no cache): the same sums, bit for bit."""
    ds = _OneUnreadable(20, 32)
    kw = {"model": StandInAE(), "shard_images": 6, "batch_size": 4}
    built = _eval(tmp_path / "a", ds, **kw)
    beside = R.evaluate(kw.pop("model"), ds, tmp_path / "b", feature_net=TinyFeatures(), cache_dir=None,
                        log=lambda m: None, **kw).metrics
    assert built["_n_images"] == beside["_n_images"] == 19
    assert built["rfid"] == beside["rfid"] and built["kid"] == beside["kid"]


def test_killed_and_resumed_evaluation_equals_an_uninterrupted_one(tmp_path):
    ds = SyntheticDataset(20, 32)
    whole = _eval(tmp_path / "whole", ds, shard_images=6)
    assert whole["_n_shards"] == 4
    part = _eval(tmp_path / "resumed", ds, shard_images=6, max_shards=2)  # "killed" after 2 of 4 shards
    assert part == {"_complete": False, "_shards_done": 2, "_shards": 4}
    assert sorted(p.name for p in (tmp_path / "resumed" / "shards").glob("*.npz")) == ["0-of-4.npz", "1-of-4.npz"]
    lines = []
    resumed = _eval(tmp_path / "resumed", ds, shard_images=6, log=lines.append)
    assert lines == ["shard 3/4: images 10-14 done (rank 0/1)", "shard 4/4: images 15-19 done (rank 0/1)"]
    index = json.loads((tmp_path / "resumed" / "shards" / "index.json").read_text())
    assert [(s["first"], s["last"]) for s in index["shards"]] == [(0, 4), (5, 9), (10, 14), (15, 19)]
    assert not list((tmp_path / "resumed" / "shards").glob("*.npz"))  # statistics files dropped once complete
    for k in ("psnr", "ssim", "_n_images"):
        assert resumed[k] == whole[k]
    assert resumed["rfid"] == pytest.approx(whole["rfid"], rel=1e-9)
    assert resumed["kid"] == pytest.approx(whole["kid"], rel=1e-9)


def test_shards_of_other_weights_are_recomputed(tmp_path):
    ds = SyntheticDataset(8, 32)
    a = _eval(tmp_path, ds, StandInAE(4), weights_id="A")
    b = _eval(tmp_path, ds, StandInAE(8), weights_id="B")  # same folder, other weights: not reused
    assert b["psnr"] < a["psnr"]


def test_shard_ranges_cover_without_padding_and_ranks_own_contiguous_blocks():
    for n, k in [(10, 3), (50_000, 8), (5, 8), (1, 1)]:
        rs = shard_ranges(n, k)
        flat = [i for r in rs for i in r]
        assert flat == list(range(n)) and all(len(r) > 0 for r in rs)
    owners = [shard_owner(k, 8, 2) for k in range(8)]
    assert owners == [0, 0, 0, 0, 1, 1, 1, 1]


def test_changed_weights_invalidate_shards(tmp_path):
    ds = SyntheticDataset(8, 32)
    conv = nn.Conv2d(3, 3, 1)
    a = _eval(tmp_path, ds, nn.Sequential(conv, nn.BatchNorm2d(3).eval()), shard_images=4, max_shards=1)
    with torch.no_grad():
        conv.weight.mul_(0.5)  # same folder, same weights_id, other weights: the finished shard must not be reused
    lines = []
    _eval(tmp_path, ds, nn.Sequential(conv), shard_images=4, log=lines.append)
    assert a["_shards_done"] == 1 and len(lines) == 2


def test_a_damaged_shard_file_is_recomputed(tmp_path):
    ds = SyntheticDataset(8, 32)
    _eval(tmp_path, ds, shard_images=4, max_shards=1)
    shard = tmp_path / "shards" / "0-of-2.npz"
    shard.write_bytes(shard.read_bytes()[:100])  # a half-written file (e.g. a copy interrupted outside the harness)
    lines = []
    m = _eval(tmp_path, ds, shard_images=4, log=lines.append)
    assert m["_complete"] and len(lines) == 2


_TORCHRUN_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_reconstruction import StandInAE
    from bench.evals import reconstruction as R
    from bench.evals.inception import TinyFeatures
    from models import distributed
    from models.data import SyntheticDataset
    rank, world, device = distributed.init_distributed("cpu")
    out = Path(sys.argv[1])
    m = R.evaluate(StandInAE(), SyntheticDataset(13, 32), out, feature_net=TinyFeatures(), batch_size=4,
                   cache_dir=out / "_cache", log=lambda s: None).metrics
    if rank == 0:
        (out / "metrics.json").write_text(json.dumps(m))
""")


@pytest.mark.slow  # two torchrun processes importing torch: ~30-60 s on 2 shared cores
def test_torchrun_two_processes_equal_one_process(tmp_path):
    script = tmp_path / "dist_eval.py"
    script.write_text(_TORCHRUN_SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    t0 = time.time()
    subprocess.run([*torchrun, str(script), str(tmp_path / "dist")], check=True, env=env, cwd=REPO, timeout=300)
    dist = json.loads((tmp_path / "dist" / "metrics.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun workers (OMP_NUM_THREADS=1): same float32 summation order
    try:
        # the same two shards, processed one after the other by one process: identical batches, identical numbers
        single = _eval(tmp_path / "single", SyntheticDataset(13, 32), batch_size=4, n_shards=2)
        one_shard = _eval(tmp_path / "one", SyntheticDataset(13, 32), batch_size=4)
    finally:
        torch.set_num_threads(threads)
    assert dist["_world_size"] == 2 and dist["_n_images"] == single["_n_images"] == 13
    for k in ("psnr", "ssim", "rfid", "kid"):
        assert dist[k] == pytest.approx(single[k], rel=1e-12), k
    # other batch boundaries change float32 features in the last bits; 13 samples in 16-d amplify that a little
    for k in ("psnr", "ssim", "rfid"):
        assert dist[k] == pytest.approx(one_shard[k], rel=1e-5), k
    index = json.loads((tmp_path / "dist" / "shards" / "index.json").read_text())
    assert [(s["rank"], s["first"], s["last"]) for s in index["shards"]] == [(0, 0, 5), (1, 6, 12)]  # no padding
    print(f"torchrun test took {time.time() - t0:.1f} s")


# ---------------------------------------------------------------- run(cfg, ctx): config handling


def _ctx(tmp_path, scale="small", options=None, ensure=None):
    logs = []
    return SimpleNamespace(scale=SCALES[scale], device="cpu", run_dir=tmp_path / "runs" / "r1",
                           options={"data": None, "weights": None, **(options or {})}, log=logs.append,
                           input=ensure, derived_input=lambda cfg: None, logs=logs)


@pytest.fixture
def standin_models(monkeypatch):
    import models
    monkeypatch.setattr(models, "build", lambda name, **kw: StandInAE(8), raising=False)
    return models


def test_run_end_to_end_on_embedded_test_photos(tmp_path, standin_models):
    cfg = ReconConfig("dc-ae-f8c4-tiny", 32, n_images=8, batch_size=4, features="tiny")
    ctx = _ctx(tmp_path)
    m = R.run(cfg, ctx)
    assert m["_n_images"] == 8 and m["_dataset"].startswith("embedded-test") and m["_weights"].startswith("untrained")
    assert isinstance(m["psnr"], float) and m["lpips"].startswith("unavailable")
    assert (ctx.run_dir / "showcase" / "hopper-face-recon.png").exists()
    assert (ctx.run_dir.parent / "_cache").is_dir()


def test_run_config_errors_are_one_line_usage_errors(tmp_path, standin_models):
    ctx = _ctx(tmp_path)
    with pytest.raises(UsageError, match="not divisible"):
        R.run(ReconConfig("dc-ae-f32c32-small", 48), ctx)
    paper = _ctx(tmp_path, "paper")
    with pytest.raises(UsageError, match="--weights"):
        R.run(ReconConfig("dc-ae-f64c128-in-1.0", 512, weights=True, dataset=folder("imagenet-val")), paper)
    with pytest.raises(UsageError, match="--data") as e:
        R.run(ReconConfig("dc-ae-f64c128-in-1.0", 512, weights=True, dataset=folder("imagenet-val")),
              _ctx(tmp_path, "paper", {"weights": str(tmp_path)}))
    assert "ImageNet" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError, match="embedded"):
        R.run(ReconConfig("dc-ae-f8c4-tiny", 256, n_images=5000, features="tiny"), ctx)


def test_paper_scale_on_cpu_is_unavailable_not_a_crash(tmp_path, standin_models):
    from bench.runner import Runner
    from bench.spec import RunRef
    cfg = ReconConfig("dc-ae-f64c128-in-1.0", 512, weights=True, dataset=folder("imagenet-val"))
    runner = Runner(tmp_path / "runs", device="cpu", options={"weights": str(tmp_path), "data": DataOption(str(tmp_path))})
    with pytest.raises(Unavailable, match="GPU"):
        runner.ensure(RunRef(cfg), "paper")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # refused before any folder


def _image_folder(path: Path, n: int) -> Path:
    from PIL import Image
    path.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (40, 40), (20 * i, 100, 50)).save(path / f"{i}.png")
    return path


def test_named_data_sets_resolve_exactly(tmp_path, standin_models):
    """--data D holds imagenet-val/ only: the FFHQ row is unavailable (never D's ImageNet images as FFHQ);
    --data ffhq=PATH names that set's own folder; the run records the resolved path."""
    root = tmp_path / "D"
    _image_folder(root / "imagenet-val", 3)
    cfg = ReconConfig("dc-ae-f8c4-tiny", 32, dataset=folder("imagenet-val"), features="tiny")
    m = R.run(cfg, _ctx(tmp_path / "a", options={"data": DataOption(str(root))}))
    assert m["_n_images"] == 3 and m["_dataset_path"] == str(root / "imagenet-val")
    ffhq = dataclasses.replace(cfg, dataset=folder("ffhq"))
    with pytest.raises(Unavailable, match="no ffhq folder under .*D; pass --data ffhq=PATH"):
        R.run(ffhq, _ctx(tmp_path / "b", options={"data": DataOption(str(root))}))
    faces = _image_folder(tmp_path / "elsewhere" / "faces", 2)
    option = DataOption.parse([str(root), f"ffhq={faces}"])
    m = R.run(ffhq, _ctx(tmp_path / "c", options={"data": option}))
    assert m["_n_images"] == 2 and m["_dataset_path"] == str(faces)
    with pytest.raises(UsageError, match="unknown data set 'fhq'"):
        DataOption.parse([f"fhq={faces}"])


def test_checkpoint_of_another_model_is_rejected(tmp_path, standin_models, monkeypatch):
    dep_dir = tmp_path / "train-run"
    (dep_dir / "ckpt").mkdir(parents=True)
    (dep_dir / "ckpt" / "model.safetensors").write_bytes(b"x")
    monkeypatch.setattr(standin_models, "load", lambda path: StandInAE(8), raising=False)  # an f8 checkpoint
    ensure = lambda ref: SimpleNamespace(run_id="train-run", dir=dep_dir, metrics={})
    cfg = ReconConfig("dc-ae-f32c32-small", 64, features="tiny", n_images=4,
                      checkpoint=TrainAEConfig("dc-ae-f32c32-small"))
    with pytest.raises(RowFailed, match="f8c3.*dc-ae-f32c32-small"):  # that row's cell: failed (why)
        R.run(cfg, _ctx(tmp_path, ensure=ensure))
    monkeypatch.setattr(standin_models, "load", lambda path: (_ for _ in ()).throw(ValueError("bad header")))
    with pytest.raises(RowFailed, match="cannot be loaded"):
        R.run(cfg, _ctx(tmp_path, ensure=ensure))


class OutOfMemoryAbove(StandInAE):
    """Raises CUDA's out-of-memory error for batches larger than ``limit`` (as a GPU that is too small would)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"batch {x.shape[0]} does not fit")
        return super().forward(x)


def test_out_of_memory_halves_the_batch_and_records_it(tmp_path):
    ds = SyntheticDataset(10, 32)
    lines = []
    m = _eval(tmp_path / "a", ds, OutOfMemoryAbove(2), batch_size=8, log=lines.append)
    ref = _eval(tmp_path / "b", ds, StandInAE(), batch_size=8)
    assert m["_complete"] and m["_batch_size"] == 2 and ref["_batch_size"] == 8
    assert m["psnr"] == pytest.approx(ref["psnr"]) and m["_n_images"] == 10  # same numbers at the smaller batch
    assert any("out of memory, retrying at batch 4" in ln for ln in lines)
    with pytest.raises(RowFailed, match="out of memory at batch 1"):
        _eval(tmp_path / "c", ds, OutOfMemoryAbove(0), batch_size=4)


def test_protocol_preset_is_frozen_and_recorded():
    p = R.DCAE_RECON
    assert p.id == "dcae-recon-v4"  # from the registration (bench.evals.EVALS), never typed here
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.id = "other"  # type: ignore[misc]
    assert p.ssim.window == 11 and p.ssim.sigma == 1.5 and p.ssim.data_range == 255
    assert len(p.digest()) == 12


# ---------------------------------------------------------------- the artefact specs built on this protocol


def test_reconstruction_specs_validate_and_share_runs():
    from bench import catalogue
    from bench.artifacts import figure7, table2
    from bench.parts import figure2a
    registered = {m.name for m in models.list_models()}
    for spec in (table2.SPECS[""], figure7.SPECS[""], figure2a.FIGURE2A):
        assert spec.validate() == []
        for row in spec.rows:
            for scale in ("smoke", "small", "paper"):
                if row.run is not None and row.run.runs_at(scale):
                    cfg = row.run.resolve(scale)
                    if isinstance(cfg, ReconConfig) and cfg.model in registered:  # claim rows: their arms
                        assert cfg.resolution % models.zoo.info(cfg.model).spatial_compression == 0, (row.label, scale)
    small_settings = [s for s in table2.SETTINGS if s.small_resolution is not None]
    n_rows = 2 * len(table2.SETTINGS) + 2 * (table2.SMALL_SEEDS - 1) * len(small_settings) + len(small_settings)
    assert len(table2.rows()) == n_rows and len(table2.SPECS[""].rows) == n_rows + 2 * len(table2.SETTINGS)
    t2 = {r.label: r.run.resolve("small") for r in table2.SPECS[""].rows if r.run and r.run.runs_at("small")}
    f7 = {r.label: r.run.resolve("small") for r in figure7.SPECS[""].rows if r.run.runs_at("small")}
    for name in ("DC-AE f64c128", "DC-AE f32c32"):  # Figure 7: Table 2's training run, evaluated at twice its size
        setting = name.split()[1]
        assert f7[name].checkpoint == t2[f"ImageNet 256 {setting} / DC-AE"].checkpoint
        assert f7[name].resolution == 2 * t2[f"ImageNet 256 {setting} / DC-AE"].resolution == 256
        assert f7[name].resolution // models.zoo.info(f7[name].model).spatial_compression >= 4  # f32: 8x8
    # one 128-px training protocol: Table 2's seeds, Figure 2a's points and Table 1's autoencoders (seed 0) share
    # runs trained to a plateau, so no Table 1 row's autoencoder stops short of its plateau while another's does not
    plateau_run = t2["ImageNet 256 f32c32 / DC-AE"].checkpoint
    assert plateau_run.plateau == catalogue.SMALL_PLATEAU and plateau_run == catalogue.small_autoencoder(catalogue.ENTRIES[-1])
    assert all(catalogue.small_autoencoder(e) == catalogue.train_ref(e.small_ae) for e in catalogue.ENTRIES if e.small_ae)
    assert t2["ImageNet 256 f32c32 / DC-AE · seed 2"].checkpoint.seed == 2
    f2 = {r.label: r.run.resolve("small") for r in figure2a.FIGURE2A.rows if r.run and r.run.eval == "recon"}
    assert f2["DC-AE f64 · seed 1"] == t2["ImageNet 256 f64c128 / DC-AE · seed 1"]
    assert all(c.resolution // models.zoo.info(c.model).spatial_compression >= 2 for c in f2.values())  # no 1x1
    assert all(r.run.resolve("smoke").checkpoint is None for r in figure7.SPECS[""].rows)  # smoke: untrained
    t2s = {r.run.resolve("smoke") for r in table2.SPECS[""].rows if r.run and r.run.runs_at("smoke")}
    assert all(r.run.resolve("smoke") in t2s for r in figure7.SPECS[""].rows)


def test_figure_plots_render_from_run_folders(tmp_path):
    """figure7's grid and figure2a's curves from fabricated run results (no computation)."""
    import pandas as pd
    from PIL import Image

    from bench.artifacts import figure7
    from bench.parts import figure2a
    from models.data import SHOWCASE
    results, records = {}, []
    for k, row in enumerate(figure7.ROWS):
        d = tmp_path / f"run{k}" / "showcase"
        d.mkdir(parents=True)
        for name in SHOWCASE:
            for kind in ("orig", "recon"):
                Image.new("RGB", (32, 32), (10 * k, 100, 200)).save(d / f"{name}-{kind}.png")
        results[row.label] = SimpleNamespace(dir=d.parent)
        records.append({"row": row.label, "metric": "psnr", "ours": str(20 + k), "paper": "", "scale": "smoke"})
    out = tmp_path / "f7.png"
    figure7.plot(pd.DataFrame(records), results, out)
    assert out.stat().st_size > 1000
    records = [{"row": r.label, "metric": m, "ours": str(1 + i), "paper": "0.9" if i == 0 else "", "scale": "smoke"}
               for i, r in enumerate(figure2a.ROWS) for m in ("rfid", "psnr")]
    out = tmp_path / "f2a.png"
    figure2a.plot(pd.DataFrame(records), {}, out)
    assert out.stat().st_size > 1000


def test_per_image_values_and_features_are_kept_for_claims(tmp_path):
    """per_image.json (committed) pairs arms by image index; features.npz (gitignored) lets claims resample rFID."""
    ds = SyntheticDataset(6, 32)
    m = _eval(tmp_path / "a", ds, batch_size=4)
    per = json.loads((tmp_path / "a" / R.PER_IMAGE_FILE).read_text())
    assert per["image_ids"] == list(range(6)) and len(per["psnr"]) == 6
    assert sum(per["psnr"]) / 6 == pytest.approx(m["psnr"])
    with np.load(tmp_path / "a" / R.FEATURES_FILE) as z:
        assert z["features"].shape == (6, TinyFeatures.dim) and z["image_ids"].tolist() == list(range(6))
