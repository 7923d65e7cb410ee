"""Evals train-diffusion and generate on tiny backbones, the untrained dc-ae-f8c4-tiny and the tiny feature net:
training runs and reuse, the generation protocol's metrics, CFG, sharding, resume, and one-line errors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

import models
from bench.cli_tools import fid_reference_option
from bench.configs import (
    ClaimConfig,
    ConfigError,
    GenerateConfig,
    ReconConfig,
    TrainAEConfig,
    TrainDiffusionConfig,
    fields_json,
)
from bench.errors import Unavailable, UsageError
from bench.evals import diffusion_training as D
from bench.evals import generation as G
from bench.evals import metrics as M
from bench.evals.inception import TinyFeatures
from bench.provenance import file_digest
from bench.runner import Runner
from bench.scales import SCALES
from bench.spec import RunRef
from models import diffusion
from tests.test_released_diffusion import RELEASED_DIFFUSION, UVIT_NAME, write_hub

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

AE = "dc-ae-f8c4-tiny"  # f8 c4: a 32 px image is a 4x4x4 latent, 16 tokens at p1
TRAIN = TrainDiffusionConfig("uvit-s-tiny", AE, 32, n_images=16)
GEN = GenerateConfig(TRAIN, n_samples=12, cfg_scale=1.5, steps=3, features="tiny", batch_size=4, n_reference=16,
                     n_png=3)


def _ctx(run_dir: Path, scale: str = "smoke", options: dict | None = None, ensure=None) -> SimpleNamespace:
    logs: list[str] = []
    return SimpleNamespace(scale=SCALES[scale], device="cpu", run_dir=run_dir, log=logs.append,
                           options={"data": None, "weights": None, **(options or {})}, input=ensure,
                           derived_input=lambda cfg: None, logs=logs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke train-diffusion run (2 steps) and its runner, shared by the generate tests."""
    runner = Runner(tmp_path_factory.mktemp("runs"))
    return runner, runner.ensure(RunRef(TRAIN), "smoke")


def _reference_file(runner: Runner, gen: GenerateConfig, kind: str = "images") -> Path:
    """The reference statistics the fid-ref-gen run of ``gen`` built (the runner computed it before ``gen``)."""
    return runner.runs_dir / runner.run_id_of(gen.reference_config(kind), "smoke")[0] / "reference.npz"


