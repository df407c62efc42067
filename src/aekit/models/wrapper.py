"""What the variational and denoising autoencoders share: a backbone (conv, basic, mlp, ...) inside.

A backbone has `encode_features(x) -> (z, features)`, `feature_dim` and `decode(z)`. A wrapper keeps
the backbone's shape handling and its PCA start, and knows the data's per-channel mean and std so
that it can work in [0, 1] pixel units too (noise, a Bernoulli likelihood).
"""

from __future__ import annotations

import torch
from torch import nn

from aekit.models.base import AEModule


class BackboneWrapper(AEModule):
    """Shared plumbing: the backbone's shape, PCA start, learning-rate scales and unit buffers."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.sizes = getattr(backbone, "sizes", None)
        c = backbone.in_shape[0]
        # the data's per-channel mean and std in [0, 1] units (set by use_normalizer): noise and
        # Bernoulli likelihoods live in pixel units, the network in normalised ones
        self.register_buffer("unit_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("unit_std", torch.ones(1, c, 1, 1))

    @torch.no_grad()
    def use_normalizer(self, normalizer) -> None:
        self.unit_mean.copy_(normalizer.mean.reshape(self.unit_mean.shape))
        self.unit_std.copy_(normalizer.std.reshape(self.unit_std.shape))

    def lr_scales(self) -> dict[str, float]:
        return {f"backbone.{k}": v for k, v in self.backbone.lr_scales().items()}

    def init_from_pca(self, mean: torch.Tensor, components: torch.Tensor, variance=None) -> None:
        self.backbone.init_from_pca(mean, components)

    def to_unit(self, xn: torch.Tensor) -> torch.Tensor:
        return xn * self.unit_std + self.unit_mean

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        return (u - self.unit_mean) / self.unit_std
