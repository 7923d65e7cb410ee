"""The diffusion training loop, its recipes and the latent cache, on tiny backbones and random latents."""
import dataclasses
import math
import os
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import models
from models import diffusion
from models import train_diffusion as TD
from models.train_state import FINAL_MODEL, TRAIN_STATE

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

BACKBONE = {"uvit": "uvit-s-tiny", "dit": "dit-s-tiny"}


def backbone(formulation: str, seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return models.build_backbone(BACKBONE[formulation], latent_channels=4, latent_size=4, patch_size=1, **overrides)


def toy_latents(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 4, 4, generator=g), torch.randint(0, 1000, (n,), generator=g)


def small(formulation: str, **kw) -> TD.DiffusionRecipe:
    base = dict(steps=4, batch=4, lr=1e-3, warmup_steps=0, ema_decay=0.0, ckpt_every=1000)
    base.update(kw)
    return dataclasses.replace(TD.RECIPES[formulation], **base)


def quiet(msg: str) -> None:
    pass


def tensors_equal(a, b) -> bool:
    """Recursive torch.equal over nested dicts/lists of tensors (optimiser and scheduler states)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def load_state(path):
    return torch.load(path / TRAIN_STATE, weights_only=False)


# ---- recipes -----------------------------------------------------------------------------------------------------

def test_recipes_carry_the_official_values():
    u, d = TD.UVIT_RECIPE, TD.DIT_RECIPE
    assert (u.formulation, u.lr, u.weight_decay, u.betas, u.warmup_steps) == ("uvit", 2e-4, 0.03, (0.99, 0.99), 5000)
    assert (u.ema_decay, u.ema_warmup_steps, u.batch, u.steps) == (0.9999, 2000, 1024, 500_000)
    assert (d.formulation, d.lr, d.weight_decay, d.betas, d.warmup_steps) == ("dit", 1e-4, 0.0, (0.9, 0.999), 0)
    assert (d.ema_decay, d.ema_warmup_steps, d.batch) == (0.9999, 2000, 256)
    assert TD.FORMULATIONS["uvit"].loss is diffusion.uvit_loss and TD.FORMULATIONS["dit"].loss is diffusion.iddpm_loss
    assert TD.FORMULATIONS["uvit"].schedule == diffusion.UVIT_SCHEDULE
    assert TD.FORMULATIONS["dit"].schedule == diffusion.DIT_SCHEDULE
    assert dataclasses.replace(u, betas=[0.9, 0.99]).betas == (0.9, 0.99)  # a JSON list becomes the tuple


@pytest.mark.parametrize("field, value, match", [
    ("formulation", "ddpm", "formulation"), ("steps", 0, "steps"), ("batch", 0, "batch"),
    ("lr", 0.0, "lr"), ("weight_decay", -1.0, "weight_decay"), ("betas", (0.9, 1.0), "betas"),
    ("warmup_steps", -1, "warmup_steps"), ("ema_decay", 1.0, "ema_decay"), ("ema_warmup_steps", -5, "ema_warmup"),
    ("grad_accum", 3, "multiple of grad_accum"), ("ckpt_every", 0, "ckpt_every"),
])
def test_bad_recipe_fields_raise(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TD.UVIT_RECIPE, **{"batch": 4, field: value})


# ---- EMA ---------------------------------------------------------------------------------------------------------

def test_ema_decay_at_closed_form():
    assert TD.ema_decay_at(1, 0.9999, 2000) == pytest.approx(0.9999 * (1 - math.exp(-1 / 2000)))  # ≈ 5e-4
    assert TD.ema_decay_at(2000, 0.9999, 2000) == pytest.approx(0.9999 * (1 - 1 / math.e))         # ≈ 0.632
    assert TD.ema_decay_at(10 ** 6, 0.9999, 2000) == pytest.approx(0.9999)
    assert TD.ema_decay_at(5, 0.9999, 0) == 0.9999                                                # no warm-up


def test_loop_ema_follows_the_warmed_up_recurrence(tmp_path):
    """ema_1 = d1·w0 + (1 − d1)·w1, ema_2 = d2·ema_1 + (1 − d2)·w2 with d_k = ema_decay_at(k, 0.5, 1)."""
    model = backbone("uvit")
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = small("uvit", steps=2, ckpt_every=1, ema_decay=0.5, ema_warmup_steps=1)
    lat, lab = toy_latents()
    TD.train_diffusion(model, recipe, lat, lab, ckpt_dir=tmp_path, until_step=1, log=quiet)
    s1 = load_state(tmp_path)
    TD.train_diffusion(backbone("uvit"), recipe, lat, lab, ckpt_dir=tmp_path, log=quiet)
    s2 = load_state(tmp_path)
    d1, d2 = TD.ema_decay_at(1, 0.5, 1), TD.ema_decay_at(2, 0.5, 1)
    for k in w0:
        ema1 = d1 * w0[k] + (1 - d1) * s1["model"][k]
        assert torch.allclose(s1["ema"][k], ema1, atol=1e-6), k
        assert torch.allclose(s2["ema"][k], d2 * ema1 + (1 - d2) * s2["model"][k], atol=1e-6), k


def test_lr_warms_up_from_zero_as_the_official_constant_lr_with_warmup(monkeypatch):
    """The lr each optimiser step uses. efficientvit's trainer builds ``ConstantLRwithWarmup(opt, warmup_steps, 0)``:
    lr·(s + 1)/W at steps s = 0..W−1 (warmup_lr = 0), then lr (reference/generation.md §2)."""
    used = []
    real = TD._optimiser_step

    def spy(s, run, step):
        used.append(s.opt.param_groups[0]["lr"])
        real(s, run, step)

    monkeypatch.setattr(TD, "_optimiser_step", spy)
    lat, lab = toy_latents()
    TD.train_diffusion(backbone("uvit"), small("uvit", steps=6, lr=1e-3, warmup_steps=4), lat, lab, ckpt_dir=None,
                       log=quiet)
    assert used == pytest.approx([1e-3 * k for k in (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)], rel=1e-12)


@pytest.mark.parametrize("ema_decay", [0.9, 0.0])
def test_final_weights_are_the_ema_and_the_raw_ones_without_it(tmp_path, ema_decay):
    model = backbone("dit")
    lat, lab = toy_latents()
    TD.train_diffusion(model, small("dit", steps=5, ema_decay=ema_decay, ema_warmup_steps=0), lat, lab,
                       ckpt_dir=tmp_path, log=quiet)
    state, final = load_state(tmp_path), load_file(tmp_path / FINAL_MODEL)
    held = model.state_dict()
    assert final.keys() == state["model"].keys() == held.keys()
    assert all(torch.equal(final[k], held[k]) for k in final)  # the backbone holds the final weights
    if ema_decay:
        assert all(torch.equal(final[k], state["ema"][k]) for k in final)
        assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in final)
    else:
        assert state["ema"] is None
        assert all(torch.equal(final[k], state["model"][k]) for k in final)
    assert not model.training


# ---- optimisation ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("formulation", ["uvit", "dit"])
def test_loss_decreases_when_overfitting_8_latents(formulation):
    lat, lab = toy_latents(8)
    res = TD.train_diffusion(backbone(formulation), small(formulation, steps=60, batch=8), lat, lab, ckpt_dir=None,
                             log=quiet)
    losses = [loss for _, loss in res.loss_curve]
    assert [s for s, _ in res.loss_curve] == list(range(1, 61))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    assert res.final_loss == pytest.approx(last) and res.steps == 60 and res.steps_per_s > 0
    assert set(res.metrics("gen_")) == {"gen_steps", "gen_loss_final", "gen_s_per_step", "gen_steps_per_s"}


def test_grad_accumulation_matches_full_batch():
    # class_dropout=0: the backbone's label dropout draws 2×2 instead of 4 values from the global RNG.
    lat, lab = toy_latents()
    a, b = backbone("uvit", class_dropout=0.0), backbone("uvit", class_dropout=0.0)
    TD.train_diffusion(a, small("uvit", steps=2), lat, lab, ckpt_dir=None, log=quiet)
    TD.train_diffusion(b, small("uvit", steps=2, grad_accum=2), lat, lab, ckpt_dir=None, log=quiet)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6, rtol=1e-5) for k in sa)


def test_unconditional_feeds_the_null_class():
    seen = []
    model = backbone("dit")
    model.register_forward_pre_hook(lambda mod, args: seen.append(args[2].clone()))
    lat, _ = toy_latents()
    res = TD.train_diffusion(model, small("dit", steps=2), lat, None, ckpt_dir=None, log=quiet)
    assert len(seen) == 2 and all(bool((y == model.config.num_classes).all()) for y in seen)
    assert math.isfinite(res.final_loss)
    seen.clear()  # conditional: the labels themselves reach the backbone (it drops some inside, in train mode)
    lat, lab = toy_latents()
    TD.train_diffusion(model, small("dit", steps=1), lat, lab, ckpt_dir=None, log=quiet)
    assert set(seen[0].tolist()) <= set(lab.tolist())


def test_bad_latents_and_labels_raise():
    lat, lab = toy_latents()
    with pytest.raises(ValueError, match="latent_channels=3"):
        TD.train_diffusion(backbone("uvit"), small("uvit"), lat[:, :3], lab, ckpt_dir=None, log=quiet)
    with pytest.raises(ValueError, match="int64"):
        TD.train_diffusion(backbone("uvit"), small("uvit"), lat, lab.float(), ckpt_dir=None, log=quiet)
    with pytest.raises(ValueError, match="null class"):
        TD.train_diffusion(backbone("uvit"), small("uvit"), lat, torch.full((8,), 1000), ckpt_dir=None, log=quiet)


# ---- checkpoints -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("formulation, grad_accum", [("uvit", 1), ("dit", 2)])
def test_resume_is_bit_identical(tmp_path, formulation, grad_accum):
    # Warm-up, EMA warm-up and label dropout (global RNG) all on, so scheduler, EMA and RNG state must be restored.
    recipe = small(formulation, steps=6, ckpt_every=3, warmup_steps=4, ema_decay=0.99, ema_warmup_steps=2,
                   grad_accum=grad_accum)
    lat, lab = toy_latents()
    TD.train_diffusion(backbone(formulation), recipe, lat, lab, ckpt_dir=tmp_path / "a", log=quiet)

    TD.train_diffusion(backbone(formulation), recipe, lat, lab, ckpt_dir=tmp_path / "b", until_step=3, log=quiet)
    assert not (tmp_path / "b" / FINAL_MODEL).exists()  # "killed" after step 3
    torch.manual_seed(1234)  # the resumed "process" starts with other RNG states and a fresh, differently seeded model
    random.seed(1234)
    np.random.seed(1234)
    res = TD.train_diffusion(backbone(formulation, seed=99), recipe, lat, lab, ckpt_dir=tmp_path / "b", log=quiet)
    assert (res.resumed_from, res.steps, [s for s, _ in res.loss_curve]) == (3, 6, [4, 5, 6])

    sa, sb = load_state(tmp_path / "a"), load_state(tmp_path / "b")
    for key in ("model", "ema", "opt", "sched", "step"):
        assert tensors_equal(sa[key], sb[key]), key
    fa, fb = load_file(tmp_path / "a" / FINAL_MODEL), load_file(tmp_path / "b" / FINAL_MODEL)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


def test_resume_refuses_a_different_recipe(tmp_path):
    lat, lab = toy_latents()
    recipe = small("uvit", steps=2, ckpt_every=1)
    TD.train_diffusion(backbone("uvit"), recipe, lat, lab, ckpt_dir=tmp_path, log=quiet)
    with pytest.raises(ValueError, match=r"different recipe \(fields \['lr'\]"):
        TD.train_diffusion(backbone("uvit"), dataclasses.replace(recipe, lr=0.5, steps=3), lat, lab,
                           ckpt_dir=tmp_path, log=quiet)
    with pytest.raises(ValueError, match="other latents"):
        TD.train_diffusion(backbone("uvit"), dataclasses.replace(recipe, steps=3), lat, None, ckpt_dir=tmp_path,
                           log=quiet)
    res = TD.train_diffusion(backbone("uvit"), dataclasses.replace(recipe, steps=3), lat, lab, ckpt_dir=tmp_path,
                             log=quiet)  # steps may grow
    assert (res.resumed_from, res.steps) == (2, 3)


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = small("uvit", steps=6, batch=4, ckpt_every=2)
    lat, lab = toy_latents(16)  # one epoch = 4 steps: some latent is first used at step 3 (1-based)
    seen_before = {i for s in range(2) for i, _ in TD.sample_plan(recipe.seed, s, recipe.batch, 16)}
    poison = next(i for i, _ in TD.sample_plan(recipe.seed, 2, recipe.batch, 16) if i not in seen_before)
    bad = lat.clone()
    bad[poison, 0, 0, 0] = float("nan")
    TD.train_diffusion(backbone("uvit"), recipe, lat, lab, ckpt_dir=tmp_path / "clean", until_step=2, log=quiet)
    with pytest.raises(TD.TrainingDiverged, match="at step 3") as err:
        TD.train_diffusion(backbone("uvit"), recipe, bad, lab, ckpt_dir=tmp_path / "bad", log=quiet)
    assert "(step 2)" in str(err.value)  # names the last good checkpoint
    kept, ref = load_state(tmp_path / "bad"), load_state(tmp_path / "clean")
    assert kept["step"] == 2
    assert tensors_equal(kept["model"], ref["model"]) and tensors_equal(kept["opt"], ref["opt"])
    assert not (tmp_path / "bad" / FINAL_MODEL).exists()


# ---- distributed -------------------------------------------------------------------------------------------------

def _ddp_body(rank, out_dir, recipe):
    lat, lab = toy_latents()
    res = TD.train_diffusion(backbone("uvit", class_dropout=0.0), recipe, lat, lab, ckpt_dir=out_dir, log=quiet)
    if rank == 0:
        torch.save(res.loss_curve, os.path.join(out_dir, "curve.pt"))


def test_two_process_ddp_matches_one_process_with_double_batch(tmp_path, spawn_ddp):
    # recipe.batch is global: 2 ranks × 4 samples vs 1 process × 8, same samples, same per-sample t and ε. Equal up to
    # float rounding: the all-reduce sums two half-batch mean gradients instead of one full-batch mean. Label dropout
    # is off: the backbone draws it from each rank's own RNG, so the dropped labels differ by construction.
    recipe = small("uvit", steps=3, batch=8, lr=1e-3, ema_decay=0.9, ema_warmup_steps=0)
    spawn_ddp(_ddp_body, str(tmp_path / "ddp"), recipe)
    lat, lab = toy_latents()
    res = TD.train_diffusion(backbone("uvit", class_dropout=0.0), recipe, lat, lab, ckpt_dir=tmp_path / "one",
                             log=quiet)
    ddp, one = load_state(tmp_path / "ddp"), load_state(tmp_path / "one")
    curve = torch.load(tmp_path / "ddp" / "curve.pt")  # the mean loss over ranks: the one process's loss
    assert [s for s, _ in curve] == [s for s, _ in res.loss_curve]
    assert [v for _, v in curve] == pytest.approx([v for _, v in res.loss_curve], rel=1e-4, abs=1e-6)
    assert ddp["world"] == 2 and len(ddp["rng"]) == 2
    for part in ("model", "ema"):
        for k in one[part]:
            assert torch.allclose(ddp[part][k], one[part][k], atol=1e-5, rtol=1e-4), (part, k)
    init = backbone("uvit").state_dict()
    assert any(not torch.equal(init[k], one["model"][k]) for k in init)  # training did something


# ---- latent cache ------------------------------------------------------------------------------------------------

class ToyEncoder(nn.Module):
    """f4c4 'autoencoder': a fixed conv, enough to check pixel mapping, batching and the scaling factor."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 4, stride=4)

    def encode(self, x):
        return self.conv(x)  # (B, 4, H/4, W/4)


def toy_images(n: int = 5) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_encode_latents_scales_and_batches():
    ae, imgs = ToyEncoder(), toy_images()
    with torch.no_grad():
        ref = ae.encode(imgs.float() / 127.5 - 1) * 0.25
    z = TD.encode_latents(ae, imgs, scaling_factor=0.25, batch_size=2)
    assert z.dtype == torch.float32 and z.shape == (5, 4, 4, 4)
    assert torch.allclose(z, ref, atol=1e-6)
    z_iter = TD.encode_latents(ae, [imgs[:3], imgs[3:]], scaling_factor=0.25, batch_size=2)
    assert torch.allclose(z_iter, ref, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        TD.encode_latents(ae, imgs.float(), scaling_factor=0.25)


def test_encode_latents_draws_one_seeded_posterior_sample_per_image():
    """A variational autoencoder (SD-VAE) with ``posterior_seed``: mean + std·ε, ε of image i seeded by (seed, i), so
    the latents do not depend on the batch size (the official latent script's ``latent_dist.sample()``); without a
    seed, the posterior mean; a deterministic encoder (no posterior) ignores the seed."""
    ae = models.build("sd-vae-f8c4-tiny").eval()
    imgs = torch.randint(0, 256, (6, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        mean, logvar = ae.encode_posterior(imgs.float() / 127.5 - 1)
    z = TD.encode_latents(ae, imgs, 0.5, batch_size=4, posterior_seed=3)
    assert torch.equal(z, TD.encode_latents(ae, imgs, 0.5, batch_size=4, posterior_seed=3))  # seeded
    same = dict(rtol=1e-5, atol=1e-6)  # the conv kernels' float order may change with the batch size
    torch.testing.assert_close(z, TD.encode_latents(ae, imgs, 0.5, batch_size=5, posterior_seed=3), **same)
    torch.testing.assert_close(z[2:4], TD.encode_latents(ae, [imgs[:2], imgs[2:4]], 0.5, posterior_seed=3)[2:4], **same)
    eps = (z / 0.5 - mean) / torch.exp(0.5 * logvar)  # the standard normal draw of each latent entry
    assert abs(eps.mean().item()) < 0.1 and abs(eps.std().item() - 1) < 0.1  # 6 x 4 x 4 x 4 = 384 entries
    assert not torch.allclose(z, TD.encode_latents(ae, imgs, 0.5, posterior_seed=4))  # another seed, another draw
    torch.testing.assert_close(TD.encode_latents(ae, imgs, 0.5), mean * 0.5, rtol=1e-5, atol=1e-6)
    toy = ToyEncoder()
    assert torch.equal(TD.encode_latents(toy, toy_images(), 0.25, posterior_seed=3),
                       TD.encode_latents(toy, toy_images(), 0.25))


def test_only_released_weights_give_posterior_samples():
    """Released SD-VAE weights (trained with their KL term) are sampled; an autoencoder trained here (no KL term: its
    variance head never trains) or an untrained one keeps its posterior mean."""
    from bench.configs import TrainAEConfig, TrainDiffusionConfig
    from bench.evals.diffusion_training import posterior_seed_of
    released = TrainDiffusionConfig("dit-xl", "sd-vae-f8", 512, patch_size=2, weights=True)
    trained = TrainDiffusionConfig("dit-xl-small", "sd-vae-f8c4-tiny", 128, patch_size=4,
                                   autoencoder_checkpoint=TrainAEConfig("sd-vae-f8c4-tiny"))
    assert posterior_seed_of(released, 2) == 2
    assert posterior_seed_of(trained, 2) is None
    assert posterior_seed_of(TrainDiffusionConfig("dit-xl-tiny", "sd-vae-f8c4-tiny", 64), 2) is None


def test_cached_latents_computed_once_refused_when_foreign_recomputed_when_damaged(tmp_path):
    ae, imgs, calls = ToyEncoder(), toy_images(), []

    def compute():
        calls.append(1)
        return TD.encode_latents(ae, imgs, scaling_factor=0.25)

    key = {"autoencoder": "toy@sha256:abc", "dataset": "toy-5", "resolution": 16, "scaling_factor": 0.25}
    first = TD.cached_latents(tmp_path, key, compute, log=quiet)
    path = TD.latent_cache_path(tmp_path, key)
    assert path.name.startswith("latents-") and len(path.stem) == len("latents-") + 16 and path.exists()
    again = TD.cached_latents(tmp_path, dict(reversed(key.items())), compute, log=quiet)  # key order is irrelevant
    assert len(calls) == 1 and torch.equal(first, again)

    other = {**key, "autoencoder": "toy@sha256:def"}  # a file made by another checkpoint under this name
    path.replace(TD.latent_cache_path(tmp_path, other))
    with pytest.raises(ValueError, match="another autoencoder checkpoint.*autoencoder.*delete it"):
        TD.cached_latents(tmp_path, other, compute, log=quiet)

    TD.cached_latents(tmp_path, key, compute, log=quiet)  # key's own file again (recomputed: it was moved)
    assert len(calls) == 2
    path.write_bytes(path.read_bytes()[:-40])
    messages = []
    recomputed = TD.cached_latents(tmp_path, key, compute, log=messages.append)
    assert len(calls) == 3 and torch.equal(recomputed, first) and "damaged" in messages[0]
    assert torch.equal(TD.cached_latents(tmp_path, key, compute, log=quiet), first) and len(calls) == 3


def test_concurrent_callers_of_one_latent_cache_entry_compute_it_once(tmp_path):
    """Two training runs of one autoencoder at once (--jobs 2): the second waits on the entry's lock, then reads."""
    import threading
    import time
    ae, imgs, calls, out = ToyEncoder(), toy_images(), [], {}

    def compute():
        calls.append(1)
        time.sleep(0.3)  # long enough that the other thread asks while this one computes
        return TD.encode_latents(ae, imgs, scaling_factor=0.25)

    key = {"autoencoder": "toy@sha256:abc", "dataset": "toy-5", "resolution": 16, "scaling_factor": 0.25}

    def load(name: str) -> None:
        out[name] = TD.cached_latents(tmp_path, key, compute, log=quiet)

    threads = [threading.Thread(target=load, args=(k,)) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and torch.equal(out["a"], out["b"])