def _tiny(family: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    name = {"uvit": "uvit-s-tiny", "dit": "dit-s-tiny"}[family]
    backbone = models.build_backbone(name, 4, 4, 1, num_classes=8).eval()
    if family == "dit":  # adaLN-Zero starts as the identity with a zero head: perturb so samples depend on inputs
        with torch.no_grad():
            for p in backbone.parameters():
                p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(0)
    return backbone, models.build(AE).eval()


def _sampling(family: str, cfg_scale: float = 1.5, batch_size: int = 4) -> G.Sampling:
    sampler, steps = ("dpm-solver++", 3) if family == "uvit" else ("iddpm", 4)
    return G.Sampling(sampler, steps, "time-uniform", cfg_scale, 8, 0, batch_size)


def _generate(tmp: Path, family: str, **kw) -> G.GenResult:
    backbone, ae = _tiny(family)
    labels = G.draw_labels(10, 8, 0, True)
    return G.generate(backbone, ae, 1.0, _sampling(family), labels, tmp, feature_net=TinyFeatures(),
                      n_png=10, log=lambda m: None, **kw)


def _pngs(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((d / "samples").glob("*.png"))}


# ---- train-diffusion --------------------------------------------------------------------------------------------

def test_train_smoke_run_writes_checkpoint_is_reused_and_caches_latents_once(tmp_path, monkeypatch):
    encodes = []
    real = D.encode_latents
    monkeypatch.setattr(D, "encode_latents", lambda *a, **k: encodes.append(1) or real(*a, **k))
    runner = Runner(tmp_path)
    first = runner.ensure(RunRef(TRAIN), "smoke")
    m = first.metrics
    assert m["steps"] == 2 and np.isfinite(m["loss_final"]) and m["params"] > 0 and m["tokens"] == 16
    assert m["_num_classes"] == 8 and m["_final_weights"] == "ema" and m["_protocol"] == "dcae-train-diffusion-v1"
    assert {"steps_per_s", "s_per_step", "_recipe", "_outputs"} <= set(m)
    assert (first.dir / "ckpt" / "model.safetensors").is_file() and (first.dir / "ckpt" / "train_state.pt").is_file()
    assert runner.ensure(RunRef(TRAIN), "smoke").reused
    other = runner.ensure(RunRef(dataclasses.replace(TRAIN, seed=1)), "smoke")  # another run, the same latents
    assert not other.reused and other.run_id != first.run_id
    assert len(encodes) == 1 and len(list((tmp_path / "_cache").glob("latents-*.safetensors"))) == 1


def test_train_resumes_to_the_same_weights_and_quarantines_a_damaged_state(tmp_path):
    full = D.run_train(dataclasses.replace(TRAIN, steps=4), _ctx(tmp_path / "full"))
    D.run_train(dataclasses.replace(TRAIN, steps=2), _ctx(tmp_path / "cut"))  # "killed" after 2 steps
    resumed = D.run_train(dataclasses.replace(TRAIN, steps=4), _ctx(tmp_path / "cut"))
    assert full["steps"] == resumed["steps"] == 4
    a, b = (load_file(tmp_path / d / "ckpt" / "model.safetensors") for d in ("full", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    (tmp_path / "cut" / "ckpt" / "train_state.pt").write_bytes(b"not a zip")  # a killed copy
    again = D.run_train(dataclasses.replace(TRAIN, steps=4), _ctx(tmp_path / "cut"))
    assert again["steps"] == 4 and (tmp_path / "cut" / "ckpt" / "train_state.pt.damaged-1").exists()


# ---- generate ---------------------------------------------------------------------------------------------------

def test_generate_smoke_metrics_and_records(trained):
    runner, train = trained
    res = runner.ensure(RunRef(GEN), "smoke")
    m = res.metrics
    for k in ("gfid", "kid", "images_per_s", "outside_backbone_share"):
        assert isinstance(m[k], float) and np.isfinite(m[k]), k
    assert m["inception_score"].startswith("unavailable (")  # the tiny net has no classifier
    assert (m["_sampler"], m["_steps"], m["_cfg_scale"], m["_n_samples"], m["_ema"]) == ("dpm-solver++", 3, 1.5,
                                                                                        12, "ema")
    assert m["_reference_id"].startswith("fid-ref-gen-") and m["_from"] == train.run_id and m["_how_gfid"]
    assert m["_protocol"] == "dcae-generate-v4" and len(list((res.dir / "samples").glob("*.png"))) == 3
    ref = runner.ensure(RunRef(GEN.reference_config("images")), "smoke")  # computed before it, reused here
    assert ref.reused and ref.metrics["ref_id"] == m["_reference_id"] and _reference_file(runner, GEN).is_file()
    assert not (runner.runs_dir / "_cache" / f"{m['_reference_id']}.npz").exists()  # not built by the run itself
    assert runner.ensure(RunRef(GEN), "smoke").reused


def test_a_handed_reference_equals_one_the_run_builds_itself(trained, monkeypatch):
    """The fid-ref-gen run's statistics give the generate run the scores, bit for bit, that it gets building them
    itself (as under torchrun), and the same reference id."""
    runner, _ = trained
    handed = runner.ensure(RunRef(GEN), "smoke").metrics
    monkeypatch.setattr(Runner, "_derived", lambda self, cfg, scale: {})
    alone = runner.ensure(RunRef(dataclasses.replace(GEN, n_png=2)), "smoke").metrics  # same samples, another id
    assert alone["_reference_id"] == handed["_reference_id"]
    assert (alone["gfid"], alone["kid"]) == (handed["gfid"], handed["kid"])
    assert (runner.runs_dir / "_cache" / f"{alone['_reference_id']}.npz").is_file()


def test_a_cached_reference_file_is_a_valid_fid_reference(trained, tmp_path):
    runner, _ = trained
    m = runner.ensure(RunRef(GEN), "smoke").metrics
    ref = _reference_file(runner, GEN)
    options = {"fid_reference": str(ref), "fid_reference_digest": file_digest(ref)}  # what --fid-reference sets
    user = Runner(runner.runs_dir, options=options).ensure(RunRef(GEN), "smoke")
    assert user.metrics["gfid"] == m["gfid"] and user.metrics["_reference_id"] == f"user-{file_digest(ref)}"
    assert user.run_id != runner.ensure(RunRef(GEN), "smoke").run_id  # the reference is part of the run id
    other = Runner(runner.runs_dir, options={**options, "fid_reference_digest": "0" * 16})
    with pytest.raises(UsageError, match="pass that file with --fid-reference"):  # a run of another reference
        other.ensure(RunRef(GEN), "smoke")


def test_fid_reference_flag_checks_the_file(tmp_path):
    with pytest.raises(UsageError, match="not a readable file") as e:
        fid_reference_option(str(tmp_path / "missing.npz"))
    assert "\n" not in str(e.value)
    (tmp_path / "r.npz").write_bytes(b"x")
    assert fid_reference_option(str(tmp_path / "r.npz"))["fid_reference_digest"] == file_digest(tmp_path / "r.npz")
    # the reference's digest is a field of the run's config, so of its id
    assert fields_json(GEN)["user_reference"] is None
    assert fields_json(dataclasses.replace(GEN, user_reference="ab" * 8))["user_reference"] == "ab" * 8


def test_a_reference_of_another_resolution_or_without_records_is_refused(trained, tmp_path):
    runner, _ = trained
    runner.ensure(RunRef(GEN), "smoke")  # and, before it, its reference run
    d = dict(np.load(_reference_file(runner, GEN)))
    np.savez(tmp_path / "r64.npz", **{**d, "resolution": np.array(64)})
    np.savez(tmp_path / "bare.npz", mu=d["mu"], sigma=d["sigma"])  # ADM-style: nothing to check it against
    for name, match in (("r64.npz", "made at 64 px"), ("bare.npz", "records no")):
        with pytest.raises(UsageError, match=match) as e:
            G.user_reference(tmp_path / name, 32, TinyFeatures())
        assert "\n" not in str(e.value) and "fid-ref-gen" in str(e.value)


@pytest.mark.parametrize("family", ["uvit", "dit"])
def test_cfg_scale_1_is_the_conditional_model_alone(family):
    backbone, _ = _tiny(family)
    y, noise = torch.tensor([1, 5, 2]), G.initial_noise(range(3), (4, 4, 4), 0)
    z1 = G.sample_batch(backbone, _sampling(family, 1.0), y, noise, 0)
    if family == "uvit":
        plain = diffusion.UViTDiffusion(nfe=3).sample(backbone, noise, y)
    else:
        g = torch.Generator().manual_seed(D.mix_seed(0, "iddpm", 0))
        plain = diffusion.DiTDiffusion(steps=4).sample(backbone, noise, y, generator=g)
    assert torch.equal(z1, plain)


def _official_cfg(backbone: nn.Module, family: str, scale: float, null: int, channels: int):
    """CFG as the official code writes it (generation.md §2-3): U-ViT two forwards, ε_c + (s − 1)(ε_c − ε_u);
    DiT one batched forward (``forward_with_cfg``) guiding the first C (= all latent) channels, keeping the
    conditional half's variance channels."""
    def uvit(x, t, y):
        cond, uncond = backbone(x, t, y), backbone(x, t, torch.full_like(y, null))
        return cond + (scale - 1) * (cond - uncond)

    def dit(x, t, y):
        cond, uncond = backbone(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)])).chunk(2)
        eps = uncond[:, :channels] + scale * (cond[:, :channels] - uncond[:, :channels])
        return torch.cat([eps, cond[:, channels:]], dim=1)
    return uvit if family == "uvit" else dit


