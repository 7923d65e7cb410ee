"""Tests for models/sd_vae.py: exact parameter counts, diffusers `AutoencoderKL` parity on converted weights, the
checkpoint layouts (ours <-> diffusers <-> CompVis/LDM), the stacking property of paper §3.1, latent shapes of
every registered variant, and posterior mean vs sample. Full-size models are only built on the meta device."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models import zoo
from models.checkpoints import (
    convert_diffusers_kl_to_ours,
    convert_ldm_kl_to_ours,
    convert_ours_to_diffusers_kl,
    convert_ours_to_ldm_kl,
    diffusers_kl_kwargs,
)
from models.sd_vae import (
    OFFICIAL_PARAMS,
    SD_VAE_VARIANTS,
    SDVAE,
    SDVAEConfig,
    kl_divergence,
    stacked,
)

diffusers = pytest.importorskip("diffusers")  # test oracle only (pyproject extra "test")


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_model(cfg: SDVAEConfig) -> SDVAE:
    with torch.device("meta"):
        return SDVAE(cfg)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# Reduced-width configs for numerical parity (same code paths as the full models, seconds on a CPU).
SMALL_F8 = SDVAEConfig(block_out_channels=(32, 64, 64, 64), norm_groups=8)  # SD-VAE-f8 layout
SMALL_STACKED = stacked(16, 16, (32, 64, 64, 64), norm_groups=8)  # f8 + one appended level
SMALL_LDM_F16 = SDVAEConfig(block_out_channels=(16, 16, 32, 32, 64), latent_channels=16, norm_groups=8,
                            attention_levels=(4,))  # LDM kl-f16 layout: attention inside a level
PARITY_CONFIGS = {"f8": SMALL_F8, "stacked-f16": SMALL_STACKED, "ldm-f16": SMALL_LDM_F16}


# ---------------------------------------------------------------------------------------------------------------------
# Parameter counts (reference autoencoders.md §4, §7, §8)
# ---------------------------------------------------------------------------------------------------------------------

EXPECTED_PARAMS = {
    # From the reference (verified there against diffusers / the LDM configs).
    "sd-vae-f8": 83_653_863,  # stabilityai/sd-vae-ft-ema (ref §4, §7)
    "sd-vae-f32c32": 140_701_987,  # inferred stacked baseline (ref §8)
    "sd-vae-f64c128": 170_434_307,  # inferred stacked baseline (ref §8)
    "sd-vae-f16-ldm": 69_610_963,  # LDM kl-f16 (ref §8)
    "sd-vae-f32-ldm": 103_880_131,  # LDM kl-f32 (ref §8)
    # Ours, pinned (equal to diffusers AutoencoderKL with the same block_out_channels / latent_channels).
    "sd-vae-f16c16": 112_148_947,
    "sd-vae-f32c64": 141_159_875,
    "sd-vae-f64c256": 172_450_179,
    "sd-vae-f128c512": 205_301_379,
    # Reduced variants, pinned (module docstring table): a change here changes every small / smoke result.
    "sd-vae-f8c4-small": 1_321_207, "sd-vae-f16c16-small": 1_787_619, "sd-vae-f32c32-small": 2_263_603,
    "sd-vae-f32c64-small": 2_334_419, "sd-vae-f64c128-small": 5_356_115, "sd-vae-f64c256-small": 16_984_403,
    "sd-vae-f128c512-small": 65_247_059,
    "sd-vae-f8c4-tiny": 81_215, "sd-vae-f16c16-tiny": 106_411, "sd-vae-f32c32-tiny": 259_339,
    "sd-vae-f32c64-tiny": 849_547, "sd-vae-f64c128-tiny": 3_279_883, "sd-vae-f64c256-tiny": 12_903_499,
    "sd-vae-f128c512-tiny": 51_722_827,
}


@pytest.mark.parametrize("name", EXPECTED_PARAMS)
def test_param_count_matches_reference(name):
    assert n_params(meta_model(SD_VAE_VARIANTS[name])) == EXPECTED_PARAMS[name]


def test_f8_encoder_decoder_split():
    m = meta_model(SD_VAE_VARIANTS["sd-vae-f8"])  # ref §4: encoder / decoder / quant_conv / post_quant_conv
    assert (n_params(m.encoder), n_params(m.decoder)) == (34_163_592, 49_490_179)
    assert (n_params(m.quant_conv), n_params(m.post_quant_conv)) == (72, 20)
    assert (m.spatial_compression, m.latent_channels, m.scaling_factor) == (8, 4, 0.18215)


@pytest.mark.parametrize("name", ["sd-vae-f8", "sd-vae-f16c16", "sd-vae-f64c128", "sd-vae-f16-ldm", "sd-vae-f32-ldm"])
def test_full_size_layout_matches_diffusers(name):
    """Every key and shape of the full-size diffusers model converts onto ours (meta device, no numbers)."""
    cfg = SD_VAE_VARIANTS[name]
    with torch.device("meta"):
        ref = diffusers.AutoencoderKL(**diffusers_kl_kwargs(cfg))
    ours = meta_model(cfg).state_dict()
    converted = convert_diffusers_kl_to_ours(ref.state_dict())
    assert converted.keys() == ours.keys()
    assert all(converted[k].shape == ours[k].shape for k in ours)
    assert n_params(ref) == sum(v.numel() for v in ours.values())


# ---------------------------------------------------------------------------------------------------------------------
# Numerical parity with diffusers AutoencoderKL (oracle) on converted weights
# ---------------------------------------------------------------------------------------------------------------------


def _pair(cfg: SDVAEConfig, seed: int = 0):
    """A randomly initialised diffusers AutoencoderKL and ours holding its converted weights (strict load)."""
    torch.manual_seed(seed)
    ref = diffusers.AutoencoderKL(**diffusers_kl_kwargs(cfg)).eval()
    with torch.no_grad():  # non-trivial GroupNorm affine parameters, so a swapped norm cannot hide
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ours = SDVAE(cfg).eval()
    ours.load_state_dict(convert_diffusers_kl_to_ours(ref.state_dict()), strict=True)
    return ref, ours


@pytest.mark.parametrize("variant", PARITY_CONFIGS)
def test_parity_with_diffusers(variant):
    cfg = PARITY_CONFIGS[variant]
    ref, ours = _pair(cfg)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        post = ref.encode(x).latent_dist
        mean, logvar = ours.encode_posterior(x)
        assert mean.shape == (2, cfg.latent_channels, 32 // cfg.spatial_compression, 32 // cfg.spatial_compression)
        assert rel_l2(mean, post.mean) <= 1e-4 and rel_l2(logvar, post.logvar) <= 1e-4
        assert torch.equal(ours.encode(x), mean)  # posterior mean by default
        z = torch.randn_like(mean)
        assert rel_l2(ours.decode(z), ref.decode(z).sample) <= 1e-4
        assert rel_l2(ours(x), ref(x).sample) <= 1e-4  # forward = decode(posterior mean) in both


@pytest.mark.parametrize("variant", ["f8", "ldm-f16"])
def test_reverse_conversion_loads_into_diffusers(variant):
    cfg = PARITY_CONFIGS[variant]
    torch.manual_seed(2)
    ours = SDVAE(cfg).eval()
    ref = diffusers.AutoencoderKL(**diffusers_kl_kwargs(cfg)).eval()
    ref.load_state_dict(convert_ours_to_diffusers_kl(ours.state_dict()), strict=True)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert rel_l2(ours(x), ref(x).sample) <= 1e-4
    back = convert_diffusers_kl_to_ours(convert_ours_to_diffusers_kl(ours.state_dict()))
    sd = ours.state_dict()
    assert back.keys() == sd.keys() and all(torch.equal(back[k], v) for k, v in sd.items())


def test_deprecated_diffusers_attention_names():
    """Older diffusers files name attention leaves query/key/value/proj_attn; they convert to the same weights."""
    _, ours = _pair(SMALL_F8)
    new = convert_ours_to_diffusers_kl(ours.state_dict())
    rename = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old = {}
    for k, v in new.items():
        for a, b in rename.items():
            k = k.replace(f".{a}.", f".{b}.")
        old[k] = v
    assert any(".proj_attn." in k for k in old)
    back = convert_diffusers_kl_to_ours(old)
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())


def test_sampled_posterior_matches_diffusers_sample():
    """With the same generator seed, our sample equals diffusers' DiagonalGaussianDistribution.sample()."""
    ref, ours = _pair(SMALL_F8)
    sampler = SDVAE(dataclasses.replace(SMALL_F8, sample_posterior=True)).eval()
    sampler.load_state_dict(ours.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(3))
        got = sampler.encode(x, generator=torch.Generator().manual_seed(3))
    assert rel_l2(got, expected) <= 1e-4


