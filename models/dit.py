"""DiT: Scalable Diffusion Models with Transformers (Peebles & Xie, 2023), as used by DC-AE (arXiv 2410.10733).

DC-AE trains DiT-XL (Table 1, Table 3) and DiT-S (Table 4) on autoencoder latents, "following the same training
settings as the original papers" (§4.1). The architecture below follows `reference/backbones.md` §2.3 (sources:
facebookresearch/DiT `models.py` @ ed81ce2 and mit-han-lab/efficientvit `diffusioncore/models/dit.py` @ de7d773);
it is written from that description, not copied.

Reads top to bottom like the DiT figure: embedders -> DiT block (adaLN-Zero) -> final layer -> model -> configs.
Shapes: N = batch, T = tokens = (latent_size / patch_size)^2, D = hidden size, C = latent channels, p = patch size.

The sin-cos helpers and ``TimestepEmbedder`` are reused by PixArt-α (``models/pixart.py``), which extends DiT; the
attention, MLP and base init shared with U-ViT and PixArt-α are in ``models/vit_blocks.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.vit_blocks import Attention, mlp, run_block, xavier_init

# ----------------------------------------------------------------------------------------------------------------
# Positional and timestep embeddings
# ----------------------------------------------------------------------------------------------------------------

def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """1-D sin-cos embedding of positions (M,) -> (M, dim): [sin(pos·ω), cos(pos·ω)], ω_i = 10000^(-2i/dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    out = pos.double()[:, None] * omega[None]                                          # (M, dim/2)
    return torch.cat([out.sin(), out.cos()], dim=1)                                     # (M, dim)


def sincos_2d(dim: int, grid_size: int, base_size: int | None = None, scale: float = 1.0) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE / DiT convention) -> (grid_size², dim), float32.

    Half of the channels encode the column (w) index, half the row (h) index, in that order, as in DiT's
    ``get_2d_sincos_pos_embed``. PixArt-α rescales the grid by ``grid_size / base_size / scale`` (its ``lewei_scale``);
    with the defaults (base_size = grid_size, scale 1) this is DiT's embedding.
    """
    base_size = base_size or grid_size
    coords = torch.arange(grid_size, dtype=torch.float64) / (grid_size / base_size) / scale  # (G,)
    gh, gw = torch.meshgrid(coords, coords, indexing="ij")                                 # (G, G) each
    emb_w = sincos_1d(dim // 2, gw.reshape(-1))                                            # (G², dim/2)
    emb_h = sincos_1d(dim // 2, gh.reshape(-1))                                            # (G², dim/2)
    return torch.cat([emb_w, emb_h], dim=1).float()                                        # (G², dim)


def timestep_sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps (N,) -> (N, dim): [cos(t·ω), sin(t·ω)] (DiT, U-ViT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]                       # (N, dim/2)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, dim)


class TimestepEmbedder(nn.Module):
    """256-d sinusoid -> Linear -> SiLU -> Linear (DiT ``TimestepEmbedder``; PixArt-α uses the same)."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = timestep_sinusoid(t, self.frequency_size).to(self.mlp[0].weight.dtype)  # (N, 256)
        return self.mlp(freq)                                                           # (N, D)


class LabelEmbedder(nn.Module):
    """Class-label table with one extra row (index ``num_classes``) = CFG null label; label dropout 0.1."""

    def __init__(self, num_classes: int, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.num_classes, self.dropout = num_classes, dropout
        self.table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:  # classifier-free guidance training: drop labels to the null class
            drop = torch.rand(y.shape[0], device=y.device) < self.dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return self.table(y)  # (N, D)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation x·(1 + scale) + shift, with (N, D) shift/scale broadcast over tokens."""
    return x * (1 + scale[:, None]) + shift[:, None]


# ----------------------------------------------------------------------------------------------------------------
# DiT block and final layer
# ----------------------------------------------------------------------------------------------------------------

class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning (DiT §3.2, Fig. 3).

    The conditioning c regresses six vectors (shift, scale, gate for attention and for the MLP); the regression layer is
    zero-initialised, so the gates are 0 and the block is the identity at initialisation.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mods = self.adaLN_modulation(c).chunk(6, dim=1)  # 6×(N, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (N, T, D)
        x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))   # (N, T, D)
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) -> Linear(D -> p²·out_channels); both linears zero-initialised (DiT)."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2×(N, D)
        return self.linear(modulate(self.norm(x), shift, scale))  # (N, T, p²·out)


