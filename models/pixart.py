"""PixArt-α: Fast Training of Diffusion Transformer for Photorealistic Text-to-Image Synthesis (Chen et al., 2024).

DC-AE's text-to-image experiment (Table 5, MJHQ 512 px) trains PixArt-α from scratch for 100K iterations on SD-VAE-f8
p2 and DC-AE-f32 p1 latents. The architecture follows `reference/backbones.md` §2.4 (source: PixArt-alpha/PixArt-alpha
`diffusion/model/nets/{PixArt,PixArt_blocks}.py` @ cac2fd3), written from that description, not copied; parity with
diffusers' ``PixArtTransformer2DModel`` is tested on converted weights (``models.checkpoints.convert_diffusers_pixart_to_ours``).

PixArt-α is DiT-XL with three changes: adaLN-single (one t -> 6D regression per forward, plus a learned per-block
table), a cross-attention layer to 120 T5-XXL caption tokens (4096-d features) in every block, and a T2I final layer.
Shapes: N = batch, T = image tokens, S = text tokens (120), D = hidden size, E = caption feature width (4096).

Caption mask: T5 pads every caption to S tokens; the optional ``mask`` (N, S) (1 = caption token, 0 = padding, as
the ``attention_mask`` stored beside the features, bench/evals/captions.py) keeps the padded tokens out of the
cross-attention, with the meaning of diffusers' ``encoder_attention_mask`` (tests/test_backbones.py checks ours
against it). An all-ones mask, or none, is the mask-free forward exactly. Caption dropout replaces the features
only: a dropped caption keeps its mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.dit import TimestepEmbedder, sincos_2d, unpatchify
from models.vit_blocks import Attention, mlp, run_block, xavier_init

# ----------------------------------------------------------------------------------------------------------------
# The text condition
# ----------------------------------------------------------------------------------------------------------------

class Caption(NamedTuple):
    """A batch of T5 caption features and their mask: the condition ``y`` a PixArt-α backbone takes in the
    diffusion loops (``models/diffusion.py``, ``models/train_diffusion.py``), where U-ViT / DiT take class labels."""

    features: torch.Tensor  # (N, S, E) float
    mask: torch.Tensor      # (N, S) bool, True = a caption token, False = padding

    def to(self, device: torch.device | str) -> Caption:
        return Caption(self.features.to(device), self.mask.to(device))


# ----------------------------------------------------------------------------------------------------------------
# Embedders
# ----------------------------------------------------------------------------------------------------------------

class CaptionEmbedder(nn.Module):
    """Caption MLP E -> D (tanh-GELU) -> D; caption dropout replaces the whole caption by a fixed null embedding.

    The null embedding is a random **buffer** (S×E), not trained and not counted in the parameters (PixArt
    ``CaptionEmbedder.y_embedding``, initialised N(0, 1)/sqrt(E)).
    """

    def __init__(self, caption_channels: int, hidden_size: int, text_tokens: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = dropout
        self.mlp = nn.Sequential(nn.Linear(caption_channels, hidden_size), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden_size, hidden_size))
        self.register_buffer("null_caption", torch.randn(text_tokens, caption_channels) / caption_channels ** 0.5)

    def forward(self, caption: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:
            drop = torch.rand(caption.shape[0], device=caption.device) < self.dropout
            caption = torch.where(drop[:, None, None], self.null_caption.to(caption.dtype), caption)
        return self.mlp(caption)  # (N, S, D)


# ----------------------------------------------------------------------------------------------------------------
# Block and final layer
# ----------------------------------------------------------------------------------------------------------------

class CrossAttention(nn.Module):
    """Image tokens (queries) attend to caption tokens (keys/values); biases on, no pre-norm, no gate."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (N, S) bool: True = attend to that caption token; None = attend to all."""
        n, t, d = x.shape
        h, dh = self.num_heads, d // self.num_heads
        q = self.q(x).reshape(n, t, h, dh).transpose(1, 2)                                   # (N, H, T, Dh)
        k, v = self.kv(cond).reshape(n, cond.shape[1], 2, h, dh).permute(2, 0, 3, 1, 4)     # 2×(N, H, S, Dh)
        attn_mask = None if mask is None else mask[:, None, None, :]                         # (N, 1, 1, S)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)                   # (N, H, T, Dh)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))                               # (N, T, D)


