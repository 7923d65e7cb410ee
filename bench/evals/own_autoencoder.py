"""Eval ``eval-ae``: the paper's reconstruction protocol (``recon``: ADM centre crop, uint8 rounding, rFID against
the same images through the FID Inception, PSNR / SSIM / LPIPS per image) on any autoencoder, and the statistics
of its latents on the same images.

Latent statistics, over every latent value of every image (channels also one by one):

- ``latent_std`` and ``scaling_factor`` = 1 / std: DC-AE's convention (latents are multiplied by it before
  diffusion);
- ``shift_factor`` = mean and the same scale: the shift-and-scale pair of SD3 / FLUX ((z - shift) * scale);
- per-channel mean and std (``_latent_channel_mean`` / ``_latent_channel_std``), which show a channel that is dead
  or dominates.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bench.configs import EMBEDDED_TEST, AutoencoderEvalConfig
from bench.errors import RowFailed, UsageError
from bench.evals import autoencoder_sources as sources
from bench.evals.reconstruction import evaluate, metric_networks
from models import data


def dataset_of(cfg: AutoencoderEvalConfig) -> Any:
    """The images of ``cfg``: the embedded held-out photos or a folder, centre-cropped to ``cfg.resolution``."""
    try:
        if cfg.data == str(EMBEDDED_TEST):
            return data.EmbeddedPhotos("test", cfg.resolution, n_images=cfg.n_images)
        return data.ImageFolderDataset(cfg.data, cfg.resolution, n_images=cfg.n_images)
    except data.DataFolderError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(f"{e}; lower --limit or the resolution") from None


class LatentMoments:
    """Running per-channel sums of latents (float64), for mean and std over images and positions."""

    def __init__(self) -> None:
        self.n = 0
        self.s: torch.Tensor | None = None
        self.s2: torch.Tensor | None = None

    def add(self, z: torch.Tensor) -> None:
        z = z.detach().double().transpose(0, 1).reshape(z.shape[1], -1)  # (c, B*h*w)
        s, s2 = z.sum(1), (z * z).sum(1)
        self.s = s if self.s is None else self.s + s
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += z.shape[1]

    def metrics(self) -> dict[str, Any]:
        if self.s is None or self.n < 2:
            raise RowFailed("no latents were measured (no readable image)")
        mean_c = self.s / self.n
        std_c = (self.s2 / self.n - mean_c ** 2).clamp_min(0).sqrt()
        c = self.s.numel()
        mean = float(self.s.sum() / (self.n * c))
        std = float((self.s2.sum() / (self.n * c) - mean ** 2) ** 0.5)
        return {"latent_mean": mean, "latent_std": std, "scaling_factor": 1.0 / std if std > 0 else float("inf"),
                "shift_factor": mean, "latent_rms": float((self.s2.sum() / (self.n * c)) ** 0.5),
                "_latent_channel_mean": json.dumps([round(float(v), 6) for v in mean_c]),
                "_latent_channel_std": json.dumps([round(float(v), 6) for v in std_c])}


@torch.no_grad()
def latent_statistics(model: sources.Autoencoder, dataset: Any, batch_size: int, device: str) -> dict[str, Any]:
    """Encode every readable image once and return the latent statistics of the module docstring."""
    moments = LatentMoments()
    for start in range(0, len(dataset), batch_size):
        items = [dataset.get_uint8(i) for i in range(start, min(start + batch_size, len(dataset)))]
        items = [u for u in items if u is not None]
        if items:
            x = torch.stack(items).float().div(127.5).sub(1).to(device)
            moments.add(model.encode(x))
    return moments.metrics()


def run(cfg: AutoencoderEvalConfig, ctx) -> dict[str, Any]:
    """Load the autoencoder, check the resolution, run the reconstruction protocol, then measure its latents."""
    device = "cuda" if str(ctx.device).startswith("cuda") else "cpu"
    model, digest = sources.load(sources.Source(cfg.model, cfg.kind, cfg.weights_digest), ctx.options.get("weights"))
    if digest != cfg.weights_digest:
        raise RowFailed(f"{cfg.model} changed while the command ran (weights {digest}, expected {cfg.weights_digest});"
                        f" run it again")
    f = model.spatial_compression
    if cfg.resolution % f:
        raise UsageError(f"--resolution {cfg.resolution} is not a multiple of the model's spatial factor f={f}; "
                         f"use e.g. {max(f, cfg.resolution // f * f)}")
    model = model.to(device).eval()
    dataset = dataset_of(cfg)
    res = evaluate(model, dataset, ctx.run_dir, **metric_networks(cfg, ctx, device), batch_size=cfg.batch_size,
                   device=device, n_samples=cfg.n_samples, cache_dir=Path(ctx.run_dir).parent / "_cache",
                   weights_id=digest, log=ctx.log)
    out = res.metrics
    if not out.get("_complete", False):
        raise RowFailed(f"evaluation incomplete: {out}")
    c = model.latent_channels
    out.update(latent_statistics(model, dataset, cfg.batch_size, device))
    out.update(f=f, c=c, compression=f * f * 3 / c, params=sum(p.numel() for p in model.parameters()),
               _model=model.description, _dataset=dataset.description, _dataset_id=dataset.identity,
               _latent_shape=json.dumps([c, cfg.resolution // f, cfg.resolution // f]))
    return out
