"""The denoising autoencoder, around any backbone (models/wrapper.py).

`DenoisingAutoencoder` corrupts the input while training (gaussian:SIGMA, masking:FRACTION,
saltpepper:FRACTION, in [0, 1] pixel units) and learns to give back the clean input; in eval mode
nothing is corrupted, so reconstructing a noisy image denoises it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aekit.config.train import parse_noise
from aekit.models.base import AEOutput, mse_terms
from aekit.models.registry import register_variant
from aekit.models.wrapper import BackboneWrapper


class DenoisingAutoencoder(BackboneWrapper):
    stochastic = True

    def __init__(self, backbone: nn.Module, noise: str = "gaussian:0.1"):
        super().__init__(backbone)
        self.noise = noise
        self.kind, self.amount = parse_noise(noise)

    def corrupt(self, xn: torch.Tensor) -> torch.Tensor:
        """The input with noise added in [0, 1] pixel units, back in normalised units."""
        if self.kind == "gaussian":
            return xn + torch.randn_like(xn) * (self.amount / self.unit_std)
        keep = torch.rand_like(xn[:, :1]) >= self.amount  # the same pixels in every channel
        if self.kind == "masking":
            return torch.where(keep, xn, self.from_unit(torch.zeros_like(xn)))
        salt = (torch.rand_like(xn[:, :1]) < 0.5).to(xn.dtype).expand_as(xn)
        return torch.where(keep, xn, self.from_unit(salt))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.backbone.decode(z)

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.backbone.encode(self.corrupt(x) if self.training else x)
        return AEOutput(self.backbone.decode(z), z)

    def loss_terms(self, out: AEOutput, target: torch.Tensor, mask=None, epoch: float = math.inf) -> dict:
        return mse_terms(out, target, mask)  # against the clean input


@register_variant("dae")
def dae(backbone: nn.Module, latent_dim: int, **options) -> DenoisingAutoencoder:
    return DenoisingAutoencoder(backbone, **options)