# ---------------------------------------------------------------------------------------------------------------------
# CompVis/LDM layout (reference §7 table)
# ---------------------------------------------------------------------------------------------------------------------


def test_ldm_names_follow_reference_table():
    ldm = convert_ours_to_ldm_kl(meta_model(SD_VAE_VARIANTS["sd-vae-f8"]).state_dict())
    shapes = {k: tuple(v.shape) for k, v in ldm.items()}
    assert shapes["encoder.down.1.block.0.nin_shortcut.weight"] == (256, 128, 1, 1)
    assert shapes["encoder.down.2.downsample.conv.weight"] == (512, 512, 3, 3)
    assert "encoder.down.3.downsample.conv.weight" not in shapes  # last level keeps its resolution
    assert shapes["encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)  # 1x1 convs in LDM
    assert shapes["decoder.mid.attn_1.proj_out.weight"] == (512, 512, 1, 1)
    assert shapes["decoder.up.0.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)  # up.0 = full resolution
    assert shapes["decoder.up.3.upsample.conv.weight"] == (512, 512, 3, 3)
    assert "decoder.up.0.upsample.conv.weight" not in shapes
    assert shapes["encoder.norm_out.weight"] == (512,) and shapes["quant_conv.weight"] == (8, 8, 1, 1)


def test_ldm_conversion_agrees_with_diffusers_single_file_converter():
    """ours -> LDM (our table) -> diffusers (diffusers' own LDM converter) loads strictly and reproduces the output."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    torch.manual_seed(4)
    ours = SDVAE(SMALL_STACKED).eval()
    kwargs = diffusers_kl_kwargs(SMALL_STACKED)
    ref = diffusers.AutoencoderKL(**kwargs).eval()
    ref.load_state_dict(convert_ldm_vae_checkpoint(convert_ours_to_ldm_kl(ours.state_dict()), kwargs), strict=True)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert rel_l2(ours(x), ref(x).sample) <= 1e-4


@pytest.mark.parametrize("cfg", [SMALL_F8, SMALL_LDM_F16], ids=["f8", "ldm-f16"])
def test_ldm_roundtrip_and_checkpoint_extras(cfg):
    sd = SDVAE(cfg).state_dict()
    ldm = convert_ours_to_ldm_kl(sd)
    back = convert_ldm_kl_to_ours(ldm)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    # A full Stable Diffusion checkpoint: VAE under first_stage_model., loss modules and EMA bookkeeping around it.
    full = {f"first_stage_model.{k}": v for k, v in ldm.items()}
    full |= {"model.diffusion_model.x.weight": torch.zeros(1), "first_stage_model.loss.logvar": torch.zeros(())}
    SDVAE(cfg).load_state_dict(convert_ldm_kl_to_ours(full, prefix="first_stage_model."), strict=True)
    with pytest.raises(KeyError, match="unexpected ldm"):
        convert_ldm_kl_to_ours(ldm | {"encoder.down.0.block.0.temb_proj.weight": torch.zeros(1)})


# ---------------------------------------------------------------------------------------------------------------------
# Stacking (paper §3.1): the f8 autoencoder is a sub-network of the higher-compression ones
# ---------------------------------------------------------------------------------------------------------------------

# Layers at the latent interface: their shapes depend on c, so they cannot be shared across latent shapes.
LATENT_INTERFACE = ("encoder.conv_out.", "quant_conv.", "post_quant_conv.", "decoder.conv_in.")


@pytest.mark.parametrize("big", ["sd-vae-f16c16", "sd-vae-f32c32", "sd-vae-f64c256", "sd-vae-f128c512"])
def test_f8_state_dict_is_a_subset(big):
    """Every key of sd-vae-f8 exists in the stacked model with the same shape, except the 7 tensors of the latent
    interface layers whose shape depends on c; the stacked model adds only levels >= 4, the level-3 Downsample and
    the level-3 Upsample."""
    small = meta_model(SD_VAE_VARIANTS["sd-vae-f8"]).state_dict()
    large = meta_model(SD_VAE_VARIANTS[big]).state_dict()
    assert set(small) <= set(large)
    differing = {k for k in small if small[k].shape != large[k].shape}
    interface = {k for k in small if k.startswith(LATENT_INTERFACE)}
    assert differing == interface - {"decoder.conv_in.bias"} and len(differing) == 7  # that bias is (512,) for any c
    added = set(large) - set(small)
    assert all(k.startswith(("encoder.levels.", "decoder.levels.")) for k in added)
    assert all(int(k.split(".")[2]) >= 4 or ".3.down." in k or ".3.up." in k for k in added)


def test_f8_features_reappear_inside_stacked_model():
    """Functional form of the subset property: with the shared weights copied over, the stacked encoder's level-3
    features (before the new Downsample) equal the f8 encoder's level-3 features, and the stacked decoder's last
    three levels map level-3 features to the same image as the f8 decoder's."""
    torch.manual_seed(5)
    f8, f16 = SDVAE(SMALL_F8).eval(), SDVAE(SMALL_STACKED).eval()
    shared = {k: v for k, v in f8.state_dict().items() if not k.startswith(LATENT_INTERFACE)}
    assert not f16.load_state_dict(shared, strict=False).unexpected_keys
    feats = {}
    for tag, m in (("f8", f8), ("f16", f16)):
        m.encoder.levels[3].blocks[-1].register_forward_hook(lambda mod, i, o, tag=tag: feats.__setitem__(tag, o))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        f8.encode(x), f16.encode(x)
        assert feats["f8"].shape == (1, 64, 4, 4) and torch.allclose(feats["f8"], feats["f16"], atol=1e-6)
        h8, h16 = feats["f8"], feats["f16"]
        for i in (3, 2, 1, 0):  # decoder levels shared by both models, fed the same features
            lv8, lv16 = f8.decoder.levels[i], f16.decoder.levels[i]
            h8, h16 = lv8.run_blocks(h8), lv16.run_blocks(h16)
            if i > 0:
                h8, h16 = lv8.up(h8), lv16.up(h16)
        assert torch.allclose(h8, h16, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Registry, shapes, posterior
# ---------------------------------------------------------------------------------------------------------------------


def test_registry_names():
    shapes = ((8, 4), (16, 16), (32, 32), (32, 64), (64, 128), (64, 256), (128, 512))
    expected = {"sd-vae-f8", "sd-vae-f16-ldm", "sd-vae-f32-ldm"}
    expected |= {f"sd-vae-f{f}c{c}" for f, c in shapes[1:]}
    expected |= {f"sd-vae-f{f}c{c}-{fam}" for f, c in shapes for fam in ("small", "tiny")}
    assert set(SD_VAE_VARIANTS) == expected


@pytest.mark.parametrize("name", sorted(SD_VAE_VARIANTS))
def test_latent_shape(name):
    """Latent (B, c, H/f, W/f) at 64 px, or at f px where f > 64; full-size models on meta, reduced ones on CPU."""
    cfg = SD_VAE_VARIANTS[name]
    reduced = name.endswith(("-small", "-tiny"))
    m = SDVAE(cfg).eval() if name.endswith("-tiny") else meta_model(cfg)
    res, f = max(64, cfg.spatial_compression), cfg.spatial_compression
    x = torch.zeros(1, 3, res, res, device="cpu" if name.endswith("-tiny") else "meta")
    with torch.no_grad():
        z = m.encode(x)
        assert z.shape == (1, cfg.latent_channels, res // f, res // f)
        assert m.decode(z).shape == x.shape
    assert m.latent_channels == cfg.latent_channels and m.spatial_compression == f
    if reduced:
        assert cfg.variational and not cfg.sample_posterior


def test_every_variant_has_a_pinned_count():
    assert set(EXPECTED_PARAMS) == set(SD_VAE_VARIANTS)
    assert all(EXPECTED_PARAMS[k] == v for k, v in OFFICIAL_PARAMS.items())
    with pytest.raises(ValueError, match="8 \\* 2\\^n"):
        stacked(24, 16)


def test_sample_posterior():
    torch.manual_seed(6)
    mean_model = SDVAE(SMALL_F8).eval()
    sampler = SDVAE(dataclasses.replace(SMALL_F8, sample_posterior=True)).eval()
    sampler.load_state_dict(mean_model.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        mean, logvar = mean_model.encode_posterior(x)
        torch.manual_seed(0)
        a = sampler.encode(x)
        torch.manual_seed(0)
        b = sampler.encode(x)
        assert torch.equal(mean_model.encode(x), mean)  # sample_posterior=False: exactly the mean
        assert torch.equal(a, b) and not torch.allclose(a, mean)  # seeded sample, differs from the mean
        assert torch.allclose((a - mean).std(), logvar.mul(0.5).exp().mean(), rtol=0.5)
        assert logvar.min() >= -30 and logvar.max() <= 20
        assert kl_divergence(mean, logvar).shape == (1,)
        for shift, bound in ((50.0, 20.0), (-80.0, -30.0)):  # logvar is clamped to [-30, 20] (LDM, diffusers)
            mean_model.quant_conv.bias[4:] += shift
            assert torch.all(mean_model.encode_posterior(x)[1] == bound)
            mean_model.quant_conv.bias[4:] -= shift


def test_non_variational_and_errors():
    ae = SDVAE(dataclasses.replace(SMALL_F8, variational=False)).eval()
    assert ae.encoder.conv_out.out_channels == 4 and ae.encode_posterior(torch.zeros(1, 3, 32, 32))[1] is None
    with pytest.raises(ValueError, match="divisible by f=8"):
        ae.encode(torch.zeros(1, 3, 36, 32))
    with pytest.raises(ValueError, match="latents"):
        ae.decode(torch.zeros(1, 8, 4, 4))
    with pytest.raises(ValueError, match="norm_groups"):
        SDVAEConfig(block_out_channels=(24, 48), norm_groups=32)
    assert SDVAEConfig(block_out_channels=[32, 64], norm_groups=8).block_out_channels == (32, 64)  # JSON round trip


def _latent_neighbours(model, x: torch.Tensor) -> tuple[int, int]:
    """Channels entering the last encoder layer (the one that makes the latent or its moments) and leaving the first
    decoder layer (the one that reads the latent), found by running the model: forward order, not definition order."""
    order: list[tuple[str, torch.nn.Module]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: order.append((n, mod)))
             for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.decode(model.encode(x))
    for h in hooks:
        h.remove()
    enc = [m for n, m in order if n.startswith("encoder.")]
    dec = [m for n, m in order if n.startswith("decoder.")]
    width = lambda m, side: getattr(m, f"{side}_channels", None) or getattr(m, f"{side}_features")  # noqa: E731
    return width(enc[-1], "in"), width(dec[0], "out")


@pytest.mark.parametrize("name", sorted(n for n in zoo.REGISTRY
                                        if n.endswith(("-small", "-tiny"))))
def test_no_reduced_model_is_narrower_than_its_latent_next_to_it(name):
    """#11's bottleneck rule over the whole registry (both families): the layer that writes the latent reads at
    least c channels, and the layer that reads it writes at least c. The old sd-vae-f64c128-tiny (16-wide levels
    around a 128-channel latent) fails this."""
    with torch.device("meta"):
        model = zoo.build(name)
    f, c = model.spatial_compression, model.latent_channels
    side = max(64, f)
    into_latent, out_of_latent = _latent_neighbours(model, torch.zeros(1, 3, side, side, device="meta"))
    assert into_latent >= c and out_of_latent >= c, (name, into_latent, out_of_latent, c)


def test_old_narrow_stacking_breaks_the_bottleneck_rule():
    """The check above can fail: the earlier stacking (appended levels of the f8 part's 16 channels) is caught."""
    narrow = stacked(64, 128, (8, 16, 16, 16), layers_per_block=1, norm_groups=4, scaling_factor=1.0)
    with torch.device("meta"):
        model = SDVAE(narrow)
    into_latent, out_of_latent = _latent_neighbours(model, torch.zeros(1, 3, 64, 64, device="meta"))
    assert into_latent == 16 < 128 and out_of_latent == 16
