"""Deep Compression Autoencoder (DC-AE, arXiv 2410.10733), read top to bottom like Fig. 4 of the paper.

utilities (RMSNorm2d, ConvLayer, the Residual Autoencoding shortcuts) -> blocks (ResBlock, LiteMLA, GLUMBConv,
EfficientViTBlock, resamplers, ResidualDownBlock / ResidualUpBlock) -> Encoder / Decoder -> DCAE -> variants table.

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

| reduced | widths (stage 0..n-1)              | encoder depths   | decoder depths   | params    |
|---------|------------------------------------|------------------|------------------|-----------|
| small   | 16,32,64,64,128,128,256,256 [:n]   | 0,1,2,1,1,1,1,1  | 0,2,3,1,1,1,1,1  | see below |
| tiny    | 8,16,32,32,64,64,64,64 [:n]        | 0,1,1,1,1,1,1,1  | 0,1,1,1,1,1,1,1  | see below |

n = log2(f) + 1 stages. Parameter counts (exact, `python -m bench models`):
small f8c4 0.32 M, f16c16 0.88 M, f32c32 2.87 M, f32c64 2.93 M, f64c128 6.67 M, f64c256 7.91 M, f128c512 11.0 M;
tiny f8c4 0.06 M, f16c16 0.30 M, f32c32 0.43 M, f32c64 0.51 M, f64c128 0.90 M, f64c256 1.79 M, f128c512 6.37 M.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

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
# Utilities: norm, conv, and the non-parametric Residual Autoencoding shortcuts
# ----------------------------------------------------------------------------------------------------------------------


class RMSNorm2d(nn.Module):
    """RMSNorm over the channel dim of NCHW with weight and bias, in fp32 (EV `TritonRMSNorm2d`, eps 1e-5)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()  # fp32 statistics even under autocast / bf16 weights
        y = xf * torch.rsqrt(xf.square().mean(dim=1, keepdim=True) + self.eps)  # (B, C, H, W)
        y = y * self.weight.float()[:, None, None] + self.bias.float()[:, None, None]
        return y.to(x.dtype)


class ConvLayer(nn.Module):
    """conv (same padding) -> optional norm -> optional activation; keys `.conv.*`, `.norm.*` as in EV."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, *, stride: int = 1, groups: int = 1, bias: bool = True,
                 norm: Literal["rms", "bn"] | None = None, act: Literal["silu", "relu"] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=bias)
        self.norm = {"rms": RMSNorm2d, "bn": nn.BatchNorm2d, None: lambda c: None}[norm](c_out)
        self.act = {"silu": nn.SiLU(), "relu": nn.ReLU(), None: None}[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x) if self.act is not None else x


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


class OpSequential(nn.Module):
    """Ops applied in order; stored under `op_list` so that keys read `stages.{s}.op_list.{i}` like EV's."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class Residual(nn.Module):
    """x + main(x): the plain identity residual of ResBlocks and of both EfficientViT sub-blocks."""

    def __init__(self, main: nn.Module) -> None:
        super().__init__()
        self.main = main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


# ----------------------------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------------------------


class ResBranch(nn.Module):
    """ResBlock branch: conv3x3 (bias) -> act -> conv3x3 (no bias) -> norm; 18C^2 + 3C parameters."""

    def __init__(self, c: int, norm: Literal["rms", "bn"], act: Literal["silu", "relu"]) -> None:
        super().__init__()
        self.conv1 = ConvLayer(c, c, 3, act=act)
        self.conv2 = ConvLayer(c, c, 3, bias=False, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))  # (B, C, H, W)


def ResBlock(c: int, norm: Literal["rms", "bn"] = "rms", act: Literal["silu", "relu"] = "silu") -> Residual:
    """ResBlock of the high-resolution stages (no pre-norm, post-norm inside the branch)."""
    return Residual(ResBranch(c, norm, act))


