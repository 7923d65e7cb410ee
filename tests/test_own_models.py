"""``python -m bench eval-ae``: any autoencoder under the reconstruction protocol, its latent statistics and the
comparison table, on tiny random-init diffusers models, a file of ours and a module:function factory."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from bench import own, paper
from bench.errors import UsageError
from models.data import EmbeddedPhotos

diffusers = pytest.importorskip("diffusers")
ROOT = Path(__file__).resolve().parent.parent
RES, N = 32, 4


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """Tiny random-init autoencoders: diffusers AutoencoderKL (4 and 16 latent channels), AutoencoderDC, ours."""
    d = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    for c in (4, 16):
        diffusers.AutoencoderKL(block_out_channels=(8, 16), layers_per_block=1, latent_channels=c, norm_num_groups=8,
                                down_block_types=("DownEncoderBlock2D",) * 2,
                                up_block_types=("UpDecoderBlock2D",) * 2).save_pretrained(d / f"kl{c}")
    blocks = ("ResBlock", "ResBlock", "EfficientViTBlock")
    diffusers.AutoencoderDC(in_channels=3, latent_channels=8, attention_head_dim=8, encoder_block_types=blocks,
                            decoder_block_types=blocks, encoder_block_out_channels=(8, 16, 16),
                            decoder_block_out_channels=(8, 16, 16), encoder_layers_per_block=(1, 1, 1),
                            decoder_layers_per_block=(1, 1, 1), encoder_qkv_multiscales=((), (), (5,)),
                            decoder_qkv_multiscales=((), (), (5,)), decoder_norm_types="rms_norm",
                            decoder_act_fns="silu").save_pretrained(d / "dc")
    models.save(models.build("dc-ae-f8c4-tiny"), d / "ours.safetensors")
    return d


def eval_ae(d: Path, model: str, *extra: str) -> dict:
    """Run the command in-process on 4 embedded photos at 32 px (smoke scale) and return the run's metrics."""
    args = [model, "--data", "embedded", "--resolution", str(RES), "--limit", str(N), "--scale", "smoke",
            "--runs-dir", str(d / "runs"), "--out", str(d), *extra]
    assert own.main(["eval-ae", *args]) == 0
    cfg = own.config_of(own.parse(args))
    from bench.runner import Runner
    from bench.spec import RunRef
    return Runner(d / "runs").load(RunRef(cfg), "smoke").metrics


@pytest.mark.parametrize("name,f,c", [("kl4", 2, 4), ("kl16", 2, 16), ("dc", 4, 8), ("ours.safetensors", 8, 4)])
def test_every_kind_of_model_is_scored_with_its_latent_statistics(zoo_dir, name, f, c):
    m = eval_ae(zoo_dir, str(zoo_dir / name))
    assert (m["f"], m["c"]) == (f, c) and m["_n_images"] == N
    assert all(isinstance(m[k], float) for k in ("rfid", "psnr", "ssim"))
    assert m["scaling_factor"] == pytest.approx(1 / m["latent_std"]) and m["shift_factor"] == m["latent_mean"]
    assert len(json.loads(m["_latent_channel_std"])) == c


def test_latent_statistics_match_a_direct_computation(zoo_dir):
    """The factory's latents are 2 * pool(x) + 0.5: the recorded mean / std are those of the encoded photos."""
    m = eval_ae(zoo_dir, "tests.own_models:tiny_autoencoder")
    photos = EmbeddedPhotos("test", RES, n_images=N)
    x = torch.stack([photos.get_uint8(i) for i in range(N)]).float() / 127.5 - 1
    z = 2 * torch.nn.functional.avg_pool2d(x, 4).double() + 0.5
    assert m["latent_mean"] == pytest.approx(float(z.mean()), rel=1e-6)
    assert m["latent_std"] == pytest.approx(float(z.std(unbiased=False)), rel=1e-6)
    per_channel = json.loads(m["_latent_channel_mean"])
    assert per_channel == pytest.approx(z.mean(dim=(0, 2, 3)).tolist(), abs=1e-5)
    assert m["psnr"] > 15  # pool then upsample keeps the coarse image: a working autoencoder, unlike random ones


def test_every_model_is_a_row_of_one_comparison_table(zoo_dir):
    for name in ("kl4", "dc", "ours.safetensors"):
        eval_ae(zoo_dir, str(zoo_dir / name))
    rows = list(csv.DictReader((zoo_dir / "tables" / f"autoencoders-embedded-test-{RES}-smoke.csv").open()))
    kinds = {r["kind"] for r in rows}
    assert {"diffusers", "harness-file"} <= kinds and len(rows) >= 3
    assert (zoo_dir / "figures" / f"autoencoders-embedded-test-{RES}-smoke.png").stat().st_size > 1000


