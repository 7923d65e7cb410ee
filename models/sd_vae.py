"""SD-VAE baselines: the KL autoencoder of Stable Diffusion and the stacked high-compression variants.

The DC-AE paper (arXiv 2410.10733) compares against SD-VAE-f8 (Rombach et al. 2022, checkpoint
`stabilityai/sd-vae-ft-ema`) and against higher-compression SD-VAEs built by stacking (paper §3.1): "Each time the
spatial compression ratio increases, we stack additional encoder and decoder stages upon the current autoencoder. In
this way, high spatial-compression autoencoders contain low spatial-compression autoencoders as sub-networks"
(Fig. 2a, Fig. 3a, Tables 1-3).

Architecture (shared reference `autoencoders.md` §7; diffusers `AutoencoderKL`; CompVis/LDM `kl-f*` first stages):

    x (B,3,H,W) -> conv_in -> L levels [ResnetBlock x layers_per_block (+Attn), stride-2 Downsample except last]
      -> mid [ResnetBlock, Attn, ResnetBlock] -> GroupNorm, SiLU, conv_out -> quant_conv 1x1
      -> (mean, logvar) (B,c,H/f,W/f) with f = 2**(L-1)
    z -> post_quant_conv 1x1 -> conv_in -> mid -> L levels [ResnetBlock x (layers_per_block+1) (+Attn),
      nearest x2 + conv Upsample except level 0] -> GroupNorm, SiLU, conv_out -> x_hat (B,3,H,W)

Parameter names are our own (`levels.{i}` indexed by resolution, 0 = full resolution, for encoder *and* decoder, as
in LDM), so that the stacking property of §3.1 is literally a key-subset property of the state dicts. The exact,
strict converters to and from the diffusers and CompVis/LDM layouts are in `models/checkpoints.py`.

Variants (`SD_VAE_VARIANTS`; every parameter count below is checked by tests/test_sd_vae.py):

| name             | widths per level         | attention   | c   | params      | source                              |
|------------------|--------------------------|-------------|-----|-------------|-------------------------------------|
| sd-vae-f8        | 128,256,512,512          | mid         | 4   | 83,653,863  | sd-vae-ft-ema (reference §4, §7)    |
| sd-vae-f16c16    | f8 + 512                 | mid         | 16  | 112,148,947 | inferred stacking (reference §8)    |
| sd-vae-f32c32    | f8 + 512,512             | mid         | 32  | 140,701,987 | inferred; count = reference §8      |
| sd-vae-f32c64    | f8 + 512,512             | mid         | 64  | 141,159,875 | inferred                            |
| sd-vae-f64c128   | f8 + 512 x3              | mid         | 128 | 170,434,307 | inferred; count = reference §8      |
| sd-vae-f64c256   | f8 + 512 x3              | mid         | 256 | 172,450,179 | inferred                            |
| sd-vae-f128c512  | f8 + 512 x4              | mid         | 512 | 205,301,379 | inferred                            |
| sd-vae-f16-ldm   | 128,128,256,256,512      | level 4+mid | 16  | 69,610,963  | LDM kl-f16 (reference §8)           |
| sd-vae-f32-ldm   | 128,128,256,256,512,512  | 4, 5 + mid  | 64  | 103,880,131 | LDM kl-f32 (reference §8)           |

The stacked f16...f128 architectures are *inferred*: no f64/f128 SD-VAE constructor was ever released, and whether
the paper added attention at the low-resolution levels is unknown (reference §8, §12). We append width-512 levels
without attention; the reference's counts for this reading (f32c32, f64c128 above) are reproduced exactly. LDM
attention "at 16 / 8 px" means at the levels whose feature map is 16 / 8 px for a 256 px input (levels 4 and 5).

Reduced variants `sd-vae-f{f}c{c}-{small,tiny}` for the `small` and `smoke` scales: same code path, the f8 part's
widths divided by 8 (small), or narrower still with one ResnetBlock fewer per level (tiny); variational, posterior
mean at eval. The appended levels follow `carrying_widths` (no layer next to the latent is narrower than the latent,
as in the full-size baselines; keeping the f8 part's width would leave f64c128-tiny a 16-channel bottleneck its DC-AE
partner does not have). For c >= 64 they are therefore *larger* than their reduced DC-AE partners, where the paper's
are smaller: a conservative comparison for claims in DC-AE's favour; `python -m bench models` prints both counts.

| family | f8 part widths | appended levels           | ResnetBlocks enc/dec | GN groups | attention |
|--------|----------------|---------------------------|----------------------|-----------|-----------|
| small  | 16,32,64,64    | 64 doubling to >= c        | 2 / 3                | 8         | mid       |
| tiny   | 8,16,16,16     | 16 doubling to >= c        | 1 / 2                | 4         | mid       |

| (f, c)   | (8,4)     | (16,16)   | (32,32)   | (32,64)   | (64,128)  | (64,256)   | (128,512)  |
|----------|-----------|-----------|-----------|-----------|-----------|------------|------------|
| small    | 1,321,207 | 1,787,619 | 2,263,603 | 2,334,419 | 5,356,115 | 16,984,403 | 65,247,059 |
| tiny     | 81,215    | 106,411   | 259,339   | 849,547   | 3,279,883 | 12,903,499 | 51,722,827 |

At c = 512 the latent interface alone (conv_out to 1024 moments, the 1x1 quant_conv on them, conv_in,
post_quant_conv) holds 2.2 M of the small model's parameters. The f128 variants need inputs of at least 128 px.
Training-step speed on this machine: `python -m bench perf --only train-step`.

Scaling factors: 0.18215 is the released SD-VAE-f8 value (ref §7). The other variants have no released weights;
their factor is 1.0 here and is to be measured after training as 1 / std of the latents (how LDM sets its
`scale_factor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------------------------
# Utilities
# ---------------------------------------------------------------------------------------------------------------------


def group_norm(channels: int, groups: int, eps: float) -> nn.GroupNorm:
    """GroupNorm with affine parameters, as everywhere in SD-VAE (32 groups, eps 1e-6 at full size)."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=eps, affine=True)


