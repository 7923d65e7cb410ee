"""The training loop and the three phases of Decoupled High-Resolution Adaptation, on a toy conv autoencoder."""
import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from bench.configs import MemoryConfig, PhaseRequest, TrainAEConfig
from bench.scales import SCALES
from models import train_autoencoder as T
from models.train_state import FINAL_MODEL, TRAIN_STATE

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


class ToyAE(nn.Module):
    """f4c4 conv autoencoder with the DC-AE module names (encoder.project_out, decoder.project_in/project_out)."""

    spatial_compression = 4
    latent_channels = 4

    def __init__(self, bn: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        norm = nn.BatchNorm2d(16) if bn else nn.Identity()
        self.encoder = nn.Module()
        self.encoder.stages = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
        self.encoder.project_out = nn.Conv2d(16, 4, 1)
        self.decoder = nn.Module()
        self.decoder.project_in = nn.Conv2d(4, 16, 1)
        self.decoder.stages = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(16, 16, 3, 1, 1), norm, nn.SiLU(),
                                            nn.Upsample(scale_factor=2), nn.Conv2d(16, 16, 3, 1, 1), nn.SiLU())
        self.decoder.project_out = nn.Sequential(nn.GroupNorm(4, 16), nn.ReLU(), nn.Conv2d(16, 3, 3, 1, 1))

    def encode(self, x):
        return self.encoder.project_out(self.encoder.stages(x))  # (B, 4, H/4, W/4)

    def decode(self, z):
        return self.decoder.project_out(self.decoder.stages(self.decoder.project_in(z)))  # (B, 3, H, W)

    def forward(self, x):
        return self.decode(self.encode(x))


def toy_data(n: int = 6, size: int = 24, seed: int = 0) -> T.TensorCropSource:
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    imgs = torch.nn.functional.avg_pool2d(imgs, 3, 1, 1)  # a little spatial correlation
    return T.TensorCropSource(imgs)


def small_phase(name: str, **kw) -> T.PhaseConfig:
    base = dict(resolution=16, steps=2, batch=4, lr=1e-3, ckpt_every=1000, perceptual_weight=0.0,
                disc_width=8, disc_layers=2)
    base.update(kw)
    return dataclasses.replace(T.PHASES[name], **base)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- trainable sets ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("phase, expected", [
    ("phase1", None),
    ("phase2", ("encoder.project_out.", "decoder.project_in.")),
    ("phase3", ("decoder.project_out.",)),
])
def test_phase_trains_only_its_selection(phase, expected):
    model = ToyAE()
    before = state(model)
    res = T.train_autoencoder(model, small_phase(phase), toy_data(), perceptual=None, progress=False)
    after = state(model)
    params = {n for n, _ in model.named_parameters()}
    trainable = params if expected is None else {n for n in params if n.startswith(expected)}
    assert trainable, "selector must pick at least one parameter"
    assert res.trainable_params == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    for k in before:
        if k in trainable:
            assert not torch.equal(before[k], after[k]), f"{phase}: trainable {k} did not change"
        elif k in params or phase != "phase1":  # frozen params and (for phases 2, 3) frozen BN buffers
            assert torch.equal(before[k], after[k]), f"{phase}: frozen {k} changed"