@pytest.mark.parametrize("family", ["uvit", "dit"])
def test_cfg_samples_equal_the_official_guidance(family):
    """``sample_batch`` at CFG 1.5 = the sampler run on the official guided ε (DiT: its variance channels are the
    conditional half's, never guided)."""
    backbone, _ = _tiny(family)
    y, noise = torch.tensor([1, 5, 2]), G.initial_noise(range(3), (4, 4, 4), 0)
    guided = G.sample_batch(backbone, _sampling(family, 1.5), y, noise, 0)
    fn = _official_cfg(backbone, family, 1.5, null=8, channels=4)
    with torch.no_grad():
        if family == "uvit":
            official = diffusion.UViTDiffusion(nfe=3).sample(fn, noise, y)
        else:
            g = torch.Generator().manual_seed(D.mix_seed(0, "iddpm", 0))
            official = diffusion.DiTDiffusion(steps=4).sample(fn, noise, y, generator=g)
    torch.testing.assert_close(guided, official, rtol=1e-5, atol=1e-6)


def test_decode_divides_the_stored_latents_by_the_scaling_factor():
    """Latents are stored × s (encode_latents) and decoded ÷ s (generation.md §1): with an identity autoencoder and
    s = 0.3189 the round trip returns the images exactly."""
    class Identity(nn.Module):
        def encode(self, x):
            return x

        def decode(self, z):
            return z

    u = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    z = D.encode_latents(Identity(), u, 0.3189)
    torch.testing.assert_close(z, (u.float() / 127.5 - 1) * 0.3189)
    assert torch.equal(G.decode_uint8(Identity(), z, 0.3189), u)


