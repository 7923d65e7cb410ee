"""Transformer pieces shared by the three diffusion backbones (U-ViT, DiT, PixArt-α): attention, MLP, base init,
activation checkpointing. Each backbone file keeps what is its own (adaLN-Zero in `dit.py`, adaLN-single and
cross-attention in `pixart.py`, long skips in `uvit.py`). Parameter names (`qkv`, `proj`, `mlp.0`, `mlp.2`) are
those of the upstream code.

Shapes: N = batch, T = tokens, D = hidden size, H = heads, Dh = D / H.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, through ``F.scaled_dot_product_attention``.

    ``qkv_bias``: True in DiT and PixArt-α (timm ``Attention(qkv_bias=True)``), False in U-ViT. The output
    projection always has a bias. U-ViT's efficientvit code casts q, k, v to fp32 before SDPA; under CUDA autocast
    PyTorch casts SDPA inputs back to fp16/bf16, so no backbone casts here (same kernel, no extra copies).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        heads, dh = self.num_heads, d // self.num_heads
        qkv = self.qkv(x).reshape(n, t, 3, heads, dh).permute(2, 0, 3, 1, 4)  # (3, N, H, T, Dh)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])          # (N, H, T, Dh)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))                 # (N, T, D)


def mlp(dim: int, ratio: float = 4.0, approximate: str = "tanh") -> nn.Sequential:
    """Transformer MLP D -> ratio·D -> D with GELU: tanh approximation in DiT and PixArt-α, exact ("none") in U-ViT."""
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate=approximate), nn.Linear(hidden, dim))


def run_block(block: nn.Module, checkpointed: bool, *inputs: torch.Tensor | None) -> torch.Tensor:
    """``block(*inputs)``; with ``checkpointed`` (a config's ``activation_checkpointing``) and grad enabled, its
    activations are recomputed in backward instead of kept."""
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(block, *inputs, use_reentrant=False)
    return block(*inputs)


def xavier_init(model: nn.Module, patch_embed: nn.Conv2d) -> None:
    """DiT's base initialisation, which PixArt-α inherits: Xavier-uniform weights and zero biases on every Linear
    (in ``model.modules()`` order), then the patch embedding initialised like a Linear (its kernel flattened).

    Model-specific overrides (adaLN-Zero, N(0, 0.02) embedders, zero output layers) follow in each model's
    ``initialize_weights``.
    """
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    w = patch_embed.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # (D, C·p·p) like a Linear
    nn.init.zeros_(patch_embed.bias)
