"""U-ViT: All are Worth Words, a ViT Backbone for Diffusion Models (Bao et al., 2023), as used by DC-AE.

DC-AE trains UViT-S (Tables 1, 3; Figure 2b/c) and UViT-H (Table 3, the abstract's 19.1x / 17.9x speed-ups) on
autoencoder latents; UViT-2B is a later addition (efficientvit assets, not a paper table row). The architecture
follows `reference/backbones.md` §2.2 (sources: mit-han-lab/efficientvit `diffusioncore/models/uvit.py` @ de7d773 and
baofff/U-ViT `libs/uvit.py` @ ce55170), written from that description, not copied.

Everything is a token: [class, time, N patch tokens] pass through depth/2 "in" blocks, one mid block and depth/2
"out" blocks; each out block concatenates a long skip from the matching in block (LIFO) and projects 2D -> D before
its attention. Shapes: N = batch, L = T + 2 tokens, T = (latent_size / p)^2, D = hidden size, C = latent channels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.dit import timestep_sinusoid, unpatchify
from models.vit_blocks import Attention, mlp, run_block

# Number of extra (non-patch) tokens prepended to the sequence: class token and time token.
EXTRA_TOKENS = 2


# ----------------------------------------------------------------------------------------------------------------
# Block
# ----------------------------------------------------------------------------------------------------------------

class UViTBlock(nn.Module):
    """Pre-norm transformer block; out blocks first fuse their long skip with Linear(2D -> D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, skip: bool = False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)  # affine, eps 1e-5
        self.attn = Attention(dim, num_heads, qkv_bias=False)  # U-ViT: qkv without bias
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_ratio, approximate="none")  # exact GELU

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (N, L, 2D) -> (N, L, D)
        x = x + self.attn(self.norm1(x))                       # (N, L, D)
        return x + self.mlp(self.norm2(x))                     # (N, L, D)


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UViTConfig:
    hidden_size: int = 512            # D
    depth: int = 12                   # U-ViT's `depth`: depth/2 in + 1 mid + depth/2 out = depth + 1 blocks
    num_heads: int = 8                # head dim 64 (S, 2B) or 72 (H)
    mlp_ratio: float = 4.0            # MLP width 4·D
    num_classes: int = 1000           # ImageNet classes; +1 null row (index 1000) for CFG
    class_dropout: float = 0.1        # label dropout for classifier-free guidance (efficientvit does it in-model)
    in_channels: int = 32             # latent channels C
    input_size: int = 16              # latent side
    patch_size: int = 1               # DC-AE always uses p1; SD-VAE-f8 baselines use p2
    activation_checkpointing: bool = False  # recompute every block (incl. mid) in backward; skip tensors are kept


class UViT(nn.Module):
    """Class-conditional U-ViT: ``forward(x, t, y)``, x (N, C, H, W), t (N,) integer timesteps, y (N,) labels -> ε."""

    def __init__(self, config: UViTConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.depth % 2:
            raise ValueError(f"U-ViT depth must be even (in/out halves), got {cfg.depth}")
        if cfg.input_size % cfg.patch_size:
            raise ValueError(f"latent size {cfg.input_size} is not divisible by patch size {cfg.patch_size}")
        d, p = cfg.hidden_size, cfg.patch_size
        num_patches = (cfg.input_size // p) ** 2
        self.patch_embed = nn.Conv2d(cfg.in_channels, d, kernel_size=p, stride=p)
        self.label_emb = nn.Embedding(cfg.num_classes + 1, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, EXTRA_TOKENS + num_patches, d))  # learned, (1, L, D)
        self.in_blocks = nn.ModuleList(UViTBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth // 2))
        self.mid_block = UViTBlock(d, cfg.num_heads, cfg.mlp_ratio)
        self.out_blocks = nn.ModuleList(UViTBlock(d, cfg.num_heads, cfg.mlp_ratio, skip=True)
                                        for _ in range(cfg.depth // 2))
        self.norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, p * p * cfg.in_channels)  # ε only, no learned variance
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """U-ViT init: trunc-normal(0.02) linears and pos-embed, zero biases, LayerNorm (1, 0)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = self.patch_embed(x).flatten(2).transpose(1, 2)                 # (N, T, D)
        time_token = timestep_sinusoid(t, cfg.hidden_size).to(x.dtype)     # (N, D), no MLP (mlp_time_embed=False)
        if self.training and cfg.class_dropout > 0:                        # CFG label dropout -> null class
            drop = torch.rand(y.shape[0], device=y.device) < cfg.class_dropout
            y = torch.where(drop, torch.full_like(y, cfg.num_classes), y)
        label_token = self.label_emb(y)                                    # (N, D)
        x = torch.cat([label_token[:, None], time_token[:, None], x], 1)   # (N, L, D), L = T + 2
        x = x + self.pos_embed                                             # (N, L, D)
        skips, ckpt = [], cfg.activation_checkpointing  # checkpointing keeps the skip inputs
        for block in self.in_blocks:
            x = run_block(block, ckpt, x, None)                            # (N, L, D)
            skips.append(x)
        x = run_block(self.mid_block, ckpt, x, None)                       # (N, L, D)
        for block in self.out_blocks:
            x = run_block(block, ckpt, x, skips.pop())                     # (N, L, D), LIFO long skip
        x = self.decoder_pred(self.norm(x))[:, EXTRA_TOKENS:]              # (N, T, p²·C)
        return unpatchify(x, cfg.in_channels, cfg.patch_size)              # (N, C, H, W)


# ----------------------------------------------------------------------------------------------------------------
# Configs, keyed by the paper's names (latent shape and patch size are filled in by models.backbones)
# ----------------------------------------------------------------------------------------------------------------

UVIT_CONFIGS = {
    "UViT-S": UViTConfig(hidden_size=512, depth=12, num_heads=8),     # 13 blocks; 44.79 M with DC-AE-f32 p1
    "UViT-H": UViTConfig(hidden_size=1152, depth=28, num_heads=16),   # 29 blocks; 500.87 M with DC-AE-f32/f64 p1
    "UViT-2B": UViTConfig(hidden_size=2048, depth=28, num_heads=32),  # 29 blocks; 1580.40 M (extra, not a paper row)
    "UViT-small": UViTConfig(hidden_size=128, depth=6, num_heads=4),  # small scale: ~1.5 M (generation.md §6)
    "UViT-tiny": UViTConfig(hidden_size=32, depth=2, num_heads=2),    # tests and smoke runs only
}