@pytest.mark.parametrize("family", ["uvit", "dit"])
def test_sharded_generation_equals_one_process(tmp_path, family, monkeypatch):
    one = _generate(tmp_path / "one", family, n_shards=1)
    three = _generate(tmp_path / "three", family, n_shards=3)
    assert three.metrics["_n_shards"] == 3 and one.stats.n == three.stats.n == 10
    assert np.array_equal(one.stats.all_features(), three.stats.all_features())
    assert _pngs(tmp_path / "one") == _pngs(tmp_path / "three") and len(_pngs(tmp_path / "one")) == 10
    # Two torchrun ranks meeting through the shard files: rank 1 computes its block, then rank 0 its own and reduces.
    monkeypatch.setattr(G.distributed, "world_size", lambda: 2)
    monkeypatch.setattr(G.distributed, "barrier", lambda: None)
    monkeypatch.setattr(G.distributed, "rank", lambda: 1)
    assert _generate(tmp_path / "ranks", family, n_shards=3).metrics == {}
    monkeypatch.setattr(G.distributed, "rank", lambda: 0)
    ranks = _generate(tmp_path / "ranks", family, n_shards=3)
    assert np.array_equal(one.stats.all_features(), ranks.stats.all_features())


def test_an_interrupted_generation_resumes_to_the_uninterrupted_result(tmp_path):
    full = _generate(tmp_path / "full", "uvit", n_shards=3)
    cut = _generate(tmp_path / "cut", "uvit", n_shards=3, max_shards=1)
    assert cut.metrics == {"_complete": False, "_shards_done": 1, "_shards": 3}
    done = _generate(tmp_path / "cut", "uvit", n_shards=3)
    assert done.metrics["_complete"] and np.array_equal(full.stats.all_features(), done.stats.all_features())
    assert not list((tmp_path / "cut" / "shards").glob("*.npz"))  # replaced by shards/index.json
    assert (tmp_path / "cut" / "shards" / "index.json").is_file()


def test_labels_are_a_seeded_randint_and_noise_is_per_sample():
    assert torch.equal(G.draw_labels(6, 8, 3, True), torch.randint(0, 8, (6,), generator=torch.Generator()
                                                                    .manual_seed(3)))
    assert torch.equal(G.draw_labels(4, 8, 0, False), torch.full((4,), 8))  # unconditional: the null class
    assert torch.equal(G.initial_noise(range(2, 4), (4, 2, 2), 0), G.initial_noise(range(5), (4, 2, 2), 0)[2:4])


