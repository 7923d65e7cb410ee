"""A ``module:function`` factory for ``python -m bench eval-ae tests.own_models:tiny_autoencoder`` (tests)."""
import torch
from torch import nn


class TinyAutoencoder(nn.Module):
    """f4c3: average-pool down, nearest up; a scaled latent so its statistics are known: z = 2 * pool(x) + 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(2.0))
        self.spatial_compression, self.latent_channels = 4, 3

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * nn.functional.avg_pool2d(x, 4) + 0.5

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate((z - 0.5) / self.gain, scale_factor=4, mode="nearest")


def tiny_autoencoder() -> TinyAutoencoder:
    return TinyAutoencoder()


def not_an_autoencoder() -> object:
    return object()
