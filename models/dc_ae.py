"""Deep Compression Autoencoder (DC-AE, arXiv 2410.10733), read top to bottom like Fig. 4 of the paper.

config -> Residual Autoencoding (shortcuts, ResidualDownBlock / ResidualUpBlock) -> Encoder / Decoder -> DCAE ->
variants table. The EfficientViT building blocks (RMSNorm2d, ConvLayer, ResBlock, LiteMLA, GLUMBConv,
EfficientViTBlock, learned resamplers) are in `models/dc_ae_blocks.py`.

Module and parameter names follow the released efficientvit code (`mit-han-lab/efficientvit@de7d773`,
`efficientvit/models/efficientvit/dc_ae.py`: `stages.{s}.op_list.{i}.main...`), so the official `model.safetensors`
loads with no renaming; `models/checkpoints.py` converts to and from the diffusers `AutoencoderDC` layout.
Architecture facts are from `shared/reference/autoencoders.md` §2-§4 (the paper does not fix channel orders).

**Residual Autoencoding** (paper §3.2, Fig. 4) is the config switch `residual_autoencoding`: when True every
downsample block adds space-to-channel + averaging of consecutive channel groups, every upsample block adds channel
duplication (`repeat_interleave`) + channel-to-space, and the "middle stage" (encoder output, decoder input) does the
same with spatial factor 1. When False no such shortcut exists anywhere (the "conventional" arm of Fig. 3a); nothing
else changes. (Identity residuals inside ResBlocks and EfficientViT blocks are not Residual Autoencoding.)

Reduced variants (same code path, narrower and shallower; pixel-(un)shuffle resamplers, stage 0 empty, ResBlock
stages 1-2 at H/2 and H/4, EfficientViT stages from H/8 on, BatchNorm+ReLU decoder ResBlocks, like in/mix), for the
`small` and `smoke` scales of the harness. `widths[-1]` is raised to `c` where `c` exceeds it, because the encoder
output shortcut averages `widths[-1] / c` channels; for c512 the two 3x3 latent convolutions alone then hold
2 x 9 x 512^2 = 4.7 M parameters, so those variants exceed the 1-4 M target and keep their last stage empty.

| reduced | widths (stage 0..n-1)              | encoder depths   | decoder depths   |
|---------|------------------------------------|------------------|------------------|
| small   | 16,32,64,64,128,128,128,128 [:n]   | 0,1,2,1,1,1,1,1  | 0,2,3,1,1,1,1,1  |
| tiny    | 8,16,32,32,64,64,64,64 [:n]        | 0,1,1,1,1,1,1,1  | 0,1,1,1,1,1,1,1  |

n = log2(f) + 1 stages; where c > widths[-1], widths[-1] = c (last stage empty) and earlier widths are raised to
at least a quarter of the next one (a downsample shortcut can at most quadruple the channels). Parameters (exact):

| (f, c)    | small      | tiny      |
|-----------|------------|-----------|
| f8c4      |    811,888 |   148,208 |
| f16c16    |  1,705,692 |   385,708 |
| f32c32    |  2,917,644 |   703,948 |
| f32c64    |  2,991,404 |   740,844 |
| f64c128   |  4,313,996 | 1,275,788 |
| f64c256   |  5,277,868 | 2,474,156 |
| f128c512  | 11,245,836 | 8,755,468 |

Training-step speed on this machine: `python -m bench perf --only train-step` (tables/perf-<machine>.csv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.dc_ae_blocks import (
    ConvLayer,
    EfficientViTBlock,
    GLUMBConv,
    LiteMLA,
    OpSequential,
    ResBlock,
    Residual,
    RMSNorm2d,
    downsampler,
    upsampler,
)

__all__ = [
    "DCAE",
    "DC_AE_VARIANTS",
    "OFFICIAL_PARAMS",
    "DCAEConfig",
    "EfficientViTBlock",
    "GLUMBConv",
    "LiteMLA",
    "RMSNorm2d",
    "ResBlock",
    "Residual",
    "ResidualDownBlock",
    "ResidualUpBlock",
    "channel_duplicate_to_space",
    "downsampler",
    "space_to_channel_average",
    "upsampler",
]

# ----------------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DCAEConfig:
    """Architecture of one DC-AE; a variant is a named instance, an ablation a `dataclasses.replace`."""

    widths: tuple[int, ...]  # channels per stage, encoder = decoder (stage 0 = highest resolution)
    encoder_depths: tuple[int, ...]  # blocks per encoder stage; 0 at stage 0 = project_in downsamples (in/mix)
    decoder_depths: tuple[int, ...]  # blocks per decoder stage
    latent_channels: int  # c of the f{f}c{c} name
    scaling_factor: float = 1.0  # 1 / RMS of the latents; diffusion uses z * s (reference §3 notes)
    res_stages: int = 3  # stages [0, res_stages) use ResBlocks, the rest EfficientViT blocks
    decoder_batchnorm_stages: int = 3  # decoder ResBlock stages with BatchNorm + ReLU (in/mix 3, sana 0)
    resampling: Literal["pixel_shuffle", "conv"] = "pixel_shuffle"  # in/mix vs sana (stride-2 conv, nearest+conv)
    attention_multiscales: tuple[int, ...] = ()  # kernel sizes of the multi-scale qkv aggregation (sana: (5,))
    head_dim: int = 32  # LiteMLA head dimension; also the quadratic-attention threshold (N <= head_dim tokens)
    glu_expand: int = 4  # GLUMBConv expansion ratio
    in_channels: int = 3  # RGB
    residual_autoencoding: bool = True  # the paper's non-parametric shortcuts (§3.2); False = conventional AE

    def __post_init__(self) -> None:
        # Raise concise errors instead of building a network whose shapes break at run time.
        n = len(self.widths)
        if not (len(self.encoder_depths) == len(self.decoder_depths) == n >= 2):
            raise ValueError(f"widths/encoder_depths/decoder_depths must have one entry per stage (>= 2): {self}")
        if self.resampling not in ("pixel_shuffle", "conv"):
            raise ValueError(f"resampling must be 'pixel_shuffle' or 'conv', got {self.resampling!r}")
        for name, depths in (("encoder_depths", self.encoder_depths), ("decoder_depths", self.decoder_depths)):
            if any(d <= 0 for d in depths[1:-1]):
                raise ValueError(f"{name}: only the first and last stage may be empty, got {depths}")
            if depths[-2] == 0:
                raise ValueError(f"{name}: stage n-2 must have blocks (it resamples into the last stage)")
        for i in range(n - 1):  # group size g = 4 C_in / C_out of the shortcuts (r of the upsample) must be whole
            if (4 * self.widths[i]) % self.widths[i + 1] or self.widths[i + 1] % 4:
                raise ValueError(f"widths {self.widths[i]} -> {self.widths[i + 1]}: need 4 * C_in divisible by "
                                 f"C_out and C_out divisible by 4 (space-to-channel shortcut, pixel unshuffle)")
        for i in range(n):
            if i >= self.res_stages and self.widths[i] % self.head_dim:
                raise ValueError(f"EfficientViT stage {i}: width {self.widths[i]} not a multiple of {self.head_dim}")
        if self.widths[-1] % self.latent_channels:
            raise ValueError(f"widths[-1]={self.widths[-1]} must be a multiple of latent_channels")
        if self.decoder_batchnorm_stages > self.res_stages:
            raise ValueError("decoder_batchnorm_stages must not exceed res_stages (BatchNorm only in ResBlocks)")

    @property
    def spatial_compression(self) -> int:
        # One 2x downsampler per stage transition (stage 0 empty: project_in downsamples instead).
        return 2 ** (len(self.widths) - 1)


# ----------------------------------------------------------------------------------------------------------------------
# Residual Autoencoding (paper §3.2, Fig. 4): the non-parametric shortcuts and the blocks that add them
# ----------------------------------------------------------------------------------------------------------------------


def space_to_channel_average(x: torch.Tensor, c_out: int, factor: int = 2) -> torch.Tensor:
    """Downsample shortcut (Residual Autoencoding, §3.2, Fig. 4a): space-to-channel, then average channel groups.

    `pixel_unshuffle` puts each input channel's `factor x factor` neighbourhood in consecutive channels (c, i, j order);
    groups of `g = C * factor^2 / c_out` consecutive channels are averaged, as in the released code. g = 4 (C -> C) is
    2x2 average pooling, g = 2 (C -> 2C) is 1x2 pooling + 2x1 space-to-channel. factor 1 = encoder-output shortcut.
    """
    if factor > 1:
        x = F.pixel_unshuffle(x, factor)  # (B, C*f^2, H/f, W/f)
    return x.unflatten(1, (c_out, -1)).mean(dim=2)  # (B, c_out, H/f, W/f)


def channel_duplicate_to_space(x: torch.Tensor, c_out: int, factor: int = 2) -> torch.Tensor:
    """Upsample shortcut (Residual Autoencoding, §3.2, Fig. 4a): duplicate channels, then channel-to-space.

    Each channel is repeated `r = c_out * factor^2 / C` times *consecutively* (`repeat_interleave`) before
    `pixel_shuffle`, as in the released code: r = 4 is nearest 2x upsampling, r = 2 exactly inverts the g = 2 average.
    factor 1 = decoder-input shortcut (plain duplication).
    """
    r = c_out * factor**2 // x.shape[1]
    x = x.repeat_interleave(r, dim=1)  # (B, c_out*f^2, H, W)
    return F.pixel_shuffle(x, factor) if factor > 1 else x  # (B, c_out, H*f, W*f)


class ResidualDownBlock(nn.Module):
    """Residual Autoencoding downsample block (§3.2, Fig. 4a): learned branch + space-to-channel averaging shortcut.

    `factor` 1 is the encoder's middle stage (Fig. 4b): conv to the latent + channel averaging. With
    `residual_autoencoding=False` the block is the learned branch alone.
    """

    def __init__(self, main: nn.Module, c_out: int, factor: int, residual_autoencoding: bool) -> None:
        super().__init__()
        self.main, self.c_out, self.factor = main, c_out, factor
        self.residual_autoencoding = residual_autoencoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)  # (B, C_out, H/f, W/f)
        if self.residual_autoencoding:
            y = y + space_to_channel_average(x, self.c_out, self.factor)
        return y


class ResidualUpBlock(nn.Module):
    """Residual Autoencoding upsample block (§3.2, Fig. 4a): learned branch + duplicating channel-to-space shortcut.

    `factor` 1 is the decoder's middle stage (Fig. 4b): conv from the latent + channel duplication.
    """

    def __init__(self, main: nn.Module, c_out: int, factor: int, residual_autoencoding: bool) -> None:
        super().__init__()
        self.main, self.c_out, self.factor = main, c_out, factor
        self.residual_autoencoding = residual_autoencoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)  # (B, C_out, H*f, W*f)
        if self.residual_autoencoding:
            y = y + channel_duplicate_to_space(x, self.c_out, self.factor)
        return y


def _blocks(cfg: DCAEConfig, stage: int, depth: int, *, decoder: bool) -> list[nn.Module]:
    """`depth` blocks of one stage: ResBlocks at high resolution, EfficientViT blocks below (Fig. 4, Table 3 §3)."""
    c = cfg.widths[stage]
    if stage < cfg.res_stages:
        bn = decoder and stage < cfg.decoder_batchnorm_stages  # in/mix decoders: BN + ReLU in the ResBlock stages
        return [ResBlock(c, "bn" if bn else "rms", "relu" if bn else "silu") for _ in range(depth)]
    return [EfficientViTBlock(c, cfg.head_dim, cfg.attention_multiscales, cfg.glu_expand) for _ in range(depth)]


# ----------------------------------------------------------------------------------------------------------------------
# Encoder / decoder
# ----------------------------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """project_in -> stages 0..n-1 (blocks, then a ResidualDownBlock) -> project_out (middle stage) -> latent."""

    def __init__(self, cfg: DCAEConfig) -> None:
        super().__init__()
        w, d, ra = cfg.widths, cfg.encoder_depths, cfg.residual_autoencoding
        # Stage 0 empty (in/mix): project_in already downsamples to widths[1], without a shortcut.
        self.project_in = ConvLayer(cfg.in_channels, w[0], 3) if d[0] > 0 else \
            downsampler(cfg.in_channels, w[1], cfg.resampling)
        stages = []
        for s, depth in enumerate(d):
            ops = _blocks(cfg, s, depth, decoder=False)
            if s < len(w) - 1 and depth > 0:
                ops.append(ResidualDownBlock(downsampler(w[s], w[s + 1], cfg.resampling), w[s + 1], 2, ra))
            stages.append(OpSequential(ops))
        self.stages = nn.ModuleList(stages)
        latent_conv = OpSequential([ConvLayer(w[-1], cfg.latent_channels, 3)])
        self.project_out = ResidualDownBlock(latent_conv, cfg.latent_channels, 1, ra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project_in(x)  # (B, w0, H, W) or (B, w1, H/2, W/2)
        for stage in self.stages:
            x = stage(x)  # ... -> (B, w[-1], H/f, W/f)
        return self.project_out(x)  # (B, c, H/f, W/f)


class Decoder(nn.Module):
    """project_in (middle stage) -> stages n-1..0 (a ResidualUpBlock, then blocks) -> RMSNorm, ReLU, conv -> RGB."""

    def __init__(self, cfg: DCAEConfig) -> None:
        super().__init__()
        w, d, ra = cfg.widths, cfg.decoder_depths, cfg.residual_autoencoding
        self.project_in = ResidualUpBlock(ConvLayer(cfg.latent_channels, w[-1], 3), w[-1], 1, ra)
        stages = []
        for s, depth in enumerate(d):  # stored by stage id, run in reverse
            ops = []
            if s < len(w) - 1 and depth > 0:
                ops.append(ResidualUpBlock(upsampler(w[s + 1], w[s], cfg.resampling), w[s], 2, ra))
            stages.append(OpSequential(ops + _blocks(cfg, s, depth, decoder=True)))
        self.stages = nn.ModuleList(stages)
        c0 = w[0] if d[0] > 0 else w[1]
        # Final head: no shortcut; ReLU in all 1.0 releases (reference §10.5).
        head = ConvLayer(c0, cfg.in_channels, 3) if d[0] > 0 else upsampler(c0, cfg.in_channels, cfg.resampling)
        self.project_out = OpSequential([RMSNorm2d(c0), nn.ReLU(), head])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project_in(z)  # (B, w[-1], h, w)
        for stage in reversed(self.stages):
            x = stage(x)  # ... -> (B, w0 or w1, H or H/2, ...)
        return self.project_out(x)  # (B, 3, H, W)


# ----------------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------------


class DCAE(nn.Module):
    """Deep Compression Autoencoder: a plain deterministic AE (no KL, §4.1). Images in [-1, 1], NCHW.

    `encode` returns the unscaled latent; diffusion models use `z * scaling_factor` and decode `z / scaling_factor`.
    """

    family = "dc-ae"

    def __init__(self, config: DCAEConfig) -> None:
        super().__init__()
        self.config = config
        self.spatial_compression = config.spatial_compression
        self.latent_channels = config.latent_channels
        self.scaling_factor = config.scaling_factor
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        f = self.spatial_compression
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"input size {tuple(x.shape[-2:])} is not divisible by the spatial compression {f}")
        return self.encoder(x)  # (B, c, H/f, W/f)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, 3, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


# ----------------------------------------------------------------------------------------------------------------------
# Variants: released checkpoints (reference §3) and reduced configs for the small / smoke scales
# ----------------------------------------------------------------------------------------------------------------------


def _released(n: int, latent: int, scaling: float) -> DCAEConfig:
    """in/mix architecture with n stages: Res x3 then EfficientViT; widths 128,256,512,512,1024,1024,2048,2048."""
    return DCAEConfig(
        widths=(128, 256, 512, 512, 1024, 1024, 2048, 2048)[:n],
        encoder_depths=(0, 4, 8) + (2,) * (n - 3),
        decoder_depths=(0, 5, 10) + (2,) * (n - 3),
        latent_channels=latent,
        scaling_factor=scaling,
    )


def _reduced(f: int, c: int, size: Literal["small", "tiny"]) -> DCAEConfig:
    """A narrower, shallower in/mix-style DC-AE with the same compression f and latent channels c (table above)."""
    n = f.bit_length()  # log2(f) + 1 stages
    if size == "small":
        widths, enc, dec = (16, 32, 64, 64, 128, 128, 128, 128), (0, 1, 2, 1, 1, 1, 1, 1), (0, 2, 3, 1, 1, 1, 1, 1)
    else:
        widths, enc, dec = (8, 16, 32, 32, 64, 64, 64, 64), (0,) + (1,) * 7, (0,) + (1,) * 7
    widths, enc, dec = list(widths[:n]), list(enc[:n]), list(dec[:n])
    if widths[-1] < c:  # the encoder-output shortcut averages widths[-1] / c channels
        widths[-1], enc[-1], dec[-1] = c, 0, 0  # keep the (huge) last stage empty: only the latent convs see c
        for i in range(n - 2, 0, -1):  # a downsample shortcut can at most quadruple the channels
            widths[i] = max(widths[i], widths[i + 1] // 4)
    return DCAEConfig(widths=tuple(widths), encoder_depths=tuple(enc), decoder_depths=tuple(dec),
                      latent_channels=c)


# One line per registered name, so that `grep -rn dc-ae-f64c128-tiny` lands here.
DC_AE_VARIANTS: dict[str, DCAEConfig] = {
    # Released (HF mit-han-lab/<name>); in and mix share the architecture, only weights and scaling factor differ.
    "dc-ae-f32c32-in-1.0": _released(6, 32, 0.3189),
    "dc-ae-f32c32-mix-1.0": _released(6, 32, 0.4552),
    "dc-ae-f64c128-in-1.0": _released(7, 128, 0.2889),
    "dc-ae-f64c128-mix-1.0": _released(7, 128, 0.4538),
    "dc-ae-f128c512-in-1.0": _released(8, 512, 0.4883),
    "dc-ae-f128c512-mix-1.0": _released(8, 512, 0.3620),
    # SANA's autoencoder: all-RMSNorm/SiLU, multi-scale attention, stride-2 conv / nearest+conv resamplers.
    "dc-ae-f32c32-sana-1.0": DCAEConfig(
        widths=(128, 256, 512, 512, 1024, 1024),
        encoder_depths=(2, 2, 2, 3, 3, 3),
        decoder_depths=(3, 3, 3, 3, 3, 3),
        latent_channels=32,
        scaling_factor=0.41407,
        decoder_batchnorm_stages=0,
        resampling="conv",
        attention_multiscales=(5,),
    ),
    # The paper's ablation architectures at full size (Figures 2a, 3a, 3b, 5): the released in/mix design with one
    # stage per factor of 2 (f = 2^(stages - 1)) and the ablated latent channels. Unreleased: the paper scale trains
    # them on --data with the train-ae recipe (Residual Autoencoding off via the config field for Fig. 3a's grey
    # line); scaling factor 1.0 until a trained run measures 1 / RMS of their latents. dc-ae-f32c32 is the released
    # f32c32 architecture without weights (Fig. 5 trains it from scratch, before and with its GAN phase).
    "dc-ae-f8c4": _released(4, 4, 1.0),
    "dc-ae-f16c16": _released(5, 16, 1.0),
    "dc-ae-f32c32": _released(6, 32, 1.0),
    "dc-ae-f32c64": _released(6, 64, 1.0),
    "dc-ae-f64c256": _released(7, 256, 1.0),
    # Reduced variants (module docstring) are untrained: scaling factor 1.0 until a trained run measures 1 / RMS of
    # their latents.
    "dc-ae-f8c4-small": _reduced(8, 4, "small"),
    "dc-ae-f8c4-tiny": _reduced(8, 4, "tiny"),
    "dc-ae-f16c16-small": _reduced(16, 16, "small"),
    "dc-ae-f16c16-tiny": _reduced(16, 16, "tiny"),
    "dc-ae-f32c32-small": _reduced(32, 32, "small"),
    "dc-ae-f32c32-tiny": _reduced(32, 32, "tiny"),
    "dc-ae-f32c64-small": _reduced(32, 64, "small"),
    "dc-ae-f32c64-tiny": _reduced(32, 64, "tiny"),
    "dc-ae-f64c128-small": _reduced(64, 128, "small"),
    "dc-ae-f64c128-tiny": _reduced(64, 128, "tiny"),
    "dc-ae-f64c256-small": _reduced(64, 256, "small"),
    "dc-ae-f64c256-tiny": _reduced(64, 256, "tiny"),
    "dc-ae-f128c512-small": _reduced(128, 512, "small"),
    "dc-ae-f128c512-tiny": _reduced(128, 512, "tiny"),
}

# Parameter counts of the released checkpoints (reference §4; BN running stats not included).
OFFICIAL_PARAMS: dict[str, int] = {
    "dc-ae-f32c32-in-1.0": 323_356_460,
    "dc-ae-f32c32-mix-1.0": 323_356_460,
    "dc-ae-f64c128-in-1.0": 676_896_140,
    "dc-ae-f64c128-mix-1.0": 676_896_140,
    "dc-ae-f128c512-in-1.0": 1_120_682_252,
    "dc-ae-f128c512-mix-1.0": 1_120_682_252,
    "dc-ae-f32c32-sana-1.0": 312_250_275,
}

