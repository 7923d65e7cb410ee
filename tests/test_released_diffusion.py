"""Released DC-AE latent-diffusion checkpoints (models/checkpoints.py `load_released_diffusion`, models/backbones.py
`RELEASED_DIFFUSION`): official names, both file layouts, strict errors, every registry entry.

No hub file can be downloaded here, so official-layout files are written from our own models with random weights:
ours -> official names (checked against the module names listed in reference/generation.md §4) -> a hub or trainer
file -> `load_released_diffusion` must give back identical weights and outputs. The backbones keep the released
latent shape (32 x 16 x 16 for DC-AE-f32 at 512 px) with a tiny width, so each test runs in well under a second.
"""

import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

import models
from models import checkpoints
from models.backbones import (
    BACKBONES,
    REFERENCE_PARAMS_M,
    RELEASED_DIFFUSION,
    build_backbone,
    random_inputs,
    trainable_params,
)
from models.checkpoints import (
    convert_official_dit_to_ours,
    convert_official_uvit_to_ours,
    convert_ours_to_official_dit,
    convert_ours_to_official_uvit,
    load_released_diffusion,
    read_released_diffusion,
)
from models.dit import DiT

UVIT_NAME = "dc-ae-f32c32-in-1.0-uvit-s-in-512px"
DIT_NAME = "dc-ae-f32c32-in-1.0-dit-xl-in-512px"
TINY = {"hidden_size": 32, "depth": 2, "num_heads": 2}  # tiny width and depth; the latent shape stays the released one


