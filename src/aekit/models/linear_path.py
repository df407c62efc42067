"""The PCA-initialised linear path shared by the conv and MLP autoencoders.

A linear encoder/decoder pair (`lin_enc`, `lin_dec`) runs beside the nonlinear network and the two
are summed (latent and output). `init_from_pca` sets the pair to the data's principal components
and zeroes the nonlinear network's last layers (`to_latent`, `head`), so training starts exactly
at PCA and the network learns what PCA misses; the linear pair learns slowly (`lr_scales`).
"""

from __future__ import annotations

import torch
from torch import nn

from aekit.core.compute import fp32_region

LINEAR_LR_SCALE = 0.1


class LinearPath:
    """Mixin for an nn.Module with `to_latent` and `head` layers."""

    linear_path: bool

    def add_linear_path(self, inputs: int, latent_dim: int, enabled: bool) -> None:
        self.linear_path = enabled
        if enabled:
            self.lin_enc = nn.Linear(inputs, latent_dim)
            self.lin_dec = nn.Linear(latent_dim, inputs)

    def linear_encode(self, x: torch.Tensor) -> torch.Tensor:
        """lin_enc(x) in fp32 whatever the autocast: a projection of thousands of inputs loses digits in
        bf16, and torch 2.13's bf16 CPU matmul dies with SIGFPE at (32, 49152) @ (49152, 64), the
        path of 128x128 RGB images with a batch of 32 (tests/models/test_linear_path.py)."""
        with fp32_region(x):
            return self.lin_enc(x.float())

    def linear_decode(self, z: torch.Tensor) -> torch.Tensor:
        """lin_dec(z) in fp32 whatever the autocast (as linear_encode)."""
        with fp32_region(z):
            return self.lin_dec(z.float())

    def lr_scales(self) -> dict[str, float]:
        """The PCA-initialised linear path learns slowly: it starts near its optimum."""
        return {"lin_": LINEAR_LR_SCALE}

    @torch.no_grad()
    def init_from_pca(
        self, mean: torch.Tensor, components: torch.Tensor, variance=None, code_std: torch.Tensor | None = None
    ) -> None:
        """Start at PCA: mean (D,), components (D, latent) in the model's (normalised) input units.
        With `code_std` (latent,) the codes are whitened (unit variance), as a VAE's prior wants;
        `variance` (the data's along each component) is for models that need it."""
        if not self.linear_path:
            return
        enc, dec = components, components
        if code_std is not None:
            s = code_std.clamp_min(1e-6)
            enc, dec = components / s, components * s
        self.lin_enc.weight.copy_(enc.T)
        self.lin_enc.bias.copy_(-(enc.T @ mean))
        self.lin_dec.weight.copy_(dec)
        self.lin_dec.bias.copy_(mean)
        for layer in (self.to_latent, self.head):  # the network starts silent, then learns the residual
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
