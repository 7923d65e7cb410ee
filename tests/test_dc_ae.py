"""DC-AE unit tests: exact parameter counts, shapes, Residual Autoencoding identities and its switch, attention paths.

Big models are only built on the meta device; numerics use the tiny variants. Parity with diffusers is in
test_parity_dc_ae.py, checkpoints in test_checkpoints.py.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import models
from models import dc_ae
from models.dc_ae import (
    DC_AE_VARIANTS,
    DCAE,
    DCAEConfig,
    LiteMLA,
    ResidualDownBlock,
    ResidualUpBlock,
    RMSNorm2d,
    channel_duplicate_to_space,
    downsampler,
    space_to_channel_average,
    upsampler,
)


def meta_model(name: str) -> DCAE:
    with torch.device("meta"):
        return DCAE(DC_AE_VARIANTS[name])


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Reference §4, verified against efficientvit and diffusers: (total, encoder, decoder).
RELEASED_COUNTS = {
    "dc-ae-f32c32-in-1.0": (323_356_460, 123_172_384, 200_184_076),
    "dc-ae-f32c32-mix-1.0": (323_356_460, 123_172_384, 200_184_076),
    "dc-ae-f64c128-in-1.0": (676_896_140, 264_550_528, 412_345_612),
    "dc-ae-f128c512-in-1.0": (1_120_682_252, 415_661_056, 705_021_196),
    "dc-ae-f32c32-sana-1.0": (312_250_275, 153_027_104, 159_223_171),
}


@pytest.mark.parametrize("name", list(RELEASED_COUNTS))
def test_released_parameter_counts_are_exact(name):
    model = meta_model(name)
    total, enc, dec = RELEASED_COUNTS[name]
    assert (n_params(model), n_params(model.encoder), n_params(model.decoder)) == (total, enc, dec)


def test_per_stage_counts_f32c32_in():
    # Reference §4 per-stage table: a wrong width or depth in a single stage would shift one number.
    model = meta_model("dc-ae-f32c32-in-1.0")
    assert [n_params(s) for s in model.encoder.stages] == [0, 5_016_704, 38_350_976, 9_662_720, 36_102_400, 33_742_848]
    assert [n_params(s) for s in model.decoder.stages] == [0, 10_621_696, 56_640_512, 27_359_232, 71_495_680,
                                                           33_742_848]
    assert n_params(model.encoder.project_out) == 294_944 and n_params(model.decoder.project_out) == 28_172


def test_bn_running_stats_only_in_in_mix_decoders():
    bn = lambda m: sum(b.numel() for n, b in m.named_buffers() if "running" in n)
    assert bn(meta_model("dc-ae-f32c32-in-1.0")) == 12_800  # reference §4: 323,369,260 - 323,356,460
    assert bn(meta_model("dc-ae-f32c32-sana-1.0")) == 0


def test_variant_table_and_scaling_factors():
    expected = {"dc-ae-f32c32-in-1.0": 0.3189, "dc-ae-f32c32-mix-1.0": 0.4552, "dc-ae-f64c128-in-1.0": 0.2889,
                "dc-ae-f64c128-mix-1.0": 0.4538, "dc-ae-f128c512-in-1.0": 0.4883, "dc-ae-f128c512-mix-1.0": 0.3620,
                "dc-ae-f32c32-sana-1.0": 0.41407}
    for name, s in expected.items():
        assert DC_AE_VARIANTS[name].scaling_factor == s
    for f, c in ((8, 4), (16, 16), (32, 32), (32, 64), (64, 128), (64, 256), (128, 512)):
        for size in ("small", "tiny"):
            cfg = DC_AE_VARIANTS[f"dc-ae-f{f}c{c}-{size}"]
            assert (cfg.spatial_compression, cfg.latent_channels) == (f, c)


@pytest.mark.parametrize("ra", [True, False])
def test_reduced_shapes(ra):
    torch.manual_seed(0)
    model = models.build("dc-ae-f16c16-tiny", residual_autoencoding=ra).eval()
    f, c = model.spatial_compression, model.latent_channels
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (2, c, 32 // f, 32 // f)
        assert model(x).shape == x.shape and torch.isfinite(model.decode(z)).all()


@pytest.mark.parametrize("name", [n for n in DC_AE_VARIANTS if n.endswith(("-small", "-tiny"))])
def test_every_reduced_variant_round_trips_shapes(name):
    model = models.build(name).eval()
    size = max(32, model.spatial_compression)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 3, size, size)


def test_bad_inputs_raise():
    model = models.build("dc-ae-f32c32-tiny")
    with pytest.raises(ValueError, match="divisible"):
        model.encode(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="multiple of latent_channels"):
        dataclasses.replace(DC_AE_VARIANTS["dc-ae-f32c32-tiny"], latent_channels=48)
    with pytest.raises(ValueError, match="4 \\* C_in divisible"):
        DCAEConfig(widths=(8, 16, 128), encoder_depths=(0, 1, 1), decoder_depths=(0, 1, 1), latent_channels=4)
    with pytest.raises(ValueError, match="only the first and last stage"):
        DCAEConfig(widths=(8, 16, 32), encoder_depths=(0, 0, 1), decoder_depths=(0, 1, 1), latent_channels=4)


# ----------------------------------------------------------------------------------------------------------------------
# Residual Autoencoding: shortcut identities (reference §2)
# ----------------------------------------------------------------------------------------------------------------------


def zeroed(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


@pytest.mark.parametrize("resampling", ["pixel_shuffle", "conv"])
def test_down_shortcut_g4_is_2x2_average_pooling(resampling):
    x = torch.randn(2, 8, 6, 10)
    block = zeroed(ResidualDownBlock(downsampler(8, 8, resampling), 8, 2, True))
    assert torch.allclose(block(x), F.avg_pool2d(x, 2), atol=1e-6)  # C -> C: 4 channels averaged
    assert torch.allclose(space_to_channel_average(x, 8), F.avg_pool2d(x, 2), atol=1e-6)


@pytest.mark.parametrize("resampling", ["pixel_shuffle", "conv"])
def test_up_shortcut_r4_is_nearest_upsampling(resampling):
    x = torch.randn(2, 8, 3, 5)
    block = zeroed(ResidualUpBlock(upsampler(8, 8, resampling), 8, 2, True))
    assert torch.equal(block(x), F.interpolate(x, scale_factor=2, mode="nearest"))  # C -> C: each channel 4x


def test_g2_average_and_r2_duplication_are_exact_inverses():
    y = torch.randn(2, 16, 4, 6)  # 2C channels at H/2
    up = zeroed(ResidualUpBlock(upsampler(16, 8, "pixel_shuffle"), 8, 2, True))  # 2C -> C, r = 2
    down = zeroed(ResidualDownBlock(downsampler(8, 16, "pixel_shuffle"), 16, 2, True))  # C -> 2C, g = 2
    assert torch.equal(down(up(y)), y)
    x = up(y)  # r = 2: channel k takes 2k on the top row and 2k+1 on the bottom row (reference §2)
    assert torch.equal(x[:, :, 0::2, 0::2], y[:, 0::2]) and torch.equal(x[:, :, 1::2, 1::2], y[:, 1::2])
    # g = 2 is 1x2 pooling + 2x1 space-to-channel: output channel 2c = mean of the top pair of input channel c.
    z = torch.randn(1, 4, 4, 4)
    avg = space_to_channel_average(z, 8)
    assert torch.allclose(avg[:, 0::2], (z[:, :, 0::2, 0::2] + z[:, :, 0::2, 1::2]) / 2)


def test_middle_stage_shortcuts_average_and_duplicate_consecutive_channels():
    x = torch.randn(1, 12, 2, 2)
    assert torch.allclose(space_to_channel_average(x, 3, factor=1), x.reshape(1, 3, 4, 2, 2).mean(2))
    z = torch.randn(1, 3, 2, 2)
    assert torch.equal(channel_duplicate_to_space(z, 12, factor=1), z.repeat_interleave(4, dim=1))


# ----------------------------------------------------------------------------------------------------------------------
# The switch: residual_autoencoding=False removes every shortcut, and nothing else
# ----------------------------------------------------------------------------------------------------------------------


def ra_blocks(model):
    return [m for m in model.modules() if isinstance(m, (ResidualDownBlock, ResidualUpBlock))]


@pytest.mark.parametrize("name", ["dc-ae-f32c32-tiny", "dc-ae-f8c4-small"])
@pytest.mark.parametrize("ra", [True, False])
def test_switch_acts_on_every_shortcut(name, ra, monkeypatch):
    """Zero the learned branch of every Residual Autoencoding block: without shortcuts each such block must output
    exactly 0; with them, none may. A single shortcut left on (or missing) fails one block. Also count calls."""
    torch.manual_seed(0)
    model = models.build(name, residual_autoencoding=ra).eval()
    blocks = ra_blocks(model)
    n = len(model.config.widths)
    assert len(blocks) == 2 * (n - 2) + 2  # stage transitions on both sides (stage 0 empty) + the middle stage
    outputs = {}
    for i, block in enumerate(blocks):
        zeroed(block.main)
        block.register_forward_hook(lambda mod, inp, out, i=i: outputs.__setitem__(i, out))
    calls = []
    for fn in ("space_to_channel_average", "channel_duplicate_to_space"):
        original = getattr(dc_ae, fn)
        monkeypatch.setattr(dc_ae, fn, lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k))
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert len(outputs) == len(blocks)
    zero = sorted(i for i, out in outputs.items() if not out.abs().amax() > 0)
    assert zero == ([] if ra else list(range(len(blocks))))
    assert len(calls) == (len(blocks) if ra else 0)


def test_switch_keeps_the_same_parameters():
    on, off = models.build("dc-ae-f32c32-tiny"), models.build("dc-ae-f32c32-tiny", residual_autoencoding=False)
    assert [(k, v.shape) for k, v in on.state_dict().items()] == [(k, v.shape) for k, v in off.state_dict().items()]
    assert off.config.residual_autoencoding is False and on.config.residual_autoencoding is True


# ----------------------------------------------------------------------------------------------------------------------
# LiteMLA and RMSNorm2d numerics
# ----------------------------------------------------------------------------------------------------------------------


def test_linear_and_quadratic_attention_agree_and_switch_at_head_dim():
    # Both compute sum_j v_j (k_j . q_i) / sum_j (k_j . q_i); only the order of products differs.
    torch.manual_seed(0)
    att = LiteMLA(64, head_dim=32)
    qkv = torch.randn(2, 2, 96, 20)
    assert torch.allclose(att._linear(qkv), att._quadratic(qkv), rtol=1e-4, atol=1e-5)
    used = []
    att._linear = lambda t: used.append("linear") or LiteMLA._linear(att, t)
    att._quadratic = lambda t: used.append("quadratic") or LiteMLA._quadratic(att, t)
    for h, w in ((4, 8), (5, 7), (8, 8)):  # 32 tokens -> quadratic; 35, 64 -> linear
        att(torch.randn(1, 64, h, w))
    assert used == ["quadratic", "linear", "linear"]


def test_linear_attention_runs_in_fp32_under_autocast():
    att = LiteMLA(32, head_dim=32)
    qkv = torch.randn(1, 1, 96, 64).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert att._linear(qkv).dtype == torch.float32


def test_rmsnorm2d_over_channels_in_fp32():
    norm = RMSNorm2d(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 6, 3, 3)
    expected = x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + 1e-5) * norm.weight[:, None, None] \
        + norm.bias[:, None, None]
    assert torch.allclose(norm(x), expected, atol=1e-6)
    assert norm(x.bfloat16()).dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------------------------------------
# Registry (models.zoo)
# ----------------------------------------------------------------------------------------------------------------------


def test_build_overrides_and_unknown_names():
    assert models.build("dc-ae-f8c4-tiny", residual_autoencoding=False).config.residual_autoencoding is False
    with pytest.raises(ValueError, match=r"unknown model 'dc-ae-f32c32-in'; close names: .*dc-ae-f32c32-in-1\.0"):
        models.build("dc-ae-f32c32-in")
    with pytest.raises(ValueError, match="unknown config field"):
        models.build("dc-ae-f8c4-tiny", residual_autoencodin=False)


def test_list_models_and_table():
    records = {r.name: r for r in models.list_models()}
    released = [n for n in DC_AE_VARIANTS if n.endswith("-1.0")]
    assert len(released) == 7 and all(records[n].params == records[n].official_params for n in released)
    rec = records["dc-ae-f64c128-in-1.0"]
    assert (rec.family, rec.spatial_compression, rec.latent_channels, rec.scaling_factor) == ("dc-ae", 64, 128, 0.2889)
    for f, c in ((8, 4), (16, 16), (32, 32), (32, 64), (64, 128), (64, 256), (128, 512)):
        for size in ("small", "tiny"):
            assert f"dc-ae-f{f}c{c}-{size}" in records
            assert f"sd-vae-f{f}c{c}-{size}" in records or "sd-vae-f8" not in records
    if "sd-vae-f8" in records:  # models/sd_vae.py present
        assert records["sd-vae-f8"].params == 83_653_863 and records["sd-vae-f8"].latent_channels == 4
    rows = {r["name"]: r for r in models.models_table(sizes=(256, 512))}
    assert rows["dc-ae-f128c512-in-1.0"]["latent@256"] == "512x2x2"
    assert rows["dc-ae-f32c32-sana-1.0"]["official_params"] == 312_250_275
    assert rows["dc-ae-f32c32-tiny"]["official_params"] == ""


def test_models_package_does_not_import_diffusers():
    # Static (a subprocess import costs ~10 s here): no module of the package imports diffusers at any level.
    import ast
    from pathlib import Path

    for path in Path(models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "diffusers" for n in names), f"{path.name} imports diffusers"
