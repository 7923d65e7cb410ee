"""Autoencoder training losses: L1, LPIPS perceptual loss, PatchGAN discriminator with hinge loss.

What the paper and its sources say (see ``shared/reference/autoencoders.md`` §9.2):

- phases 1 and 2 use a "reconstruction loss" = L1 + LPIPS (a maintainer's answer,
  https://github.com/mit-han-lab/efficientvit/issues/143);
- phase 3 (low-resolution local refinement) adds a GAN loss with a PatchGAN discriminator (secondary source);
- the loss weights, the discriminator depth/width, the GAN loss form and adaptive weighting are **unknown**. We use a
  hinge loss, an ``NLayerDiscriminator``-like PatchGAN (3 stride-2 layers, as in pix2pix), fixed weights
  (perceptual 1.0, GAN 0.5 — the GAN weight is the unofficial lavinal712 guess) and no adaptive weighting.

LPIPS needs the torchvision AlexNet (or VGG) backbone weights, which no PyPI package ships and which must never be
downloaded by the harness (offline machines). ``build_perceptual_loss`` therefore looks for the file in the torch hub
cache first and returns ``None`` when it is absent; the training run then records ``perceptual: none`` (a stated
deviation: L1-only reconstruction loss), never a silent fallback.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# torchvision file names of the LPIPS backbones (reference/evaluation.md §5); the lpips wheel ships only the heads.
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                        "squeeze": "squeezenet1_1-b8a52dc0.pth"}


# ---------------------------------------------------------------------------------------------------------------------
# Reconstruction losses
# ---------------------------------------------------------------------------------------------------------------------


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: torch.hub's weight cache (``torch.hub.set_dir`` is honoured)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def display_path(path) -> str:
    """A path for messages and recorded outputs, with the home folder shown as ~ (no machine-specific prefix)."""
    home, text = os.path.expanduser("~"), str(path)
    return "~" + text[len(home):] if home not in ("", "/") and text.startswith(home + os.sep) else text


def l1_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all pixels (images in [-1, 1]); computed in fp32 under autocast."""
    return (x_hat.float() - x.float()).abs().mean()


def lpips_backbone_path(net: str = "alex") -> Path | None:
    """Path of the torchvision backbone file LPIPS(net) would load, if it is already in the torch hub cache.

    Preflight by path only: ``torch.hub.get_dir()`` honours ``$TORCH_HOME``; nothing is downloaded.
    """
    if net not in LPIPS_BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS net {net!r}; use one of {sorted(LPIPS_BACKBONE_FILES)}")
    path = hub_checkpoints_dir() / LPIPS_BACKBONE_FILES[net]
    return path if path.is_file() and path.stat().st_size > 0 else None


class PerceptualLoss(nn.Module):
    """LPIPS distance (lpips package), frozen, inputs in [-1, 1]; returns the batch mean.

    Built with ``pnet_rand=True`` (so the lpips package never calls ``load_state_dict_from_url``) and then loaded from
    the local torchvision file: lpips names its backbone parameters ``net.sliceK.<features index>.<param>``, so the
    torchvision ``features.<index>.<param>`` tensors are matched on the index (reference/evaluation.md §5, route B).
    """

    def __init__(self, net: str, backbone_file: Path):
        super().__init__()
        import lpips  # imported here: the harness imports this module without needing lpips

        self.net_name = net
        # torchvision's "'pretrained' is deprecated", raised inside lpips
        # (https://github.com/richzhang/PerceptualSimilarity/issues/108)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        features = {k[len("features."):]: v for k, v in torch.load(backbone_file, map_location="cpu").items()
                    if k.startswith("features.")}
        backbone = self.lpips.net  # keys "sliceK.<index>.<param>"
        backbone.load_state_dict({key: features[key.split(".", 1)[1]] for key in backbone.state_dict()})
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # always frozen, always eval (no dropout in the linear heads)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.lpips(x_hat.float(), x.float()).mean()


def build_perceptual_loss(net: str = "alex") -> PerceptualLoss | None:
    """LPIPS(net) if its backbone weights are in the torch hub cache, else ``None`` (caller records ``none``).

    Set ``DCAE_BENCH_NO_LPIPS=1`` to force the L1-only path (used by tests of the unavailable path).
    """
    if os.environ.get("DCAE_BENCH_NO_LPIPS") == "1":
        return None
    path = lpips_backbone_path(net)
    return None if path is None else PerceptualLoss(net, path)


def perceptual_status(loss: PerceptualLoss | None) -> str:
    """What a run records under ``perceptual``: ``lpips-alex`` / ``lpips-vgg`` or ``none``."""
    return "none" if loss is None else f"lpips-{loss.net_name}"


def perceptual_unavailable_reason(net: str = "alex") -> str:
    return (f"LPIPS backbone {LPIPS_BACKBONE_FILES[net]} not in {display_path(hub_checkpoints_dir())}; "
            f"reconstruction loss is L1 only (copy the torchvision file there to enable LPIPS)")


# ---------------------------------------------------------------------------------------------------------------------
# PatchGAN discriminator (pix2pix NLayerDiscriminator design; our own code)
# ---------------------------------------------------------------------------------------------------------------------

class PatchDiscriminator(nn.Module):
    """PatchGAN: a fully convolutional classifier whose output is a map of real/fake logits, one per image patch.

    Layout (Isola et al. 2017, "n_layers" design): conv4×4/s2 + LeakyReLU(0.2), then ``n_layers - 1`` blocks
    conv4×4/s2 + norm + LeakyReLU doubling the width (capped at 8×), one conv4×4/s1 + norm + LeakyReLU, and a conv4×4/s1
    to one logit channel. With ``n_layers=3`` each logit sees a 70×70 receptive field.

    ``norm="batch"`` follows pix2pix/taming; ``"group"`` makes the discriminator independent of the per-rank batch
    split (DDP without SyncBN computes per-rank BN statistics).
    """

    def __init__(self, in_channels: int = 3, width: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()

        def norm_layer(c: int) -> nn.Module:
            if norm == "batch":
                return nn.BatchNorm2d(c)
            if norm == "group":
                return nn.GroupNorm(min(32, c // 4), c)
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")

        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, n_layers):  # stride-2 blocks, widths 2w, 4w, 8w (capped)
            c_next = width * min(2 ** i, 8)
            layers += [nn.Conv2d(c, c_next, 4, stride=2, padding=1, bias=False), norm_layer(c_next), nn.LeakyReLU(0.2)]
            c = c_next
        c_next = width * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(c, c_next, 4, stride=1, padding=1, bias=False), norm_layer(c_next), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(c_next, 1, 4, stride=1, padding=1)]  # (B, 1, h, w) patch logits
        self.main = nn.Sequential(*layers)
        self.apply(_init_gan_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, 1, ~H/8, ~W/8) for n_layers=3


def _init_gan_weights(m: nn.Module) -> None:
    """DCGAN initialisation, N(0, 0.02) for convs and N(1, 0.02) for norm scales, as in pix2pix."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------------------------
# Adversarial losses (hinge)
# ---------------------------------------------------------------------------------------------------------------------

def discriminator_hinge_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss for D: mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat))), halved as in taming-transformers."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: -mean(D(x_hat)) (D's parameters are not updated by this loss)."""
    return -logits_fake.float().mean()
