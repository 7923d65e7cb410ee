"""``python -m bench train-diffusion`` and ``sample``: latent diffusion on a user's autoencoder (a random-init
diffusers AutoencoderKL folder, a train-ae run, a module:function factory) and image folder, at smoke size."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from bench import own
from bench.errors import UsageError
from bench.runner import Runner
from models.data import EmbeddedPhotos

diffusers = pytest.importorskip("diffusers")
RES = 32


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A diffusers AutoencoderKL folder (f2c4), a folder of 12 images in two class sub-folders and a flat one."""
    from PIL import Image
    d = tmp_path_factory.mktemp("own-diffusion")
    torch.manual_seed(0)
    diffusers.AutoencoderKL(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                            down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2).save_pretrained(d / "kl4")
    photos = EmbeddedPhotos("train", 64, n_images=12)
    for i in range(12):
        u = ((photos[i] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        for folder in (d / "classes" / f"c{i % 2}", d / "flat"):
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(u).save(folder / f"{i:02d}.png")
    return d


def train(d: Path, *args: str) -> Path:
    """One smoke-scale train-diffusion through the command (2 steps); returns its run folder."""
    assert own.main(["train-diffusion", *args, "--scale", "smoke", "--runs-dir", str(d / "runs")]) == 0
    return max((d / "runs").glob("*__train-diffusion__smoke__*"), key=lambda p: (p / "metrics.json").stat().st_mtime)


def sample(d: Path, run: Path, *args: str) -> Path:
    """A few samples of ``run`` with 3 sampler steps; returns the generate run folder."""
    assert own.main(["sample", str(run), "--n", "4", "--steps", "3", "--runs-dir", str(d / "runs"), "--out", str(d),
                     *args]) == 0
    return max((d / "runs").glob("*__generate__smoke__*"), key=lambda p: (p / "metrics.json").stat().st_mtime)


def test_a_diffusers_autoencoder_s_latents_on_a_class_folder(work):
    run = train(work, "dit-s-tiny", "--autoencoder", str(work / "kl4"), "--data", str(work / "classes"))
    cfg, scale = Runner(work / "runs").config_of(run)
    assert scale == "smoke" and cfg.conditional and cfg.dataset.kind == "path"
    assert cfg.own_autoencoder.kind == "diffusers" and cfg.latent_scale == "unit-rms"
    m = json.loads((run / "metrics.json").read_text())
    assert m["_num_classes"] == 2 and json.loads(m["_latent_shape"]) == [4, RES // 2, RES // 2]
    # unit-rms: the backbone sees the posterior means x 1/RMS, computed here directly with diffusers
    ae = diffusers.AutoencoderKL.from_pretrained(str(work / "kl4"), low_cpu_mem_usage=False).eval()
    from models.data import ImageFolderDataset
    ds = ImageFolderDataset(work / "classes", RES)
    x = torch.stack([ds.get_uint8(i) for i in range(len(ds))]).float() / 127.5 - 1
    with torch.no_grad():
        z = ae.encode(x).latent_dist.mode()
    assert m["_scaling_factor"] == pytest.approx(1 / float(z.pow(2).mean().sqrt()), rel=1e-4)


def test_sample_scores_the_run_and_adds_a_row_to_the_samples_table(work):
    run = train(work, "dit-s-tiny", "--autoencoder", str(work / "kl4"), "--data", str(work / "classes"))
    gen = sample(work, run, "--cfg", "1.5")
    m = json.loads((gen / "metrics.json").read_text())
    assert isinstance(m["gfid"], float) and isinstance(m["kid"], float) and m["_sampler"] == "iddpm"
    assert len(list((gen / "samples").glob("*.png"))) == 4
    rows = list(csv.DictReader((work / "tables" / f"samples-classes-{RES}-smoke.csv").open()))
    assert [r["run_id"] for r in rows] == [gen.name] and rows[0]["cfg"] == "1.5"
    cfg, _ = Runner(work / "runs").config_of(gen)
    assert cfg.model == Runner(work / "runs").config_of(run)[0]  # the sampled model is the trained run, typed


def test_a_flat_folder_trains_an_unconditional_model_that_refuses_guidance(work):
    run = train(work, "uvit-s-tiny", "--autoencoder", "tests.own_models:tiny_autoencoder", "--data",
                str(work / "flat"))
    cfg, _ = Runner(work / "runs").config_of(run)
    assert not cfg.conditional and cfg.own_autoencoder.kind == "factory"
    before = set((work / "runs").iterdir())
    with pytest.raises(UsageError, match="needs a class-conditional model"):
        sample(work, run, "--cfg", "2")
    assert set((work / "runs").iterdir()) == before  # refused before any run folder
    gen = sample(work, run)
    assert json.loads((gen / "metrics.json").read_text())["_sampler"] == "dpm-solver++"


def test_a_train_ae_run_is_an_autoencoder_and_its_lineage_is_kept(work):
    assert own.main(["train-ae", "dc-ae-f8c4-tiny", "--data", str(work / "flat"), "--phase", "1", "--scale", "smoke",
                     "--steps", "2", "--runs-dir", str(work / "runs")]) == 0
    ae_run = next((work / "runs").glob("*__train-ae__smoke__*"))
    run = train(work, "dit-s-tiny", "--autoencoder", str(ae_run), "--data", "embedded", "--resolution", "64")
    stored = json.loads((run / "config.json").read_text())["config"]
    assert stored["_depends_on"] == [ae_run.name] and stored["autoencoder"] == "dc-ae-f8c4-tiny"


def test_a_changed_folder_is_a_new_run_not_a_silent_reuse(work, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(work / "classes", images)
    run = train(work, "dit-s-tiny", "--autoencoder", str(work / "kl4"), "--data", str(images))
    shutil.copy(images / "c0" / "00.png", images / "c1" / "99.png")
    with pytest.raises(UsageError, match="changed since this run was named"):
        sample(work, run)


@pytest.mark.parametrize("args,needle", [
    (["pixart-alpha-tiny", "--autoencoder", "{d}/kl4", "--data", "{d}/flat"], "text-to-image"),
    (["nosuch", "--autoencoder", "{d}/kl4", "--data", "{d}/flat"], "give a class-conditional uvit-* or dit-*"),
    (["dit-s-tiny", "--autoencoder", "{d}/flat", "--data", "{d}/flat"], "folder without config.json"),
    (["dit-s-tiny", "--autoencoder", "{d}/kl4", "--data", "{d}/kl4"], "holds no"),
    (["dit-s-tiny", "--autoencoder", "{d}/kl4", "--data", "{d}/flat", "--resolution", "33"], "not divisible"),
])
def test_train_diffusion_bad_input_is_one_line_before_any_run(work, tmp_path, args, needle):
    with pytest.raises(UsageError, match=needle.replace(".", r"\.").replace("*", r"\*")) as err:
        own.main(["train-diffusion", *[a.format(d=work) for a in args], "--scale", "smoke", "--runs-dir",
                  str(tmp_path / "runs")])
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "runs").glob("*__*"))


def test_a_registered_autoencoder_needs_its_weights_outside_smoke(work, tmp_path):
    with pytest.raises(UsageError, match="--weights FOLDER"):
        own.main(["train-diffusion", "dit-s", "--autoencoder", "dc-ae-f32c32-in-1.0", "--data", str(work / "flat"),
                  "--runs-dir", str(tmp_path / "runs")])


@pytest.mark.parametrize("args,needle", [
    (["{tmp}"], "no train-diffusion run folder there"),
    (["{ae}"], "not a completed train-diffusion run"),
    (["{run}", "--n", "1"], "at least 2 samples"),
    (["{run}", "--fid-reference", "{tmp}/none.npz"], "not a readable file"),
])
def test_sample_bad_input_is_one_line(work, tmp_path, args, needle):
    run = train(work, "dit-s-tiny", "--autoencoder", str(work / "kl4"), "--data", str(work / "classes"))
    ae = next((work / "runs").glob("*__train-ae__smoke__*"), None)
    if ae is None and "{ae}" in args:
        assert own.main(["train-ae", "dc-ae-f8c4-tiny", "--data", str(work / "flat"), "--phase", "1", "--scale",
                         "smoke", "--steps", "2", "--runs-dir", str(work / "runs")]) == 0
        ae = next((work / "runs").glob("*__train-ae__smoke__*"))
    args = [a.format(tmp=tmp_path, run=run, ae=ae) for a in args]
    with pytest.raises(UsageError, match=needle) as err:
        own.main(["sample", *args, *([] if "--n" in args else ["--n", "4"]), "--runs-dir", str(work / "runs")])
    assert "\n" not in str(err.value)


@pytest.mark.slow  # four processes importing torch: ~1-2 min on 2 shared cores
def test_both_commands_run_under_torchrun_and_equal_one_process(work, tmp_path):
    """train-diffusion and sample under ``torchrun --nproc_per_node 2`` (CPU, gloo) write the same run folders as
    one process, with the same loss and the same scores within float32 reduction order."""
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = ["dit-s-tiny", "--autoencoder", str(work / "kl4"), "--data", str(work / "classes"), "--scale", "smoke",
            "--steps", "4"]
    found = {}
    for name, launch in (("one", [sys.executable, "-m", "bench"]),
                         ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                  "--master_port", "29547", "-m", "bench"])):
        runs = tmp_path / name
        for cmd in (["train-diffusion", *base], ["sample", "{run}", "--samples", "8", "--steps", "3", "--out", str(runs)]):
            run = next(runs.glob("*__train-diffusion__*"), None)
            args = [a.format(run=run) for a in cmd] + ["--runs-dir", str(runs)]
            out = subprocess.run([*launch, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-2000:]
        found[name] = {p.name: json.loads((p / "metrics.json").read_text()) for p in runs.glob("*__*__smoke__*")}
    assert found["one"].keys() == found["two"].keys() and len(found["one"]) == 2
    for rid, one in found["one"].items():
        two = found["two"][rid]
        for k in ("loss_final", "gfid", "kid"):
            if k in one:
                assert two[k] == pytest.approx(one[k], rel=1e-4), (rid, k)
    assert {m.get("_world_size") for m in found["two"].values()} >= {2}