def test_the_run_id_follows_the_weights(zoo_dir, tmp_path):
    a = own.config_of(own.parse([str(zoo_dir / "ours.safetensors"), "--data", "embedded", "--resolution", "32"]))
    changed = models.build("dc-ae-f8c4-tiny")
    with torch.no_grad():
        next(changed.parameters()).add_(1.0)
    models.save(changed, tmp_path / "ours.safetensors")
    b = own.config_of(own.parse([str(tmp_path / "ours.safetensors"), "--data", "embedded", "--resolution", "32"]))
    assert a.weights_digest != b.weights_digest


def test_the_weights_digest_ignores_the_order_of_the_safetensors_header(tmp_path):
    """safetensors writes its metadata in an order that varies between processes: the same weights, the same digest;
    one changed bit of a weight, another digest."""
    files = [tmp_path / d / "m.safetensors" for d in "abc"]
    for f in files:
        f.parent.mkdir()
    models.save(models.build("dc-ae-f8c4-tiny"), files[0])
    raw = files[0].read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    header["__metadata__"] = dict(reversed(header["__metadata__"].items()))
    shuffled = json.dumps(dict(reversed(header.items())), separators=(",", ":")).encode()
    shuffled += b" " * (size - len(shuffled))  # safetensors pads the header with spaces
    files[1].write_bytes(len(shuffled).to_bytes(8, "little") + shuffled + raw[8 + size:])
    files[2].write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert files[0].read_bytes() != files[1].read_bytes()
    digest = [own.config_of(own.parse([str(f), "--data", "embedded", "--resolution", "32"])).weights_digest
              for f in files]
    assert digest[0] == digest[1] != digest[2]


def test_paper_rows_are_the_paper_s_table2_numbers_of_the_setting():
    rows = own.paper_rows("imagenet-val", 256)
    want = paper.values("table2", setting="ImageNet 256x256 f32c32 latent 8x8x32", autoencoder="DC-AE")
    row = next(r for r in rows if r["model"].startswith("DC-AE-f32c32"))
    assert float(row["rfid"]) == want["rfid"] and row["source"] == "paper"
    assert own.paper_rows("embedded-test", 256) == [] and own.paper_rows("imagenet-val", 300) == []


