"""EfficientViT building blocks of DC-AE (paper §3.2: "transformer blocks replaced by EfficientViT blocks").

`models/dc_ae.py` holds Residual Autoencoding, the encoder/decoder and the variants. Read top to bottom: utilities
(RMSNorm2d, ConvLayer, OpSequential, Residual) -> ResBlock -> LiteMLA, GLUMBConv, EfficientViTBlock -> learned
resamplers. Attribute names follow the released efficientvit code (`mit-han-lab/efficientvit@de7d773`,
`efficientvit/models/nn/ops.py`: `.conv`, `.norm`, `main`, `op_list`, `context_module`, `local_module`, `qkv`,
`aggreg`, `proj`, `inverted_conv`, `depth_conv`, `point_conv`), so that the official state dict loads with no renaming.
Facts from `shared/reference/autoencoders.md` §2.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------------------------------------------------
# Utilities
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
        # "cpu" for every non-CUDA device: autocast knows no "meta" device, where FLOPs are counted (bench needs)
        with torch.autocast(device_type="cuda" if qkv.is_cuda else "cpu", enabled=False):
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
