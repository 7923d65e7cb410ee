"""Text-to-image (Table 5): PixArt-α's caption mask, CFG against the null caption, training and sampling on caption
features (the synthetic folder of the smoke scale), one-line errors, Table 5's smoke rows and the unchanged run ids."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench import evals
from bench.artifacts import table5
from bench.configs import (
    SYNTHETIC,
    ConfigError,
    DataOption,
    GenerateConfig,
    TrainDiffusionConfig,
    fields_json,
    folder,
)
from bench.errors import Unavailable, UsageError
from bench.evals import diffusion_training as D
from bench.evals import generation as G
from bench.evals.inception import TinyFeatures
from bench.runner import Runner, collect
from bench.scales import SCALES
from bench.spec import Column, Row, RunRef, Spec
from models import diffusion
from models import train_diffusion as TD
from models.backbones import build_backbone
from models.pixart import Caption
from models.train_state import TRAIN_STATE
from tests.dummy_eval import DummyConfig, registration

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

S, E = 5, 16  # a tiny text condition (PixArt-α: 120 tokens x 4096)
TRAIN = TrainDiffusionConfig("pixart-alpha-tiny", "dc-ae-f8c4-tiny", 32, n_images=8, captions=SYNTHETIC)
GEN = GenerateConfig(TRAIN, n_samples=4, cfg_scale=4.5, steps=3, features="tiny", batch_size=4, n_reference=8,
                     n_png=2, prompts=SYNTHETIC)


def _pixart(seed: int = 0) -> torch.nn.Module:
    """Tiny PixArt in eval mode with every weight perturbed (its zero-initialised layers would hide the condition)."""
    torch.manual_seed(seed)
    model = build_backbone("pixart-alpha-tiny", 4, 4, 1, caption_channels=E, text_tokens=S).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _inputs(n: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(n, 4, 4, 4, generator=g), torch.randint(0, 1000, (n,), generator=g)
    mask = torch.arange(S)[None] < torch.tensor([[2], [S], [4]])[:n]                 # valid lengths 2, 5, 4
    return x, t, Caption(torch.randn(n, S, E, generator=g), mask)


def _ctx(run_dir: Path, scale: str = "smoke", options: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(scale=SCALES[scale], device="cpu", run_dir=run_dir, log=lambda m: None,
                           options={"data": None, "weights": None, **(options or {})}, input=None,
                           derived_input=lambda cfg: None)


# ---- the caption mask --------------------------------------------------------------------------------------------

@torch.no_grad()
def test_an_all_ones_mask_is_the_mask_free_forward_and_padding_is_masked_out():
    model = _pixart()
    x, t, cap = _inputs()
    ones = Caption(cap.features, torch.ones(3, S, dtype=torch.bool))
    assert torch.equal(model(x, t, ones), model(x, t, cap.features))                   # bit for bit
    assert torch.equal(model(x, t, cap), model(x, t, cap.features, cap.mask))          # Caption = (features, mask)
    masked = model(x, t, cap)
    assert not torch.allclose(masked, model(x, t, cap.features), atol=1e-4)            # the padding did attend
    for i, n_valid in enumerate(cap.mask.sum(1).tolist()):                             # masked = truncated caption
        alone = model(x[i:i + 1], t[i:i + 1], cap.features[i:i + 1, :n_valid])
        torch.testing.assert_close(masked[i:i + 1], alone, rtol=1e-5, atol=1e-6)


def test_the_mask_means_what_diffusers_encoder_attention_mask_means():
    diffusers = pytest.importorskip("diffusers")
    from models.checkpoints import convert_diffusers_pixart_to_ours
    torch.manual_seed(0)
    ref = diffusers.PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2, patch_size=1,
        sample_size=4, cross_attention_dim=32, caption_channels=E, interpolation_scale=1,
        use_additional_conditions=False, norm_type="ada_norm_single").eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.1)
    ours = build_backbone("pixart-alpha-tiny", 4, 4, 1, caption_channels=E, text_tokens=S).eval()
    ours.load_state_dict(convert_diffusers_pixart_to_ours(ref.state_dict()), strict=False)
    x, t, cap = _inputs()
    with torch.no_grad():
        expected = ref(x, encoder_hidden_states=cap.features, timestep=t, encoder_attention_mask=cap.mask.long(),
                       added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
        torch.testing.assert_close(ours(x, t, cap), expected, rtol=1e-4, atol=1e-5)


# ---- CFG against the null caption ----------------------------------------------------------------------------------

@torch.no_grad()
def test_cfg_scale_1_is_the_conditional_pixart_alone_and_guidance_uses_the_null_caption():
    model = _pixart()
    x, t, cap = _inputs()
    s1 = G.Sampling("iddpm", 3, "time-uniform", 1.0, -1, 0, 3)
    noise = G.initial_noise(range(3), (4, 4, 4), 0)
    g = torch.Generator().manual_seed(D.mix_seed(0, "iddpm", 0))
    plain = diffusion.DiTDiffusion(steps=3).sample(model, noise, cap, generator=g)
    assert torch.equal(G.sample_batch(model, s1, cap, noise, 0), plain)
    guided = G.sample_batch(model, dataclasses.replace(s1, cfg_scale=4.5), cap, noise, 0)
    assert not torch.allclose(guided, plain)
    null = Caption(model.y_embedder.null_caption.expand(3, S, E), cap.mask)           # same mask, null features
    c, u = model(x, t, cap), model(x, t, null)
    eps = diffusion.guided(model, 4.5, model.y_embedder.null_caption, eps_channels=4)(x, t, cap)
    torch.testing.assert_close(eps, torch.cat([u[:, :4] + 4.5 * (c[:, :4] - u[:, :4]), c[:, 4:]], 1),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="null caption"):
        diffusion.with_null(cap, 7)  # a class label is no null for a caption batch


# ---- training on caption features ----------------------------------------------------------------------------------

def test_train_diffusion_takes_captions_and_checks_them(tmp_path):
    model = _pixart()
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(6, 4, 4, 4, generator=g)
    caps = TD.CaptionTensors(torch.randn(6, S, E, generator=g), torch.arange(S)[None].repeat(6, 1) < 3)
    recipe = dataclasses.replace(TD.PIXART_RECIPE, steps=2, batch=3, ckpt_every=1)
    res = TD.train_diffusion(model, recipe, latents, None, ckpt_dir=tmp_path, captions=caps, log=lambda m: None)
    assert res.steps == 2 and np.isfinite(res.final_loss)
    assert torch.load(tmp_path / TRAIN_STATE, weights_only=False)["data"]["captions"] == 6
    for labels, c, match in ((torch.zeros(6, dtype=torch.long), caps, "not both"),
                             (None, TD.CaptionTensors(caps.features[:5], caps.mask[:5]), "5 captions for 6 latents"),
                             (None, TD.CaptionTensors(torch.randn(6, S, E + 1), caps.mask), "do not fit")):
        with pytest.raises(ValueError, match=match):
            TD.train_diffusion(_pixart(), recipe, latents, labels, ckpt_dir=None, captions=c, log=lambda m: None)
    with pytest.raises(ValueError, match="captions for a 'pixart-\\*'"):
        TD.train_diffusion(_pixart(), recipe, latents, None, ckpt_dir=None, log=lambda m: None)
    assert (TD.RECIPES["pixart"].formulation, TD.PIXART_RECIPE.lr, TD.PIXART_RECIPE.weight_decay) == ("dit", 2e-5, 0.03)


@pytest.fixture(scope="module")
def pixart_runs(tmp_path_factory):
    """One smoke train-diffusion run of a tiny PixArt on the synthetic caption folder (2 steps) and its sampling."""
    runner = Runner(tmp_path_factory.mktemp("runs"))
    return runner, runner.ensure(RunRef(TRAIN), "smoke"), runner.ensure(RunRef(GEN), "smoke")


def test_a_pixart_trains_and_samples_on_the_synthetic_caption_folder(pixart_runs):
    runner, train, gen = pixart_runs
    m = train.metrics
    assert m["steps"] == 2 and np.isfinite(m["loss_final"]) and m["_num_classes"] == 0
    assert "8 .npz of 120x4096" in m["_conditioning"] and "caption dropout 0.1" in m["_conditioning"]
    assert "PIXART_RECIPE" in m["_recipe_note"] and '"lr": 2e-05' in m["_recipe"]
    g = gen.metrics
    assert np.isfinite(g["gfid"]) and (g["_sampler"], g["_cfg_scale"], g["_n_samples"]) == ("iddpm", 4.5, 4)
    assert g["clip_score"].startswith("unavailable (") and "prompt texts" in g["clip_score"]
    assert "prompt i of synthetic" in g["_labels"] and g["_from"] == train.run_id
    assert sorted(p.name for p in (gen.dir / "samples").glob("*.png")) == ["00000-prompt0.png", "00001-prompt1.png"]
    assert len(list((runner.runs_dir / "_cache").glob("captions-synthetic-*/*.npz"))) == 8  # prompts reuse them


# ---- one-line errors, unavailable rows ---------------------------------------------------------------------------

def test_text_and_class_conditions_are_not_mixed_up(tmp_path):
    for cfg, match in ((dataclasses.replace(TRAIN, captions=None), "text-to-image: set captions"),
                       (dataclasses.replace(TRAIN, backbone="uvit-s-tiny"), "captions apply to text-to-image"),
                       (dataclasses.replace(TRAIN, conditional=False), "text-conditional")):
        with pytest.raises(UsageError, match=match) as e:
            D.run_train(cfg, _ctx(tmp_path))
        assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="set prompts"):
        G.run_generate(dataclasses.replace(GEN, prompts=None), _ctx(tmp_path))
    with pytest.raises(UsageError, match="prompts apply to a text-to-image model"):
        G.run_generate(dataclasses.replace(GEN, model=dataclasses.replace(TRAIN, backbone="uvit-s-tiny",
                                                                          captions=None)), _ctx(tmp_path))
    with pytest.raises(ConfigError, match="released models are class-conditional"):
        GenerateConfig(released="dc-ae-f32c32-in-1.0-uvit-s-in-512px", prompts=SYNTHETIC)


def test_at_paper_scale_a_missing_folder_makes_the_run_unavailable_naming_it(tmp_path):
    paper = table5.train_run(table5.T2I[1]).resolve("paper")
    with pytest.raises(Unavailable, match=r"no mjhq-30k folder given .*--data mjhq-30k=PATH"):
        D.run_train(paper, _ctx(tmp_path, "paper"))
    (tmp_path / "D" / "mjhq-30k").mkdir(parents=True)
    with pytest.raises(Unavailable, match=r"no mjhq-30k-t5 folder at .*D/mjhq-30k-t5"):
        D.run_train(paper, _ctx(tmp_path, "paper", {"data": DataOption.parse([str(tmp_path / "D")])}))
    sample = table5.sample_run(table5.T2I[1]).resolve("paper")  # before the GPU check, so the cell says it
    with pytest.raises(Unavailable, match="no mjhq-30k folder given"):
        G.run_generate(sample, _ctx(tmp_path, "paper"))


# ---- Table 5 -----------------------------------------------------------------------------------------------------

def test_table5_smoke_scale_produces_its_fid_rows(tmp_path, monkeypatch):
    """The FID rows of the real spec at smoke scale (the tiny feature net stands in for the Inception to keep it
    fast; tests/test_specs.py runs the whole artefact through the CLI); small scale says why it does not run."""
    monkeypatch.setattr(G, "feature_network", lambda name, explicit=None, device="cpu": TinyFeatures().to(device))
    spec = table5.SPECS[""]
    fid_rows = dataclasses.replace(spec, rows=tuple(r for r in spec.rows if "· " in r.label))
    built = collect(fid_rows, "", "smoke", Runner(tmp_path))
    cells = {(r["row"], r["metric"]): r for r in built.records}
    for t in table5.T2I:
        fid, clip = cells[(f"{t.entry.label} · FID", "fid")], cells[(f"{t.entry.label} · FID", "clip_score")]
        assert fid["status"] == "measured" and np.isfinite(float(fid["ours"])) and fid["paper"]
        assert clip["status"].startswith("unavailable (") and clip["paper"] and not clip["ours"]
        assert cells[(t.sample_label, "gfid")]["ours"] == fid["ours"]
    small = collect(fid_rows, "", "small", Runner(tmp_path, render_only=True)).records
    assert {r["status"].split(" (")[0] for r in small if "FID" in r["row"] and r["metric"] == "fid"} == {
        "not run at small scale"}
    assert all("no captions offline" in r.note for r in fid_rows.rows if r.label.endswith("· FID"))


def test_a_derived_row_says_why_its_source_row_has_no_result(tmp_path, monkeypatch):
    monkeypatch.setitem(evals.EVALS, "dummy", registration(1))
    paper = table5.ENTRIES[0].paper  # a row with a paper number shows its cell even when ours is missing
    spec = Spec(id="table5", title="t", caption="", columns=(Column("fid", "FID"),),
                scales={"smoke": "", "small": "", "paper": ""},
                rows=(Row("src", run=RunRef(DummyConfig(x=1), at={"smoke": None})),
                      Row("gone", run=RunRef(DummyConfig(x=1, unavailable=True))),
                      Row("d1", paper=paper, derive=lambda m: {"fid": m["src"]["score"]}),
                      Row("d2", paper=paper, derive=lambda m: {"fid": m["gone"]["score"]}),
                      Row("ok", run=RunRef(DummyConfig(x=2))),
                      Row("d3", paper=paper, derive=lambda m: {"fid": m["ok"]["no such metric"]})))
    status = {r["row"]: r["status"] for r in collect(spec, "", "smoke", Runner(tmp_path)).records}
    assert status["d1"] == "not run at smoke scale (its source row 'src')"
    assert status["d2"] == "unavailable (no such weights here) (its source row 'gone')"
    assert status["d3"] == "not derivable (KeyError: 'no such metric')"  # a source that ran: a real error


def test_captions_and_prompts_are_fields_of_the_run_id():
    """captions / prompts are stored (and hashed) like every field: None for a class-conditional model."""
    plain = TrainDiffusionConfig("uvit-s-tiny", "dc-ae-f8c4-tiny", 32)
    assert fields_json(plain)["captions"] is None and fields_json(GenerateConfig(plain))["prompts"] is None
    assert fields_json(TRAIN)["captions"] == {"kind": "synthetic", "name": "", "digest": ""}
    assert fields_json(GEN)["prompts"] == {"kind": "synthetic", "name": "", "digest": ""}
    assert fields_json(dataclasses.replace(TRAIN, captions=folder("mjhq-30k-t5")))["captions"]["name"] == "mjhq-30k-t5"
