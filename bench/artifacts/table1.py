"""Table 1: patch size vs autoencoder spatial compression at equal token count (ImageNet 512, DiT-XL and UViT-S).

Every number in Table 1 is a generation FID of a latent diffusion model trained for hundreds of thousands of steps on
ImageNet. This harness does not train latent diffusion models yet, so the table is not implemented: it would need
the diffusion-training issue (latent extraction, UViT/DiT training, DPM-Solver/DDPM sampling, gFID against the
ImageNet-train reference). The efficiency side of the same rows is in table3/table4 (equal token count => equal cost).

Command: ``python -m bench table1`` (prints that it is not implemented and exits 1).
"""
from bench.spec import Column, PaperRef, Row, Spec

_ROWS = (("DiT-XL", "SD-VAE-f8", "4"), ("DiT-XL", "SD-VAE-f16", "2"), ("DiT-XL", "SD-VAE-f32", "1"),
         ("UViT-S", "SD-VAE-f8", "8"), ("UViT-S", "SD-VAE-f16", "4"), ("UViT-S", "SD-VAE-f32", "2"),
         ("UViT-S", "DC-AE-f64", "1"))

SPECS = {"": Spec(
    id="table1",
    title="Table 1: patch size vs autoencoder compression (ImageNet 512x512, gFID)",
    caption="gFID without/with CFG of DiT-XL and UViT-S at equal token count, varying where compression happens.",
    columns=(Column("fid_no_cfg", "gFID w/o CFG", True), Column("fid_cfg", "gFID w/ CFG", True)),
    rows=tuple(Row(f"{b} {a} p{p}", paper=PaperRef(backbone=b, autoencoder=a, patch=p),
                   note="generation FID needs latent diffusion training (not implemented)") for b, a, p in _ROWS),
    not_implemented="table1 is not implemented: its numbers are generation FIDs of latent diffusion models, and "
                    "this harness does not train latent diffusion models yet (see README, 'Status').",
)}
