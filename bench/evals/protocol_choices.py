"""How far each common protocol choice moves rFID and PSNR, for one autoencoder on one image set.

Each row changes one choice of the paper's reconstruction protocol (``recon``: ADM centre crop, reconstructions
rounded to uint8, PyTorch bilinear resize to 299 px before the FID Inception, reference = the same crops, all N
images) and gives the change with a 90 % interval from a delete-one-group jackknife over the images' source photos
(embedded photos) or index blocks (folders), both protocols recomputed on the same images each time:

- resize before the FID network: TF1-compatible bilinear (torch-fidelity, pytorch-fid's TF mode), PIL bicubic on
  each channel as floats (clean-fid);
- uint8 conversion of the reconstructions: truncation instead of rounding;
- reference set: the originals of other images (the other half of the source groups) instead of the same crops;
- N: random subsets of N/2 and N/4 images (mean over 5 draws; the small-N bias of FID shows as a rise).

The crop rule (ADM centre crop vs resize-then-crop) needs the source images: it is measured for image folders and
reported as not applicable for the embedded crops.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.errors import RowFailed, UsageError
from bench.evals import autoencoder_sources as sources
from bench.evals.image_groups import image_groups, leave_one_out
from bench.evals.inception import feature_network
from bench.evals.metrics import FeatureStats, fid_from_stats, frechet_distance_low_rank, psnr_per_image
from bench.evals.metrics import to_uint8 as metrics_to_uint8
from bench.evals.own_autoencoder import dataset_of

SIZE = 299  # the FID Inception's input side
RESIZES = ("bilinear", "tf1", "pil-bicubic")


def resize(x: torch.Tensor, how: str) -> torch.Tensor:
    """(N, 3, r, r) floats in [-1, 1] to (N, 3, 299, 299) by one of ``RESIZES``."""
    if how == "bilinear":
        return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    if how == "tf1":
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
        return interpolate_bilinear_2d_like_tensorflow1x(x, size=(SIZE, SIZE), align_corners=False)
    if how == "pil-bicubic":
        out = [torch.from_numpy(np.array(Image.fromarray(ch.numpy(), mode="F").resize((SIZE, SIZE),
                                                                                       Image.BICUBIC)))
               for img in x.float().cpu() for ch in img]
        return torch.stack(out).reshape(len(x), 3, SIZE, SIZE).to(x.device)
    raise ValueError(f"unknown resize {how!r}; use one of {RESIZES}")


@torch.no_grad()
def features(net: Any, u: torch.Tensor, how: str, batch: int = 16) -> np.ndarray:
    """Features of uint8 images after the ``how`` resize, as the network sees a 299-px float input."""
    out = [net.features_normalized(resize(u[i:i + batch].float() / 127.5 - 1, how)) for i in range(0, len(u), batch)]
    return torch.cat(out).double().cpu().numpy()


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets: the exact low-rank form when both have fewer rows than dimensions (fast enough for
    the jackknife's many subsets), else from the covariances."""
    if len(a) < a.shape[1] and len(b) < b.shape[1]:
        return frechet_distance_low_rank(a, b)
    sa, sb = FeatureStats(a.shape[1]), FeatureStats(b.shape[1])
    sa.add(a)
    sb.add(b)
    return fid_from_stats(sa, sb)


def to_uint8(x: torch.Tensor, how: str) -> torch.Tensor:
    """Reconstructions in [-1, 1] to uint8 by the protocol's rounding (``metrics.to_uint8``) or by truncation."""
    if how == "round":
        return metrics_to_uint8(x)
    return (255 * (x.detach().float() + 1) / 2).clamp(0, 255).to(torch.uint8)


def jackknife_interval(groups: list[str], delta: Callable[[np.ndarray], float], level_z: float = 1.645
                       ) -> tuple[float, float, float]:
    """The change on all images and its interval from the delete-one-group jackknife (normal, 90 %)."""
    full = delta(np.arange(len(groups)))
    _, loo = leave_one_out(groups, delta)
    g = len(loo)
    if g < 2:
        return full, math.nan, math.nan
    se = math.sqrt((g - 1) / g * sum((v - sum(loo) / g) ** 2 for v in loo))
    return full, full - level_z * se, full + level_z * se