def test_inception_score_aggregation_equals_torch_fidelity():
    """Given the logits, the sharded per-split sums give torch-fidelity's ``isc`` (RandomState(2020), 10 splits)."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    g = torch.Generator().manual_seed(0)
    feats, weight = torch.randn(37, 8, generator=g), torch.randn(20, 8, generator=g).double()
    logits = feats.double() @ weight.T
    acc = {"is_sum_p": np.zeros((G.IS_SPLITS, 20)), "is_sum_plogp": np.zeros(G.IS_SPLITS),
           "is_n": np.zeros(G.IS_SPLITS)}
    split = G.is_split_of(37)
    for lo, hi in ((0, 11), (11, 37)):  # two "shards"
        G._add_is(acc, logits[lo:hi], split[lo:hi])
    ours = G.inception_score(acc["is_sum_p"], acc["is_sum_plogp"], acc["is_n"])
    theirs = isc_features_to_metric(logits)
    assert ours == pytest.approx((theirs["inception_score_mean"], theirs["inception_score_std"]), rel=1e-9)


def _with_random_classifier(tmp_path: Path) -> Path:
    """The FID Inception weights file with a seeded random 1008-way classifier (the converted fid-helper file, the
    one usually here, carries a zero one), or a skip naming where the weights were looked for."""
    from bench.evals.inception import locate_weights
    try:
        w = locate_weights()
    except Unavailable as e:
        pytest.skip(f"the Inception Score test needs the FID Inception weights offline: {e}")
    sd = torch.load(w.path, map_location="cpu", weights_only=False)
    sd["fc.weight"] = 0.05 * torch.randn(1008, 2048, generator=torch.Generator().manual_seed(0))
    torch.save(sd, tmp_path / "inception-random-classifier.pth")
    return tmp_path / "inception-random-classifier.pth"


def test_inception_score_logits_are_torch_fidelity_s(tmp_path):
    """``is_logits`` = torch-fidelity's own ``inception-v3-compat`` ``logits_unbiased`` on the same uint8 images (its
    TF1-compatible resize of the raw values, (x − 128)/128; the official IS path), not the FID path's features."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from bench.evals.inception import FIDInception, InceptionWeights
    path = _with_random_classifier(tmp_path)
    ours = FIDInception(InceptionWeights(path, "explicit"))
    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased"],
                                         feature_extractor_weights_path=str(path))
    u = torch.randint(0, 256, (3, 3, 48, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    weight, why = G.classifier_of(ours)
    assert why is None
    expected = theirs(u)[0].double()                                                  # (3, 1008)
    assert expected.std() > 0.1  # a classifier whose logits depend on the image
    torch.testing.assert_close(G.is_logits(ours, u, weight), expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


class _ClassifierFeatures(nn.Module):
    """A cheap stand-in with the FID Inception's interface: ``forward`` (the FID path) and ``features_normalized``
    (the layers after the input path) differ, and ``net.fc`` is a nonzero classifier."""

    dim = 16
    sha256 = "classifier-features-test"

    def __init__(self):
        super().__init__()
        self.fid = TinyFeatures()
        self.net = nn.Module()
        self.net.fc = nn.Linear(16, 12)
        with torch.no_grad():
            self.net.fc.weight.copy_(torch.randn(12, 16, generator=torch.Generator().manual_seed(0)) * 3)

    def forward(self, u):
        return self.fid(u)

    def features_normalized(self, x):
        return torch.nn.functional.relu(self.fid.conv(x)).mean((2, 3)) * 5 + x.mean((1, 2, 3))[:, None]


def test_generation_scores_the_inception_score_on_the_is_logits_of_its_samples(tmp_path):
    """``generate`` accumulates the IS from ``is_logits`` of the decoded uint8 samples (the PNGs it keeps), never
    from the FID features."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    backbone, ae = _tiny("uvit")
    net = _ClassifierFeatures()
    res = G.generate(backbone, ae, 1.0, _sampling("uvit"), G.draw_labels(20, 8, 0, True), tmp_path,
                     feature_net=net, n_png=20, log=lambda m: None)
    pngs = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1)
                        for p in sorted((tmp_path / "samples").glob("*.png"))])               # (20, 3, 32, 32)
    theirs = isc_features_to_metric(G.is_logits(net, pngs, net.net.fc.weight.double()))
    ours = G.inception_score(*res.is_stats)
    assert theirs["inception_score_mean"] > 1.05  # the stand-in's classes differ between samples
    assert ours == pytest.approx((theirs["inception_score_mean"], theirs["inception_score_std"]), rel=1e-9)


# ---- one-line errors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg, match", [
    (dataclasses.replace(TRAIN, patch_size=3), "patch size 3 does not divide the latent side 4"),
    (dataclasses.replace(TRAIN, autoencoder_checkpoint=TrainAEConfig("dc-ae-f32c32-tiny")), "latent channels"),
    (dataclasses.replace(TRAIN, resolution=36), "not divisible"),
    (dataclasses.replace(TRAIN, backbone="pixart-alpha-tiny"), "text-to-image"),
])
def test_bad_train_configs_fail_in_one_line(tmp_path, cfg, match):
    with pytest.raises(UsageError, match=match) as e:
        D.run_train(cfg, _ctx(tmp_path))
    assert "\n" not in str(e.value)


def test_bad_generate_configs_fail_in_one_line(tmp_path):
    for changes, match in (({"sampler": "ddim"}, "sampler"), ({"cfg_scale": 0.5}, "cfg_scale = 0.5 < 1"),
                           ({"released": "x"}, "exactly one"), ({"sampler": "iddpm", "grid": "logsnr"}, "grid")):
        with pytest.raises(ConfigError, match=match):
            dataclasses.replace(GEN, **changes)
    with pytest.raises(UsageError, match="does not fit a uvit model"):
        G.run_generate(dataclasses.replace(GEN, sampler="iddpm"), _ctx(tmp_path))
    uncond = dataclasses.replace(GEN, model=dataclasses.replace(TRAIN, conditional=False))
    with pytest.raises(UsageError, match="class-conditional"):
        G.run_generate(uncond, _ctx(tmp_path))
    released = GenerateConfig(released="dc-ae-f32c32-in-1.0-uvit-s-in-512px")
    with pytest.raises(UsageError, match="--weights FOLDER"):
        G.run_generate(released, _ctx(tmp_path, "smoke"))
    with pytest.raises(Unavailable, match="no released checkpoint for dc-ae-f32c32-in-1.0-uvit-s-in-512px under"):
        G.run_generate(released, _ctx(tmp_path, "smoke", {"weights": str(tmp_path)}))
    with pytest.raises(UsageError, match="close names"):
        G.run_generate(GenerateConfig(released="dc-ae-f32c32-in-1.0-uvit-s-in-512"), _ctx(tmp_path, "smoke"))
    with pytest.raises(Unavailable, match="GPU"):
        Runner(tmp_path / "refused", device="cpu").ensure(RunRef(TRAIN), "paper")
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    with pytest.raises(UsageError, match="smoke check only"):
        D.run_train(TRAIN, _ctx(tmp_path, "small"))


def test_configs_resolve_per_scale_with_the_training_run_in_the_generate_id(tmp_path):
    ref = RunRef(GenerateConfig(TrainDiffusionConfig("uvit-s", "dc-ae-f32c32-in-1.0", 512, weights=True),
                                cfg_scale=1.5),
                 at={"smoke": {"model": TRAIN, "n_samples": 12, "features": "tiny"}})
    runner = Runner(tmp_path)
    rid, stored = runner.run_id_for(ref, "smoke")
    assert rid.startswith("uvit-s-tiny-dc-ae-f8c4-tiny__generate__smoke__")
    assert stored["_depends_on"] == [runner.run_id_of(TRAIN, "smoke")[0]]
    assert runner.run_id_for(ref, "paper")[0].startswith("uvit-s-dc-ae-f32c32-in-1.0__generate__paper__")


def test_claim_on_generate_arms_resamples_the_kept_features(trained):
    """Generate runs keep their samples' features (features.npz) and, with also_vs_reconstructions, a second score
    against the autoencoder's reconstructions, each with its image jackknife (jackknife.json); a claim on two
    generate arms is decided from the runs' values and jackknives."""
    runner, _ = trained
    guided = dataclasses.replace(GEN, also_vs_reconstructions=True)
    plain = dataclasses.replace(guided, cfg_scale=1.0)
    runs = {g: runner.ensure(RunRef(g), "smoke") for g in (guided, plain)}
    for res in runs.values():
        m = res.metrics
        assert isinstance(m["kid_vs_recon"], float) and m["_reference_recon_id"] != m["_reference_id"]
        with np.load(res.dir / "features.npz") as z:
            assert z["features"].shape[0] == 12 and list(z["image_ids"]) == list(range(12))
            assert z["labels"].tolist() == G.draw_labels(12, 8, 0, True).tolist()  # 8 source photos: 8 classes
    claim = ClaimConfig("guided samples are closer to the reconstructions", "kid_vs_recon", True, (guided,),
                        (plain,))
    m = runner.ensure(RunRef(claim), "smoke").metrics
    assert m["verdict"] == "inconclusive" and m["n_images"] == 12  # one seed per arm: no seed spread
    assert m["image_groups"] == "7 reference photos, 12 samples"
    jk = json.loads((runs[guided].dir / "jackknife.json").read_text())
    assert len(jk["samples"]["kid_vs_recon"]) == 12 and len(jk["reference photos"]["gfid"]) == 7
    with np.load(runs[guided].dir / "features.npz") as z:
        feats = z["features"].astype(np.float64)
    recon_ref = runner.ensure(RunRef(guided.reference_config("reconstructions")), "smoke")
    assert recon_ref.reused and recon_ref.metrics["ref_id"] == runs[guided].metrics["_reference_recon_id"]
    ref = M.FeatureStats.from_arrays(dict(np.load(_reference_file(runner, guided, "reconstructions"))))
    assert m["mean_a"] == pytest.approx(M.FullSetKID()(feats, ref.all_features()), rel=1e-9)
    assert np.isnan(m["ci_lo"]) and np.isnan(m["ci_hi"]) and len(m["_from"]) == 2  # no seed spread: no interval


def test_claim_config_refuses_mixed_arms_and_foreign_metrics():
    recon = ReconConfig("dc-ae-f8c4-tiny", 32)
    with pytest.raises(ConfigError, match="one eval"):
        ClaimConfig("x", "kid", True, (GEN,), (recon,))
    with pytest.raises(ConfigError, match="not measured"):
        ClaimConfig("x", "psnr", False, (GEN,), (GEN,))
    with pytest.raises(ConfigError, match="also_vs_reconstructions"):
        dataclasses.replace(GEN, also_vs_reconstructions=True, reference_kind="reconstructions")


def test_a_released_hub_file_is_sampled_by_its_name(tmp_path, monkeypatch):
    """A released model in the hub layout (diffusion_model. + autoencoder. keys), found under --weights by its
    name, sampled and scored through run_generate; its numbers record the released name and the file layout."""
    entry = dataclasses.replace(RELEASED_DIFFUSION[UVIT_NAME], name="tiny-released-uvit", backbone="uvit-s-tiny",
                                autoencoder="dc-ae-f32c32-tiny", latent_size=2, resolution=64)
    monkeypatch.setitem(RELEASED_DIFFUSION, entry.name, entry)
    torch.manual_seed(0)
    backbone = models.backbones.build_backbone("uvit-s-tiny", 32, 2, 1)
    write_hub(tmp_path / "w" / entry.name / "model.safetensors", backbone.eval(),
              autoencoder=models.build("dc-ae-f32c32-tiny").eval(), scaling_factor=1.0)
    cfg = GenerateConfig(released=entry.name, n_samples=4, cfg_scale=1.5, steps=2, features="tiny", batch_size=4,
                         n_reference=8, n_png=0)
    m = G.run_generate(cfg, _ctx(tmp_path / "run", "smoke", {"weights": str(tmp_path / "w")}))
    assert np.isfinite(m["gfid"]) and m["_n_samples"] == 4 and m["_cfg_scale"] == 1.5
    assert m["_from"] == "tiny-released-uvit (model.safetensors)" and m["_ema"] == "ema (hub file)"
    assert m["_autoencoder_weights"].startswith("released:tiny-released-uvit")


class _SlowImages:
    """A fake reference set whose every image read takes a while and is counted (across threads)."""

    identity, description = "slow-test-images", "4 slow test images"

    def __init__(self) -> None:
        self.reads = 0

    def __len__(self) -> int:
        return 4

    def get_uint8(self, i: int) -> torch.Tensor:
        import time
        self.reads += 1
        time.sleep(0.05)
        return torch.full((3, 16, 16), 10 * i, dtype=torch.uint8)


def test_concurrent_builds_of_one_reference_compute_it_once(tmp_path):
    """Two runs that need the same reference at once (--jobs 2): the second waits on the lock, then reads the file."""
    import threading
    images, out = _SlowImages(), {}

    def build(name: str) -> None:
        out[name] = G.reference_stats(images, TinyFeatures(), kind="images", autoencoder=None, ae_id="",
                                      resolution=16, cache_dir=tmp_path, batch_size=2, log=lambda _: None)

    threads = [threading.Thread(target=build, args=(k,)) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert images.reads == len(images)  # without the lock both threads miss the cache and read every image
    (sa, ida), (sb, idb) = out["a"], out["b"]
    assert ida == idb and np.allclose(sa.mean_cov()[0], sb.mean_cov()[0])
