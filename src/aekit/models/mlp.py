"""A fully connected autoencoder for tables (and any small input, flattened).

Tables arrive as (B, F, 1, 1): F columns as channels of a 1x1 image, so the per-channel
normaliser standardises each column. The MLP flattens whatever it gets and gives back the input's
shape. Like `conv`, it runs a linear encoder/decoder pair beside the nonlinear one; with
`init_from_pca` training starts exactly at PCA and the MLP learns what PCA misses.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aekit.models.base import AEModule, AEOutput
from aekit.models.conv import MAX_LINEAR_INPUT
from aekit.models.linear_path import LinearPath
from aekit.models.registry import register_model

MAX_WIDTH = 256
DEFAULT_DEPTH = 2


def auto_latent_dim(columns: int) -> int:
    """Tables: a quarter of the columns, from 2 to 64 (12 columns -> 3)."""
    return max(2, min(64, math.ceil(columns / 4)))


def auto_mlp_width(inputs: int, latent_dim: int) -> int:
    """First hidden layer: twice the inputs, at most 256, never below twice the latent size."""
    return max(2 * latent_dim, min(MAX_WIDTH, 2 * inputs))


def hidden_sizes(width: int, latent_dim: int, depth: int) -> list[int]:
    """`depth` hidden widths shrinking geometrically from `width` towards `latent_dim`."""
    return [max(latent_dim, round(width * (latent_dim / width) ** (i / depth))) for i in range(depth)]


class MLPAutoencoder(LinearPath, AEModule):
    """Encoder: Linear + SiLU per hidden layer, then a linear latent; the decoder mirrors it with a
    linear output head. `sizes` is [inputs, hidden_1, ..., hidden_depth] (like conv's stage sizes,
    `len(sizes) - 1` is the depth)."""

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        latent_dim: int,
        depth: int = DEFAULT_DEPTH,
        width: int | None = None,
        linear_path: bool = True,
    ):
        super().__init__()
        self.in_shape = tuple(in_shape)
        d = math.prod(self.in_shape)
        self.width = width or auto_mlp_width(d, latent_dim)
        self.sizes = [d, *hidden_sizes(self.width, latent_dim, depth)]
        self.add_linear_path(d, latent_dim, linear_path and d <= MAX_LINEAR_INPUT)
        enc = []
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            enc += [nn.Linear(a, b), nn.SiLU()]
        self.encoder = nn.Sequential(*enc)
        self.feature_dim = self.sizes[-1]
        self.to_latent = nn.Linear(self.sizes[-1], latent_dim)
        dec, prev = [], latent_dim
        for b in reversed(self.sizes[1:]):
            dec += [nn.Linear(prev, b), nn.SiLU()]
            prev = b
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Linear(prev, d)

    def encode_features(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = inp.flatten(1)  # (B, F)
        feat = self.encoder(x)
        z = self.to_latent(feat)  # (B, latent)
        return (z + self.linear_encode(x) if self.linear_path else z), feat

    def encode(self, inp: torch.Tensor) -> torch.Tensor:
        return self.encode_features(inp)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.head(self.decoder(z))  # (B, F)
        if self.linear_path:
            x = x + self.linear_decode(z)
        return x.view(-1, *self.in_shape)  # (B, F, 1, 1) for tables

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.encode(x)
        return AEOutput(self.decode(z), z)


@register_model("mlp", "fully connected autoencoder with a PCA-initialised linear path; default for tables")
def mlp(
    in_shape, latent_dim: int, depth: int | None = None, width: int | None = None, linear_path: bool = True
) -> MLPAutoencoder:
    return MLPAutoencoder(tuple(in_shape), latent_dim, depth or DEFAULT_DEPTH, width, linear_path)
