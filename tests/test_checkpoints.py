"""Checkpoints: our safetensors round trip, strict-loading errors, fake official folders (efficientvit, diffusers)."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import models
from models import checkpoints

TINY = "dc-ae-f32c32-tiny"


def tiny(name: str = TINY, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = models.build(name, **overrides)
    with torch.no_grad():  # non-default BN stats so that a dropped buffer would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int = 32) -> bool:
    """Equal outputs to a float32 tolerance, not bit for bit: two separately allocated modules with identical state
    dicts may take different CPU kernel paths (oneDNN picks blockings by memory alignment and CPU), and on another
    machine of this kind the round trip differed by 1.2e-6. The state dicts are compared exactly by the callers; a
    dropped buffer or a wrong weight moves the outputs by far more than this tolerance (test_wrong_weight_detected)."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        return torch.allclose(a(x), b(x), rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = tiny(residual_autoencoding=False)
    path = models.save(model, tmp_path / "ae.safetensors")
    loaded = models.load(path)
    assert loaded.name == TINY and loaded.config == model.config  # the ablation travels with the weights
    assert not loaded.training and same_outputs(model, loaded)
    state, ref = loaded.state_dict(), model.state_dict()
    assert all(torch.equal(state[k], ref[k]) for k in ref)  # BN running stats included


def test_wrong_weight_detected():
    """The tolerance of same_outputs is tight enough to see one BN statistic off by 0.01."""
    model, other = tiny(), tiny()
    assert same_outputs(model, other)
    with torch.no_grad():
        bn = next(m for m in other.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_mean[0] += 0.01
    assert not same_outputs(model, other)


def test_save_load_round_trip_sd_vae(tmp_path):
    pytest.importorskip("models.sd_vae")
    model = tiny("sd-vae-f8c4-tiny")
    loaded = models.load(models.save(model, tmp_path / "vae.safetensors"))
    assert loaded.config == model.config and same_outputs(model, loaded)


def rewrite(path, edit):
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": checkpoints.FORMAT, "family": "dc-ae", "name": TINY,
                                          "config": json.dumps(dataclasses.asdict(tiny().config))})


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("decoder.project_in.main.conv.bias"), r"1 missing keys \(first: decoder.project_in.main.conv.bias"),
    (lambda s: s.__setitem__("encoder.extra.weight", torch.zeros(1)), r"1 unexpected keys \(first: encoder.extra"),
    (lambda s: s.__setitem__("decoder.project_in.main.conv.bias", torch.zeros(7)),
     r"1 shape mismatches \(first: decoder.project_in.main.conv.bias \(7,\) vs expected \(64,\)"),
])
def test_strict_loading_names_the_offending_keys(tmp_path, edit, message):
    path = models.save(tiny(), tmp_path / "ae.safetensors")
    rewrite(path, edit)
    with pytest.raises(ValueError, match=f"^{TINY}: weights in .* do not match the architecture: {message}"):
        models.load(path)


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    path = models.save(tiny(), tmp_path / "ae.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        models.load(tmp_path / "cut.safetensors")
    (tmp_path / "cut2.safetensors").write_bytes(data[:20])
    with pytest.raises(ValueError, match="not a safetensors file"):
        models.load(tmp_path / "cut2.safetensors")
    (tmp_path / "text.safetensors").write_text("this is not a checkpoint at all\n")
    with pytest.raises(ValueError, match="not a safetensors file"):
        models.load(tmp_path / "text.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a dcae-bench checkpoint"):
        models.load(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="no such checkpoint"):
        models.load(tmp_path / "missing.safetensors")


def test_pickles_are_read_weights_only(tmp_path):
    model = tiny()
    torch.save({"state_dict": {"model": model.state_dict()}, "epoch": 3}, tmp_path / "nested.pt")
    assert same_outputs(model, models.load_pretrained(TINY, tmp_path / "nested.pt"))

    class Payload:  # an arbitrary object: must never be unpickled
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"state_dict": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights-only"):
        models.load_pretrained(TINY, tmp_path / "evil.pt")


def test_efficientvit_layout_folder(tmp_path):
    # Our parameter names are efficientvit's: the official model.safetensors is our state dict.
    model = tiny()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_name": TINY}))
    loaded = models.load_pretrained(TINY, tmp_path)
    assert same_outputs(model, loaded)
    with pytest.raises(ValueError, match="model_name='dc-ae-f32c32-tiny'"):
        models.load_pretrained("dc-ae-f32c64-tiny", tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ValueError, match="^dc-ae-f32c64-tiny: weights in .*shape mismatches"):
        models.load_pretrained("dc-ae-f32c64-tiny", tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no diffusion_pytorch_model.safetensors"):
        models.load_pretrained(TINY, tmp_path)


def test_diffusers_layout_folder_dc_ae(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    cfg = models.build(TINY).config
    torch.manual_seed(0)
    oracle = diffusers.AutoencoderDC(**checkpoints.diffusers_dc_kwargs(cfg)).eval()
    oracle.save_pretrained(tmp_path)  # config.json + diffusion_pytorch_model.safetensors
    ours = models.load_pretrained(TINY, tmp_path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours.encode(x), oracle.encode(x).latent, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="config.json describes another architecture: latent_channels: file 32 vs ours 64"):
        models.load_pretrained("dc-ae-f32c64-small", tmp_path)


def test_diffusers_layout_folder_sd_vae(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    name = "sd-vae-f8c4-tiny"
    cfg = models.build(name).config
    torch.manual_seed(0)
    oracle = diffusers.AutoencoderKL(**checkpoints.diffusers_kl_kwargs(cfg)).eval()
    oracle.save_pretrained(tmp_path)
    ours = models.load_pretrained(name, tmp_path)
    z = torch.randn(1, cfg.latent_channels, 4, 4)
    with torch.no_grad():
        assert torch.allclose(ours.decode(z), oracle.decode(z).sample, rtol=1e-4, atol=1e-5)