# ---------------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """Pre-activation residual block: (GN, SiLU, conv3x3) x 2 plus a 1x1 shortcut when the width changes.

    LDM `ResnetBlock` with `temb_channels=0` and dropout 0 (= diffusers `ResnetBlock2D`, output scale 1).
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups, eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # LDM `nin_shortcut`, diffusers `conv_shortcut`: only where the channel count changes.
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = self.conv2(F.silu(self.norm2(h)))  # (B, C_out, H, W)
        skip = x if self.shortcut is None else self.shortcut(x)  # (B, C_out, H, W)
        return skip + h


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions, scale 1/sqrt(C), with a residual connection.

    LDM `AttnBlock` (q, k, v, proj_out are 1x1 convs there; Linear layers here and in diffusers, same numbers).
    """

    def __init__(self, channels: int, groups: int, eps: float):
        super().__init__()
        self.norm = group_norm(channels, groups, eps)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        q, k, v = (lin(t).unsqueeze(1) for lin in (self.q, self.k, self.v))  # 3 x (B, 1, H*W, C): one head
        a = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # (B, H*W, C), softmax(q k^T / sqrt(C)) v
        a = self.proj(a).transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)
        return x + a


class Downsample(nn.Module):
    """Stride-2 conv3x3 after an asymmetric zero pad (0, 1, 0, 1): H -> H/2 (LDM `Downsample(with_conv=True)`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then conv3x3 (LDM `Upsample(with_conv=True)`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class Level(nn.Module):
    """One resolution level: ResnetBlocks, each followed by attention when `attention` is set, then an optional
    resampler (`down` in the encoder, `up` in the decoder). LDM `down[i]` / `up[i]`."""

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, attention: bool, groups: int, eps: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            [ResnetBlock(in_ch if j == 0 else out_ch, out_ch, groups, eps) for j in range(n_blocks)]
        )
        # Empty for the SD-VAE-f8 family; one block per ResnetBlock at the LDM kl-f16/f32 attention resolutions.
        self.attns = nn.ModuleList([AttentionBlock(out_ch, groups, eps) for _ in range(n_blocks)] if attention else [])

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.blocks):
            x = block(x)  # (B, C_out, H, W)
            if len(self.attns):
                x = self.attns[j](x)  # (B, C_out, H, W)
        return x