def unpatchify(x: torch.Tensor, channels: int, patch_size: int) -> torch.Tensor:
    """(N, T, p²·C) tokens, channel-last within a patch -> (N, C, H, W) with H = W = sqrt(T)·p."""
    n, t, _ = x.shape
    h = w = round(t ** 0.5)
    p = patch_size
    x = x.reshape(n, h, w, p, p, channels)                                   # (N, h, w, p, p, C)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, h * p, w * p)  # (N, C, H, W)


# ----------------------------------------------------------------------------------------------------------------
# DiT model
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiTConfig:
    hidden_size: int = 1152           # D
    depth: int = 28                   # number of DiT blocks
    num_heads: int = 16               # head dim = D / heads (72 for XL, 64 for S)
    mlp_ratio: float = 4.0            # MLP width = 4·D
    num_classes: int = 1000           # ImageNet classes; +1 null row for CFG
    class_dropout: float = 0.1        # label dropout for classifier-free guidance
    learn_sigma: bool = True          # output 2C channels: ε and the variance interpolation v (IDDPM)
    in_channels: int = 32             # latent channels C (DC-AE-f32c32 by default)
    input_size: int = 16              # latent side (512 px / f32)
    patch_size: int = 1               # DC-AE always uses p1 (§4.3)
    activation_checkpointing: bool = False  # recompute every block in backward (efficiency protocol, efficiency.md §3)


class DiT(nn.Module):
    """Class-conditional DiT: ``forward(x, t, y)`` with x (N, C, H, W) latents, t (N,) timesteps, y (N,) labels."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.input_size % cfg.patch_size:
            raise ValueError(f"latent size {cfg.input_size} is not divisible by patch size {cfg.patch_size}")
        d = cfg.hidden_size
        self.out_channels = cfg.in_channels * (2 if cfg.learn_sigma else 1)
        self.grid = cfg.input_size // cfg.patch_size
        self.x_embedder = nn.Conv2d(cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(cfg.num_classes, d, cfg.class_dropout)
        # Fixed sin-cos table: a buffer, so it is neither trained nor counted in "params" (backbones.md §2.3).
        self.register_buffer("pos_embed", sincos_2d(d, self.grid)[None], persistent=False)  # (1, T, D)
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(d, cfg.patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT init: Xavier-uniform linears, patch embed like a linear, N(0, .02) tables/time MLP, adaLN-Zero."""
        xavier_init(self, self.x_embedder)
        nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:  # adaLN-Zero: every gate starts at 0, so every block starts as the identity
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for lin in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed  # (N, T, D)
        c = self.t_embedder(t) + self.y_embedder(y)                         # (N, D)
        for block in self.blocks:
            x = run_block(block, self.config.activation_checkpointing, x, c)  # (N, T, D)
        x = self.final_layer(x, c)                                          # (N, T, p²·2C)
        return unpatchify(x, self.out_channels, self.config.patch_size)     # (N, 2C, H, W)


# ----------------------------------------------------------------------------------------------------------------
# Configs, keyed by the paper's names (latent shape and patch size are filled in by models.backbones)
# ----------------------------------------------------------------------------------------------------------------

DIT_CONFIGS = {
    "DiT-S": DiTConfig(hidden_size=384, depth=12, num_heads=6),     # Table 4; 32.9 M at 1024 px
    "DiT-XL": DiTConfig(hidden_size=1152, depth=28, num_heads=16),  # Tables 1, 3; 674.89 M with DC-AE-f32 p1
    "DiT-small": DiTConfig(hidden_size=128, depth=6, num_heads=4),  # small scale: ~1.9 M (generation.md §6)
    "DiT-tiny": DiTConfig(hidden_size=32, depth=2, num_heads=2),    # tests and smoke runs only
}