def test_selector_extent_counts_layers_in_execution_order():
    model = ToyAE()
    assert T.middle_layers(model) == ["decoder.project_in.bias", "decoder.project_in.weight",
                                      "encoder.project_out.bias", "encoder.project_out.weight"]
    mid2 = T.middle_layers(model, extent=2)
    assert {n.rsplit(".", 1)[0] for n in mid2} == {"encoder.stages.2", "encoder.project_out", "decoder.project_in",
                                                   "decoder.stages.1"}
    assert {n.rsplit(".", 1)[0] for n in T.decoder_head_layers(model)} == {"decoder.project_out.0",
                                                                           "decoder.project_out.2"}
    head3 = {n.rsplit(".", 1)[0] for n in T.decoder_head_layers(model, extent=3)}
    assert head3 == {"decoder.stages.5", "decoder.project_out.0", "decoder.project_out.2"}
    with pytest.raises(ValueError):
        T.middle_layers(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_frozen_batchnorm_stays_in_eval_mode():
    model = ToyAE()
    T.apply_trainable(model, T.PHASES["phase3"])
    T.set_train_mode(model)
    assert not model.decoder.stages[2].training and model.decoder.project_out[2].training
    T.apply_trainable(model, T.PHASES["phase1"])
    T.set_train_mode(model)
    assert model.decoder.stages[2].training


# ---- optimisation ------------------------------------------------------------------------------------------------

def test_loss_decreases_when_overfitting_one_batch():
    model = ToyAE(bn=False)
    data = toy_data(n=1, size=16)
    res = T.train_autoencoder(model, small_phase("phase1", steps=60, batch=2, lr=3e-3, weight_decay=0.0),
                              data, perceptual=None, progress=False)
    first = sum(h["l1"] for h in res.history[:3]) / 3
    last = sum(h["l1"] for h in res.history[-3:]) / 3
    assert last < 0.6 * first, (first, last)


def test_data_order_is_a_function_of_seed_and_step():
    assert T.sample_plan(3, 5, 4, 10) == T.sample_plan(3, 5, 4, 10)
    assert T.sample_plan(3, 5, 4, 10) != T.sample_plan(4, 5, 4, 10)
    epoch0 = [i for s in range(5) for i, _ in T.sample_plan(0, s, 2, 10)]
    assert sorted(epoch0) == list(range(10))  # one epoch visits every image once


# ---- checkpoints -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("phase, extra", [("phase1", {"ema_decay": 0.9}), ("phase3", {})])
def test_resume_is_bit_identical(tmp_path, phase, extra):
    cfg = small_phase(phase, steps=4, ckpt_every=2, **extra)
    full = ToyAE()
    T.train_autoencoder(full, cfg, toy_data(), ckpt_dir=tmp_path / "a", perceptual=None, progress=False)

    part = ToyAE()
    T.train_autoencoder(part, cfg, toy_data(), ckpt_dir=tmp_path / "b", perceptual=None, progress=False, until_step=2)
    assert not (tmp_path / "b" / FINAL_MODEL).exists()  # "killed" before the end
    torch.manual_seed(1234)  # the resumed process starts with other RNG state and fresh weights
    resumed = ToyAE(seed=99)
    res = T.train_autoencoder(resumed, cfg, toy_data(), ckpt_dir=tmp_path / "b", perceptual=None, progress=False)
    assert res.resumed_from == 2 and res.steps == 4
    a, b = state(full), state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(tmp_path / "a" / TRAIN_STATE, weights_only=False)
    sb = torch.load(tmp_path / "b" / TRAIN_STATE, weights_only=False)
    if phase == "phase3":
        assert all(torch.equal(sa["disc"][k], sb["disc"][k]) for k in sa["disc"])
    else:
        assert all(torch.equal(sa["ema"][k], sb["ema"][k]) for k in sa["ema"])
    assert (tmp_path / "b" / FINAL_MODEL).exists()


def test_resume_refuses_a_different_phase_config(tmp_path):
    cfg = small_phase("phase1", steps=2, ckpt_every=1)
    T.train_autoencoder(ToyAE(), cfg, toy_data(), ckpt_dir=tmp_path, perceptual=None, progress=False)
    with pytest.raises(ValueError, match="lr"):
        T.train_autoencoder(ToyAE(), dataclasses.replace(cfg, lr=0.5, steps=3), toy_data(), ckpt_dir=tmp_path,
                            perceptual=None, progress=False)


class PoisonedData(T.TensorCropSource):
    """Returns NaN images from the ``poison_from``-th crop on (the planted divergence)."""

    def __init__(self, base, poison_from):
        super().__init__(base.images)
        self.calls, self.poison_from = 0, poison_from

    def crop(self, index, resolution, seed):
        self.calls += 1
        out = super().crop(index, resolution, seed)
        return out * float("nan") if self.calls > self.poison_from else out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = small_phase("phase1", steps=6, ckpt_every=2)
    clean = ToyAE()
    T.train_autoencoder(clean, cfg, toy_data(), ckpt_dir=tmp_path / "clean", perceptual=None, progress=False,
                        until_step=2)
    model = ToyAE()
    with pytest.raises(T.TrainingDiverged, match="step 4") as err:
        T.train_autoencoder(model, cfg, PoisonedData(toy_data(), poison_from=3 * cfg.batch), ckpt_dir=tmp_path / "bad",
                            perceptual=None, progress=False)
    assert "step 2" in str(err.value)  # names the last good checkpoint
    kept = torch.load(tmp_path / "bad" / TRAIN_STATE, weights_only=False)
    ref = torch.load(tmp_path / "clean" / TRAIN_STATE, weights_only=False)
    assert kept["step"] == 2
    assert all(torch.equal(kept["model"][k], ref["model"][k]) for k in ref["model"])
    assert not (tmp_path / "bad" / FINAL_MODEL).exists()


def test_perceptual_unavailable_is_recorded_as_none(monkeypatch):
    monkeypatch.setenv("DCAE_BENCH_NO_LPIPS", "1")
    res = T.train_autoencoder(ToyAE(), small_phase("phase1", steps=1, perceptual_weight=1.0), toy_data(),
                              progress=False)
    assert res.perceptual == "none"
    assert "perceptual" not in res.final


# ---- distributed -------------------------------------------------------------------------------------------------

def _ddp_body(rank, out_dir, phase):
    model = ToyAE(bn=False)
    res = T.train_autoencoder(model, phase, toy_data(), perceptual=None, progress=False)
    if rank == 0:
        torch.save({"model": model.state_dict(), "history": res.history}, os.path.join(out_dir, "ddp.pt"))


@pytest.mark.parametrize("name", ["phase1", pytest.param("phase3", marks=pytest.mark.slow)])
def test_two_process_ddp_matches_one_process_with_double_batch(tmp_path, name, spawn_ddp):
    # phase 3 uses a GroupNorm discriminator here: per-rank BatchNorm statistics would differ by construction.
    phase = small_phase(name, steps=3, batch=4, lr=1e-2 if name == "phase1" else 1e-3, disc_norm="group")
    spawn_ddp(_ddp_body, str(tmp_path), phase)
    single = ToyAE(bn=False)
    res = T.train_autoencoder(single, phase, toy_data(), perceptual=None, progress=False)
    ddp = torch.load(tmp_path / "ddp.pt")
    ref = single.state_dict()
    for k in ref:
        assert torch.allclose(ddp["model"][k], ref[k], atol=1e-5, rtol=1e-4), k
    changed = ToyAE(bn=False).state_dict()
    assert any(not torch.equal(changed[k], ref[k]) for k in ref)  # training did something
    # the reported losses are the mean over ranks: those of the one process with the whole batch
    assert [list(h) for h in ddp["history"]] == [list(h) for h in res.history]
    for got, want in zip(ddp["history"], res.history):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def _ddp_nan_body(rank, out_dir, phase):
    data = PoisonedData(toy_data(), poison_from=10 ** 6 if rank == 0 else phase.batch // 2)  # rank 1, from step 2
    try:
        T.train_autoencoder(ToyAE(bn=False), phase, data, ckpt_dir=out_dir, perceptual=None, progress=False)
    except T.TrainingDiverged as e:
        Path(out_dir, f"diverged-{rank}.txt").write_text(str(e))


def test_a_nan_on_one_rank_stops_every_rank_before_the_step(tmp_path, spawn_ddp):
    phase = small_phase("phase1", steps=4, batch=4, ckpt_every=1)
    spawn_ddp(_ddp_nan_body, str(tmp_path), phase)
    said = [(tmp_path / f"diverged-{r}.txt").read_text() for r in (0, 1)]  # both ranks raised
    assert all("step 2" in m for m in said)
    assert torch.load(tmp_path / TRAIN_STATE, weights_only=False)["step"] == 1  # the last good checkpoint
    assert not (tmp_path / FINAL_MODEL).exists()


def test_grad_accumulation_matches_full_batch():
    phase = small_phase("phase1", steps=2, batch=4, weight_decay=0.0)
    a, b = ToyAE(bn=False), ToyAE(bn=False)
    T.train_autoencoder(a, phase, toy_data(), perceptual=None, progress=False)
    T.train_autoencoder(b, dataclasses.replace(phase, grad_accum=2), toy_data(), perceptual=None, progress=False)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-5, rtol=1e-4) for k in sa)