def choices(orig: torch.Tensor, rec: torch.Tensor, groups: list[str], net: Any, seed: int = 0,
            crop: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[dict]:
    """The rows of the module docstring from uint8 originals ``orig`` and float reconstructions ``rec`` (and, for
    image folders, ``crop``: the same images cropped by resize-then-crop, and their reconstructions)."""
    rec_u = to_uint8(rec, "round")
    f_orig = {h: features(net, orig, h) for h in RESIZES}
    f_rec = {h: features(net, rec_u, h) for h in RESIZES}
    f_trunc = features(net, to_uint8(rec, "floor"), "bilinear")
    psnr_round = psnr_per_image(rec_u, orig).double().numpy()
    psnr_trunc = psnr_per_image(to_uint8(rec, "floor"), orig).double().numpy()
    base = lambda i: fid(f_rec["bilinear"][i], f_orig["bilinear"][i])  # noqa: E731
    rows = [_row("the paper's protocol", "-", base(np.arange(len(orig))), float(psnr_round.mean()))]
    for h, what in (("tf1", "TF1-compatible bilinear (torch-fidelity, pytorch-fid TF mode)"),
                    ("pil-bicubic", "PIL bicubic on float channels (clean-fid)")):
        rows.append(_row("resize before the FID network", what, fid(f_rec[h], f_orig[h]), float(psnr_round.mean()),
                         jackknife_interval(groups, lambda i, h=h: fid(f_rec[h][i], f_orig[h][i]) - base(i))))
    rows.append(_row("uint8 conversion", "truncation instead of rounding", fid(f_trunc, f_orig["bilinear"]),
                     float(psnr_trunc.mean()),
                     jackknife_interval(groups, lambda i: fid(f_trunc[i], f_orig["bilinear"][i]) - base(i)),
                     jackknife_interval(groups, lambda i: float(psnr_trunc[i].mean() - psnr_round[i].mean()))))
    rows.append(_reference_row(f_rec["bilinear"], f_orig["bilinear"], groups))
    if crop is not None:
        rows.append(_crop_row(crop, net, groups, base, f_rec["bilinear"], f_orig["bilinear"], psnr_round))
    else:
        rows.append(_row("crop", "resize-then-crop instead of the ADM centre crop: not applicable (the embedded "
                         "crops have no source image file to crop again)", math.nan, math.nan))
    rows += _subset_rows(f_rec["bilinear"], f_orig["bilinear"], seed)
    return rows


def _reference_row(fr: np.ndarray, fo: np.ndarray, groups: list[str]) -> dict:
    """Reconstructions of half the source groups against the originals of the other half, beside the same halves'
    rFID against their own originals (no interval: each half is one draw)."""
    names = sorted(set(groups))
    half_a = np.array([groups[i] in set(names[::2]) for i in range(len(groups))])
    a, b = np.flatnonzero(half_a), np.flatnonzero(~half_a)
    n = min(len(a), len(b))
    if n < 2:
        return _row("reference set", "other images instead of the same crops: too few source groups", math.nan,
                    math.nan)
    same, other = fid(fr[a[:n]], fo[a[:n]]), fid(fr[a[:n]], fo[b[:n]])
    return _row("reference set", f"other images ({n} of other source groups) instead of the same {n} crops", other,
                math.nan, (other - same, math.nan, math.nan))


def _crop_row(crop, net, groups, base, fr, fo, psnr_round) -> dict:
    orig2, rec2 = crop
    rec2_u = to_uint8(rec2, "round")
    f2r, f2o = features(net, rec2_u, "bilinear"), features(net, orig2, "bilinear")
    psnr2 = psnr_per_image(rec2_u, orig2).double().numpy()
    return _row("crop", "resize short side then centre crop instead of the ADM centre crop", fid(f2r, f2o),
                float(psnr2.mean()), jackknife_interval(groups, lambda i: fid(f2r[i], f2o[i]) - fid(fr[i], fo[i])),
                jackknife_interval(groups, lambda i: float(psnr2[i].mean() - psnr_round[i].mean())))


def resize_then_crop(path, resolution: int) -> torch.Tensor:
    """The common alternative to the ADM crop: one BICUBIC resize of the short side, then the centre square."""
    img = Image.open(path).convert("RGB")
    scale = resolution / min(img.size)
    img = img.resize(tuple(max(resolution, round(v * scale)) for v in img.size), Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - resolution) // 2, (arr.shape[1] - resolution) // 2
    return torch.from_numpy(arr[top:top + resolution, left:left + resolution].copy()).permute(2, 0, 1)


def _subset_rows(fr: np.ndarray, fo: np.ndarray, seed: int, draws: int = 5) -> list[dict]:
    rng = np.random.default_rng(seed)
    n, full = len(fr), fid(fr, fo)
    out = []
    for k in (2, 4):
        m = n // k
        if m < 2:
            continue
        vals = [fid(fr[s], fo[s]) for s in (rng.choice(n, m, replace=False) for _ in range(draws))]
        sd = float(np.std(vals, ddof=1))
        mean = float(np.mean(vals))
        out.append(_row("N (images)", f"{m} random images instead of {n} (mean of {draws} draws; interval: +- 1.645 "
                        f"sd of the draws)", mean, math.nan, (mean - full, mean - full - 1.645 * sd,
                                                              mean - full + 1.645 * sd)))
    return out


def _row(choice: str, change: str, rfid: float, psnr: float, d_rfid=(0.0, math.nan, math.nan),
         d_psnr=(0.0, math.nan, math.nan)) -> dict:
    return {"choice": choice, "change": change, "rfid": rfid, "d_rfid": d_rfid[0], "d_rfid_lo": d_rfid[1],
            "d_rfid_hi": d_rfid[2], "psnr": psnr, "d_psnr": d_psnr[0], "d_psnr_lo": d_psnr[1],
            "d_psnr_hi": d_psnr[2]}


@torch.no_grad()
def _reconstruct(model, u: torch.Tensor, device: str, batch: int) -> torch.Tensor:
    return torch.cat([model(u[i:i + batch].float().div(127.5).sub(1).to(device)).float().cpu()
                      for i in range(0, len(u), batch)])


def run(cfg, ctx) -> dict[str, Any]:
    """Eval ``protocol`` (``bench.configs.ProtocolConfig``): load, reconstruct once per crop rule, score each choice."""
    device = "cuda" if str(ctx.device).startswith("cuda") else "cpu"
    model, digest = sources.load(sources.Source(cfg.model, cfg.kind, cfg.weights_digest), ctx.options.get("weights"))
    if digest != cfg.weights_digest:
        raise RowFailed(f"{cfg.model} changed while the command ran; run it again")
    if cfg.resolution % model.spatial_compression:
        raise UsageError(f"--resolution {cfg.resolution} is not a multiple of the model's factor "
                         f"f={model.spatial_compression}")
    model = model.to(device).eval()
    dataset = dataset_of(cfg)
    images = {i: dataset.get_uint8(i) for i in range(len(dataset))}
    keep = [i for i, u in images.items() if u is not None]
    orig = torch.stack([images[i] for i in keep])
    groups = image_groups(dataset, keep)[0]
    crop = None
    if hasattr(dataset, "files"):
        orig2 = torch.stack([resize_then_crop(dataset.files[i], cfg.resolution) for i in keep])
        crop = (orig2, _reconstruct(model, orig2, device, cfg.batch_size))
    net = feature_network(cfg.features, ctx.options.get("inception_weights"), device)
    ctx.log(f"{len(keep)} images, {len(set(groups))} groups; features: {net.name}")
    rows = choices(orig, _reconstruct(model, orig, device, cfg.batch_size), groups, net, cfg.seed, crop)
    return {"rfid": rows[0]["rfid"], "psnr": rows[0]["psnr"], "_rows": json.dumps(rows), "_n_images": len(keep),
            "_groups": len(set(groups)), "_model": model.description, "_features": net.name,
            "_feature_sha256": getattr(net, "sha256", ""), "_dataset": dataset.description}
