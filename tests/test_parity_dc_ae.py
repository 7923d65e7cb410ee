"""Parity with diffusers `AutoencoderDC` (the oracle) on converted weights, both conversion directions.

- Fast (default): every released stage/block structure with widths and latent channels divided by 16 (so the
  channel-group sizes of the Residual Autoencoding shortcuts stay those of the release), random weights with
  randomised BatchNorm running stats and norm affine parameters, at the smallest input that runs both the linear and
  the quadratic attention path (64 px for f32/f64, 128 px for f128).
- Full-size key/shape compatibility on the meta device (no memory, ~1 s per variant).
- Full-size numerical parity: `slow`.
"""

import dataclasses

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from models.checkpoints import (
    convert_diffusers_dc_to_ours,
    convert_ours_to_diffusers_dc,
    diffusers_dc_kwargs,
    load_state_dict_strict,
)
from models.dc_ae import DC_AE_VARIANTS, DCAE

RELEASED = {  # name -> smallest input size with both attention paths in the EfficientViT stages (reference §3.2)
    "dc-ae-f32c32-in-1.0": 64,
    "dc-ae-f64c128-in-1.0": 64,
    "dc-ae-f128c512-in-1.0": 128,
    "dc-ae-f32c32-sana-1.0": 64,
}


def narrow(name: str, divisor: int = 16):
    cfg = DC_AE_VARIANTS[name]
    return dataclasses.replace(cfg, widths=tuple(w // divisor for w in cfg.widths),
                               latent_channels=cfg.latent_channels // divisor)


@torch.no_grad()
def randomise_norms(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Non-trivial BN running stats and norm affine params: defaults (0/1) would hide swapped or dropped norms."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(0.2 * torch.randn(module.running_mean.shape, generator=g))
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=g))
        if type(module).__name__ in ("BatchNorm2d", "RMSNorm", "RMSNorm2d"):
            module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=g))
            module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=g))
    return model


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def check_parity(cfg, size: int, batch: int = 1):
    torch.manual_seed(0)
    oracle = randomise_norms(diffusers.AutoencoderDC(**diffusers_dc_kwargs(cfg))).eval()
    with torch.device("meta"):  # filled by assignment: the full-size models exist once in memory, not three times
        ours, fresh = DCAE(cfg), diffusers.AutoencoderDC(**diffusers_dc_kwargs(cfg))
    ours = load_state_dict_strict(ours, convert_diffusers_dc_to_ours(oracle.state_dict(), cfg)).eval()
    x = torch.rand(batch, 3, size, size) * 2 - 1
    with torch.no_grad():
        z_ref = oracle.encode(x).latent
        x_ref = oracle.decode(z_ref).sample
        assert rel_l2(ours.encode(x), z_ref) <= 1e-4
        assert rel_l2(ours.decode(z_ref), x_ref) <= 1e-4
    # Reverse: ours -> diffusers loads strictly into a fresh oracle, reproduces the tensors and the outputs.
    back = convert_ours_to_diffusers_dc(ours.state_dict(), cfg)
    fresh.load_state_dict(back, strict=True, assign=True)
    fresh.eval()
    reference = oracle.state_dict()
    assert all(torch.equal(back[k], reference[k]) for k in reference)
    with torch.no_grad():
        assert rel_l2(fresh.decode(z_ref).sample, x_ref) <= 1e-6


@pytest.mark.parametrize("name", list(RELEASED))
def test_parity_reduced_width(name):
    check_parity(narrow(name), RELEASED[name])


@pytest.mark.parametrize("name", ["dc-ae-f128c512-tiny"])  # last stage empty, widened widths
def test_parity_our_reduced_variants(name):
    cfg = DC_AE_VARIANTS[name]
    check_parity(cfg, max(32, cfg.spatial_compression))


@pytest.mark.parametrize("name", [n for n in DC_AE_VARIANTS if n.endswith("1.0")])
def test_full_size_keys_and_shapes_match_on_meta(name):
    cfg = DC_AE_VARIANTS[name]
    with torch.device("meta"):
        oracle = diffusers.AutoencoderDC(**diffusers_dc_kwargs(cfg))
        ours = DCAE(cfg)
    theirs_sd, ours_sd = oracle.state_dict(), ours.state_dict()
    converted = convert_diffusers_dc_to_ours(theirs_sd, cfg)
    assert set(converted) == set(ours_sd)
    assert all(converted[k].shape == v.shape for k, v in ours_sd.items())
    back = convert_ours_to_diffusers_dc(ours_sd, cfg)
    assert set(back) == set(theirs_sd)
    assert all(back[k].shape == v.shape for k, v in theirs_sd.items())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RELEASED))
def test_parity_full_size(name):
    check_parity(DC_AE_VARIANTS[name], RELEASED[name])
