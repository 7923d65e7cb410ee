"""Closed-form cost model (models/costs.py) vs reference/backbones.md §6 and vs torch's FlopCounterMode.

FlopCounterMode counts matmuls, convolutions and (on the meta device, where SDPA decomposes into bmm) the attention
matmuls: exactly what the closed form counts, so the two must agree (tolerance 2 %, measured 0 %).
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import costs
from models.backbones import backbone_config, build_backbone, random_inputs

# backbones.md §6: (table, backbone, autoencoder, p, resolution) -> (tokens, params M, MACs G)
SECTION6 = {
    ("table1", "dit-xl", "SD-VAE-f8", 4, 512): (256, 675.00, 118.66),
    ("table1", "dit-xl", "SD-VAE-f16", 2, 512): (256, 675.00, 118.66),
    ("table1", "dit-xl", "SD-VAE-f32", 1, 512): (256, 675.00, 118.66),
    ("table1", "uvit-s", "SD-VAE-f8", 8, 512): (64, 44.92, 2.98),
    ("table1", "uvit-s", "SD-VAE-f16", 4, 512): (64, 44.92, 2.98),
    ("table1", "uvit-s", "SD-VAE-f32", 2, 512): (64, 44.92, 2.98),
    ("table1", "uvit-s", "DC-AE-f64", 1, 512): (64, 44.79, 2.97),
    ("table3", "uvit-s", "Flux-VAE-f8", 2, 512): (1024, 45.21, 59.27),
    ("table3", "uvit-s", "SD-VAE-f8", 2, 512): (1024, 45.17, 59.22),
    ("table3", "uvit-s", "SD-VAE-f16", 2, 512): (256, 44.82, 12.27),
    ("table3", "uvit-s", "SD-VAE-f32", 1, 512): (256, 44.82, 12.27),
    ("table3", "uvit-s", "DC-AE-f32", 1, 512): (256, 44.79, 12.26),
    ("table3", "uvit-s", "DC-AE-f64", 1, 512): (64, 44.79, 2.97),
    ("table3", "dit-xl", "SD-VAE-f8", 2, 512): (1024, 674.83, 524.54),
    ("table3", "dit-xl", "DC-AE-f32", 1, 512): (256, 674.89, 118.64),
    ("table3", "uvit-h", "SD-VAE-f8", 2, 512): (1024, 501.72, 582.34),
    ("table3", "uvit-h", "DC-AE-f32", 1, 512): (256, 500.87, 133.21),
    ("table3", "uvit-h", "DC-AE-f64", 1, 512): (64, 500.87, 33.24),
    ("table4", "dit-s", "SD-VAE-f8", 2, 1024): (4096, 32.87, 241.68),
    ("table4", "dit-s", "SD-VAE-f8", 4, 1024): (1024, 32.92, 31.49),
    ("table4", "dit-s", "DC-AE-f32", 1, 1024): (1024, 32.88, 31.46),
    ("table4", "dit-s", "DC-AE-f64", 1, 1024): (256, 32.99, 6.09),
    ("table4", "dit-s", "SD-VAE-f8", 4, 2048): (4096, 32.92, 241.91),
    ("table4", "dit-s", "DC-AE-f64", 1, 2048): (1024, 32.99, 31.57),
    ("table5", "pixart-alpha", "SD-VAE-f8", 2, 512): (1024, 610.86, 617.99),
    ("table5", "pixart-alpha", "DC-AE-f32", 1, 512): (256, 610.91, 149.07),
}


def _key(r: costs.CostRow):
    return (r.table, r.backbone, r.autoencoder, r.patch_size, r.resolution)


def test_every_paper_row_is_listed_once():
    assert sorted(map(_key, costs.PAPER_ROWS)) == sorted(SECTION6)


@pytest.mark.parametrize("row", costs.PAPER_ROWS, ids=lambda r: "-".join(map(str, _key(r))))
def test_closed_form_matches_reference_table(row):
    tokens, params_m, gmacs = SECTION6[_key(row)]
    c = costs.row_costs(row)
    assert c["tokens"] == tokens
    assert round(c["params_m"], 2) == params_m
    assert abs(c["gmacs"] - gmacs) <= 0.0051  # printed to 2 decimals
    assert c["gflops"] == pytest.approx(2 * c["gmacs"])


def test_extra_rows_and_headline_flop_ratio():
    """UViT-2B / DiT-XL extras of §6, and the abstract's FLOP ratio 1164.7 / 66.5 = 17.5x (efficiency.md §4.3)."""
    assert round(costs.macs(backbone_config("uvit-2b", 4, 64, 2)) / 1e9, 2) == 1743.17
    assert round(costs.macs(backbone_config("uvit-2b", 128, 8, 1)) / 1e9, 2) == 104.64
    assert round(costs.macs(backbone_config("dit-xl", 128, 8, 1)) / 1e9, 2) == 29.06
    ratio = costs.gflops(backbone_config("uvit-h", 4, 64, 2)) / costs.gflops(backbone_config("uvit-h", 128, 8, 1))
    assert round(ratio, 1) == 17.5


@pytest.mark.parametrize("shape,expected_gib", [
    (("uvit-h", 128, 8, 1), 9.6), (("uvit-h", 32, 16, 1), 15.7), (("dit-xl", 32, 16, 1), 17.9),
    (("uvit-h", 4, 64, 2), 40.2), (("dit-xl", 4, 64, 2), 41.6), (("pixart-alpha", 4, 64, 2), 40.6),
    (("dit-s", 4, 128, 2), 18.5)])
def test_analytic_memory_bound_matches_efficiency_md(shape, expected_gib):
    """efficiency.md §4.5: 16·P + n_blocks·B·L·d·4 bytes at B = 256, in GiB (1 decimal)."""
    assert round(costs.train_memory_bytes_analytic(backbone_config(*shape), 256) / 1024 ** 3, 1) == expected_gib


def _measured_macs(name, c, size, p):
    with torch.device("meta"):
        model = build_backbone(name, c, size, p).eval()
        x, t, cond = random_inputs(model, 1, "meta")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, t, cond)
    return counter.get_total_flops() / 2, model.config


# One paper row per family (the largest token count: attention matters most) + tiny variants; all rows under `slow`.
FLOP_ROWS = [("uvit-h", 4, 64, 2), ("dit-xl", 32, 16, 1), ("pixart-alpha", 4, 64, 2), ("dit-s", 4, 128, 2),
             ("uvit-s", 128, 8, 1), ("uvit-s-tiny", 4, 16, 2), ("dit-xl-tiny", 4, 16, 1),
             ("pixart-alpha-tiny", 8, 8, 1)]


@pytest.mark.parametrize("shape", FLOP_ROWS, ids=lambda s: "-".join(map(str, s)))
def test_closed_form_macs_match_flop_counter(shape):
    measured, cfg = _measured_macs(*shape)
    assert measured == pytest.approx(costs.macs(cfg), rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("row", costs.PAPER_ROWS, ids=lambda r: "-".join(map(str, _key(r))))
def test_closed_form_macs_match_flop_counter_every_row(row):
    measured, cfg = _measured_macs(row.backbone, row.latent_channels, row.latent_size, row.patch_size)
    assert measured == pytest.approx(costs.macs(cfg), rel=0.02)


def test_attention_share_of_dit_s_at_1024():
    """efficiency.md §6: DiT-S SD-VAE-f8 p2 at 1024 px spends 64 % of its MACs in attention matmuls."""
    cfg = backbone_config("dit-s", 4, 128, 2)
    assert round(costs.attention_macs(cfg) / costs.macs(cfg), 2) == 0.64
