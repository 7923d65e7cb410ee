"""Table 1: patch size vs autoencoder spatial compression at equal token count (ImageNet 512, DiT-XL and UViT-S).

Caption (paper): moving compression from the patch embedding into the autoencoder, at an equal number of tokens,
improves gFID. Each row trains a latent diffusion model (eval ``train-diffusion``) on one autoencoder's latents and
samples it twice (eval ``generate``): without guidance and with CFG (``CFG_SCALE``: the paper states no Table 1
scale; U-ViT 1.5 is the official U-ViT scale, DiT-XL 1.3 is our choice, the released DC-AE-f32 DiT-XL's scale applied
to every DiT row). The row's two gFIDs sit beside the paper's; claim rows ask the paper's direction within each
backbone (the deepest autoencoder compression with patch 1 vs the f8 autoencoder with the largest patch), each
statement naming the reduced models, patches, latent grids and data that ran, then the paper's row it stands for.

Scales:
- ``paper``: ImageNet-train at 512 px (--data D with D/imagenet-train), the official recipes, 50,000 samples
  scored against ImageNet-train's Inception statistics, GPUs. The SD-VAE-f16 / f32 of the paper are unreleased
  (the stacked baselines sd-vae-f16c16 / sd-vae-f32c64 stand in; their channels are assumed).
- ``small``: 128 px embedded training crops (class = source photo), 16 tokens per block (the paper's 256 / 64 do not
  fit a 2-core CPU): DiT-XL rows keep the paper's patches (f8 p4, f16 p2, f32 p1), UViT-S rows halve them (f8 p4,
  f16 p2, f32 p1) and DC-AE-f64 p1 becomes DC-AE-f32c32 p1 (f64 at 128 px is a 2x2 latent). Each row's reduced
  autoencoder is Table 2's run of that model (phase 1 at 128 px, trained to Table 2's plateau rule; fair SD-VAE
  widths, models/sd_vae.py), diffusion seed s on autoencoder seed s; on its latents it trains a reduced backbone of
  hidden size 128 and depth 6
  (``uvit-s-small`` / ``dit-xl-small``, bench.configs.DIFFUSION_SCALE_DEFAULTS: 1000 steps at batch 32, latents
  scaled to unit RMS), then samples 256 images without and with CFG (DiT: 50 respaced IDDPM steps, not 250: 5x the
  time for a reduced model). Batch 32 and 256 samples (not 64 and 512) are the budget's. Scores: gFID and
  KID against the embedded training crops, and against the same autoencoder's reconstructions of them (the
  diffusion model's own error, without the decoder's floor). The claim rows' arms (f8 with the largest patch vs
  the deepest autoencoder with p1, per block) train 3 diffusion seeds each (``--seeds N``), seed s on autoencoder
  seed s.
- ``smoke``: tiny backbones on tiny untrained autoencoders, 64 px, 2 training steps, 4 samples: a pipeline check.

Commands:
    python -m bench table1 --scale smoke      # ~1-2 min
    python -m bench table1 --scale small --jobs 2   # the plan prints its expected time
    python -m bench table1 --scale paper --device cuda --weights W --data D   # weeks of GPU time (bench needs)
"""
from __future__ import annotations

from bench.catalogue import (
    CFG_SCALE,
    CFG_SOURCE,
    CLAIMS,
    ROWS,
    RUNS,
    TABLE1_COLUMNS,
    TABLE1_DEVIATIONS,
    TABLE1_SCALES,
)
from bench.spec import Spec

ID = "table1"

SPECS = {"": Spec(
    id=ID,
    title="Table 1: patch size vs autoencoder compression (ImageNet 512x512, gFID)",
    caption="gFID without / with CFG of DiT-XL and UViT-S at equal token count, varying where spatial compression "
            "happens (patch embedding vs autoencoder). CFG scales (the paper states none for Table 1): " + "; ".join(
                f"{k} {CFG_SCALE[k]}, {CFG_SOURCE[k]}" for k in CFG_SCALE) + ".",
    columns=TABLE1_COLUMNS,
    rows=ROWS + RUNS + CLAIMS,
    scales=TABLE1_SCALES,
    deviations=TABLE1_DEVIATIONS,
)}
