"""Image groups for the claims' jackknife, and the collapse detector (bench/evals/image_groups.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.evals import image_groups as G
from bench.evals import metrics as M
from models import data


def _photos(n=24, res=64):
    ds = data.EmbeddedPhotos("test", res, n_images=n)
    return torch.stack([ds.get_uint8(i) for i in range(len(ds))]), ds


def _measure(x_uint8, y_uint8) -> G.OutputSpread:
    s = G.OutputSpread()
    s.add(x_uint8, y_uint8)
    return s


def _spread(x_uint8, y_uint8):
    return _measure(x_uint8, y_uint8).ratio()


def _explained(x_uint8, y_uint8):
    return _measure(x_uint8, y_uint8).explained()


def test_a_constant_output_model_is_collapsed_and_a_working_one_is_not():
    x, _ = _photos()
    constant = x[:1].expand_as(x).clone()  # one image whatever the input
    assert _spread(x, constant) == pytest.approx(0.0, abs=1e-9) and G.is_collapsed(_spread(x, constant))
    assert _spread(x, x) == pytest.approx(1.0) and not G.is_collapsed(_spread(x, x))
    blurry = F.interpolate(F.avg_pool2d(x.float(), 8), scale_factor=8, mode="bilinear").round().to(torch.uint8)
    assert 0.5 < _spread(x, blurry) < 1.0 and not G.is_collapsed(_spread(x, blurry))  # bad but working


def test_outputs_unrelated_to_their_inputs_are_collapsed_though_they_vary():
    """Each input gets another input's image back: as varied as the inputs, but no nearer them than their mean."""
    x, _ = _photos()
    shuffled = torch.roll(x, 1, dims=0)
    assert _spread(x, shuffled) > 0.9 and _explained(x, shuffled) < 0
    assert G.is_collapsed(_spread(x, shuffled), _explained(x, shuffled))
    assert _explained(x, x) == pytest.approx(1.0)
    blurry = F.interpolate(F.avg_pool2d(x.float(), 8), scale_factor=8, mode="bilinear").round().to(torch.uint8)
    assert _explained(x, blurry) > 0.5


def test_a_nearly_constant_output_is_collapsed():
    x, _ = _photos()
    mean = x.float().mean(0, keepdim=True)
    faint = (mean + 0.1 * (x.float() - mean)).round().to(torch.uint8)  # 10 % of the inputs' variation
    assert G.is_collapsed(_spread(x, faint))


def test_spreads_of_shards_merge_to_the_whole():
    x, _ = _photos()
    y = torch.flip(x, dims=[3])
    a, b = G.OutputSpread(), G.OutputSpread()
    a.add(x[:10], y[:10])
    b.add(x[10:], y[10:])
    a.merge(b)
    assert a.ratio() == pytest.approx(_spread(x, y))


def test_embedded_images_are_grouped_by_source_photo():
    _, ds = _photos()
    groups, kind = G.image_groups(ds, range(len(ds)))
    assert kind == "photos" and set(groups) == {c.source for c in ds.plan} and len(set(groups)) >= 2
    synthetic = data.SyntheticDataset(40, 32)
    blocks, kind = G.image_groups(synthetic, range(40))
    assert kind == "index blocks" and len(set(blocks)) == 14 and blocks[0] == blocks[2] != blocks[39]


def test_recon_jackknife_leaves_one_photo_out_of_every_metric():
    rng = np.random.default_rng(0)
    groups = ["p0"] * 4 + ["p1"] * 3 + ["p2"] * 5
    psnr = rng.normal(20, 2, 12)
    rec, ref = rng.normal(0, 1, (12, 16)), rng.normal(0, 1, (12, 16))
    jk = G.recon_jackknife(groups, "photos", {"psnr": psnr}, rec, ref)["photos"]
    keep = np.array(groups) != "p1"
    assert jk["groups"] == ["p0", "p1", "p2"] and jk["psnr"][1] == pytest.approx(psnr[keep].mean())
    assert jk["rfid"][1] == pytest.approx(M.frechet_distance_low_rank(rec[keep], ref[keep]))
    assert jk["kid"][1] == pytest.approx(M.FullSetKID()(rec[keep], ref[keep]))


def test_generated_jackknife_leaves_out_samples_and_reference_photos_separately():
    rng = np.random.default_rng(1)
    samples, ref = rng.normal(0, 1, (40, 8)), rng.normal(0.2, 1, (30, 8))
    ref_groups = [f"p{i % 3}" for i in range(30)]
    jk = G.generated_jackknife(samples, {"gfid": ref}, ref_groups, "photos")
    s_keep = np.arange(40) % G.BLOCKS != 0
    assert jk["samples"]["gfid"][0] == pytest.approx(M.frechet_distance_low_rank(samples[s_keep], ref))
    r_keep = np.array(ref_groups) != "p0"
    assert jk["reference photos"]["kid"][0] == pytest.approx(M.FullSetKID()(samples, ref[r_keep]))