def randomised(name: str, seed: int = 0, latent_size: int | None = None) -> torch.nn.Module:
    """Our backbone of released entry `name` (TINY width), every parameter random: zero-initialised layers (DiT's
    adaLN-Zero and final layer) must carry weight too, or a dropped tensor could not change the output."""
    info = RELEASED_DIFFUSION[name]
    torch.manual_seed(seed)
    model = build_backbone(info.backbone, info.latent_channels, latent_size or info.latent_size, info.patch_size,
                           **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def official_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    if isinstance(model, DiT):
        return convert_ours_to_official_dit(sd, model.config)
    return convert_ours_to_official_uvit(sd)


def write_hub(path, model, autoencoder=None, scaling_factor=None):
    """The `DCAE_Diffusion_HF` file: submodules `diffusion_model` and `autoencoder` (+ an optional scalar)."""
    tensors = {f"diffusion_model.{k}": v.contiguous() for k, v in official_state(model).items()}
    if autoencoder is not None:
        tensors.update({f"autoencoder.{k}": v.contiguous() for k, v in autoencoder.state_dict().items()})
    if scaling_factor is not None:
        tensors["scaling_factor"] = torch.tensor(scaling_factor)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_trainer(path, model, decay=0.9999):
    """An efficientvit trainer checkpoint; its raw `state_dict` is zeros, so loading it instead of the EMA shows."""
    prefix = "dit" if isinstance(model, DiT) else "uvit"
    ema = {f"{prefix}.{k}": v for k, v in official_state(model).items()}
    raw = {k: torch.zeros_like(v) for k, v in ema.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": raw, "ema": {decay: ema}, "epoch": 3, "global_step": 1000, "best_fid": float("inf")},
               path)
    return path


def assert_same_model(ours: torch.nn.Module, loaded: torch.nn.Module) -> None:
    """Identical tensors (the fixed DiT pos_embed buffer included), then outputs equal to 1e-6 on the same inputs."""
    ref, got = ours.state_dict(), loaded.state_dict()
    assert set(ref) == set(got) and all(torch.equal(ref[k], got[k]) for k in ref)
    if isinstance(ours, DiT):
        assert torch.equal(ours.pos_embed, loaded.pos_embed)  # not in the state dict: rebuilt after the meta build
    x, t, y = random_inputs(ours, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, out = ours(x, t, y), loaded(x, t, y)
    assert expected.abs().max() > 1e-2  # random weights: a non-trivial output
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Official names (reference/generation.md §4)
# ----------------------------------------------------------------------------------------------------------------

def official_uvit_keys(depth: int) -> set[str]:
    """The efficientvit U-ViT parameter names, written out from the reference (qkv without bias)."""
    keys = {"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "label_emb.embedding_table.weight",
            "norm.weight", "norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias", "norm2.weight",
             "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    half = depth // 2
    blocks = [f"in_blocks.{i}" for i in range(half)] + ["mid_block"] + [f"out_blocks.{i}" for i in range(half)]
    keys |= {f"{b}.{leaf}" for b in blocks for leaf in block}
    return keys | {f"out_blocks.{i}.skip_linear.{w}" for i in range(half) for w in ("weight", "bias")}


def official_dit_keys(depth: int) -> set[str]:
    """The efficientvit DiT names: non-affine LayerNorms have no tensors; the fixed pos_embed is a frozen Parameter."""
    wb = ("weight", "bias")
    keys = {"pos_embed", "y_embedder.embedding_table.weight"}
    keys |= {f"{m}.{w}" for m in ("x_embedder.proj", "t_embedder.mlp.0", "t_embedder.mlp.2", "final_layer.linear",
                                   "final_layer.adaLN_modulation.1") for w in wb}
    leaves = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1")
    return keys | {f"blocks.{i}.{leaf}.{w}" for i in range(depth) for leaf in leaves for w in wb}


def test_official_uvit_names_match_the_reference():
    model = randomised(UVIT_NAME)
    official = convert_ours_to_official_uvit(model.state_dict())
    assert set(official) == official_uvit_keys(TINY["depth"])
    d, c = TINY["hidden_size"], 32  # shapes of the official modules: Linear(in, out).weight is (out, in)
    expected = {
        "patch_embed.proj.weight": (d, c, 1, 1), "label_emb.embedding_table.weight": (1001, d),
        "pos_embed": (1, 2 + 16 * 16, d), "mid_block.attn.qkv.weight": (3 * d, d),
        "in_blocks.0.mlp.fc1.weight": (4 * d, d), "out_blocks.0.mlp.fc2.weight": (d, 4 * d),
        "out_blocks.0.skip_linear.weight": (d, 2 * d), "decoder_pred.weight": (c, d)}
    assert {k: tuple(official[k].shape) for k in expected} == expected
    back = convert_official_uvit_to_ours(official)
    assert set(back) == set(model.state_dict()) and all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_official_dit_names_match_the_reference():
    model = randomised(DIT_NAME)
    official = convert_ours_to_official_dit(model.state_dict(), model.config)
    assert set(official) == official_dit_keys(TINY["depth"])
    assert torch.equal(official["pos_embed"], model.pos_embed)
    d, c = TINY["hidden_size"], 32
    expected = {
        "x_embedder.proj.weight": (d, c, 1, 1), "y_embedder.embedding_table.weight": (1001, d),
        "pos_embed": (1, 16 * 16, d), "t_embedder.mlp.0.weight": (d, 256), "blocks.0.mlp.fc1.weight": (4 * d, d),
        "blocks.1.mlp.fc2.weight": (d, 4 * d), "blocks.0.adaLN_modulation.1.weight": (6 * d, d),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d), "final_layer.linear.weight": (2 * c, d)}  # ε and σ
    assert {k: tuple(official[k].shape) for k in expected} == expected
    back = convert_official_dit_to_ours(official)  # pos_embed checked, then dropped
    assert set(back) == set(model.state_dict()) and all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_dit_pos_embed_is_checked_not_dropped_blindly():
    official = official_state(randomised(DIT_NAME))
    # The official convention (efficientvit dit.py `get_2d_sincos_pos_embed`, meshgrid "w goes first"): token
    # r·G + c, first D/2 channels [sin, cos](c·ω) of the column, last D/2 of the row, ω_i = 10000^(-i/(D/4)).
    pos, d, g = official["pos_embed"][0], TINY["hidden_size"], 16
    omega = 1.0 / 10000 ** (torch.arange(d // 4, dtype=torch.float64) / (d // 4))
    r, c = 5, 11
    expected = torch.cat([(c * omega).sin(), (c * omega).cos(), (r * omega).sin(), (r * omega).cos()]).float()
    torch.testing.assert_close(pos[r * g + c], expected, rtol=0, atol=1e-6)
    shifted = dict(official, pos_embed=official["pos_embed"] + 1e-3)
    with pytest.raises(ValueError, match="differs from the fixed sin-cos table by up to 0.001"):
        convert_official_dit_to_ours(shifted)
    with pytest.raises(ValueError, match="has no pos_embed"):
        convert_official_dit_to_ours({k: v for k, v in official.items() if k != "pos_embed"})
    half = dict(official, pos_embed=official["pos_embed"].half())  # a half-precision file: within one ulp
    assert set(convert_official_dit_to_ours(half)) == set(convert_official_dit_to_ours(official))


# ----------------------------------------------------------------------------------------------------------------
# Both layouts load, with identical weights and outputs
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [UVIT_NAME, DIT_NAME])
def test_hub_layout_loads_identically(tmp_path, name):
    model = randomised(name)
    write_hub(tmp_path / name / "model.safetensors", model)
    got = load_released_diffusion(name, tmp_path, **TINY)
    assert got.layout == "hub" and got.autoencoder is None and got.path == tmp_path / name / "model.safetensors"
    assert got.info is RELEASED_DIFFUSION[name] and got.scaling_factor == 0.3189 and got.backbone.name == name
    assert not got.backbone.training
    assert_same_model(model, got.backbone)


@pytest.mark.parametrize("name", [UVIT_NAME, DIT_NAME])
@pytest.mark.parametrize("where", ["{name}.pt", "{name}/checkpoint.pt"])
def test_trainer_layout_loads_the_ema_weights(tmp_path, name, where):
    model = randomised(name)
    write_trainer(tmp_path / where.format(name=name), model)
    got = load_released_diffusion(name, tmp_path, **TINY)
    assert got.layout == "trainer" and got.autoencoder is None  # load the autoencoder by got.info.autoencoder
    assert_same_model(model, got.backbone)  # the raw state_dict (zeros) was not used


def tiny_entry(monkeypatch):
    """A registry entry on the tiny DC-AE, so that a hub file can carry a whole autoencoder cheaply."""
    entry = dataclasses.replace(RELEASED_DIFFUSION[UVIT_NAME], name="dc-ae-f32c32-tiny-uvit-s-tiny-in-512px",
                                backbone="uvit-s-tiny", autoencoder="dc-ae-f32c32-tiny")
    monkeypatch.setitem(RELEASED_DIFFUSION, entry.name, entry)
    return entry


def test_hub_layout_with_autoencoder(tmp_path, monkeypatch):
    entry = tiny_entry(monkeypatch)
    torch.manual_seed(0)
    backbone = build_backbone("uvit-s-tiny", 32, 16, 1)
    ae = models.build("dc-ae-f32c32-tiny").eval()
    with torch.no_grad():  # non-default BN statistics, so that a dropped buffer would show
        for m in ae.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
    write_hub(tmp_path / f"{entry.name}.safetensors", backbone.eval(), autoencoder=ae, scaling_factor=1.0)
    got = load_released_diffusion(entry.name, tmp_path)
    assert got.layout == "hub" and got.autoencoder.name == "dc-ae-f32c32-tiny" and not got.autoencoder.training
    ref, loaded = ae.state_dict(), got.autoencoder.state_dict()
    assert set(ref) == set(loaded) and all(torch.equal(ref[k], loaded[k]) for k in ref)
    z = torch.randn(1, 32, 2, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(got.autoencoder.decode(z), ae.decode(z), rtol=1e-5, atol=1e-5)
    assert_same_model(backbone, got.backbone)


def test_read_released_diffusion_strips_prefixes(tmp_path):
    model = randomised(DIT_NAME)
    hub = read_released_diffusion(write_hub(tmp_path / "hub.safetensors", model, scaling_factor=0.3189))
    trainer = read_released_diffusion(write_trainer(tmp_path / "run.pt", model))
    assert (hub.layout, hub.family, hub.autoencoder) == ("hub", "dit", None)
    assert hub.scaling_factor == pytest.approx(0.3189) and trainer.scaling_factor is None
    assert (trainer.layout, trainer.family) == ("trainer", "dit")
    assert set(hub.backbone) == set(trainer.backbone) == official_dit_keys(TINY["depth"])
    torch.save({k: v for k, v in load_file(str(tmp_path / "hub.safetensors")).items()}, tmp_path / "hub.pt")
    assert read_released_diffusion(tmp_path / "hub.pt").layout == "hub"  # the hub layout as a flat pickle


# ----------------------------------------------------------------------------------------------------------------
# Strict loading: one clear ValueError per problem
# ----------------------------------------------------------------------------------------------------------------

def rewrite(path, edit):
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("diffusion_model.mid_block.attn.qkv.weight"),
     r"1 missing keys \(first: mid_block.attn.qkv.weight"),
    (lambda s: s.__setitem__("diffusion_model.time_embed.0.weight", torch.zeros(1)),
     r"1 unexpected keys \(first: time_embed.0.weight"),
    (lambda s: s.__setitem__("diffusion_model.decoder_pred.bias", torch.zeros(7)),
     r"1 shape mismatches \(first: decoder_pred.bias \(7,\) vs expected \(32,\)"),
])
def test_strict_loading_names_the_offending_keys(tmp_path, edit, message):
    path = write_hub(tmp_path / f"{UVIT_NAME}.safetensors", randomised(UVIT_NAME))
    rewrite(path, edit)
    with pytest.raises(ValueError, match=f"^{UVIT_NAME}: weights in .* do not match the architecture: {message}"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)


def test_checkpoint_of_another_model_is_named(tmp_path):
    write_hub(tmp_path / f"{UVIT_NAME}.safetensors", randomised(DIT_NAME))
    with pytest.raises(ValueError, match=f"^{UVIT_NAME} is a uvit .* holds a dit .*another model"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)
    f64 = "dc-ae-f64c128-in-1.0-uvit-h-in-512px"  # a 32-channel UViT under a 128-channel name
    write_hub(tmp_path / f"{f64}.safetensors", randomised(UVIT_NAME))
    with pytest.raises(ValueError, match=rf"^{f64}: weights .*shape mismatches \(first: pos_embed \(1, 258, 32\)"):
        load_released_diffusion(f64, tmp_path, **TINY)
    write_hub(tmp_path / f"{DIT_NAME}.safetensors", randomised(DIT_NAME, latent_size=8))  # a 256-px DiT
    with pytest.raises(ValueError, match=r"pos_embed in .* is \(1, 64, 32\), expected \(1, 256, 32\)"):
        load_released_diffusion(DIT_NAME, tmp_path, **TINY)


def test_unknown_names_list_close_names(tmp_path):
    with pytest.raises(ValueError, match="unknown released diffusion model .*; close names: "
                                         "dc-ae-f32c32-in-1.0-uvit-s-in-512px"):
        load_released_diffusion("dc-ae-f32c32-in-1.0-uvit-s-in-256px", tmp_path)
    with pytest.raises(ValueError, match="flow-matching"):
        load_released_diffusion("dc-ae-f32c32-in-1.0-usit-h-in-512px", tmp_path)


def test_missing_file_names_the_expected_paths(tmp_path):
    with pytest.raises(ValueError, match=f"^no released checkpoint for {DIT_NAME} under {tmp_path}; expected "
                                         f"{tmp_path}/{DIT_NAME}/model.safetensors .*{DIT_NAME}.pt"):
        load_released_diffusion(DIT_NAME, tmp_path)
    for step in (1, 2):
        write_trainer(tmp_path / DIT_NAME / f"step{step}.pt", randomised(DIT_NAME))
    with pytest.raises(ValueError, match=r"2 .pt files in .* \(step1.pt, step2.pt\); keep exactly one"):
        load_released_diffusion(DIT_NAME, tmp_path, **TINY)


def test_hub_config_json_names_the_model(tmp_path):
    write_hub(tmp_path / UVIT_NAME / "model.safetensors", randomised(UVIT_NAME))
    (tmp_path / UVIT_NAME / "config.json").write_text('{"model_name": "dc-ae-f32c32-in-1.0-uvit-h-in-512px"}')
    with pytest.raises(ValueError, match="says model_name='dc-ae-f32c32-in-1.0-uvit-h-in-512px'"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)


def test_trainer_checkpoint_problems(tmp_path):
    model = randomised(UVIT_NAME)
    path = tmp_path / f"{UVIT_NAME}.pt"
    torch.save({"state_dict": official_state(model), "epoch": 1}, path)
    with pytest.raises(ValueError, match="without EMA weights"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)
    write_trainer(path, model, decay=0.9998)
    with pytest.raises(ValueError, match=r"without EMA 0.9999 weights \(ckpt\['ema'\] has \[0.9998\]"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)
    torch.save({"ema": {0.9999: {f"net.{k}": v for k, v in official_state(model).items()}}}, path)
    with pytest.raises(ValueError, match=r"start with 'uvit.' or 'dit.'.*\['net'\]"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)


def test_foreign_files_and_scaling_factor(tmp_path):
    save_file({"encoder.weight": torch.zeros(2)}, str(tmp_path / f"{UVIT_NAME}.safetensors"))
    with pytest.raises(ValueError, match="not a released diffusion file: expected keys diffusion_model.*encoder"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)
    write_hub(tmp_path / f"{UVIT_NAME}.safetensors", randomised(UVIT_NAME), scaling_factor=0.2889)
    with pytest.raises(ValueError, match="scaling_factor 0.2889.*dc-ae-f32c32-in-1.0 has 0.3189"):
        load_released_diffusion(UVIT_NAME, tmp_path, **TINY)


# ----------------------------------------------------------------------------------------------------------------
# Every registry entry: consistent with its autoencoder, builds at full size (meta device), official parameters
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(RELEASED_DIFFUSION))
def test_every_released_entry_builds_with_its_latent_shape(name):
    info = RELEASED_DIFFUSION[name]
    assert name.startswith(f"{info.autoencoder}-{info.backbone}-in-{info.resolution}px")  # the released naming
    ae = models.zoo.info(info.autoencoder)
    assert ae.latent_channels == info.latent_channels and info.resolution // ae.spatial_compression == info.latent_size
    with torch.device("meta"):
        model = build_backbone(info.backbone, info.latent_channels, info.latent_size, info.patch_size,
                               num_classes=info.num_classes)
        x, t, y = random_inputs(model, 2, "meta")
        out = model(x, t, y)
    out_channels = info.latent_channels * (2 if BACKBONES[info.backbone].family == "dit" else 1)  # DiT learns σ
    assert out.shape == (2, out_channels, info.latent_size, info.latent_size)
    key = (info.backbone, info.latent_channels, info.latent_size, info.patch_size)
    assert key in REFERENCE_PARAMS_M  # every release has its row in reference/backbones.md §6
    assert abs(trainable_params(model) / 1e6 - REFERENCE_PARAMS_M[key]) <= 0.01


def test_cfg_scales_follow_the_readme():
    """README: "cfg=1.3 for mit-han-lab/dc-ae-f32c32-in-1.0-dit-xl-in-512px and cfg=1.5 for all other models"."""
    assert {n: r.cfg_scale for n, r in RELEASED_DIFFUSION.items() if r.cfg_scale != 1.5} == {DIT_NAME: 1.3}
    assert checkpoints.RELEASED_EMA_DECAY == 0.9999
