"""Write ``tests/data/uvit_official_outputs.safetensors``: the official U-ViT's outputs on a tiny seeded model.

The official code (baofff/U-ViT ``libs/uvit.py`` @ ce55170, the U-ViT that efficientvit's ``diffusioncore`` UViT
follows) is run here, never copied into the project. The file holds that model's weights renamed to
``models/uvit.py``'s names (``model.*``), the inputs (``x``, ``t``, ``y``) and the official output (``out``);
``tests/test_backbones.py::test_uvit_matches_a_fixture_of_the_official_code`` loads the weights into our ``UViT``
and compares. It guards what only the real official module can show (the [label, time, patches] token order, the
[cos, sin] time sinusoid, the unpatchify channel order, the long-skip order), which round trips of our own weights
through the official names cannot.

How it was made (CPU, torch 2.x, fp32):

    git clone https://github.com/baofff/U-ViT .cache/U-ViT && git -C .cache/U-ViT checkout ce55170
    python -m pip install --target .cache/einops einops          # libs/uvit.py imports einops
    PYTHONPATH=.cache/U-ViT:.cache/einops .venv/bin/python tests/data/make_uvit_official_fixture.py

The tiny model: width 16, depth 2 (1 in, 1 mid, 1 out block), 2 heads, 4 latent channels on a 4x4 latent, patch 2,
3 classes (the official ``num_classes`` counts the null class: 4), no time MLP, no final conv (efficientvit's
setting). Seed 0 init, then every weight perturbed by N(0, 0.3^2) so that every input changes the output.
"""
from __future__ import annotations

from pathlib import Path

import torch
from libs.uvit import UViT as OfficialUViT  # from the U-ViT checkout on PYTHONPATH (see above)
from safetensors.torch import save_file

from models.uvit import UViT, UViTConfig

OUT = Path(__file__).resolve().parent / "uvit_official_outputs.safetensors"
OURS = UViTConfig(hidden_size=16, depth=2, num_heads=2, num_classes=3, in_channels=4, input_size=4, patch_size=2)
# official parameter name -> ours (everything else has the same name)
RENAMES = (("patch_embed.proj.", "patch_embed."), (".mlp.fc1.", ".mlp.0."), (".mlp.fc2.", ".mlp.2."))


def official_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = OfficialUViT(img_size=OURS.input_size, patch_size=OURS.patch_size, in_chans=OURS.in_channels,
                         embed_dim=OURS.hidden_size, depth=OURS.depth, num_heads=OURS.num_heads,
                         num_classes=OURS.num_classes + 1, mlp_time_embed=False, conv=False, qkv_bias=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for old, new in RENAMES:
            key = key.replace(old, new)
        out[key] = value.detach().clone().contiguous()
    return out


def main() -> None:
    official = official_model()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, OURS.in_channels, OURS.input_size, OURS.input_size, generator=g)  # (N, C, H, W)
    t = torch.tensor([1.0, 250.0, 999.5, 1000.0])  # integer training steps and the sampler's fractional t·1000
    y = torch.tensor([0, 2, 1, OURS.num_classes])  # the last is the null class
    with torch.no_grad():
        out = official(x, t, y)                                                        # (N, C, H, W)
    weights = renamed(official.state_dict())
    ours = UViT(OURS).eval()
    ours.load_state_dict(weights, strict=True)  # every official tensor has a home in ours, and nothing is left over
    with torch.no_grad():
        assert torch.allclose(ours(x, t, y), out, atol=1e-5), "our UViT disagrees with the official one"
    save_file({**{f"model.{k}": v for k, v in weights.items()}, "x": x, "t": t, "y": y, "out": out.contiguous()},
              str(OUT), metadata={"source": "baofff/U-ViT libs/uvit.py @ ce55170",
                                  "made_by": "tests/data/make_uvit_official_fixture.py"})
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
