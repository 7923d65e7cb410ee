"""Diffusion backbones (models/uvit.py, dit.py, pixart.py, backbones.py): exact parameter counts, shapes, init, parity.

Parameter counts are checked against every row of reference/backbones.md §6 (to the printed 2 decimals in M) on the
meta device, so the 0.5-1.6 B-parameter models cost no memory. PixArt-α is checked against diffusers'
``PixArtTransformer2DModel`` on converted weights (the minGPT-style test that matters most for a port).
"""
import pytest
import torch

from models.backbones import (
    BACKBONES,
    REFERENCE_PARAMS_M,
    backbone_config,
    backbone_table,
    build_backbone,
    list_backbones,
    random_inputs,
    trainable_params,
)


@pytest.mark.parametrize("key", list(REFERENCE_PARAMS_M), ids=lambda k: f"{k[0]}-c{k[1]}-s{k[2]}-p{k[3]}")
def test_parameter_count_matches_reference_table(key):
    with torch.device("meta"):
        model = build_backbone(*key)
    assert round(trainable_params(model) / 1e6, 2) == REFERENCE_PARAMS_M[key]


def test_uvit_s_deep_extra_row():
    """backbones.md §6 extra: UViT-S-deep (depth 16) DC-AE-f64 p1 58.44 M; SD-VAE-f8 p2 58.82 M."""
    with torch.device("meta"):
        assert round(trainable_params(build_backbone("uvit-s", 128, 8, 1, depth=16)) / 1e6, 2) == 58.44
        assert round(trainable_params(build_backbone("uvit-s", 4, 64, 2, depth=16)) / 1e6, 2) == 58.82


def test_fixed_pos_embed_is_a_buffer_not_a_parameter():
    m = build_backbone("dit-xl-tiny", 4, 8, 2)
    assert "pos_embed" not in dict(m.named_parameters()) and m.pos_embed.shape == (1, 16, 32)
    u = build_backbone("uvit-s-tiny", 4, 8, 2)
    assert u.pos_embed.requires_grad and u.pos_embed.shape == (1, 16 + 2, 32)  # learned, N + 2 tokens


@pytest.mark.parametrize("name", list_backbones())
def test_forward_shapes_for_every_registered_backbone(name):
    """Tiny names run a real forward; full-size names run on the meta device (shapes only, no memory)."""
    tiny = name.endswith("-tiny")
    c, size, p = 4, 16, 2
    device = "cpu" if tiny else "meta"
    with torch.device(device):
        model = build_backbone(name, c, size, p).eval()
        x, t, cond = random_inputs(model, 2, device)
        with torch.no_grad():
            out = model(x, t, cond)
    out_c = c if BACKBONES[name].family == "uvit" else 2 * c  # DiT/PixArt learn sigma
    assert out.shape == (2, out_c, size, size)
    if tiny:
        assert torch.isfinite(out).all()


def test_pixart_caption_input_shape():
    m = build_backbone("pixart-alpha-tiny", 4, 8, 2)
    _, _, cond = random_inputs(m, 3)
    assert cond.shape == (3, 120, 4096)  # 120 T5-XXL tokens of 4096-d features


@pytest.mark.parametrize("name", ["uvit-s-tiny", "dit-s-tiny", "pixart-alpha-tiny"])
def test_activation_checkpointing_gives_identical_gradients(name):
    torch.manual_seed(0)
    plain = build_backbone(name, 4, 8, 2).eval()  # eval: no label/caption dropout, so both runs see the same input
    ckpt = build_backbone(name, 4, 8, 2, activation_checkpointing=True).eval()
    ckpt.load_state_dict(plain.state_dict())
    with torch.no_grad():  # randomise, so that zero-initialised layers carry gradient too
        for p, q in zip(plain.parameters(), ckpt.parameters()):
            p.normal_(0, 0.05)
            q.copy_(p)
    x, t, cond = random_inputs(plain, 2, generator=torch.Generator().manual_seed(1))
    grads = []
    for m in (plain, ckpt):
        m.zero_grad()
        m(x, t, cond).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_dit_adaln_zero_makes_every_block_identity_at_init():
    torch.manual_seed(0)
    model = build_backbone("dit-s-tiny", 4, 8, 2, depth=3)
    x = torch.randn(2, 16, 32)
    c = torch.randn(2, 32)
    for block in model.blocks:
        torch.testing.assert_close(block(x, c), x)
    # and the zero-initialised final layer makes the whole model output 0
    xin, t, y = random_inputs(model, 2)
    assert model(xin, t, y).abs().max() == 0