# ---- the train-ae eval -------------------------------------------------------------------------------------------

def test_train_ae_eval_smoke_phase1_then_phase2_from_it(tmp_path, monkeypatch):
    import models
    from bench.runner import Runner
    from bench.spec import RunRef
    monkeypatch.setenv("DCAE_BENCH_NO_LPIPS", "1")
    runner = Runner(tmp_path)
    p1 = TrainAEConfig("dc-ae-f8c4-tiny")
    first = runner.ensure(RunRef(p1), "smoke")
    assert first.metrics["perceptual"] == "none" and first.metrics["steps"] == 2
    assert (first.dir / "ckpt" / "model.safetensors").exists()
    child = runner.ensure(RunRef(TrainAEConfig("dc-ae-f8c4-tiny", phases=(PhaseRequest("phase2"),), init_from=p1)),
                          "smoke")
    assert child.metrics["_from"] == first.run_id and child.metrics["phase2_trainable_params"] > 0
    a, b = models.load(first.dir / "ckpt" / "model.safetensors"), models.load(child.dir / "ckpt" / "model.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    trainable = set(T.middle_layers(a))
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k not in trainable)  # phase 2 kept the rest frozen
    assert any(not torch.equal(sa[k], sb[k]) for k in trainable)
    assert runner.ensure(RunRef(p1), "smoke").reused


