"""Closed-form cost model of the diffusion backbones: tokens, trainable parameters, MACs per forward, memory bound.

Formulas from `reference/backbones.md` §5 (validated there against the MACs/params that efficientvit's README
prints), written for any width/depth/MLP ratio so that they also describe the ``-tiny`` variants. Counting
convention (efficiency.md §3, DC-Gen ``test_macs``): one forward at batch 1, no CFG; MAC = multiply-accumulate of
every matmul and convolution **including the attention matmuls** (QKᵀ and AV); norms, softmax, activations and
embedding lookups are not counted; FLOPs = 2 × MACs; "params" = trainable parameters only. tests/test_costs.py
checks these against ``torch.utils.flop_counter.FlopCounterMode`` on the meta device and against §6.

Every config object is one of ``UViTConfig``, ``DiTConfig``, ``PixArtConfig`` (see ``models.backbones``).
"""
from __future__ import annotations

from dataclasses import dataclass

from models.backbones import backbone_config
from models.dit import DiTConfig
from models.pixart import PixArtConfig
from models.uvit import EXTRA_TOKENS, UViTConfig

# ----------------------------------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------------------------------


def tokens(cfg) -> int:
    """Image tokens N = (latent side / p)²  (backbones.md §3)."""
    return (cfg.input_size // cfg.patch_size) ** 2


def sequence_length(cfg) -> int:
    """Length of the self-attention sequence: N + 2 for U-ViT (class and time tokens), N otherwise."""
    return tokens(cfg) + (EXTRA_TOKENS if isinstance(cfg, UViTConfig) else 0)


def num_blocks(cfg) -> int:
    """Transformer blocks actually run: U-ViT `depth` means depth/2 + 1 + depth/2 blocks."""
    return cfg.depth + 1 if isinstance(cfg, UViTConfig) else cfg.depth


def patch_width(cfg) -> int:
    """q = p²·C, the width of a flattened patch (input of the patch embedding)."""
    return cfg.patch_size ** 2 * cfg.in_channels


# ----------------------------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------------------------


def params(cfg) -> int:
    """Trainable parameters (the DiT/PixArt sin-cos pos-embed and PixArt's null caption are buffers, not counted)."""
    d, q, h = cfg.hidden_size, patch_width(cfg), int(cfg.hidden_size * cfg.mlp_ratio)
    mlp = 2 * d * h + h + d                      # Linear(d, h) + Linear(h, d)
    patch_embed = q * d + d                      # Conv2d(C, d, p, p)
    if isinstance(cfg, UViTConfig):
        block = 4 * d * d + d + mlp + 4 * d      # qkv (no bias) + proj, MLP, two affine LayerNorms
        skips = (cfg.depth // 2) * (2 * d * d + d)
        pos = (tokens(cfg) + EXTRA_TOKENS) * d   # learned
        head = 2 * d + d * q + q                 # LayerNorm + Linear(d, p²C)
        return num_blocks(cfg) * block + skips + patch_embed + (cfg.num_classes + 1) * d + pos + head
    out = q * (2 if cfg.learn_sigma else 1)      # p²·2C outputs with learned sigma
    t_embed = 256 * d + d + d * d + d            # 256 -> d -> d
    attn = 4 * d * d + 4 * d                     # qkv + proj, with biases
    if isinstance(cfg, DiTConfig):
        block = attn + mlp + 6 * d * d + 6 * d   # + adaLN-Zero regression
        final = 2 * d * d + 2 * d + d * out + out
        return cfg.depth * block + patch_embed + t_embed + (cfg.num_classes + 1) * d + final
    if isinstance(cfg, PixArtConfig):
        block = attn + 4 * d * d + 4 * d + mlp + 6 * d  # + cross-attention (q, kv, proj) + scale-shift table
        t_block = 6 * d * d + 6 * d                     # adaLN-single
        caption = cfg.caption_channels * d + d + d * d + d
        final = 2 * d + d * out + out
        return cfg.depth * block + patch_embed + t_embed + t_block + caption + final
    raise TypeError(f"no cost model for {type(cfg).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# MACs per forward (batch 1)
# ----------------------------------------------------------------------------------------------------------------


def attention_macs(cfg) -> int:
    """MACs of the attention matmuls only (QKᵀ and AV; self- and cross-attention)."""
    d, n, seq = cfg.hidden_size, tokens(cfg), sequence_length(cfg)
    self_attn = num_blocks(cfg) * 2 * seq * seq * d
    cross = cfg.depth * 2 * n * cfg.text_tokens * d if isinstance(cfg, PixArtConfig) else 0
    return self_attn + cross


def macs(cfg) -> int:
    """MACs of one forward at batch 1 (backbones.md §5)."""
    d, q, n, h = cfg.hidden_size, patch_width(cfg), tokens(cfg), int(cfg.hidden_size * cfg.mlp_ratio)
    linear_per_token = 4 * d * d + 2 * d * h     # qkv + proj + MLP: 12d² at mlp_ratio 4
    if isinstance(cfg, UViTConfig):
        seq = sequence_length(cfg)
        blocks = num_blocks(cfg) * linear_per_token * seq + (cfg.depth // 2) * 2 * d * d * seq  # + skip linears
        return blocks + attention_macs(cfg) + n * q * d + seq * d * q      # patch embed; head on all L tokens
    out = q * (2 if cfg.learn_sigma else 1)
    t_embed = 256 * d + d * d
    if isinstance(cfg, DiTConfig):
        blocks = cfg.depth * (linear_per_token * n + 6 * d * d)            # + adaLN regression (once per sample)
        return blocks + attention_macs(cfg) + n * q * d + n * d * out + 2 * d * d + t_embed
    if isinstance(cfg, PixArtConfig):
        s = cfg.text_tokens
        blocks = cfg.depth * ((linear_per_token + 2 * d * d) * n + 2 * d * d * s)  # + cross q/proj; text k/v
        caption = s * (cfg.caption_channels * d + d * d)
        return blocks + attention_macs(cfg) + caption + n * q * d + n * d * out + 6 * d * d + t_embed
    raise TypeError(f"no cost model for {type(cfg).__name__}")


def gflops(cfg) -> float:
    """GFLOPs of one forward at batch 1 (2 × MACs)."""
    return 2 * macs(cfg) / 1e9


def train_flops_per_image(cfg, recompute: bool = False) -> float:
    """Model FLOPs of one training step per image: forward + backward (2×) = 3 forwards; 4 with recomputation.

    MFU uses the 3× model FLOPs (recomputation is overhead, not useful work); efficiency.md §2's "train TFLOP/s"
    column counts hardware work with full activation checkpointing (4×).
    """
    return (4 if recompute else 3) * 2 * macs(cfg)


# ----------------------------------------------------------------------------------------------------------------
# Training-memory lower bound (efficiency.md §4.5)
# ----------------------------------------------------------------------------------------------------------------


def train_memory_bytes_analytic(cfg, batch: int = 256) -> int:
    """Lower bound of peak training memory with full activation checkpointing (efficiency.md §4.5).

    16 bytes per parameter (fp32 weights, grads, two AdamW moments) + one fp32 residual-stream tensor saved at each
    block input (n_blocks · B · L · D · 4 bytes). The recompute working set of one block is left out, so the paper's
    measured values always exceed it (by more with more tokens).
    """
    return 16 * params(cfg) + num_blocks(cfg) * batch * sequence_length(cfg) * cfg.hidden_size * 4


# ----------------------------------------------------------------------------------------------------------------
# Every paper row (Tables 1, 3, 4, 5; backbones.md §6)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostRow:
    table: str            # "table1" | "table3" | "table4" | "table5"
    backbone: str         # registry name (models.backbones)
    autoencoder: str      # paper label
    patch_size: int
    resolution: int       # pixels
    latent_channels: int  # c ("c?" rows: SD-VAE-f16 c16, SD-VAE-f32 c64 assumed, backbones.md §6)
    spatial_compression: int

    @property
    def latent_size(self) -> int:
        return self.resolution // self.spatial_compression


PAPER_ROWS = (
    CostRow("table1", "dit-xl", "SD-VAE-f8", 4, 512, 4, 8),
    CostRow("table1", "dit-xl", "SD-VAE-f16", 2, 512, 16, 16),
    CostRow("table1", "dit-xl", "SD-VAE-f32", 1, 512, 64, 32),
    CostRow("table1", "uvit-s", "SD-VAE-f8", 8, 512, 4, 8),
    CostRow("table1", "uvit-s", "SD-VAE-f16", 4, 512, 16, 16),
    CostRow("table1", "uvit-s", "SD-VAE-f32", 2, 512, 64, 32),
    CostRow("table1", "uvit-s", "DC-AE-f64", 1, 512, 128, 64),
    CostRow("table3", "uvit-s", "Flux-VAE-f8", 2, 512, 16, 8),
    CostRow("table3", "uvit-s", "SD-VAE-f8", 2, 512, 4, 8),
    CostRow("table3", "uvit-s", "SD-VAE-f16", 2, 512, 16, 16),
    CostRow("table3", "uvit-s", "SD-VAE-f32", 1, 512, 64, 32),
    CostRow("table3", "uvit-s", "DC-AE-f32", 1, 512, 32, 32),
    CostRow("table3", "uvit-s", "DC-AE-f64", 1, 512, 128, 64),
    CostRow("table3", "dit-xl", "SD-VAE-f8", 2, 512, 4, 8),
    CostRow("table3", "dit-xl", "DC-AE-f32", 1, 512, 32, 32),
    CostRow("table3", "uvit-h", "SD-VAE-f8", 2, 512, 4, 8),
    CostRow("table3", "uvit-h", "DC-AE-f32", 1, 512, 32, 32),
    CostRow("table3", "uvit-h", "DC-AE-f64", 1, 512, 128, 64),
    CostRow("table4", "dit-s", "SD-VAE-f8", 2, 1024, 4, 8),
    CostRow("table4", "dit-s", "SD-VAE-f8", 4, 1024, 4, 8),
    CostRow("table4", "dit-s", "DC-AE-f32", 1, 1024, 32, 32),
    CostRow("table4", "dit-s", "DC-AE-f64", 1, 1024, 128, 64),
    CostRow("table4", "dit-s", "SD-VAE-f8", 4, 2048, 4, 8),
    CostRow("table4", "dit-s", "DC-AE-f64", 1, 2048, 128, 64),
    CostRow("table5", "pixart-alpha", "SD-VAE-f8", 2, 512, 4, 8),
    CostRow("table5", "pixart-alpha", "DC-AE-f32", 1, 512, 32, 32),
)


def row_costs(row: CostRow) -> dict[str, float]:
    """Tokens, params (M), MACs (G), GFLOPs and attention-matmul share of one paper row."""
    cfg = backbone_config(row.backbone, row.latent_channels, row.latent_size, row.patch_size)
    return {"tokens": tokens(cfg), "params_m": params(cfg) / 1e6, "gmacs": macs(cfg) / 1e9,
            "gflops": gflops(cfg), "attn_share": attention_macs(cfg) / macs(cfg)}


if __name__ == "__main__":  # python -m models.costs: print the §6 table
    for r in PAPER_ROWS:
        c = row_costs(r)
        print(f"{r.table} {r.backbone:13s} {r.autoencoder:12s} p{r.patch_size} {r.resolution:5d}  N={c['tokens']:5d}  "
              f"{c['params_m']:8.2f} M  {c['gmacs']:8.2f} GMACs  {c['gflops']:7.1f} GFLOPs  attn {c['attn_share']:.2f}")