@pytest.mark.parametrize("args,needle", [
    (["{d}/dc", "--resolution", "30"], "not a multiple of dc's spatial factor f=4"),
    (["{d}", "--resolution", "32"], "folder without config.json"),
    (["{d}/unet", "--resolution", "32"], "supported: AutoencoderKL, AutoencoderDC"),
    (["tests.own_models:not_an_autoencoder"], "no encode/decode methods"),
    (["tests.own_models:nosuch"], "cannot import nosuch"),
    (["{d}/dc", "--data", "{d}/empty"], "holds no"),
    pytest.param(["{d}/dc", "--device", "cuda"], "no CUDA GPU is visible",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")),
])
def test_bad_input_is_a_usage_error_before_any_run(zoo_dir, args, needle):
    (zoo_dir / "unet").mkdir(exist_ok=True)
    (zoo_dir / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    (zoo_dir / "empty").mkdir(exist_ok=True)
    args = [a.format(d=zoo_dir) for a in args]
    if "--data" not in args:
        args += ["--data", "embedded"]
    with pytest.raises(UsageError, match=needle.replace(".", r"\.")) as err:
        own.main(["eval-ae", *args, "--scale", "smoke", "--runs-dir", str(zoo_dir / "bad-runs")])
    assert "\n" not in str(err.value)
    assert not (zoo_dir / "bad-runs").exists()


def test_the_command_line_error_is_one_line_without_traceback(zoo_dir):
    out = subprocess.run([sys.executable, "-m", "bench", "eval-ae", str(zoo_dir / "dc"), "--data", "embedded",
                          "--resolution", "30"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "spatial factor f=4" in lines[0], out.stderr


def test_a_registered_name_needs_its_weights():
    with pytest.raises(UsageError, match="--weights FOLDER"):
        own.config_of(own.parse(["dc-ae-f32c32-in-1.0", "--data", "embedded"]))


# ---- python -m bench train-ae ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Six 96-px PNGs (embedded training crops) as a user's image folder."""
    from PIL import Image
    d = tmp_path_factory.mktemp("images")
    ds = EmbeddedPhotos("train", 96, n_images=6)
    for i in range(6):
        u = ((ds[i] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # the training split is in [-1, 1]
        Image.fromarray(u.permute(1, 2, 0).numpy()).save(d / f"{i}.png")
    return d


def train(runs: Path, folder: Path, *extra: str, capsys=None) -> Path:
    """One smoke-scale train-ae phase through the command; returns its run folder."""
    args = ["train-ae", "dc-ae-f8c4-tiny", "--data", str(folder), "--scale", "smoke", "--runs-dir", str(runs),
            *extra]
    assert own.main(args) == 0
    return max(runs.glob("*__train-ae__smoke__*"), key=lambda p: (p / "metrics.json").stat().st_mtime)


def test_train_ae_trains_phase_1_on_a_folder_and_exports_a_diffusers_folder(tmp_path, image_folder, capsys):
    run = train(tmp_path / "runs", image_folder, "--phase", "1", "--steps", "3")
    out = capsys.readouterr().out
    assert "steps              3                      your --steps" in out
    assert "secondary source" in out and "paper §3.2" in out  # every value names where it comes from
    assert (run / "losses.png").stat().st_size > 1000
    assert len((run / "ckpt" / "0-phase1" / "losses.csv").read_text().splitlines()) == 4  # header + 3 steps
    ours = models.load(run / "ckpt" / "model.safetensors")
    theirs = diffusers.AutoencoderDC.from_pretrained(str(run / "diffusers")).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs.decode(theirs.encode(x).latent).sample, atol=1e-4)
    assert json.loads((run / "config.json").read_text())["config"]["data"] == str(image_folder.resolve())


def test_phase_2_continues_from_phase_1_and_trains_only_the_middle_layers(tmp_path, image_folder):
    first = train(tmp_path / "runs", image_folder, "--phase", "1", "--steps", "2")
    second = train(tmp_path / "runs", image_folder, "--phase", "2", "--from", str(first))
    cfg = json.loads((second / "config.json").read_text())["config"]
    assert cfg["_depends_on"] == [first.name]
    m = json.loads((second / "metrics.json").read_text())
    assert 0 < m["phase2_trainable_params"] < m["phase2_frozen_params"]


@pytest.mark.slow
def test_train_ae_resumes_after_a_kill(tmp_path, image_folder):
    import time
    cmd = [sys.executable, "-m", "bench", "train-ae", "dc-ae-f8c4-tiny", "--data", str(image_folder), "--phase",
           "1", "--scale", "smoke", "--steps", "150", "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/ckpt/0-phase1/train_state.pt")):
        time.sleep(0.5)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    run = next((tmp_path / "runs").glob("*__train-ae__smoke__*"))
    assert not (run / "metrics.json").exists(), "finished before the kill: raise --steps"
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "resumed from" in (run / "log.txt").read_text()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 150


@pytest.mark.parametrize("args,needle", [
    (["--phase", "2"], "pass --from RUN"),
    (["--phase", "2", "--from", "{tmp}"], "no train-ae run folder there"),
    (["--phase", "1", "--scale", "paper"], "--scale small uses this harness's CPU recipe"),
])
def test_train_ae_bad_input_is_one_line(tmp_path, image_folder, args, needle):
    with pytest.raises(UsageError, match=needle.replace(".", r"\.").replace("-", r"\-")) as err:
        own.main(["train-ae", "dc-ae-f8c4-tiny", "--data", str(image_folder), "--runs-dir", str(tmp_path / "runs"),
                  *[a.format(tmp=tmp_path) for a in args]])
    assert "\n" not in str(err.value)


# ---- python -m bench protocol ------------------------------------------------------------------------------------

def test_protocol_measures_each_choice_with_an_interval(zoo_dir, image_folder):
    args = ["protocol", "tests.own_models:tiny_autoencoder", "--resolution", "32", "--scale", "smoke",
            "--runs-dir", str(zoo_dir / "runs"), "--out", str(zoo_dir)]
    assert own.main([*args, "--data", str(image_folder)]) == 0
    rows = list(csv.DictReader((zoo_dir / "tables" / f"protocol-tests.own_models:tiny_autoencoder-"
                                f"{image_folder.name}-32-smoke.csv").open()))
    by = {(r["choice"], r["change"][:20]): r for r in rows}
    assert rows[0]["choice"] == "the paper's protocol" and float(rows[0]["d_rfid"]) == 0
    assert {r["choice"] for r in rows} >= {"resize before the FID network", "uint8 conversion", "crop",
                                            "reference set", "N (images)"}
    trunc = next(r for r in rows if r["choice"] == "uint8 conversion")
    assert float(trunc["d_rfid_lo"]) <= float(trunc["d_rfid"]) <= float(trunc["d_rfid_hi"])
    crop = next(r for r in rows if r["choice"] == "crop")
    assert float(crop["rfid"]) > 0 and "not applicable" not in crop["change"]  # a folder has files to re-crop
    assert len(by) == len(rows)
    assert own.main([*args, "--data", "embedded", "--limit", "16"]) == 0
    md = (zoo_dir / "tables" / "protocol-tests.own_models:tiny_autoencoder-embedded-test-32-smoke.md").read_text()
    assert "not applicable" in md and "never a result" in md


def test_truncation_never_raises_a_pixel_and_rounding_is_the_protocol_s():
    from bench.evals import metrics, protocol_choices
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(protocol_choices.to_uint8(x, "round"), metrics.to_uint8(x))
    assert (protocol_choices.to_uint8(x, "floor") <= metrics.to_uint8(x)).all()


def test_eval_ae_of_a_training_run_s_file_equals_the_recon_eval_of_that_run(tmp_path):
    """The same protocol: eval-ae on a train-ae run's ckpt/model.safetensors gives the recon eval's numbers."""
    from bench.configs import EMBEDDED_TEST, ReconConfig, TrainAEConfig
    from bench.runner import Runner
    from bench.spec import RunRef
    runner = Runner(tmp_path / "runs")
    train = TrainAEConfig("dc-ae-f8c4-tiny")
    recon = runner.ensure(RunRef(ReconConfig("dc-ae-f8c4-tiny", RES, dataset=EMBEDDED_TEST, checkpoint=train,
                                             n_images=N, features="tiny")), "smoke").metrics
    ckpt = runner.load(RunRef(train), "smoke").dir / "ckpt" / "model.safetensors"
    m = eval_ae(tmp_path, str(ckpt))
    for k in ("rfid", "psnr", "ssim", "kid"):
        assert m[k] == pytest.approx(recon[k], rel=1e-5), k


def test_the_protocol_s_fast_fid_equals_the_covariance_form():
    import numpy as np

    from bench.evals import protocol_choices
    from bench.evals.metrics import FeatureStats, fid_from_stats
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 64)), rng.normal(size=(40, 64)) + 0.3
    sa, sb = FeatureStats(64), FeatureStats(64)
    sa.add(a)
    sb.add(b)
    assert protocol_choices.fid(a, b) == pytest.approx(fid_from_stats(sa, sb), rel=1e-6)


@pytest.mark.slow  # two torchrun processes and one plain one, importing torch: ~1 min on 2 shared cores
def test_train_ae_under_torchrun_equals_one_process(tmp_path, image_folder):
    """Phase 1 on a folder under ``torchrun --nproc_per_node 2`` (CPU, gloo): the same run folder as one process,
    with the same losses within float32 reduction order. The model normalises with GroupNorm (SD-VAE): DC-AE's
    BatchNorm layers see each rank's half of the batch under DDP, as in any data-parallel run, so its losses differ
    from one process by construction."""
    import os
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train-ae", "sd-vae-f8c4-tiny", "--data", str(image_folder), "--phase", "1", "--scale", "smoke",
            "--steps", "3", "--batch", "4"]
    found = {}
    for name, launch in (("one", [sys.executable, "-m", "bench"]),
                         ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                  "--master_port", "29551", "-m", "bench"])):
        out = subprocess.run([*launch, *args, "--runs-dir", str(tmp_path / name)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        run = next((tmp_path / name).glob("*__train-ae__smoke__*"))
        found[name] = (run.name, json.loads((run / "metrics.json").read_text()))
    assert found["one"][0] == found["two"][0]
    one, two = found["one"][1], found["two"][1]
    assert one["phase1_steps"] == two["phase1_steps"] == 3
    for k in ("phase1_l1_final", "phase1_loss_final", "final_l1"):
        assert two[k] == pytest.approx(one[k], rel=1e-4), k


def test_a_damaged_safetensors_file_is_named_in_one_line(tmp_path):
    from bench.evals import autoencoder_sources
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "block_out_channels": [8, 16]}))
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes((7).to_bytes(8, "little") + b"not json")
    with pytest.raises(UsageError, match="diffusion_pytorch_model.safetensors is not a safetensors file") as e:
        autoencoder_sources.resolve(str(tmp_path))
    assert "\n" not in str(e.value)
