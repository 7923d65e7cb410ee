"""Figure 2: (a) rFID vs spatial compression, SD-VAE vs DC-AE; (b) UViT-S gFID per autoencoder; (c) UViT variants,
throughput vs gFID.

Panels are built from their own modules: ``_figure2a`` (reconstruction protocol) and ``_figure2c`` (efficiency
profiler with the paper's FIDs). Panel b needs latent diffusion training and is not implemented.

Command: ``python -m bench figure2 [--ablation a|b|c] --scale small``.
"""
from bench.artifacts._figure2a import FIGURE2A
from bench.artifacts._figure2c import FIGURE2C
from bench.spec import Spec

TITLE = "Figure 2: compression vs rFID; UViT-S gFID per AE; UViT throughput vs gFID"

FIGURE2B = Spec(
    id="figure2", title="Figure 2b: UViT-S gFID per autoencoder", caption="", columns=(), rows=(),
    not_implemented="figure2 panel b is not implemented: it plots generation FIDs of UViT-S models trained on each "
                    "autoencoder's latents, and this harness does not train latent diffusion models yet.",
)

SPECS = {"a": FIGURE2A, "b": FIGURE2B, "c": FIGURE2C}