class MidBlock(nn.Module):
    """ResnetBlock, single-head attention, ResnetBlock at the lowest resolution (LDM `mid`)."""

    def __init__(self, channels: int, attention: bool, groups: int, eps: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, eps)
        self.attn = AttentionBlock(channels, groups, eps) if attention else None
        self.block_2 = ResnetBlock(channels, channels, groups, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_1(x)  # (B, C, h, w)
        if self.attn is not None:
            x = self.attn(x)
        return self.block_2(x)  # (B, C, h, w)


# ---------------------------------------------------------------------------------------------------------------------
# Config, encoder and decoder
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SDVAEConfig:
    """Architecture of one SD-VAE variant. Defaults = `stabilityai/sd-vae-ft-ema` (reference §7)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # width per level, full resolution first
    layers_per_block: int = 2  # ResnetBlocks per encoder level; decoder levels have one more
    latent_channels: int = 4  # c; the encoder emits 2c channels (mean, logvar) when variational
    attention_levels: tuple[int, ...] = ()  # levels (0 = full res) with attention after each ResnetBlock (LDM)
    mid_attention: bool = True  # attention between the two mid ResnetBlocks, both sides
    norm_groups: int = 32  # GroupNorm groups everywhere
    norm_eps: float = 1e-6  # GroupNorm epsilon everywhere
    in_channels: int = 3  # image channels (RGB in [-1, 1])
    scaling_factor: float = 0.18215  # latent scale for diffusion models: z * scaling_factor has ~unit variance
    sample_posterior: bool = False  # encode() returns the posterior mean (False) or a sample (True)
    variational: bool = True  # False: plain AE, the encoder emits c channels and encode() is deterministic

    def __post_init__(self):
        # Configs round-trip through JSON (checkpoint metadata), which turns tuples into lists.
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        bad = [w for w in self.block_out_channels if w % self.norm_groups]
        if bad:
            raise ValueError(f"widths {bad} are not divisible by norm_groups={self.norm_groups}")
        if any(not 0 <= i < len(self.block_out_channels) for i in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} outside 0..{len(self.block_out_channels) - 1}")

    @property
    def spatial_compression(self) -> int:
        """f: every level but the last halves the resolution."""
        return 2 ** (len(self.block_out_channels) - 1)


class Encoder(nn.Module):
    """Image -> moments: conv_in, levels with Downsample, mid, GN-SiLU-conv_out (LDM `Encoder`, `double_z`)."""

    def __init__(self, cfg: SDVAEConfig):
        super().__init__()
        w, g, e = cfg.block_out_channels, cfg.norm_groups, cfg.norm_eps
        self.conv_in = nn.Conv2d(cfg.in_channels, w[0], 3, padding=1)
        self.levels = nn.ModuleList()
        for i, out_ch in enumerate(w):
            level = Level(w[max(i - 1, 0)], out_ch, cfg.layers_per_block, i in cfg.attention_levels, g, e)
            # The last level keeps its resolution; stacking a level onto it (§3.1) gives it a `down` conv.
            level.down = Downsample(out_ch) if i < len(w) - 1 else None
            self.levels.append(level)
        self.mid = MidBlock(w[-1], cfg.mid_attention, g, e)
        self.norm_out = group_norm(w[-1], g, e)
        moments = 2 * cfg.latent_channels if cfg.variational else cfg.latent_channels
        self.conv_out = nn.Conv2d(w[-1], moments, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, w0, H, W)
        for level in self.levels:
            h = level.run_blocks(h)  # (B, w_i, H/2^i, W/2^i)
            if level.down is not None:
                h = level.down(h)  # (B, w_i, H/2^(i+1), W/2^(i+1))
        h = self.mid(h)  # (B, w_last, H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 2c, H/f, W/f)


class Decoder(nn.Module):
    """Latent -> image: conv_in, mid, levels from the lowest resolution up with Upsample, GN-SiLU-conv_out."""

    def __init__(self, cfg: SDVAEConfig):
        super().__init__()
        w, g, e = cfg.block_out_channels, cfg.norm_groups, cfg.norm_eps
        self.conv_in = nn.Conv2d(cfg.latent_channels, w[-1], 3, padding=1)
        self.mid = MidBlock(w[-1], cfg.mid_attention, g, e)
        # levels[i] works at the resolution of encoder level i; it is fed by level i+1 (or by mid for the last).
        self.levels = nn.ModuleList()
        for i, out_ch in enumerate(w):
            in_ch = w[min(i + 1, len(w) - 1)]
            level = Level(in_ch, out_ch, cfg.layers_per_block + 1, i in cfg.attention_levels, g, e)
            level.up = Upsample(out_ch) if i > 0 else None  # every level but full resolution ends upsampling
            self.levels.append(level)
        self.norm_out = group_norm(w[0], g, e)
        self.conv_out = nn.Conv2d(w[0], cfg.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # (B, w_last, H/f, W/f)
        for level in reversed(self.levels):
            h = level.run_blocks(h)  # (B, w_i, H/2^i, W/2^i)
            if level.up is not None:
                h = level.up(h)  # (B, w_i, H/2^(i-1), W/2^(i-1))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, H, W)


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------


class SDVAE(nn.Module):
    """KL autoencoder of Stable Diffusion (`AutoencoderKL`) and its stacked higher-compression relatives.

    `encode(x)` returns the posterior mean (DC-Gen `SDVAE` default, reference §7) or, with
    `config.sample_posterior`, a reparameterised sample (efficientvit latent extraction uses `sample()`).
    Latents are *unscaled*; diffusion code multiplies by `scaling_factor`.
    """

    def __init__(self, config: SDVAEConfig):
        super().__init__()
        self.config = config
        self.spatial_compression = config.spatial_compression
        self.latent_channels = config.latent_channels
        self.scaling_factor = config.scaling_factor
        c, moments = config.latent_channels, (2 if config.variational else 1) * config.latent_channels
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(moments, moments, 1)  # 1x1 on the moments (LDM `quant_conv`)
        self.post_quant_conv = nn.Conv2d(c, c, 1)  # 1x1 on the latent before the decoder
        self.decoder = Decoder(config)

    def _check_image(self, x: torch.Tensor) -> None:
        f = self.spatial_compression
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"expected images (B, {self.config.in_channels}, H, W) with H, W divisible by f={f}, "
                f"got {tuple(x.shape)}"
            )

    def encode_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, logvar) of the diagonal Gaussian posterior, logvar clamped to [-30, 20] as in LDM.
        logvar is None for a non-variational config."""
        self._check_image(x)
        moments = self.quant_conv(self.encoder(x))  # (B, 2c, H/f, W/f)
        if not self.config.variational:
            return moments, None
        mean, logvar = moments.chunk(2, dim=1)  # 2 x (B, c, H/f, W/f)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> latent (B, c, H/f, W/f): posterior mean, or a sample when
        `config.sample_posterior` (noise drawn like diffusers' `DiagonalGaussianDistribution.sample`)."""
        mean, logvar = self.encode_posterior(x)
        if logvar is None or not self.config.sample_posterior:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise  # (B, c, H/f, W/f)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, c, h, w) -> image (B, 3, h*f, w*f), not clamped."""
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected latents (B, {self.latent_channels}, h, w), got {tuple(z.shape)}")
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))  # (B, 3, H, W)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over (C, H, W), one value per image (LDM
    `DiagonalGaussianDistribution.kl`). For training code that adds the small KL term of the SD-VAE recipe."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3))  # (B,)