class LiteMLA(nn.Module):
    """Lightweight multi-scale ReLU linear attention (EfficientViT; SANA's multi-scale aggregation for sana).

    qkv 1x1 conv (no bias) -> [+ depthwise k x k -> grouped 1x1 aggregation per scale] -> per 3*head_dim channel group
    q, k, v with ReLU on q and k -> linear attention in fp32 (N > head_dim tokens) or the non-softmax quadratic form
    (N <= head_dim, as in the released code) -> proj 1x1 (no bias) -> RMSNorm2d. The residual is added by `Residual`.
    """

    def __init__(self, c: int, head_dim: int = 32, multiscales: tuple[int, ...] = (), eps: float = 1e-15) -> None:
        super().__init__()
        self.head_dim, self.eps = head_dim, eps
        heads = c // head_dim
        self.qkv = ConvLayer(c, 3 * c, 1, bias=False)
        # One aggregation per scale: depthwise k x k on all 3C channels, then a 1x1 mixing within each head's q/k/v.
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * c, 3 * c, k, padding=k // 2, groups=3 * c, bias=False),
                nn.Conv2d(3 * c, 3 * c, 1, groups=3 * heads, bias=False),
            )
            for k in multiscales
        )
        self.proj = ConvLayer(c * (1 + len(multiscales)), c, 1, bias=False, norm="rms")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        qkv = self.qkv(x)  # (B, 3C, H, W)
        if len(self.aggreg):
            qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)  # (B, 3C*(1+S), H, W)
        qkv = qkv.reshape(B, -1, 3 * self.head_dim, H * W)  # (B, heads*(1+S), 3d, N)
        if H * W > self.head_dim:
            out = self._linear(qkv).to(x.dtype)  # (B, h, d, N)
        else:
            out = self._quadratic(qkv)
        return self.proj(out.reshape(B, -1, H, W))  # (B, C, H, W)

    def _split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.head_dim
        q, k, v = qkv[:, :, :d], qkv[:, :, d : 2 * d], qkv[:, :, 2 * d :]  # each (B, h, d, N)
        return F.relu(q), F.relu(k), v

    def _linear(self, qkv: torch.Tensor) -> torch.Tensor:
        """ReLU linear attention, O(N d^2), always in fp32: out = (v k^T) q / (1^T k^T q)."""
        with torch.autocast(device_type=qkv.device.type, enabled=False):
            q, k, v = self._split(qkv.float())
            v = F.pad(v, (0, 0, 0, 1), value=1.0)  # (B, h, d+1, N): the row of ones yields the normaliser
            vk = v @ k.transpose(-1, -2)  # (B, h, d+1, d)
            out = vk @ q  # (B, h, d+1, N)
            return out[:, :, :-1] / (out[:, :, -1:] + self.eps)  # (B, h, d, N)

    def _quadratic(self, qkv: torch.Tensor) -> torch.Tensor:
        """Same kernel without the linear trick, for tiny token counts: A = k^T q normalised over keys; no softmax."""
        q, k, v = self._split(qkv)
        att = (k.transpose(-1, -2) @ q).float()  # (B, h, N_k, N_q)
        att = att / (att.sum(dim=2, keepdim=True) + self.eps)
        return v @ att.to(v.dtype)  # (B, h, d, N)


class GLUMBConv(nn.Module):
    """Gated MBConv: 1x1 C->2eC (SiLU) -> depthwise 3x3 -> x * SiLU(gate) -> 1x1 eC->C (no bias) -> RMSNorm2d."""

    def __init__(self, c: int, expand: int = 4) -> None:
        super().__init__()
        hidden = c * expand
        self.inverted_conv = ConvLayer(c, 2 * hidden, 1, act="silu")
        self.depth_conv = ConvLayer(2 * hidden, 2 * hidden, 3, groups=2 * hidden)
        self.point_conv = ConvLayer(hidden, c, 1, bias=False, norm="rms")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depth_conv(self.inverted_conv(x))  # (B, 2eC, H, W)
        x, gate = x.chunk(2, dim=1)  # (B, eC, H, W) each
        return self.point_conv(x * F.silu(gate))  # (B, C, H, W)


class EfficientViTBlock(nn.Module):
    """EfficientViT block (paper §3.2: replaces SD-VAE's transformer blocks): context (LiteMLA) then local (GLU)."""

    def __init__(self, c: int, head_dim: int = 32, multiscales: tuple[int, ...] = (), expand: int = 4) -> None:
        super().__init__()
        self.context_module = Residual(LiteMLA(c, head_dim, multiscales))
        self.local_module = Residual(GLUMBConv(c, expand))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))  # (B, C, H, W)


class PixelUnshuffleConv(nn.Module):
    """Downsampler (in/mix): conv3x3 C_in -> C_out/4, then pixel_unshuffle(2) -> C_out at half resolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvLayer(c_in, c_out // 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(self.conv(x), 2)  # (B, C_out, H/2, W/2)


class PixelShuffleConv(nn.Module):
    """Upsampler (in/mix): conv3x3 C_in -> 4 C_out, then pixel_shuffle(2) -> C_out at double resolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvLayer(c_in, 4 * c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)  # (B, C_out, 2H, 2W)


class InterpolateConv(nn.Module):
    """Upsampler (sana): nearest 2x, then conv3x3 C_in -> C_out."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvLayer(c_in, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))  # (B, C_out, 2H, 2W)


def downsampler(c_in: int, c_out: int, resampling: str) -> nn.Module:
    """The learned downsampling branch: pixel-unshuffle conv (in/mix) or stride-2 conv3x3 (sana)."""
    return PixelUnshuffleConv(c_in, c_out) if resampling == "pixel_shuffle" else ConvLayer(c_in, c_out, 3, stride=2)


def upsampler(c_in: int, c_out: int, resampling: str) -> nn.Module:
    """The learned upsampling branch: conv + pixel shuffle (in/mix) or nearest + conv (sana)."""
    return PixelShuffleConv(c_in, c_out) if resampling == "pixel_shuffle" else InterpolateConv(c_in, c_out)


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
}
# Reduced variants are untrained: scaling factor 1.0 until a trained run measures 1 / RMS of its latents.
for _f, _c in ((8, 4), (16, 16), (32, 32), (32, 64), (64, 128), (64, 256), (128, 512)):
    for _size in ("small", "tiny"):
        DC_AE_VARIANTS[f"dc-ae-f{_f}c{_c}-{_size}"] = _reduced(_f, _c, _size)

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