class PixArtBlock(nn.Module):
    """Self-attn and MLP modulated by adaLN-single (shared t regression + per-block table); cross-attn between."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim, mlp_ratio)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)  # per-block offsets, (6, D)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, t6: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        n, d = t6.shape[0], x.shape[-1]
        mods = self.scale_shift_table[None] + t6.reshape(n, 6, d)                         # (N, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.chunk(6, dim=1)  # 6×(N, 1, D)
        x = x + gate_msa * self.attn(self.norm1(x) * (1 + scale_msa) + shift_msa)         # (N, T, D)
        x = x + self.cross_attn(x, cond, mask)                                            # (N, T, D)
        x = x + gate_mlp * self.mlp(self.norm2(x) * (1 + scale_mlp) + shift_mlp)          # (N, T, D)
        return x


class T2IFinalLayer(nn.Module):
    """LayerNorm, shift/scale = learned (2, D) table + t embedding, then Linear(D -> p²·out) (PixArt-α)."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim ** 0.5)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)  # 2×(N, 1, D)
        return self.linear(self.norm(x) * (1 + scale) + shift)                         # (N, T, p²·out)


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PixArtConfig:
    hidden_size: int = 1152           # D (PixArt-XL)
    depth: int = 28                   # blocks
    num_heads: int = 16               # head dim 72
    mlp_ratio: float = 4.0
    caption_channels: int = 4096      # T5-XXL feature width E
    text_tokens: int = 120            # T5 model_max_length in PixArt-α
    caption_dropout: float = 0.1
    learn_sigma: bool = True          # 2C outputs (IDDPM learned variance)
    pos_embed_scale: float = 1.0      # PixArt `lewei_scale`: 1 at 512 px
    in_channels: int = 32             # latent channels C
    input_size: int = 16              # latent side
    patch_size: int = 1
    activation_checkpointing: bool = False  # recompute every block in backward (efficiency protocol)


class PixArtAlpha(nn.Module):
    """Text-conditional PixArt-α: ``forward(x, t, caption, mask=None)``, x (N, C, H, W), t (N,), caption (N, S, E)
    T5 features (or a ``Caption`` holding features and mask), mask (N, S) 1 = caption token, 0 = padding."""

    def __init__(self, config: PixArtConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.input_size % cfg.patch_size:
            raise ValueError(f"latent size {cfg.input_size} is not divisible by patch size {cfg.patch_size}")
        d = cfg.hidden_size
        self.out_channels = cfg.in_channels * (2 if cfg.learn_sigma else 1)
        grid = cfg.input_size // cfg.patch_size
        self.x_embedder = nn.Conv2d(cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        # base_size = grid: PixArt sets base_size = input_size // patch_size, so only lewei_scale rescales the grid.
        self.register_buffer("pos_embed", sincos_2d(d, grid, grid, cfg.pos_embed_scale)[None], persistent=False)
        self.t_embedder = TimestepEmbedder(d)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # adaLN-single: one regression per forward
        self.y_embedder = CaptionEmbedder(cfg.caption_channels, d, cfg.text_tokens, cfg.caption_dropout)
        self.blocks = nn.ModuleList(PixArtBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final_layer = T2IFinalLayer(d, cfg.patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """PixArt init: Xavier linears, N(0, .02) time/caption MLPs, zero cross-attention output and final linear."""
        xavier_init(self, self.x_embedder)  # DiT's base init
        for lin in (self.t_embedder.mlp[0], self.t_embedder.mlp[2], self.t_block[1],
                    self.y_embedder.mlp[0], self.y_embedder.mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.cross_attn.proj.weight)
            nn.init.zeros_(block.cross_attn.proj.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, caption: torch.Tensor | Caption,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(caption, Caption):  # the diffusion loops' condition y
            caption, mask = caption.features, caption.mask
        if mask is not None:
            mask = mask.bool()
            mask = None if bool(mask.all()) else mask  # no padding: the mask-free path, bit for bit
        x = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed  # (N, T, D)
        t_emb = self.t_embedder(t)                                          # (N, D)
        t6 = self.t_block(t_emb)                                            # (N, 6D)
        cond = self.y_embedder(caption)                                     # (N, S, D)
        for block in self.blocks:
            x = run_block(block, self.config.activation_checkpointing, x, cond, t6, mask)  # (N, T, D)
        x = self.final_layer(x, t_emb)                                      # (N, T, p²·2C)
        return unpatchify(x, self.out_channels, self.config.patch_size)     # (N, 2C, H, W)


# ----------------------------------------------------------------------------------------------------------------
# Configs, keyed by the paper's names (latent shape and patch size are filled in by models.backbones)
# ----------------------------------------------------------------------------------------------------------------

PIXART_CONFIGS = {
    "PixArt-α": PixArtConfig(hidden_size=1152, depth=28, num_heads=16),  # Table 5; 610.86 M with SD-VAE-f8 p2
    "PixArt-α-tiny": PixArtConfig(hidden_size=32, depth=2, num_heads=2),  # tests and smoke runs only
}