# ---------------------------------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------------------------------

_F8_WIDTHS = (128, 256, 512, 512)  # LDM ch=128, ch_mult=(1, 2, 4, 4)
_REDUCED = {  # family -> (f8 widths, layers_per_block, norm groups); appended levels: carrying_widths
    "small": ((16, 32, 64, 64), 2, 8),
    "tiny": ((8, 16, 16, 16), 1, 4),
}


def stacked(f: int, c: int, base_widths: tuple[int, ...] = _F8_WIDTHS, appended: tuple[int, ...] | None = None,
            **kw) -> SDVAEConfig:
    """SD-VAE-f8 with log2(f/8) extra levels appended (paper §3.1; inferred, reference §8): by default of the f8
    part's last width, as the full-size baselines (512 carries every c <= 512)."""
    if f < 8 or f & (f - 1):
        raise ValueError(f"f={f} is not 8 * 2^n")
    extra = f.bit_length() - 4  # log2(f / 8)
    appended = (base_widths[-1],) * extra if appended is None else appended
    if len(appended) != extra:
        raise ValueError(f"f={f} stacks {extra} levels onto f8, got {len(appended)} appended widths")
    return SDVAEConfig(block_out_channels=tuple(base_widths) + tuple(appended), latent_channels=c, **kw)