def test_train_ae_eval_recovers_from_damaged_phase_files(tmp_path, monkeypatch, capsys):
    """A run killed mid-copy: truncated phase result, weights and resume state are moved aside and retrained."""
    from bench.runner import Runner
    from bench.spec import RunRef
    monkeypatch.setenv("DCAE_BENCH_NO_LPIPS", "1")
    runner, ref = Runner(tmp_path), RunRef(TrainAEConfig("dc-ae-f8c4-tiny"))
    first = runner.ensure(ref, "smoke")
    phase_dir = next((first.dir / "ckpt").glob("0-*"))
    for name in ("result.json", FINAL_MODEL, TRAIN_STATE):
        (phase_dir / name).write_bytes((phase_dir / name).read_bytes()[:20])
    (first.dir / "metrics.json").unlink()
    again = runner.ensure(ref, "smoke")
    assert not again.reused and again.metrics["steps"] == 2
    out = capsys.readouterr().out
    assert all(f"{name} is damaged" in out for name in ("result.json", FINAL_MODEL, TRAIN_STATE))
    assert len(list(phase_dir.glob("*.damaged-1"))) == 3


def test_train_ae_eval_rejects_bad_config(tmp_path):
    from bench.errors import UsageError
    from bench.evals.training import phase_configs
    with pytest.raises(TypeError, match="stepz"):
        PhaseRequest("phase1", stepz=3)
    with pytest.raises(UsageError, match="phase"):
        PhaseRequest("phase9")
    (p,) = phase_configs(TrainAEConfig("x", phases=(PhaseRequest("phase3", steps=7),)), "small")
    assert p.gan and p.trainable == "decoder_head_layers" and p.steps == 7 and p.betas == (0.5, 0.9)


@pytest.mark.parametrize("name", ["dc-ae-f8c4-tiny", "sd-vae-f8c4-tiny", "dc-ae-f64c256-tiny"])
def test_selectors_on_registry_models(name):
    import models
    model = models.build(name)
    every = set(T.all_parameters(model))
    mid, head = set(T.middle_layers(model)), set(T.decoder_head_layers(model))
    assert mid and head and mid < every and head < every and not mid & head
    assert all(n.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")) for n in mid)
    assert any(n.startswith(("encoder.", "quant_conv.")) for n in mid)  # encoder's head layers
    assert any(n.startswith(("decoder.", "post_quant_conv.")) for n in mid)  # decoder's input layers
    assert all(n.startswith("decoder.") for n in head)
    assert len(T.middle_layers(model, extent=3)) > len(T.middle_layers(model, extent=1))


def test_ae_memory_small_estimate_and_cuda_unavailable():
    from types import SimpleNamespace

    from bench.errors import Unavailable
    from bench.evals.training import run_memory
    ctx = SimpleNamespace(device="cpu", log=lambda m: None, scale=SCALES["smoke"])
    cfg = MemoryConfig("dc-ae-f64c128-tiny", "all_parameters", 64, batches=(1, 2), method="saved-tensors")
    full = run_memory(cfg, ctx)
    mid = run_memory(dataclasses.replace(cfg, trainable="middle_layers"), ctx)
    assert 0 < mid["train_memory_gb"] < full["train_memory_gb"]
    assert full["fit_slope_gb_per_image"] > 0 and mid["trainable_params"] < full["trainable_params"]
    with pytest.raises(Unavailable, match="CUDA"):
        run_memory(dataclasses.replace(cfg, method="cuda"), ctx)
