"""Convolutional autoencoders built for any (C, H, W): square or not, power of 2 or not.

Each stride-2 stage maps a side s to ceil(s / 2). The decoder records the encoder's sizes and
undoes each stage to exactly that size, so the reconstruction always has the input's shape
(28x28 in, 28x28 out; 223x129 in, 223x129 out).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from aekit.models.base import AEModule, AEOutput
from aekit.models.linear_path import LinearPath
from aekit.models.registry import register_model


def stage_sizes(h: int, w: int, depth: int) -> list[tuple[int, int]]:
    """Spatial size before each stage and after the last: [(H, W), ..., (h_depth, w_depth)]."""
    sizes = [(h, w)]
    for _ in range(depth):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        sizes.append((h, w))
    return sizes


def max_depth(h: int, w: int) -> int:
    """Most stride-2 stages that still shrink the image: the last one starts above 1 pixel."""
    side = max(h, w)
    return 1 if side <= 1 else math.floor(math.log2(side - 1)) + 1


def auto_width(channels: int) -> int:
    """16 first-stage channels (chosen on RGB photo patches), or 2x the bands for multi-band data."""
    return max(16, 2 * channels)


def auto_depth(h: int, w: int, max_depth: int = 5) -> int:
    """Halve until the smaller side is at most 7 pixels (28 -> 2 stages, 32 -> 3, 64 -> 4)."""
    depth, side = 0, min(h, w)
    while side > 7 and depth < max_depth:
        side = math.ceil(side / 2)
        depth += 1
    return max(depth, 1)


MAX_LINEAR_INPUT = 196_608  # C*H*W above which the linear path is left out (e.g. 3x256x256)


class ConvAutoencoder(LinearPath, AEModule):
    """Default architecture: per stage a stride-2 conv and a 3x3 conv with SiLU; the decoder
    upsamples to the recorded size and mirrors it; linear bottleneck and linear output head.

    With `linear_path`, a linear encoder/decoder pair runs beside the convolutional one and the
    two are summed (latent and output). `init_from_pca` sets the linear pair to the data's
    principal components and zeroes the conv outputs, so training starts exactly at PCA and the
    conv path learns what PCA misses."""

    def __init__(
        self, in_shape: tuple[int, int, int], latent_dim: int, depth: int, width: int = 16, linear_path: bool = True
    ):
        super().__init__()
        c, h, w = in_shape
        self.in_shape = (c, h, w)
        self.add_linear_path(c * h * w, latent_dim, linear_path and c * h * w <= MAX_LINEAR_INPUT)
        self.sizes = stage_sizes(h, w, depth)
        chans = [min(width * 2**i, width * 8) for i in range(depth)]
        self.stem = nn.Sequential(nn.Conv2d(c, chans[0], 3, padding=1), nn.SiLU())
        down, c_in = [], chans[0]
        for c_out in chans:
            down.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                    nn.SiLU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1),
                    nn.SiLU(),
                )
            )
            c_in = c_out
        self.down = nn.ModuleList(down)
        hb, wb = self.sizes[-1]
        self.bottleneck_shape = (chans[-1], hb, wb)
        flat = chans[-1] * hb * wb
        self.feature_dim = flat
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        up = []
        for i in reversed(range(depth)):
            c_out = chans[i - 1] if i > 0 else chans[0]
            up.append(
                nn.Sequential(
                    nn.Conv2d(chans[i], c_out, 3, padding=1),
                    nn.SiLU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1),
                    nn.SiLU(),
                )
            )
        self.up = nn.ModuleList(up)
        self.head = nn.Conv2d(chans[0], c, 3, padding=1)

    def encode_features(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(code (B, latent), the flattened conv features it was computed from (B, feature_dim))."""
        x = self.stem(inp)  # (B, width, H, W)
        for stage in self.down:
            x = stage(x)  # (B, c_i, ceil(h/2), ceil(w/2))
        feat = x.flatten(1)
        z = self.to_latent(feat)  # (B, latent)
        return (z + self.linear_encode(inp.flatten(1)) if self.linear_path else z), feat

    def encode(self, inp: torch.Tensor) -> torch.Tensor:
        return self.encode_features(inp)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.from_latent(z).view(-1, *self.bottleneck_shape)  # (B, c_last, h_d, w_d)
        for stage, size in zip(self.up, reversed(self.sizes[:-1])):
            x = stage(F.interpolate(x, size=size, mode="nearest"))  # (B, c, *size)
        x = self.head(x)  # (B, C, H, W)
        return x + self.linear_decode(z).view(-1, *self.in_shape) if self.linear_path else x

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.encode(x)
        return AEOutput(self.decode(z), z)


class BasicAutoencoder(AEModule):
    """The classic recipe (16, 32, 64 channels, 3x3 stride-2 convs, ReLU, linear latent, mirrored
    transposed convs), with the flatten size and output paddings computed from the input size."""

    def __init__(self, in_shape: tuple[int, int, int], latent_dim: int, depth: int = 3):
        super().__init__()
        c, h, w = in_shape
        self.sizes = stage_sizes(h, w, depth)
        chans = [16 * 2**i for i in range(depth)]
        enc, c_in = [], c
        for c_out in chans:
            enc += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c_in = c_out
        self.encoder = nn.Sequential(*enc)
        hb, wb = self.sizes[-1]
        self.bottleneck_shape = (chans[-1], hb, wb)
        self.in_shape = (c, h, w)
        self.feature_dim = chans[-1] * hb * wb
        self.fc_encode = nn.Linear(chans[-1] * hb * wb, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, chans[-1] * hb * wb)
        dec = []
        for i in reversed(range(depth)):
            (ht, wt), (hi, wi) = self.sizes[i], self.sizes[i + 1]
            # a transposed conv maps s -> 2s - 1 + output_padding; pick the padding that hits the target
            pad = (ht - (2 * hi - 1), wt - (2 * wi - 1))
            c_out = chans[i - 1] if i > 0 else c
            dec.append(nn.ConvTranspose2d(chans[i], c_out, 3, stride=2, padding=1, output_padding=pad))
            if i > 0:
                dec.append(nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(*dec)

    def encode_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x).flatten(1)
        return self.fc_encode(feat), feat  # (B, latent), (B, feature_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_features(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_decode(z).view(-1, *self.bottleneck_shape))  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.encode(x)
        return AEOutput(self.decode(z), z)


@register_model("conv", "conv autoencoder sized from the input with a PCA-initialised linear path; default for images")
def conv(
    in_shape, latent_dim: int, depth: int | None = None, width: int = 16, linear_path: bool = True
) -> ConvAutoencoder:
    depth = depth or auto_depth(in_shape[1], in_shape[2])
    return ConvAutoencoder(tuple(in_shape), latent_dim, depth, width, linear_path)


@register_model("basic", "classic 3-layer conv autoencoder (16/32/64 channels, ReLU), any input size")
def basic(in_shape, latent_dim: int, depth: int | None = None, width: int | None = None) -> BasicAutoencoder:
    return BasicAutoencoder(tuple(in_shape), latent_dim, depth or 3)