def carrying_widths(base_last: int, extra: int, c: int) -> tuple[int, ...]:
    """Appended level widths that can carry a c-channel latent: the f8 part's last width, doubling per level
    towards the latent and at least c at the level next to it (the bottleneck rule: no layer next to the latent
    is narrower than the latent). The full-size baselines' 512 already satisfies it."""
    return tuple(max(base_last, c >> (extra - 1 - i)) for i in range(extra))


def _reduced(f: int, c: int, size: Literal["small", "tiny"]) -> SDVAEConfig:
    """A reduced stacked SD-VAE for the small / smoke scales (module docstring); untrained, so scaling factor 1.0."""
    widths, layers_per_block, groups = _REDUCED[size]
    appended = carrying_widths(widths[-1], f.bit_length() - 4, c)
    return stacked(f, c, widths, appended, layers_per_block=layers_per_block, norm_groups=groups, scaling_factor=1.0)


# One line per registered name, so that `grep -rn sd-vae-f32c32-small` lands here.
SD_VAE_VARIANTS: dict[str, SDVAEConfig] = {
    "sd-vae-f8": SDVAEConfig(),  # stabilityai/sd-vae-ft-ema architecture (reference §7)
    # Inferred stacked baselines (paper §3.1, reference §8): Fig. 3a shapes (c16, c64, c256), Table 2 shapes.
    "sd-vae-f16c16": stacked(16, 16, scaling_factor=1.0),
    "sd-vae-f32c32": stacked(32, 32, scaling_factor=1.0),
    "sd-vae-f32c64": stacked(32, 64, scaling_factor=1.0),
    "sd-vae-f64c128": stacked(64, 128, scaling_factor=1.0),
    "sd-vae-f64c256": stacked(64, 256, scaling_factor=1.0),
    "sd-vae-f128c512": stacked(128, 512, scaling_factor=1.0),
    # Official CompVis/LDM first stages (= DC-Gen `sd_vae_f16` / `sd_vae_f32`, reference §8 table).
    "sd-vae-f16-ldm": SDVAEConfig(block_out_channels=(128, 128, 256, 256, 512), latent_channels=16,
                                  attention_levels=(4,), scaling_factor=1.0),
    "sd-vae-f32-ldm": SDVAEConfig(block_out_channels=(128, 128, 256, 256, 512, 512), latent_channels=64,
                                  attention_levels=(4, 5), scaling_factor=1.0),
    # Reduced variants for the small / smoke scales (module docstring): the f8 shape, then the stacked shapes.
    "sd-vae-f8c4-small": _reduced(8, 4, "small"),
    "sd-vae-f16c16-small": _reduced(16, 16, "small"),
    "sd-vae-f32c32-small": _reduced(32, 32, "small"),
    "sd-vae-f32c64-small": _reduced(32, 64, "small"),
    "sd-vae-f64c128-small": _reduced(64, 128, "small"),
    "sd-vae-f64c256-small": _reduced(64, 256, "small"),
    "sd-vae-f128c512-small": _reduced(128, 512, "small"),
    "sd-vae-f8c4-tiny": _reduced(8, 4, "tiny"),
    "sd-vae-f16c16-tiny": _reduced(16, 16, "tiny"),
    "sd-vae-f32c32-tiny": _reduced(32, 32, "tiny"),
    "sd-vae-f32c64-tiny": _reduced(32, 64, "tiny"),
    "sd-vae-f64c128-tiny": _reduced(64, 128, "tiny"),
    "sd-vae-f64c256-tiny": _reduced(64, 256, "tiny"),
    "sd-vae-f128c512-tiny": _reduced(128, 512, "tiny"),
}

# Parameter counts of the released checkpoints (reference §4, §8), read by the model zoo.
OFFICIAL_PARAMS: dict[str, int] = {
    "sd-vae-f8": 83_653_863,  # stabilityai/sd-vae-ft-ema
    "sd-vae-f16-ldm": 69_610_963,  # CompVis kl-f16 (DC-Gen sd-vae-kl-f16.ckpt)
    "sd-vae-f32-ldm": 103_880_131,  # CompVis kl-f32 (DC-Gen sd-vae-kl-f32.ckpt)
}