def test_uvit_long_skips_are_used_lifo():
    """Perturbing the first in-block must change the output through its skip into the *last* out-block."""
    torch.manual_seed(0)
    m = build_backbone("uvit-s-tiny", 4, 8, 2, depth=4).eval()
    assert len(m.in_blocks) == 2 and len(m.out_blocks) == 2 and m.mid_block.skip_linear is None
    seen = []
    for i, blk in enumerate(m.out_blocks):
        blk.skip_linear.register_forward_hook(lambda mod, inp, out, i=i: seen.append((i, inp[0][..., 32:].clone())))
    outs = []
    for blk in m.in_blocks:
        blk.register_forward_hook(lambda mod, inp, out: outs.append(out.clone()))
    x, t, y = random_inputs(m, 1)
    m(x, t, y)
    torch.testing.assert_close(seen[0][1], outs[1])  # first out-block gets the last in-block's output
    torch.testing.assert_close(seen[1][1], outs[0])


def test_registry_errors_are_explicit():
    with pytest.raises(KeyError, match="unknown backbone"):
        build_backbone("uvit-xxl", 4, 8, 2)
    with pytest.raises(TypeError, match="unknown config fields"):
        backbone_config("dit-s", 4, 8, 2, depht=3)
    with pytest.raises(ValueError, match="not divisible"):
        build_backbone("dit-s-tiny", 4, 9, 2)


def test_pixart_parity_with_diffusers_on_converted_weights():
    diffusers = pytest.importorskip("diffusers")
    from models.checkpoints import convert_diffusers_pixart_to_ours

    torch.manual_seed(0)
    ref = diffusers.PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2, patch_size=2,
        sample_size=8, cross_attention_dim=32, caption_channels=48, interpolation_scale=1,
        use_additional_conditions=False, norm_type="ada_norm_single").eval()
    with torch.no_grad():  # randomise everything, so zero-initialised layers cannot hide a wrong mapping
        for p in ref.parameters():
            p.normal_(0, 0.1)
    ours = build_backbone("pixart-alpha-tiny", 4, 8, 2, caption_channels=48, text_tokens=7).eval()
    missing, unexpected = ours.load_state_dict(convert_diffusers_pixart_to_ours(ref.state_dict()), strict=False)
    assert missing == ["y_embedder.null_caption"] and unexpected == []  # the CFG null caption is not in diffusers
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([3, 700])
    caption = torch.randn(2, 7, 48)
    with torch.no_grad():
        expected = ref(x, encoder_hidden_states=caption, timestep=t,
                       added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
        got = ours(x, t, caption)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_pixart_converter_rejects_unknown_keys():
    from models.checkpoints import convert_diffusers_pixart_to_ours
    sd = {"scale_shift_table": torch.zeros(2, 4), "mystery.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match="unconverted"):
        convert_diffusers_pixart_to_ours(sd)


def test_models_table_lists_backbones_beside_the_official_counts():
    rows = backbone_table()
    assert len(rows) == len(REFERENCE_PARAMS_M)
    assert all(r["params_m"] == r["official_params_m"] for r in rows)  # exact, as the parameter-count test
    assert {"UViT-S", "UViT-H", "DiT-S", "DiT-XL", "PixArt-α"} <= {r["backbone"] for r in rows}


def test_uvit_matches_a_fixture_of_the_official_code():
    """The official U-ViT (baofff/U-ViT libs/uvit.py, run by tests/data/make_uvit_official_fixture.py) on a tiny
    seeded model: our UViT with its weights gives its outputs. Guards the [label, time, patches] token order, the
    [cos, sin] sinusoid, unpatchify and the long skips against the real official module, at integer and fractional t."""
    from pathlib import Path

    from safetensors.torch import load_file

    from models.uvit import UViT, UViTConfig
    f = load_file(str(Path(__file__).parent / "data" / "uvit_official_outputs.safetensors"))
    cfg = UViTConfig(hidden_size=16, depth=2, num_heads=2, num_classes=3, in_channels=4, input_size=4, patch_size=2)
    model = UViT(cfg).eval()
    model.load_state_dict({k[len("model."):]: v for k, v in f.items() if k.startswith("model.")}, strict=True)
    with torch.no_grad():
        out = model(f["x"], f["t"], f["y"])
    assert f["out"].abs().mean() > 0.1  # a fixture whose outputs depend on the inputs
    torch.testing.assert_close(out, f["out"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name, embedding", [("uvit-s-small", "label_emb"), ("dit-xl-small", "y_embedder.table")])
def test_label_dropout_is_the_official_10_percent_to_the_null_class(name, embedding):
    """Training-mode label dropout of the small scale's backbones: 10 % of labels (efficientvit / DiT: 0.1) become
    the null class ``num_classes``; none in eval mode. 4000 labels: the dropped share is 0.1 ± 0.005 (1 sd)."""
    torch.manual_seed(0)
    model = build_backbone(name, 4, 2, 1, num_classes=8)
    seen = []
    model.get_submodule(embedding).register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
    y = torch.randint(0, 8, (4000,), generator=torch.Generator().manual_seed(1))
    x, t = torch.randn(4000, 4, 2, 2), torch.randint(0, 1000, (4000,))
    with torch.no_grad():
        model.train()(x, t, y)
        model.eval()(x, t, y)
    dropped = seen[0] != y
    assert torch.all(seen[0][dropped] == 8) and torch.equal(seen[1], y)
    assert 0.08 < dropped.float().mean().item() < 0.12
